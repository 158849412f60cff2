/* heaptrail: one heap-tracing API for a Linux host and a microcontroller.
 *
 * The same calls work in both places:
 *  - on a Linux host the program links libheaptrail-api (tiny); when the
 *    recorder is preloaded (LD_PRELOAD=libheaptrail.so) every call is recorded
 *    with its file:line and a backtrace, otherwise the calls fall through to
 *    the C library at the cost of one indirect call;
 *  - on a board the backend serves them from a heap of its own and logs every
 *    event over UART or an RTT channel.
 *
 * Code that never includes this header is still traced on the host, through
 * the preload, with backtraces but without file:line.
 */
#ifndef HEAPTRAIL_H
#define HEAPTRAIL_H

#include <stddef.h>
#include <stdint.h>

#define HTR_VERSION_MAJOR 0
#define HTR_VERSION_MINOR 1

#ifdef __cplusplus
extern "C" {
#endif

/* Located allocation calls. `file` must outlive the program (a string
 * literal, as __FILE__ is): the recorder keeps the pointer, not a copy. */
void *htr_malloc_at(size_t size, const char *file, int line);
void *htr_calloc_at(size_t count, size_t size, const char *file, int line);
void *htr_realloc_at(void *ptr, size_t size, const char *file, int line);
void *htr_aligned_alloc_at(size_t alignment, size_t size, const char *file, int line);
char *htr_strdup_at(const char *s, const char *file, int line);
void htr_free_at(void *ptr, const char *file, int line);

/* An allocation meant to live for the rest of the program (a pool set up at
 * boot, a singleton). Reported as persistent, never as a leak. Freeing it is
 * allowed and ends it like any other block. */
void *htr_persistent_at(size_t size, const char *file, int line);

/* A boundary between tests or phases. The analyser reports each segment
 * between two marks on its own, like valground does for each test. `name` is
 * copied. */
void htr_mark(const char *name);

/* Heap statistics. On the host, heap_size/free_bytes/largest_free/free_blocks
 * are 0: the C library owns the heap and does not tell. */
struct htr_heap_stats {
	size_t heap_size;       /* bytes under management */
	size_t used_bytes;      /* bytes in live blocks, as requested */
	size_t peak_used_bytes; /* high-water mark of used_bytes */
	size_t free_bytes;      /* bytes in free blocks */
	size_t largest_free;    /* largest single allocation that can succeed now */
	size_t min_free_bytes;  /* low-water mark of free_bytes */
	size_t live_blocks;
	size_t free_blocks;
	uint32_t alloc_count;   /* successful allocations since start */
	uint32_t free_count;
	uint32_t failed_count;  /* allocations that returned NULL */
	uint32_t misuse_count;  /* double, invalid and mismatched frees refused */
};

/* Fills *out. Returns 0, or -1 when nothing is tracing (host without the
 * preload), in which case *out is zeroed. */
int htr_get_heap_stats(struct htr_heap_stats *out);

/* Fragmentation of the free space, in per mille: 0 when all free bytes form
 * one block, approaching 1000 as they split into many small ones. */
static inline unsigned htr_fragmentation_permille(const struct htr_heap_stats *s)
{
	if (s->free_bytes == 0)
		return 0;
	return (unsigned)(1000u - (unsigned)((uint64_t)s->largest_free * 1000u / s->free_bytes));
}

#ifdef __cplusplus
}
#endif

/* Call-site macros: the recommended way in. */
#define HTR_MALLOC(size) htr_malloc_at((size), __FILE__, __LINE__)
#define HTR_CALLOC(count, size) htr_calloc_at((count), (size), __FILE__, __LINE__)
#define HTR_REALLOC(ptr, size) htr_realloc_at((ptr), (size), __FILE__, __LINE__)
#define HTR_ALIGNED_ALLOC(alignment, size) htr_aligned_alloc_at((alignment), (size), __FILE__, __LINE__)
#define HTR_STRDUP(s) htr_strdup_at((s), __FILE__, __LINE__)
#define HTR_FREE(ptr) htr_free_at((ptr), __FILE__, __LINE__)
#define HTR_PERSISTENT(size) htr_persistent_at((size), __FILE__, __LINE__)

/* Opt-in: define HEAPTRAIL_REPLACE_MALLOC before including this header and
 * the plain malloc family in that translation unit gets call sites too. The
 * C library headers are included first, so that their prototypes are parsed
 * before the names turn into macros. */
#if defined(HEAPTRAIL_REPLACE_MALLOC) && !defined(__cplusplus)
#include <stdlib.h>
#include <string.h>
#undef malloc
#undef calloc
#undef realloc
#undef free
#undef strdup
#undef aligned_alloc
#define malloc(size) HTR_MALLOC(size)
#define calloc(count, size) HTR_CALLOC(count, size)
#define realloc(ptr, size) HTR_REALLOC(ptr, size)
#define free(ptr) HTR_FREE(ptr)
#define strdup(s) HTR_STRDUP(s)
#define aligned_alloc(alignment, size) HTR_ALIGNED_ALLOC(alignment, size)
#endif

#endif /* HEAPTRAIL_H */
