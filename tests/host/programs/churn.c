/* Many events, little memory: `churn PAIRS THREADS` makes PAIRS malloc/free
 * pairs, then runs THREADS short-lived threads one after another (each a few
 * pairs), and prints its peak resident size (VmHWM, in kB). The trace is far
 * larger than that peak only if the recorder lets go of the chunks it has
 * filled. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *short_lived(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++)
		free(malloc(64));
	return NULL;
}

static long vm_hwm_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	long pairs = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
	long threads = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
	for (long i = 0; i < pairs; i++) {
		void *p = malloc((size_t)(i % 256) + 1);
		if (p == NULL)
			return 1;
		free(p);
	}
	for (long i = 0; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, short_lived, NULL) != 0)
			return 1;
		pthread_join(t, NULL);
	}
	printf("hwm %ld\n", vm_hwm_kb());
	return 0;
}
