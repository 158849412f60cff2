#ifndef HTR_BENCH_WL_CHAIN_H
#define HTR_BENCH_WL_CHAIN_H

#include "wl_common.h"

/* Runs `pairs` malloc/free pairs of 1..256 bytes, each made 8 noinline frames
 * below the caller. */
void wl_run_pairs(long pairs, uint32_t seed);

#endif
