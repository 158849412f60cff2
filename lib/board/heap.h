/* The board heap: TLSF (two-level segregated fit) over one or more regions.
 *
 * Every block has an 8-byte header just below its payload:
 *   word 0: payload size (a multiple of 8) | HTR_BLK_FREE | HTR_BLK_PREV_FREE
 *   word 1: a 24-bit check of (address, word 0) | 8-bit slack
 * The check lets free() tell a live block from a freed one or from a
 * pointer the heap never returned, in O(1), before touching any list, so a
 * bad free is refused and the heap stays intact. The slack (block size minus
 * the size asked for) gives back the requested size for the statistics and
 * places the optional guard word. A free block keeps its list links in its
 * payload and a pointer to itself in its last word, which is how the next
 * block finds it to coalesce. */
#ifndef HTR_BOARD_HEAP_H
#define HTR_BOARD_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "heaptrail.h"

#ifndef HTR_HEAP_MAX_REGIONS
#define HTR_HEAP_MAX_REGIONS 4
#endif
/* log2 of the second-level list count: 8 lists per power of two keeps the
 * control block small on a microcontroller; worst-case waste is 1/8. */
#ifndef HTR_HEAP_SL_LOG2
#define HTR_HEAP_SL_LOG2 3
#endif
/* Blocks stay below 2^HTR_HEAP_FL_MAX_LOG2 bytes; a larger region is used up
 * to that size only. 28 (256 MiB) costs 23 first-level rows. */
#ifndef HTR_HEAP_FL_MAX_LOG2
#define HTR_HEAP_FL_MAX_LOG2 28
#endif
/* Define HTR_HEAP_GUARD to 1 to put a guard word after every block's
 * requested bytes, checked when the block is freed. */
#ifndef HTR_HEAP_GUARD
#define HTR_HEAP_GUARD 0
#endif

#define HTR_HEAP_ALIGN 8u
#define HTR_HEAP_HDR 8u
#define HTR_HEAP_SL_COUNT (1u << HTR_HEAP_SL_LOG2)
#define HTR_HEAP_FL_SHIFT (HTR_HEAP_SL_LOG2 + 3)
#define HTR_HEAP_SMALL (1u << HTR_HEAP_FL_SHIFT)
#define HTR_HEAP_FL_COUNT (HTR_HEAP_FL_MAX_LOG2 - HTR_HEAP_FL_SHIFT + 1)
#define HTR_HEAP_GUARD_WORD 0xC0DEFA11u

struct htr_heap_region {
	uintptr_t first; /* payload of the first block */
	uintptr_t end;   /* payload address of the end sentinel */
};

struct htr_heap {
	uint32_t fl_bitmap;
	uint32_t sl_bitmap[HTR_HEAP_FL_COUNT];
	uint8_t *heads[HTR_HEAP_FL_COUNT][HTR_HEAP_SL_COUNT];
	struct htr_heap_region regions[HTR_HEAP_MAX_REGIONS];
	unsigned region_count;
	size_t heap_size;  /* bytes handed to add_region, after alignment */
	size_t free_bytes; /* payload bytes in free blocks */
	size_t min_free_bytes;
	size_t free_blocks;
	size_t live_blocks;
	size_t used_bytes; /* as requested */
	size_t peak_used_bytes;
	uint32_t alloc_count, free_count, failed_count, misuse_count;
};

enum htr_heap_status {
	HTR_HEAP_OK = 0,
	HTR_HEAP_DOUBLE = 1,  /* a block header says it is free already */
	HTR_HEAP_INVALID = 2, /* not a block this heap returned */
	HTR_HEAP_GUARD_HIT = 3, /* freed, but the guard word after it was overwritten */
};

void htr_heap_init(struct htr_heap *heap);
/* 0, or -1 when the region is too small or the table is full. */
int htr_heap_add_region(struct htr_heap *heap, void *buf, size_t size);
void *htr_heap_alloc(struct htr_heap *heap, size_t size);
/* align: a power of two; at most 8 is the same as htr_heap_alloc. */
void *htr_heap_alloc_aligned(struct htr_heap *heap, size_t align, size_t size);
/* What freeing ptr would do, without doing it. */
enum htr_heap_status htr_heap_classify(const struct htr_heap *heap, const void *ptr);
/* Frees ptr unless it is a double or invalid free (then nothing changes).
 * *size gets the block's requested size when freed. */
enum htr_heap_status htr_heap_free(struct htr_heap *heap, void *ptr, size_t *size);
/* Resizes a live block where it is: 0, or -1 when it cannot grow in place. */
int htr_heap_resize(struct htr_heap *heap, void *ptr, size_t size);
/* Requested size of a live block. */
size_t htr_heap_block_size(const void *ptr);

/* heap_stats.c */
void htr_heap_get_stats(const struct htr_heap *heap, struct htr_heap_stats *out);
size_t htr_heap_largest_free(const struct htr_heap *heap);

/* heap_check.c: walks every region and every free list. 0 when consistent,
 * else a negative code naming the first inconsistency (see heap_check.c). */
int htr_heap_check(const struct htr_heap *heap);

/* Internals shared by heap.c, heap_stats.c and heap_check.c. */
#define HTR_BLK_FREE 1u
#define HTR_BLK_PREV_FREE 2u
#define HTR_BLK_FLAGS 7u
struct htr_blk_hdr {
	uint32_t size_flags;
	uint32_t check;
};
static inline struct htr_blk_hdr *htr_blk_hdr(const void *p)
{
	return (struct htr_blk_hdr *)(uintptr_t)((uintptr_t)p - HTR_HEAP_HDR);
}
static inline size_t htr_blk_size(const void *p)
{
	return htr_blk_hdr(p)->size_flags & ~HTR_BLK_FLAGS;
}
static inline uint8_t *htr_blk_next(const void *p)
{
	return (uint8_t *)(uintptr_t)p + htr_blk_size(p) + HTR_HEAP_HDR;
}
static inline uint32_t htr_blk_hash(const void *p, uint32_t size_flags)
{
	uint32_t a = (uint32_t)(uintptr_t)p;
	return ((a * 2654435761u) ^ (size_flags * 40503u) ^ 0x5A17C300u) & 0xFFFFFF00u;
}
struct htr_free_links {
	uint8_t *next;
	uint8_t *prev;
};
void htr_heap_mapping(size_t size, unsigned *fl, unsigned *sl);

#endif /* HTR_BOARD_HEAP_H */
