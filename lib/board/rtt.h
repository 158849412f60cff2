/* A SEGGER-RTT-compatible control block, so J-Link, OpenOCD (`rtt setup`,
 * `rtt server`), pyOCD and `heaptrail capture --gdb` find and read it.
 *
 * Layout on a 32-bit target (docs/board-wire.md): a 16-byte ID, the buffer
 * counts, then 24-byte descriptors, up buffers first. The host finds it by
 * the ELF symbol _SEGGER_RTT or by scanning RAM for the ID; the name is
 * SEGGER's, not ours, because the tools look for exactly that symbol. */
#ifndef HTR_BOARD_RTT_H
#define HTR_BOARD_RTT_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

#ifndef HTR_RTT_UP_SIZE
#define HTR_RTT_UP_SIZE 2048u
#endif
#define HTR_RTT_DOWN_SIZE 16u

#define HTR_RTT_MODE_SKIP 0u
#define HTR_RTT_MODE_TRIM 1u
#define HTR_RTT_MODE_BLOCK 2u

struct htr_rtt_buffer {
	const char *name;
	uint8_t *buf;
	uint32_t size;
	volatile uint32_t wr_off; /* written by the target only */
	volatile uint32_t rd_off; /* written by the host only (up buffers) */
	uint32_t flags;
};

struct htr_rtt_cb {
	char id[16];
	int32_t max_up;
	int32_t max_down;
	struct htr_rtt_buffer up[1];
	struct htr_rtt_buffer down[1];
};

extern struct htr_rtt_cb _SEGGER_RTT;

/* Sets up the block (ID last, behind barriers); idempotent. */
void htr_rtt_init(void);
/* Skip mode: 0 when all of buf went in, -1 (and nothing written) when it
 * did not fit. */
int htr_rtt_write(void *ctx, const uint8_t *buf, size_t len);
/* Bytes written but not yet read by the host. */
uint32_t htr_rtt_pending(void);
/* Ring arithmetic, exposed for the tests: free bytes between wr and rd in a
 * buffer of size (one slot always stays empty). */
static inline uint32_t htr_rtt_space(uint32_t size, uint32_t wr, uint32_t rd)
{
	return rd > wr ? rd - wr - 1u : size - 1u - wr + rd;
}

extern const struct htr_transport htr_rtt_transport;

#endif /* HTR_BOARD_RTT_H */
