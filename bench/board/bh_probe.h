/* The board-heap probe harness, shared by the host build (run under
 * callgrind) and the Cortex-M3 firmware (run under QEMU with every executed
 * instruction logged). Both count the instructions between bh_mark_begin()
 * and bh_mark_end() around one heap call; bench/run subtracts the cost of an
 * empty probe. */
#ifndef HTR_BENCH_BH_PROBE_H
#define HTR_BENCH_BH_PROBE_H

#include <stddef.h>

/* The arena every heap under test gets: what the example firmware's QEMU
 * tests use, so "fill" means the same bytes on both heaps. */
#define BH_ARENA_BYTES (64u * 1024u)

struct bh_heap_ops {
	const char *tag; /* printed in each probe label (firmware runs two heaps) */
	void (*reset)(void);
	void *(*alloc)(size_t size);
	void (*release)(void *ptr);
};

/* Provided by the platform: one label line out (stdout or the UART). */
void bh_puts(const char *s);

/* bh_api.c: the board API (heap + binary encoder) as one more heap. */
extern const struct bh_heap_ops bh_api_ops;

/* Runs every fill state against one heap. quick: two states only. */
void bh_run(const struct bh_heap_ops *ops, int quick);

#endif
