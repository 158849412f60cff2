/* 8 workers and 4 short-lived threads allocating at once: the short ones
 * exit while the workers still run. Every allocation is freed, sizes name
 * the thread: 5000 + index. Prints the heap statistics' change across the
 * threads' lives, to be compared with the trace between the two marks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "heaptrail.h"

#define WORKERS 8
#define SHORT 4
#define WORKER_ROUNDS 20000
#define SHORT_ROUNDS 500

static pthread_barrier_t start;

static void *run(void *arg)
{
	size_t index = (size_t)arg;
	int rounds = index < WORKERS ? WORKER_ROUNDS : SHORT_ROUNDS;
	pthread_barrier_wait(&start);
	void *keep[8] = { 0 };
	for (int i = 0; i < rounds; i++) {
		free(keep[i % 8]);
		keep[i % 8] = malloc(5000 + index);
	}
	for (int i = 0; i < 8; i++)
		free(keep[i]);
	return NULL;
}

int main(void)
{
	pthread_t t[WORKERS + SHORT];
	struct htr_heap_stats before, after;
	if (htr_get_heap_stats(&before) != 0)
		return 2;
	htr_mark("stats-before");
	pthread_barrier_init(&start, NULL, WORKERS + SHORT);
	for (size_t i = 0; i < WORKERS + SHORT; i++)
		if (pthread_create(&t[i], NULL, run, (void *)i) != 0)
			return 1;
	/* The short threads end first and are joined while workers run. */
	for (size_t i = WORKERS; i < WORKERS + SHORT; i++)
		pthread_join(t[i], NULL);
	for (size_t i = 0; i < WORKERS; i++)
		pthread_join(t[i], NULL);
	/* The counts of threads that ended, compared with the trace. */
	if (htr_get_heap_stats(&after) != 0)
		return 2;
	htr_mark("stats-after");
	printf("threads done\n");
	printf("stats %u %u %zu\n", after.alloc_count - before.alloc_count,
	       after.free_count - before.free_count, after.live_blocks - before.live_blocks);
	return 0;
}
