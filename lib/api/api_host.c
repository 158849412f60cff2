/* libheaptrail-api for the host: forwards every call to the preloaded
 * recorder when there is one, else to the C library. See shim_abi.h for why
 * this goes through a table found with dlsym. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "heaptrail.h"
#include "shim_abi.h"

/* Resolved once. A race between two first calls only repeats the dlsym. */
static const struct htr_shim_abi *recorder(void)
{
	static const struct htr_shim_abi *cached;
	static int resolved;

	if (__atomic_load_n(&resolved, __ATOMIC_ACQUIRE))
		return cached;
	const struct htr_shim_abi *abi = dlsym(RTLD_DEFAULT, HTR_SHIM_ABI_SYMBOL);
	if (abi != NULL && (abi->version != HTR_SHIM_ABI_VERSION || abi->size < sizeof(*abi)))
		abi = NULL;
	__atomic_store_n(&cached, abi, __ATOMIC_RELAXED);
	__atomic_store_n(&resolved, 1, __ATOMIC_RELEASE);
	return abi;
}

void *htr_malloc_at(size_t size, const char *file, int line)
{
	const struct htr_shim_abi *r = recorder();
	return r ? r->malloc_at(size, file, line) : malloc(size);
}

void *htr_calloc_at(size_t count, size_t size, const char *file, int line)
{
	const struct htr_shim_abi *r = recorder();
	return r ? r->calloc_at(count, size, file, line) : calloc(count, size);
}

void *htr_realloc_at(void *ptr, size_t size, const char *file, int line)
{
	const struct htr_shim_abi *r = recorder();
	return r ? r->realloc_at(ptr, size, file, line) : realloc(ptr, size);
}

void *htr_aligned_alloc_at(size_t alignment, size_t size, const char *file, int line)
{
	const struct htr_shim_abi *r = recorder();
	return r ? r->aligned_alloc_at(alignment, size, file, line) : aligned_alloc(alignment, size);
}

char *htr_strdup_at(const char *s, const char *file, int line)
{
	const struct htr_shim_abi *r = recorder();
	return r ? r->strdup_at(s, file, line) : strdup(s);
}

void htr_free_at(void *ptr, const char *file, int line)
{
	const struct htr_shim_abi *r = recorder();
	if (r)
		r->free_at(ptr, file, line);
	else
		free(ptr);
}

void *htr_persistent_at(size_t size, const char *file, int line)
{
	const struct htr_shim_abi *r = recorder();
	return r ? r->persistent_at(size, file, line) : malloc(size);
}

void htr_mark(const char *name)
{
	const struct htr_shim_abi *r = recorder();
	if (r)
		r->mark(name);
}

int htr_get_heap_stats(struct htr_heap_stats *out)
{
	const struct htr_shim_abi *r = recorder();
	if (r)
		return r->heap_stats(out);
	memset(out, 0, sizeof(*out));
	return -1;
}
