/* The RTT up channel 0, in skip mode: a record that does not fit is dropped
 * whole, and the encoder's drop counter reports it in band. */
#include <string.h>

#include "port.h"
#include "rtt.h"

#if UINTPTR_MAX == 0xFFFFFFFFu
/* The tools read this block by offset: pin the 32-bit layout. A negative
 * array size stops the build (C99 has no _Static_assert). */
typedef char htr_rtt_layout_check[(offsetof(struct htr_rtt_cb, max_up) == 16 &&
				   offsetof(struct htr_rtt_cb, max_down) == 20 &&
				   offsetof(struct htr_rtt_cb, up) == 24 &&
				   offsetof(struct htr_rtt_cb, down) == 48 &&
				   sizeof(struct htr_rtt_buffer) == 24 &&
				   offsetof(struct htr_rtt_buffer, size) == 8 &&
				   offsetof(struct htr_rtt_buffer, wr_off) == 12 &&
				   offsetof(struct htr_rtt_buffer, rd_off) == 16 &&
				   offsetof(struct htr_rtt_buffer, flags) == 20) ? 1 : -1];
#endif

struct htr_rtt_cb _SEGGER_RTT;
static uint8_t up_buf[HTR_RTT_UP_SIZE];
static uint8_t down_buf[HTR_RTT_DOWN_SIZE];

void htr_rtt_init(void)
{
	struct htr_rtt_cb *cb = &_SEGGER_RTT;
	if (cb->id[0] == 'S')
		return;
	cb->max_up = 1;
	cb->max_down = 1;
	cb->up[0].name = "heaptrail";
	cb->up[0].buf = up_buf;
	cb->up[0].size = HTR_RTT_UP_SIZE;
	cb->up[0].wr_off = 0;
	cb->up[0].rd_off = 0;
	cb->up[0].flags = HTR_RTT_MODE_SKIP;
	cb->down[0].name = "heaptrail";
	cb->down[0].buf = down_buf;
	cb->down[0].size = HTR_RTT_DOWN_SIZE;
	cb->down[0].wr_off = 0;
	cb->down[0].rd_off = 0;
	cb->down[0].flags = HTR_RTT_MODE_SKIP;
	htr_port_barrier();
	/* The ID goes in last, back to front, from pieces: a host scanning RAM
	 * must not find it before the block is complete, nor find a copy of
	 * the whole string in flash. */
	static const char tail[] = " RTT";
	for (int i = 3; i >= 0; i--)
		cb->id[6 + i] = tail[i];
	htr_port_barrier();
	cb->id[0] = 'S';
	cb->id[1] = 'E';
	cb->id[2] = 'G';
	cb->id[3] = 'G';
	cb->id[4] = 'E';
	cb->id[5] = 'R';
	htr_port_barrier();
}

uint32_t htr_rtt_pending(void)
{
	const struct htr_rtt_buffer *b = &_SEGGER_RTT.up[0];
	uint32_t wr = b->wr_off, rd = b->rd_off;
	return wr >= rd ? wr - rd : b->size - rd + wr;
}

int htr_rtt_write(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	struct htr_rtt_buffer *b = &_SEGGER_RTT.up[0];
	uint32_t wr = b->wr_off;
	uint32_t rd = b->rd_off;
	if (rd >= b->size || len > htr_rtt_space(b->size, wr, rd))
		return -1;
	uint32_t first = b->size - wr;
	if (first > len)
		first = (uint32_t)len;
	memcpy(b->buf + wr, buf, first);
	memcpy(b->buf, buf + first, len - first);
	wr += (uint32_t)len;
	if (wr >= b->size)
		wr -= b->size;
	/* The host must see the bytes before the offset that covers them. */
	htr_port_barrier();
	b->wr_off = wr;
	return 0;
}

const struct htr_transport htr_rtt_transport = {htr_rtt_write, NULL};
