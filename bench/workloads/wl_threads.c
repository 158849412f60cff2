/* Workload (b): the pairs of (a), the same total split over 8 threads that run
 * at once. Usage: wl_threads [PAIRS]   (default 2,000,000 in all) */
#include <pthread.h>
#include <string.h>

#include "wl_chain.h"

#define WL_THREADS 8

struct wl_job {
	long pairs;
	uint32_t seed;
};

static pthread_barrier_t wl_start;

static void *wl_thread(void *arg)
{
	const struct wl_job *job = arg;
	/* Every thread starts allocating together, so the recorder sees eight
	 * writers at once instead of a staggered relay. */
	pthread_barrier_wait(&wl_start);
	wl_run_pairs(job->pairs, job->seed);
	return NULL;
}

int main(int argc, char **argv)
{
	long pairs = wl_count_arg(argc, argv, 2000000);
	pthread_t tids[WL_THREADS];
	struct wl_job jobs[WL_THREADS];

	pthread_barrier_init(&wl_start, NULL, WL_THREADS);
	for (int i = 0; i < WL_THREADS; i++) {
		jobs[i].pairs = pairs / WL_THREADS + (i < pairs % WL_THREADS ? 1 : 0);
		jobs[i].seed = 0x2545f491u + 0x9e3779b9u * (uint32_t)i;
		int rc = pthread_create(&tids[i], NULL, wl_thread, &jobs[i]);
		if (rc != 0) {
			fprintf(stderr, "wl_threads: pthread_create: %s\n", strerror(rc));
			return 1;
		}
	}
	for (int i = 0; i < WL_THREADS; i++)
		pthread_join(tids[i], NULL);
	pthread_barrier_destroy(&wl_start);
	return 0;
}
