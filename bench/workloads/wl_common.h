/* Shared by the benchmark workloads: a deterministic PRNG, a sink the
 * optimiser cannot see through, and the depth-8 call chain. */
#ifndef HTR_BENCH_WL_COMMON_H
#define HTR_BENCH_WL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Frames between the loop and the allocation call, as in the anchors of
 * design-notes section 6: the unwinder has real work to do on every event. */
#define WL_DEPTH 8

/* GCC deletes a malloc/free pair whose block never escapes; storing every
 * block here makes each call observable. */
extern void *volatile wl_sink;

/* xorshift32: the same sizes on every run and every tool, so the tools see
 * the same heap states and the bare run is a fair baseline. */
static inline uint32_t wl_rand(uint32_t *state)
{
	uint32_t x = *state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

/* Parses the event-scale argument; the workloads take one positive count. */
static inline long wl_count_arg(int argc, char **argv, long fallback)
{
	if (argc < 2)
		return fallback;
	char *end = NULL;
	long n = strtol(argv[1], &end, 10);
	if (end == argv[1] || *end != '\0' || n <= 0) {
		fprintf(stderr, "%s: expected a positive count, got '%s'\n", argv[0], argv[1]);
		exit(2);
	}
	return n;
}

#endif
