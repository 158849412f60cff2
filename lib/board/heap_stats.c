/* Heap statistics: the counters heap.c keeps plus the largest free block,
 * found from the bitmaps without walking the heap. */
#include <string.h>

#include "heap.h"

size_t htr_heap_largest_free(const struct htr_heap *heap)
{
	if (heap->fl_bitmap == 0)
		return 0;
	unsigned fl = 31u - (unsigned)__builtin_clz(heap->fl_bitmap);
	unsigned sl = 31u - (unsigned)__builtin_clz(heap->sl_bitmap[fl]);
	/* Blocks in one list differ by less than one list's span: scan it. */
	size_t best = 0;
	for (const uint8_t *p = heap->heads[fl][sl]; p != NULL;
	     p = ((const struct htr_free_links *)(const void *)p)->next) {
		if (htr_blk_size(p) > best)
			best = htr_blk_size(p);
	}
	size_t guard = HTR_HEAP_GUARD ? 4u : 0u;
	return best > guard ? best - guard : 0;
}

void htr_heap_get_stats(const struct htr_heap *heap, struct htr_heap_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->heap_size = heap->heap_size;
	out->used_bytes = heap->used_bytes;
	out->peak_used_bytes = heap->peak_used_bytes;
	out->free_bytes = heap->free_bytes;
	out->largest_free = htr_heap_largest_free(heap);
	out->min_free_bytes = heap->min_free_bytes;
	out->live_blocks = heap->live_blocks;
	out->free_blocks = heap->free_blocks;
	out->alloc_count = heap->alloc_count;
	out->free_count = heap->free_count;
	out->failed_count = heap->failed_count;
	out->misuse_count = heap->misuse_count;
}
