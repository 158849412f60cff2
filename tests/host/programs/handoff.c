/* Blocks made on one thread and freed on another, with heavy address reuse:
 * in the merged trace every address must alternate alloc, free, alloc, ...
 * (a free takes its seq before libc has the block back, an allocation after
 * libc handed it out). 4 threads x 20000 swaps; every block is freed.
 *
 * With the argument "realloc", blocks are bigger than glibc's per-thread
 * cache takes (so a free goes back to the arena of the thread that made the
 * block, where that thread can get it again at once), and the block taken
 * from another thread is grown by realloc (moving it) before it is freed. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4
#define SWAPS 20000
#define SLOTS 16

static void *slots[SLOTS];
static int use_realloc;

static void *run(void *arg)
{
	unsigned seed = (unsigned)(size_t)arg;
	for (int i = 0; i < SWAPS; i++) {
		seed = seed * 1103515245u + 12345u;
		size_t base = use_realloc ? 2048 : 64;
		void *mine = malloc(base + (seed >> 16) % 4 * 16);
		void *old = __atomic_exchange_n(&slots[(seed >> 8) % SLOTS], mine, __ATOMIC_ACQ_REL);
		if (use_realloc && old != NULL)
			old = realloc(old, 8192 + (seed >> 20) % 4 * 16);
		free(old);
		if (i % 32 == 0)
			sched_yield(); /* interleave the threads even on one core */
	}
	return NULL;
}

int main(int argc, char **argv)
{
	(void)argv;
	use_realloc = argc > 1;
	pthread_t t[THREADS];
	for (size_t i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, run, (void *)(i + 1));
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < SLOTS; i++)
		free(slots[i]);
	printf("handoff done\n");
	return 0;
}
