/* Every C allocation function once, between two marks, with sizes the test
 * checks; plus the C library contracts the recorder must keep. Exit status
 * 0 when every contract held, else the number of the first broken one. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heaptrail.h"

static void *volatile sink;

__attribute__((noinline)) static void *leaf_alloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" ::: "memory");
	return p;
}

int main(void)
{
	htr_mark("begin");
	void *a = leaf_alloc(1001);                     /* malloc 1001 */
	void *b = calloc(3, 334);                       /* calloc 1002 */
	void *volatile nothing = NULL;                  /* or gcc folds realloc(NULL, n) into malloc */
	void *c = realloc(nothing, 1003);               /* realloc old 0 */
	c = realloc(c, 1004);                           /* realloc grows */
	void *d = NULL;
	if (posix_memalign(&d, 64, 1005) != 0 || ((size_t)d & 63) != 0)
		return 10;
	void *e = aligned_alloc(128, 1006 * 128);
	if (((size_t)e & 127) != 0)
		return 11;
	void *f = memalign(32, 1007);
	void *g = valloc(1008);
	void *h = pvalloc(1009);
	void *i = reallocarray(nothing, 10, 101);       /* reallocarray 1010, once */
	if (malloc_usable_size(a) < 1001)
		return 12;
	/* free keeps errno */
	errno = 1234;
	free(a);
	if (errno != 1234)
		return 13;
	free(b);
	free(c);
	free(d);
	free(e);
	free(f);
	free(g);
	free(h);
	/* realloc(p, 0) frees and returns NULL */
	if (realloc(i, 0) != NULL)
		return 14;
	/* posix_memalign failure: result and errno untouched */
	void *untouched = (void *)0x1234;
	errno = 77;
	if (posix_memalign(&untouched, 3, 16) != EINVAL || untouched != (void *)0x1234 || errno != 77)
		return 15;
	/* overflow: no event, ENOMEM */
	errno = 0;
	volatile size_t huge = (size_t)1 << 62;
	if (reallocarray(NULL, huge, 16) != NULL || errno != ENOMEM)
		return 16;
	free(NULL);
	htr_mark("end");
	printf("basic: stdout line\n");
	fprintf(stderr, "basic: stderr line\n");
	fflush(stdout);
	return 0;
}
