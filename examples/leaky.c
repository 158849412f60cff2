/* The example `scripts/demo` runs: a small program with one leak and one
 * double free. Without heaptrail, glibc aborts at the double free; under
 * heaptrail the bad free is refused, reported with its stacks, and the
 * program runs to the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heaptrail.h"

struct config {
	char *name;
	int *limits;
};

static struct config *config_load(const char *name)
{
	struct config *config = HTR_MALLOC(sizeof(*config));
	if (config == NULL)
		return NULL;
	config->name = HTR_STRDUP(name);
	/* Plain calloc: traced through the preload, with a backtrace. */
	config->limits = calloc(16, sizeof(int));
	return config;
}

static void config_free(struct config *config)
{
	HTR_FREE(config->name);
	/* Bug: config->limits is never freed. */
	HTR_FREE(config);
}

/* Two owners each think they must release the buffer. */
static __attribute__((noinline)) void scratch_release(char *scratch)
{
	free(scratch);
}

static void scratch_work(void)
{
	char *scratch = malloc(64);
	if (scratch == NULL)
		return;
	snprintf(scratch, 64, "scratch");
	scratch_release(scratch);
	scratch_release(scratch); /* Bug: double free. */
}

int main(void)
{
	htr_mark("load");
	struct config *config = config_load("demo");
	if (config == NULL)
		return 1;
	htr_mark("work");
	scratch_work();
	config_free(config);
	puts("leaky: done");
	return 0;
}
