/* UART transports: blocking bytes through the port, or a ring the TX
 * interrupt drains. */
#include <string.h>

#include "port.h"
#include "transport.h"

static int blocking_write(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	for (size_t i = 0; i < len; i++)
		htr_port_putc(buf[i]);
	return 0;
}

const struct htr_transport htr_uart_blocking = {blocking_write, NULL};

void htr_uart_ring_init(struct htr_uart_ring *ring, uint8_t *buf, uint32_t size, void (*kick)(void))
{
	ring->buf = buf;
	ring->size = size;
	ring->head = 0;
	ring->tail = 0;
	ring->dropped_bytes = 0;
	ring->kick = kick;
}

/* head and tail run freely and wrap at 2^32; size is a power of two, so
 * head - tail is the fill level even across the wrap. */
uint32_t htr_uart_ring_used(const struct htr_uart_ring *ring)
{
	return ring->head - ring->tail;
}

int htr_uart_ring_write(void *ctx, const uint8_t *buf, size_t len)
{
	struct htr_uart_ring *ring = ctx;
	uint32_t head = ring->head;
	if (len > ring->size - (head - ring->tail)) {
		ring->dropped_bytes += (uint32_t)len;
		return -1;
	}
	uint32_t at = head & (ring->size - 1u);
	uint32_t first = ring->size - at;
	if (first > len)
		first = (uint32_t)len;
	memcpy(ring->buf + at, buf, first);
	memcpy(ring->buf, buf + first, len - first);
	/* The ISR must see the bytes before it sees the new head. */
	htr_port_barrier();
	ring->head = head + (uint32_t)len;
	if (ring->kick != NULL)
		ring->kick();
	return 0;
}

uint32_t htr_uart_ring_drain(struct htr_uart_ring *ring, int (*tx_ready)(void), void (*put)(uint8_t))
{
	uint32_t tail = ring->tail, n = 0;
	while (tail != ring->head && tx_ready()) {
		put(ring->buf[tail & (ring->size - 1u)]);
		tail++;
		n++;
	}
	ring->tail = tail;
	return n;
}
