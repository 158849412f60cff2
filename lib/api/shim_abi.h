/* The contract between libheaptrail-api (linked into programs that use
 * include/heaptrail.h) and the preloaded recorder (libheaptrail.so).
 *
 * The API library cannot call the recorder's functions by name: a program's
 * own definitions come before any preload in symbol lookup, so a same-named
 * function in the recorder would never be reached. Instead the recorder
 * exports one table under a versioned name, and the API library looks it up
 * once with dlsym(RTLD_DEFAULT, HTR_SHIM_ABI_SYMBOL). Not found: no recorder,
 * and the calls go straight to the C library. */
#ifndef HEAPTRAIL_SHIM_ABI_H
#define HEAPTRAIL_SHIM_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "heaptrail.h"

#define HTR_SHIM_ABI_SYMBOL "htr_shim_abi_v1"
#define HTR_SHIM_ABI_VERSION 1u

struct htr_shim_abi {
	uint32_t version; /* HTR_SHIM_ABI_VERSION */
	uint32_t size;    /* sizeof(struct htr_shim_abi) as the recorder knows it */
	void *(*malloc_at)(size_t size, const char *file, int line);
	void *(*calloc_at)(size_t count, size_t size, const char *file, int line);
	void *(*realloc_at)(void *ptr, size_t size, const char *file, int line);
	void *(*aligned_alloc_at)(size_t alignment, size_t size, const char *file, int line);
	char *(*strdup_at)(const char *s, const char *file, int line);
	void (*free_at)(void *ptr, const char *file, int line);
	void *(*persistent_at)(size_t size, const char *file, int line);
	void (*mark)(const char *name);
	int (*heap_stats)(struct htr_heap_stats *out);
};

#endif /* HEAPTRAIL_SHIM_ABI_H */
