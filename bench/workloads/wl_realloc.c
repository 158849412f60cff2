/* Workload (c): realloc growth and a calloc mix. Each round callocs a small
 * array, grows it six times with realloc (as a growing vector or string
 * builder does), and mixes in a malloc/free pair, holding a window of 64
 * blocks so realloc sometimes moves and sometimes extends in place.
 * Ten events per round; PAIRS/5 rounds give the 4 M events of (a).
 * Usage: wl_realloc [PAIRS]   (default 2,000,000) */
#include <string.h>

#include "wl_common.h"

#define WL_WINDOW 64
#define WL_GROWTHS 6

void *volatile wl_sink;

__attribute__((noinline)) static void wl_round(char **slot, uint32_t *rng)
{
	size_t count = 1 + (wl_rand(rng) & 15u);
	size_t elem = 8u << (wl_rand(rng) & 3u);
	char *p = calloc(count, elem);
	if (p == NULL)
		return;
	size_t size = count * elem;
	for (int g = 0; g < WL_GROWTHS; g++) {
		size_t grown = size + size / 2 + (wl_rand(rng) & 63u);
		char *q = realloc(p, grown);
		if (q == NULL)
			break;
		q[grown - 1] = (char)g;
		p = q;
		size = grown;
	}
	char *tmp = malloc(1 + (wl_rand(rng) & 255u));
	wl_sink = tmp;
	free(tmp);
	free(*slot);
	*slot = p;
}

int main(int argc, char **argv)
{
	long pairs = wl_count_arg(argc, argv, 2000000);
	long rounds = pairs / 5;
	char *window[WL_WINDOW];
	uint32_t rng = 0x51ed270bu;

	memset(window, 0, sizeof window);
	for (long i = 0; i < rounds; i++)
		wl_round(&window[i % WL_WINDOW], &rng);
	for (int i = 0; i < WL_WINDOW; i++)
		free(window[i]);
	return 0;
}
