/* Blocks made on one thread and freed on another, with heavy address reuse:
 * in the merged trace every address must alternate alloc, free, alloc, ...
 * (a free takes its seq before libc has the block back, an allocation after
 * libc handed it out). 4 threads x 20000 swaps; every block is freed. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4
#define SWAPS 20000
#define SLOTS 16

static void *slots[SLOTS];

static void *run(void *arg)
{
	unsigned seed = (unsigned)(size_t)arg;
	for (int i = 0; i < SWAPS; i++) {
		seed = seed * 1103515245u + 12345u;
		void *mine = malloc(64 + (seed >> 16) % 4 * 16);
		void *old = __atomic_exchange_n(&slots[(seed >> 8) % SLOTS], mine, __ATOMIC_ACQ_REL);
		free(old);
		if (i % 32 == 0)
			sched_yield(); /* interleave the threads even on one core */
	}
	return NULL;
}

int main(void)
{
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
