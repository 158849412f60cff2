/* The integrity walk: every region block by block, then every free list,
 * cross-checked against the counters. Slow (linear), meant for tests and
 * for a firmware's idle loop. */
#include "heap.h"

enum {
	CHECK_BAD_HEADER = -1,    /* check word does not match */
	CHECK_BAD_SIZE = -2,      /* a block runs past its region */
	CHECK_ADJACENT_FREE = -3, /* two free blocks side by side: a missed merge */
	CHECK_PREV_FLAG = -4,     /* PREV_FREE disagrees with the block before */
	CHECK_BACK_PTR = -5,      /* a free block's back pointer is wrong */
	CHECK_LIST = -6,          /* a free list holds a wrong or used block */
	CHECK_BITMAP = -7,        /* a bitmap disagrees with its lists */
	CHECK_COUNTS = -8,        /* counters disagree with the walk */
	CHECK_SENTINEL = -9,      /* a region does not end on its sentinel */
};

static int walk_region(const struct htr_heap_region *r, size_t *free_bytes, size_t *free_blocks,
		       size_t *live_blocks)
{
	const uint8_t *p = (const uint8_t *)r->first;
	int prev_free = 0;
	while ((uintptr_t)p < r->end) {
		const struct htr_blk_hdr *h = htr_blk_hdr(p);
		if ((h->check & 0xFFFFFF00u) != htr_blk_hash(p, h->size_flags))
			return CHECK_BAD_HEADER;
		size_t size = htr_blk_size(p);
		if (size == 0 || size > r->end - (uintptr_t)p - HTR_HEAP_HDR)
			return CHECK_BAD_SIZE;
		int free_now = (h->size_flags & HTR_BLK_FREE) != 0;
		if (((h->size_flags & HTR_BLK_PREV_FREE) != 0) != prev_free)
			return CHECK_PREV_FLAG;
		if (free_now && prev_free)
			return CHECK_ADJACENT_FREE;
		const uint8_t *next = htr_blk_next(p);
		if (free_now) {
			if (*(const uint8_t *const *)(const void *)(next - HTR_HEAP_HDR - sizeof(void *)) != p)
				return CHECK_BACK_PTR;
			*free_bytes += size;
			(*free_blocks)++;
		} else {
			(*live_blocks)++;
		}
		prev_free = free_now;
		p = next;
	}
	if ((uintptr_t)p != r->end)
		return CHECK_SENTINEL;
	const struct htr_blk_hdr *s = htr_blk_hdr(p);
	if ((s->check & 0xFFFFFF00u) != htr_blk_hash(p, s->size_flags) ||
	    (s->size_flags & ~HTR_BLK_PREV_FREE) != 0 ||
	    ((s->size_flags & HTR_BLK_PREV_FREE) != 0) != prev_free)
		return CHECK_SENTINEL;
	return 0;
}

static int in_regions(const struct htr_heap *heap, uintptr_t a)
{
	for (unsigned i = 0; i < heap->region_count; i++)
		if (a >= heap->regions[i].first && a < heap->regions[i].end)
			return 1;
	return 0;
}

int htr_heap_check(const struct htr_heap *heap)
{
	size_t free_bytes = 0, free_blocks = 0, live_blocks = 0;
	for (unsigned i = 0; i < heap->region_count; i++) {
		int rc = walk_region(&heap->regions[i], &free_bytes, &free_blocks, &live_blocks);
		if (rc != 0)
			return rc;
	}
	size_t listed = 0;
	for (unsigned fl = 0; fl < HTR_HEAP_FL_COUNT; fl++) {
		if (((heap->fl_bitmap >> fl) & 1u) != (heap->sl_bitmap[fl] != 0))
			return CHECK_BITMAP;
		for (unsigned sl = 0; sl < HTR_HEAP_SL_COUNT; sl++) {
			const uint8_t *p = heap->heads[fl][sl];
			if (((heap->sl_bitmap[fl] >> sl) & 1u) != (p != NULL))
				return CHECK_BITMAP;
			const uint8_t *prev = NULL;
			while (p != NULL) {
				unsigned f, s;
				if (!in_regions(heap, (uintptr_t)p) || !(htr_blk_hdr(p)->size_flags & HTR_BLK_FREE))
					return CHECK_LIST;
				htr_heap_mapping(htr_blk_size(p), &f, &s);
				const struct htr_free_links *l = (const struct htr_free_links *)(const void *)p;
				if (f != fl || s != sl || l->prev != prev)
					return CHECK_LIST;
				if (++listed > free_blocks)
					return CHECK_LIST;
				prev = p;
				p = l->next;
			}
		}
	}
	if (listed != free_blocks || free_blocks != heap->free_blocks ||
	    free_bytes != heap->free_bytes || live_blocks != heap->live_blocks)
		return CHECK_COUNTS;
	return 0;
}
