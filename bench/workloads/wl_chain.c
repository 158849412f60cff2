/* The depth-8 chain of noinline frames shared by the pair workloads. */
#include "wl_chain.h"

void *volatile wl_sink;

/* The empty asm after each call keeps the compiler from turning the call into
 * a jump (a tail call would leave fewer frames for the unwinder to walk). */
#define WL_BARRIER() __asm__ volatile("" ::: "memory")

__attribute__((noinline)) static void wl_pair(uint32_t *rng)
{
	size_t size = 1 + (wl_rand(rng) & 255u);
	char *p = malloc(size);
	wl_sink = p;
	if (p != NULL)
		p[0] = (char)size;
	free(p);
	WL_BARRIER();
}

__attribute__((noinline)) static void wl_f1(uint32_t *rng) { wl_pair(rng); WL_BARRIER(); }
__attribute__((noinline)) static void wl_f2(uint32_t *rng) { wl_f1(rng); WL_BARRIER(); }
__attribute__((noinline)) static void wl_f3(uint32_t *rng) { wl_f2(rng); WL_BARRIER(); }
__attribute__((noinline)) static void wl_f4(uint32_t *rng) { wl_f3(rng); WL_BARRIER(); }
__attribute__((noinline)) static void wl_f5(uint32_t *rng) { wl_f4(rng); WL_BARRIER(); }
__attribute__((noinline)) static void wl_f6(uint32_t *rng) { wl_f5(rng); WL_BARRIER(); }
__attribute__((noinline)) static void wl_f7(uint32_t *rng) { wl_f6(rng); WL_BARRIER(); }
__attribute__((noinline)) static void wl_f8(uint32_t *rng) { wl_f7(rng); WL_BARRIER(); }

void wl_run_pairs(long pairs, uint32_t seed)
{
	uint32_t rng = seed ? seed : 0x9e3779b9u;
	for (long i = 0; i < pairs; i++)
		wl_f8(&rng);
}
