/* Where encoded records go. A transport takes a whole record or none of it,
 * so a record that does not fit is dropped entirely and counted, never cut
 * (a cut record would look like corruption, a dropped one is a clean gap). */
#ifndef HTR_BOARD_TRANSPORT_H
#define HTR_BOARD_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

struct htr_transport {
	/* 0 when the bytes were taken, -1 when dropped. */
	int (*write)(void *ctx, const uint8_t *buf, size_t len);
	void *ctx;
};

/* uart.c: every byte through htr_port_putc, spinning while the UART is busy. */
extern const struct htr_transport htr_uart_blocking;

/* uart.c: a TX ring. write() queues (or drops when full) and calls kick(),
 * which should enable the TX interrupt; the ISR calls
 * htr_uart_ring_drain() with a hook that tells whether the UART has room. */
struct htr_uart_ring {
	uint8_t *buf;
	uint32_t size;           /* a power of two */
	volatile uint32_t head;  /* written by the producer only */
	volatile uint32_t tail;  /* written by the ISR only */
	uint32_t dropped_bytes;
	void (*kick)(void);
};
void htr_uart_ring_init(struct htr_uart_ring *ring, uint8_t *buf, uint32_t size, void (*kick)(void));
int htr_uart_ring_write(void *ring, const uint8_t *buf, size_t len);
uint32_t htr_uart_ring_used(const struct htr_uart_ring *ring);
/* Moves bytes to the UART while tx_ready() says there is room; returns how
 * many. Returns 0 and leaves the rest for the next interrupt otherwise. */
uint32_t htr_uart_ring_drain(struct htr_uart_ring *ring, int (*tx_ready)(void), void (*put)(uint8_t));

#endif /* HTR_BOARD_TRANSPORT_H */
