/* Example firmware for heaptrail's board backend under QEMU mps2-an385.
 *
 * It uses include/heaptrail.h like any firmware would, with bugs planted at
 * known lines (each tagged "expect:" for the end-to-end test, which finds
 * them by that tag): two leaks, a double free, an invalid free and a
 * persistent block, in segments separated by htr_mark(). Exit status: 0
 * when the backend's own view agrees with what was planted. */
#include <stdint.h>
#include <string.h>

#include "fw.h"
#include "heaptrail.h"
#include "heaptrail_board.h"
#include "rtt.h"

#define FW_UART_BLOCKING 1
#define FW_UART_RING 2
#define FW_RTT 3

#ifndef FW_ENCODING
#define FW_ENCODING HTR_BOARD_TEXT
#endif
#ifndef FW_TRANSPORT
#define FW_TRANSPORT FW_UART_BLOCKING
#endif

/* Two regions of odd sizes: the heap takes any buffer, several of them.
 * Aligned so that every variant's heap lays out blocks the same way
 * relative to 64-byte boundaries (the tests compare the variants). */
static uint8_t heap_main[32 * 1024 + 12] __attribute__((aligned(256)));
static uint8_t heap_extra[6 * 1024 + 3] __attribute__((aligned(256)));
static uint32_t not_from_heap[4];

#if FW_TRANSPORT == FW_UART_RING
static uint8_t tx_buf[1024];
static struct htr_uart_ring tx_ring;
static const struct htr_transport ring_transport = {htr_uart_ring_write, &tx_ring};

static void tx_isr(void)
{
	htr_uart_ring_drain(&tx_ring, fw_uart_tx_ready, fw_uart_put);
}
#endif

static const struct htr_transport *transport(void)
{
#if FW_TRANSPORT == FW_UART_RING
	htr_uart_ring_init(&tx_ring, tx_buf, sizeof(tx_buf), fw_uart_tx_irq_pend);
	fw_uart_tx_irq_enable(tx_isr);
	return &ring_transport;
#elif FW_TRANSPORT == FW_RTT
	htr_rtt_init();
	return &htr_rtt_transport;
#else
	return &htr_uart_blocking;
#endif
}

/* The host drains RTT and the ISR drains the ring; wait for both before
 * exiting, or the tail of the log is lost with the emulator. */
static void wait_drained(void)
{
#if FW_TRANSPORT == FW_UART_RING
	for (uint32_t spin = 0; htr_uart_ring_used(&tx_ring) != 0 && spin < 10000000u; spin++)
		__asm volatile("" ::: "memory");
#elif FW_TRANSPORT == FW_RTT
	for (uint32_t spin = 0; htr_rtt_pending() != 0 && spin < 200000000u; spin++)
		__asm volatile("" ::: "memory");
#endif
}

/* A last checkpoint once there is room again: it carries the drop count of
 * any records lost at the end, and the final totals. */
static void flush(void)
{
	wait_drained();
	htr_board_checkpoint();
	wait_drained();
}

struct config {
	char *name;
	int *limits;
};

static struct config *config_load(const char *name)
{
	struct config *c = HTR_CALLOC(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->name = HTR_STRDUP(name);
	c->limits = HTR_MALLOC(16 * sizeof(int)); /* expect: leak 64 */
	return c;
}

static void config_free(struct config *c)
{
	HTR_FREE(c->name);
	HTR_FREE(c); /* bug: c->limits stays */
}

/* A typical workload: short-lived buffers of a few sizes. */
static int churn(void)
{
	void *slots[8] = {0};
	for (unsigned i = 0; i < 500u; i++) {
		unsigned k = (i * 5u) % 8u;
		if (slots[k] != NULL)
			HTR_FREE(slots[k]);
		slots[k] = HTR_MALLOC(16u + (i % 4u) * 24u);
		if (slots[k] == NULL)
			return -1;
	}
	for (unsigned k = 0; k < 8u; k++)
		HTR_FREE(slots[k]);
	return 0;
}

int main(void)
{
	struct htr_board_config cfg = {FW_ENCODING, transport(), 128};
	if (htr_board_init(&cfg) != 0 || htr_board_add_region(heap_main, sizeof(heap_main)) != 0 ||
	    htr_board_add_region(heap_extra, sizeof(heap_extra)) != 0)
		return 10;

	htr_mark("boot");
	uint8_t *pool = HTR_PERSISTENT(256); /* expect: persistent 256 */
	if (pool == NULL)
		return 11;
	memset(pool, 0, 256);

	htr_mark("test_config");
	struct config *c = config_load("sensor-7");
	if (c == NULL)
		return 12;
	config_free(c);

	htr_mark("test_buffers");
	char *buf = HTR_MALLOC(100);
	buf = HTR_REALLOC(buf, 300); /* grows in place: free space follows */
	char *blocker = HTR_MALLOC(500); /* lands right after buf */
	buf = HTR_REALLOC(buf, 2000); /* has to move: blocker is in the way */
	HTR_FREE(blocker);
	HTR_FREE(buf);
	void *dma = HTR_ALIGNED_ALLOC(64, 48);
	if (dma == NULL || ((uintptr_t)dma & 63u) != 0)
		return 13;
	HTR_FREE(dma);
	void *table = HTR_MALLOC(24); /* expect: leak 24 */
	(void)table;

	htr_mark("test_misuse");
	void *once = HTR_MALLOC(32);
	HTR_FREE(once);
	HTR_FREE(once); /* expect: double-free */
	HTR_FREE(&not_from_heap[1]); /* expect: invalid-free */

	htr_mark("test_churn");
	if (churn() != 0)
		return 14;

	htr_mark("end");
	struct htr_heap_stats s;
	htr_get_heap_stats(&s);
	int status = 0;
	if (htr_board_check() != 0)
		status = 20;
	else if (s.live_blocks != 3 || s.used_bytes != 256 + 64 + 24)
		status = 21;
	else if (s.misuse_count != 2)
		status = 22;
	flush();
	return status;
}
