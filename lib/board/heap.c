/* TLSF allocation and release; see heap.h for the block layout. */
#include <string.h>

#include "heap.h"

/* A free block must hold its two links and the back pointer in its last
 * word, so the smallest payload is three pointers, rounded to 8. */
#define MIN_PAYLOAD ((3u * sizeof(void *) + 7u) & ~7u)
#define MAX_BLOCK (((size_t)1 << HTR_HEAP_FL_MAX_LOG2) - HTR_HEAP_ALIGN)
#define SLACK_MAX 255u

static unsigned fls_u32(uint32_t x)
{
	return 31u - (unsigned)__builtin_clz(x);
}

static unsigned ffs_u32(uint32_t x)
{
	return (unsigned)__builtin_ctz(x);
}

static void set_hdr(uint8_t *p, uint32_t size_flags, uint32_t slack)
{
	struct htr_blk_hdr *h = htr_blk_hdr(p);
	h->size_flags = size_flags;
	h->check = htr_blk_hash(p, size_flags) | (slack & 0xFFu);
}

static void set_flags(uint8_t *p, uint32_t set, uint32_t clear)
{
	struct htr_blk_hdr *h = htr_blk_hdr(p);
	set_hdr(p, (h->size_flags | set) & ~clear, h->check & 0xFFu);
}

static int is_free(const uint8_t *p)
{
	return (htr_blk_hdr(p)->size_flags & HTR_BLK_FREE) != 0;
}

static uint8_t **back_ptr_slot(const uint8_t *next)
{
	return (uint8_t **)(uintptr_t)(next - HTR_HEAP_HDR - sizeof(void *));
}

static uint8_t *prev_phys(const uint8_t *p)
{
	return *back_ptr_slot(p);
}

static struct htr_free_links *links(uint8_t *p)
{
	return (struct htr_free_links *)(void *)p;
}

void htr_heap_mapping(size_t size, unsigned *fl, unsigned *sl)
{
	if (size < HTR_HEAP_SMALL) {
		*fl = 0;
		*sl = (unsigned)(size / (HTR_HEAP_SMALL / HTR_HEAP_SL_COUNT));
		return;
	}
	unsigned f = fls_u32((uint32_t)size);
	*sl = (unsigned)(size >> (f - HTR_HEAP_SL_LOG2)) ^ HTR_HEAP_SL_COUNT;
	*fl = f - (HTR_HEAP_FL_SHIFT - 1u);
}

static void list_insert(struct htr_heap *heap, uint8_t *p)
{
	unsigned fl, sl;
	htr_heap_mapping(htr_blk_size(p), &fl, &sl);
	uint8_t *head = heap->heads[fl][sl];
	links(p)->next = head;
	links(p)->prev = NULL;
	if (head != NULL)
		links(head)->prev = p;
	heap->heads[fl][sl] = p;
	heap->fl_bitmap |= 1u << fl;
	heap->sl_bitmap[fl] |= 1u << sl;
	heap->free_bytes += htr_blk_size(p);
	heap->free_blocks++;
}

static void list_remove(struct htr_heap *heap, uint8_t *p)
{
	unsigned fl, sl;
	htr_heap_mapping(htr_blk_size(p), &fl, &sl);
	uint8_t *next = links(p)->next, *prev = links(p)->prev;
	if (next != NULL)
		links(next)->prev = prev;
	if (prev != NULL)
		links(prev)->next = next;
	else
		heap->heads[fl][sl] = next;
	if (heap->heads[fl][sl] == NULL) {
		heap->sl_bitmap[fl] &= ~(1u << sl);
		if (heap->sl_bitmap[fl] == 0)
			heap->fl_bitmap &= ~(1u << fl);
	}
	heap->free_bytes -= htr_blk_size(p);
	heap->free_blocks--;
}

/* Marks p free, tells its successor, and files it. */
static void make_free(struct htr_heap *heap, uint8_t *p)
{
	set_flags(p, HTR_BLK_FREE, 0);
	uint8_t *next = htr_blk_next(p);
	*back_ptr_slot(next) = p;
	set_flags(next, HTR_BLK_PREV_FREE, 0);
	list_insert(heap, p);
}

/* Merges p (free, not listed) with free neighbours; returns the result,
 * not listed either. */
static uint8_t *coalesce(struct htr_heap *heap, uint8_t *p)
{
	uint8_t *next = htr_blk_next(p);
	if (is_free(next)) {
		list_remove(heap, next);
		size_t size = htr_blk_size(p) + HTR_HEAP_HDR + htr_blk_size(next);
		set_hdr(p, (uint32_t)size | (htr_blk_hdr(p)->size_flags & HTR_BLK_FLAGS), 0);
	}
	if (htr_blk_hdr(p)->size_flags & HTR_BLK_PREV_FREE) {
		uint8_t *prev = prev_phys(p);
		list_remove(heap, prev);
		size_t size = htr_blk_size(prev) + HTR_HEAP_HDR + htr_blk_size(p);
		set_hdr(prev, (uint32_t)size | (htr_blk_hdr(prev)->size_flags & HTR_BLK_FLAGS), 0);
		p = prev;
	}
	return p;
}

/* Cuts the tail of live block p beyond `size` into a free block when the
 * tail can hold one. */
static void trim(struct htr_heap *heap, uint8_t *p, size_t size)
{
	size_t have = htr_blk_size(p);
	if (have < size + HTR_HEAP_HDR + MIN_PAYLOAD)
		return;
	uint32_t flags = htr_blk_hdr(p)->size_flags & HTR_BLK_FLAGS;
	set_hdr(p, (uint32_t)size | flags, htr_blk_hdr(p)->check);
	uint8_t *rest = htr_blk_next(p);
	set_hdr(rest, (uint32_t)(have - size - HTR_HEAP_HDR), 0);
	/* rest's successor saw p as used; rest is new, its predecessor used. */
	uint8_t *after = htr_blk_next(rest);
	if (is_free(after)) {
		list_remove(heap, after);
		set_hdr(rest, (uint32_t)(htr_blk_size(rest) + HTR_HEAP_HDR + htr_blk_size(after)), 0);
	}
	make_free(heap, rest);
}

static size_t adjust(size_t size)
{
	size_t need = size + (HTR_HEAP_GUARD ? 4u : 0u);
	if (need < size || need > MAX_BLOCK)
		return 0;
	need = (need + HTR_HEAP_ALIGN - 1u) & ~(size_t)(HTR_HEAP_ALIGN - 1u);
	return need < MIN_PAYLOAD ? MIN_PAYLOAD : need;
}

static uint8_t *find_free(struct htr_heap *heap, size_t size)
{
	unsigned fl, sl;
	if (size > MAX_BLOCK)
		return NULL;
	size_t rounded = size;
	if (size >= HTR_HEAP_SMALL)
		rounded += ((size_t)1 << (fls_u32((uint32_t)size) - HTR_HEAP_SL_LOG2)) - 1u;
	/* Rounding up to the next list makes any block found big enough, in
	 * O(1). */
	htr_heap_mapping(rounded, &fl, &sl);
	if (fl < HTR_HEAP_FL_COUNT) {
		uint32_t sl_map = heap->sl_bitmap[fl] & (~0u << sl);
		uint32_t fl_map = fl + 1u < 32u ? heap->fl_bitmap & (~0u << (fl + 1u)) : 0u;
		if (sl_map != 0)
			return heap->heads[fl][ffs_u32(sl_map)];
		if (fl_map != 0) {
			fl = ffs_u32(fl_map);
			return heap->heads[fl][ffs_u32(heap->sl_bitmap[fl])];
		}
	}
	/* Nothing in the lists above: the request's own list may still hold a
	 * block that fits (the largest free block is often there). Scanning
	 * that one list keeps "largest_free" an allocation that succeeds. */
	htr_heap_mapping(size, &fl, &sl);
	for (uint8_t *p = heap->heads[fl][sl]; p != NULL; p = links(p)->next)
		if (htr_blk_size(p) >= size)
			return p;
	return NULL;
}

/* Records p as live with `size` bytes requested, writes the guard. */
static void make_live(struct htr_heap *heap, uint8_t *p, size_t size)
{
	size_t slack = htr_blk_size(p) - size;
	if (slack > SLACK_MAX) /* only after an in-place shrink of a huge block */
		trim(heap, p, adjust(size));
	slack = htr_blk_size(p) - size;
	set_hdr(p, htr_blk_hdr(p)->size_flags & ~HTR_BLK_FREE, (uint32_t)slack);
#if HTR_HEAP_GUARD
	uint32_t guard = HTR_HEAP_GUARD_WORD;
	memcpy(p + size, &guard, sizeof(guard));
#endif
}

static void count_alloc(struct htr_heap *heap, size_t size)
{
	heap->alloc_count++;
	heap->live_blocks++;
	heap->used_bytes += size;
	if (heap->used_bytes > heap->peak_used_bytes)
		heap->peak_used_bytes = heap->used_bytes;
	if (heap->free_bytes < heap->min_free_bytes)
		heap->min_free_bytes = heap->free_bytes;
}

void htr_heap_init(struct htr_heap *heap)
{
	memset(heap, 0, sizeof(*heap));
}

int htr_heap_add_region(struct htr_heap *heap, void *buf, size_t size)
{
	if (heap->region_count >= HTR_HEAP_MAX_REGIONS || buf == NULL)
		return -1;
	uintptr_t start = ((uintptr_t)buf + HTR_HEAP_ALIGN - 1u) & ~(uintptr_t)(HTR_HEAP_ALIGN - 1u);
	uintptr_t end = ((uintptr_t)buf + size) & ~(uintptr_t)(HTR_HEAP_ALIGN - 1u);
	if ((uintptr_t)buf + size < (uintptr_t)buf || end < start ||
	    end - start < 3u * HTR_HEAP_HDR + MIN_PAYLOAD)
		return -1;
	if (end - start > MAX_BLOCK + 2u * HTR_HEAP_HDR)
		end = start + MAX_BLOCK + 2u * HTR_HEAP_HDR;
	uint8_t *first = (uint8_t *)start + HTR_HEAP_HDR;
	uint8_t *sentinel = (uint8_t *)end; /* header in the region's last 8 bytes */
	size_t block = (size_t)(sentinel - first) - HTR_HEAP_HDR;
	set_hdr(first, (uint32_t)block, 0);
	set_hdr(sentinel, 0, 0);
	make_free(heap, first);
	struct htr_heap_region *r = &heap->regions[heap->region_count++];
	r->first = (uintptr_t)first;
	r->end = (uintptr_t)sentinel;
	heap->heap_size += end - start;
	/* The low-water mark starts at the total, not at zero. */
	if (heap->region_count == 1u || heap->free_bytes > heap->min_free_bytes)
		heap->min_free_bytes = heap->free_bytes;
	return 0;
}

void *htr_heap_alloc(struct htr_heap *heap, size_t size)
{
	size_t need = adjust(size);
	uint8_t *p = need ? find_free(heap, need) : NULL;
	if (p == NULL) {
		heap->failed_count++;
		return NULL;
	}
	list_remove(heap, p);
	set_flags(htr_blk_next(p), 0, HTR_BLK_PREV_FREE);
	set_flags(p, 0, HTR_BLK_FREE);
	trim(heap, p, need);
	make_live(heap, p, size);
	count_alloc(heap, size);
	return p;
}

void *htr_heap_alloc_aligned(struct htr_heap *heap, size_t align, size_t size)
{
	if (align == 0 || (align & (align - 1u)) != 0) {
		heap->failed_count++;
		return NULL;
	}
	if (align <= HTR_HEAP_ALIGN)
		return htr_heap_alloc(heap, size);
	size_t need = adjust(size);
	/* Room to move the payload up to the boundary while leaving a whole
	 * free block in front. */
	size_t gap_room = align + HTR_HEAP_HDR + MIN_PAYLOAD;
	uint8_t *p = need && need + gap_room > need ? find_free(heap, need + gap_room) : NULL;
	if (p == NULL) {
		heap->failed_count++;
		return NULL;
	}
	list_remove(heap, p);
	set_flags(htr_blk_next(p), 0, HTR_BLK_PREV_FREE);
	set_flags(p, 0, HTR_BLK_FREE);
	uintptr_t a = ((uintptr_t)p + align - 1u) & ~(uintptr_t)(align - 1u);
	if (a != (uintptr_t)p) {
		while (a - (uintptr_t)p < HTR_HEAP_HDR + MIN_PAYLOAD)
			a += align;
		uint8_t *q = (uint8_t *)a;
		size_t front = (size_t)(q - p) - HTR_HEAP_HDR;
		size_t back = htr_blk_size(p) - front - HTR_HEAP_HDR;
		uint32_t pflags = htr_blk_hdr(p)->size_flags & HTR_BLK_PREV_FREE;
		set_hdr(q, (uint32_t)back, 0);
		set_hdr(p, (uint32_t)front | pflags, 0);
		make_free(heap, p); /* p's predecessor is used: nothing to merge */
	}
	trim(heap, (uint8_t *)a, need);
	make_live(heap, (uint8_t *)a, size);
	count_alloc(heap, size);
	return (void *)a;
}

enum htr_heap_status htr_heap_classify(const struct htr_heap *heap, const void *ptr)
{
	uintptr_t a = (uintptr_t)ptr;
	const struct htr_heap_region *r = NULL;
	for (unsigned i = 0; i < heap->region_count; i++) {
		if (a >= heap->regions[i].first && a < heap->regions[i].end) {
			r = &heap->regions[i];
			break;
		}
	}
	if (r == NULL || (a & (HTR_HEAP_ALIGN - 1u)) != 0)
		return HTR_HEAP_INVALID;
	const struct htr_blk_hdr *h = htr_blk_hdr(ptr);
	if ((h->check & 0xFFFFFF00u) != htr_blk_hash(ptr, h->size_flags))
		return HTR_HEAP_INVALID;
	size_t size = h->size_flags & ~HTR_BLK_FLAGS;
	if (size < MIN_PAYLOAD || size > r->end - a - HTR_HEAP_HDR)
		return HTR_HEAP_INVALID;
	if (h->size_flags & HTR_BLK_FREE)
		return HTR_HEAP_DOUBLE;
	if ((h->check & 0xFFu) > size)
		return HTR_HEAP_INVALID;
	return HTR_HEAP_OK;
}

size_t htr_heap_block_size(const void *ptr)
{
	return htr_blk_size(ptr) - (htr_blk_hdr(ptr)->check & 0xFFu);
}

enum htr_heap_status htr_heap_free(struct htr_heap *heap, void *ptr, size_t *size)
{
	enum htr_heap_status st = htr_heap_classify(heap, ptr);
	if (st != HTR_HEAP_OK) {
		heap->misuse_count++;
		return st;
	}
	uint8_t *p = ptr;
	size_t req = htr_heap_block_size(p);
#if HTR_HEAP_GUARD
	uint32_t guard;
	memcpy(&guard, p + req, sizeof(guard));
	if (guard != HTR_HEAP_GUARD_WORD)
		st = HTR_HEAP_GUARD_HIT;
#endif
	if (size != NULL)
		*size = req;
	heap->free_count++;
	heap->live_blocks--;
	heap->used_bytes -= req;
	/* Leave p's own header marked free even if it is merged away: a second
	 * free of p then still reads as a double free. */
	set_flags(p, HTR_BLK_FREE, 0);
	p = coalesce(heap, p);
	make_free(heap, p);
	return st;
}

int htr_heap_resize(struct htr_heap *heap, void *ptr, size_t size)
{
	uint8_t *p = ptr;
	size_t need = adjust(size);
	if (need == 0)
		return -1;
	size_t old_req = htr_heap_block_size(p);
	size_t have = htr_blk_size(p);
	if (need > have) {
		uint8_t *next = htr_blk_next(p);
		if (!is_free(next) || have + HTR_HEAP_HDR + htr_blk_size(next) < need)
			return -1;
		list_remove(heap, next);
		set_flags(htr_blk_next(next), 0, HTR_BLK_PREV_FREE);
		uint32_t flags = htr_blk_hdr(p)->size_flags & HTR_BLK_FLAGS;
		set_hdr(p, (uint32_t)(have + HTR_HEAP_HDR + htr_blk_size(next)) | flags, 0);
	}
	trim(heap, p, need);
	make_live(heap, p, size);
	heap->used_bytes = heap->used_bytes - old_req + size;
	if (heap->used_bytes > heap->peak_used_bytes)
		heap->peak_used_bytes = heap->used_bytes;
	if (heap->free_bytes < heap->min_free_bytes)
		heap->min_free_bytes = heap->free_bytes;
	return 0;
}
