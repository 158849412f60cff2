/* Counting preload: how many heap events a workload makes, so that bench/run
 * can give ns per event and trace bytes per event for every tool on the same
 * denominator. An event is one allocation call (any of the malloc family,
 * realloc included) or one free of a non-NULL pointer, the unit heaptrack's
 * and heaptrail's traces record.
 *
 * glibc's __libc_* entry points are used instead of dlsym(RTLD_NEXT): dlsym
 * allocates, and this file must not need a bootstrap pool for a count. The
 * total goes to $HTRBENCH_COUNT_FILE at exit as "ALLOCS FREES". */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *ptr);

void *memalign(size_t alignment, size_t size);
void *valloc(size_t size);
void *pvalloc(size_t size);

static atomic_ulong allocs;
static atomic_ulong frees;

void *malloc(size_t size)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_malloc(size);
}

void *calloc(size_t count, size_t size)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_calloc(count, size);
}

void *realloc(void *ptr, size_t size)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_realloc(ptr, size);
}

void *memalign(size_t alignment, size_t size)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
	return memalign(alignment, size);
}

void *valloc(size_t size)
{
	return memalign(4096, size);
}

void *pvalloc(size_t size)
{
	return memalign(4096, (size + 4095) & ~(size_t)4095);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
	int saved = errno;
	void *p = memalign(alignment, size);
	errno = saved;
	if (p == NULL)
		return ENOMEM;
	*out = p;
	return 0;
}

void free(void *ptr)
{
	if (ptr == NULL)
		return;
	atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
	__libc_free(ptr);
}

__attribute__((destructor)) static void htrbench_count_report(void)
{
	const char *path = getenv("HTRBENCH_COUNT_FILE");
	if (path == NULL)
		return;
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return;
	fprintf(f, "%lu %lu\n", atomic_load(&allocs), atomic_load(&frees));
	fclose(f);
}
