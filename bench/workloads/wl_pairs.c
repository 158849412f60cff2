/* Workload (a): malloc/free pairs of 1..256 bytes at call depth 8, one thread.
 * Usage: wl_pairs [PAIRS]   (default 2,000,000) */
#include "wl_chain.h"

int main(int argc, char **argv)
{
	long pairs = wl_count_arg(argc, argv, 2000000);
	wl_run_pairs(pairs, 0x2545f491u);
	return 0;
}
