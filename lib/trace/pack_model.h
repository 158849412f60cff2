/* The pointer model of packed traces: state that the packer (pack.c) and
 * the packed reader (packed.c) keep in step, so that a pointer is coded as a
 * reference to what both sides already know. Not installed.
 *
 * Every allocated pointer gets an ordinal, in allocation order. A freed
 * pointer is coded by its block's ordinal, relative to one of three
 * references (the packer picks the nearest): the newest allocation (LIFO
 * lifetimes), the block freed last (aggregates are freed in or against
 * allocation order: a map node's key, value and node), the block freed last
 * by the same stack (a FIFO window frees at a steady stride). An allocated
 * pointer is predicted from what the allocator hands out next: the block it
 * last freed in that size class and thread (glibc's tcache), the recently
 * freed, or the end of the previous allocation (carving the top chunk).
 *
 * The packer keeps the live set by pointer, the reader by ordinal: each
 * needs only its own direction. */
#ifndef HEAPTRAIL_PACK_MODEL_H
#define HEAPTRAIL_PACK_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An open-addressing hash table from a non-zero key to two values. It grows
 * with the live set and nothing else. */
struct htr_live_slot {
	uint64_t key, a, b;
};
struct htr_ring_slot {
	uint64_t ptr, size;
};
struct htr_live_table {
	struct htr_live_slot *slots;
	size_t mask, used;
	unsigned shift; /* low key bits that carry nothing (pointers: 4) */
	size_t found;   /* packer: the slot htr_pm_code_free found, which htr_pm_drop_by_ptr empties */
};

/* Inline, with the packer's steps below: the packer takes them for every
 * event, and as calls they were a third of what the live set cost ((b):
 * 1.80 -> 1.69 G instructions). The reader's use is out of line
 * (pack_model.c) and rare. */

/* Keeps neighbours together: blocks allocated close in time sit close in
 * the heap and in ordinals, so their slots share cache lines (a scattering
 * hash made the packer's lookups a cache miss each). The packer drops
 * malloc's 16-byte granule (t->shift); the high bits fold in, so arenas far
 * apart do not collide. */
static inline size_t htr_live_home(const struct htr_live_table *t, uint64_t key)
{
	uint64_t k = key >> t->shift;
	return (size_t)(k ^ (k >> 22) * 0x9E3779B1u) & t->mask;
}

int htr_live_init(struct htr_live_table *t, size_t cap, unsigned shift); /* 0, or -1 out of memory */
int htr_live_grow(struct htr_live_table *t);                             /* the same */

/* The slot's index, or HTR_LIVE_NONE: an index, not a pointer, because
 * the packer keeps it, and a pointer's index is a division by 24 ((b):
 * 1.585 -> 1.579 G instructions). */
#define HTR_LIVE_NONE SIZE_MAX
static inline size_t htr_live_find_at(const struct htr_live_table *t, uint64_t key)
{
	for (size_t i = htr_live_home(t, key);; i = (i + 1) & t->mask) {
		if (t->slots[i].key == key)
			return i;
		if (t->slots[i].key == 0)
			return HTR_LIVE_NONE;
	}
}

static inline struct htr_live_slot *htr_live_find(const struct htr_live_table *t, uint64_t key)
{
	for (size_t i = htr_live_home(t, key);; i = (i + 1) & t->mask) {
		if (t->slots[i].key == key)
			return &t->slots[i];
		if (t->slots[i].key == 0)
			return NULL;
	}
}

/* Half full at most, so probes stay short and a miss ends soon. */
static inline int htr_live_put(struct htr_live_table *t, uint64_t key, uint64_t a, uint64_t b)
{
	if (__builtin_expect((t->used + 1) * 2 > t->mask + 1, 0) && htr_live_grow(t) != 0)
		return -1;
	size_t i = htr_live_home(t, key);
	while (t->slots[i].key != 0 && t->slots[i].key != key)
		i = (i + 1) & t->mask;
	if (t->slots[i].key == 0)
		t->used++;
	t->slots[i] = (struct htr_live_slot){key, a, b};
	return 0;
}

/* Linear probing with backward-shift deletion: no tombstones, so a table
 * that sees millions of short-lived blocks does not fill up with them. */
static inline void htr_live_remove_at(struct htr_live_table *t, size_t hole)
{
	for (size_t j = (hole + 1) & t->mask; t->slots[j].key != 0; j = (j + 1) & t->mask) {
		size_t k = htr_live_home(t, t->slots[j].key);
		/* The entry at j may move to the hole unless its home lies
		 * cyclically in (hole, j]. */
		bool stays = hole <= j ? (k > hole && k <= j) : (k > hole || k <= j);
		if (!stays) {
			t->slots[hole] = t->slots[j];
			hole = j;
		}
	}
	t->slots[hole].key = 0;
	t->used--;
}

static inline void htr_live_remove(struct htr_live_table *t, uint64_t key)
{
	struct htr_live_slot *s = htr_live_find(t, key);
	if (s != NULL)
		htr_live_remove_at(t, (size_t)(s - t->slots));
}

#define HTR_PM_CLASS_SLOTS  4096u
#define HTR_PM_STACK_SLOTS  4096u
#define HTR_PM_FREED        32u
#define HTR_PM_RING         131072u
#define HTR_PM_CLASS_DEPTH  16u
#define HTR_PM_NEXT_SLOTS   65536u
#define HTR_PM_THREAD_SLOTS 256u

struct htr_pack_model {
	uint64_t last_seq;
	uint32_t last_thread;
	/* The stack an event of a code had after the previous event of its
	 * thread (its code and stack): a program's calls come in patterns. */
	uint32_t next_stack[HTR_PM_NEXT_SLOTS];
	uint32_t thread_prev[HTR_PM_THREAD_SLOTS]; /* per thread: code and stack of its last event, hashed */
	uint8_t last_kind[4];

	uint64_t last_ptr;          /* the last non-null pointer coded */
	uint64_t next_ord;          /* ordinal of the next allocated block */
	uint64_t last_free_ord;     /* ordinal of the block freed last */
	/* The previous allocation, whose chunk's end (pack_model.c:
	 * bump_end) is worked out only when a code needs it ((d): 10 M
	 * instructions fewer in the reader). */
	uint64_t last_alloc, last_alloc_size;
	struct htr_live_table live; /* packer: ptr -> ordinal, size; reader: old ordinal -> ptr, size */
	/* Reader: the blocks of the last HTR_PM_RING ordinals by ordinal,
	 * ptr 0 when no longer live. Most blocks die young, and a ring
	 * indexed by ordinal is what a hash table is not: in cache. A block
	 * still live when its slot comes round again moves to `live`. 131072
	 * slots (2 MiB, the one huge page it takes): a C++ container's entries
	 * live tens of thousands of ordinals ((d): with 16384 most went
	 * through `live`, 5% of reading; 65536 -> 131072 in its huge page,
	 * (d) with the engine 99.8 -> 96.5 ms, (a) the same). */
	struct htr_ring_slot *ring;
	uint64_t freed[HTR_PM_FREED]; /* recently freed pointers, a ring (pack_model.c) */
	unsigned freed_head;
	/* The blocks freed last per size class and thread, newest first: what
	 * glibc's tcache and fast bins hand out next. */
	uint64_t by_class[HTR_PM_CLASS_SLOTS][HTR_PM_CLASS_DEPTH]; /* rings too */
	unsigned class_head[HTR_PM_CLASS_SLOTS];
	uint64_t stack_last[HTR_PM_STACK_SLOTS]; /* ordinal freed last by a stack */
	uint64_t stack_size[HTR_PM_STACK_SLOTS];  /* size an ALLOC of a stack asked for last */
	bool stack_repeats[HTR_PM_STACK_SLOTS];    /* ... and the time before */
	uint64_t last_coded_size;                  /* the last ALLOC size not predicted */
};

/* A freed pointer as both sides know it. */
struct htr_pm_block {
	uint64_t ptr, ord, size;
	uint64_t extra; /* packer: the varint that follows HTR_PACK_F_FAR */
	bool tracked;   /* in the live set (else coded by address) */
};

/* The predicted stack of an event with this code in the current thread
 * (m->last_thread); htr_pm_stack_seen records the actual one. Inline: they
 * run for every event, on both sides. */
static inline uint32_t *htr_pm_stack_slot_of(struct htr_pack_model *m, uint32_t prev, unsigned code)
{
	return &m->next_stack[((prev + code) * 2654435761u) >> 16 & (HTR_PM_NEXT_SLOTS - 1)];
}

static inline uint32_t *htr_pm_stack_slot(struct htr_pack_model *m, unsigned code)
{
	return htr_pm_stack_slot_of(m, m->thread_prev[m->last_thread & (HTR_PM_THREAD_SLOTS - 1)], code);
}

static inline void htr_pm_stack_seen(struct htr_pack_model *m, uint32_t *slot, unsigned code, uint32_t stack)
{
	*slot = stack;
	m->thread_prev[m->last_thread & (HTR_PM_THREAD_SLOTS - 1)] = stack * 8u + code;
}

/* The size predicted for an ALLOC with this stack, which a short tag
 * confirms in a bit: a call site mostly asks for one size, so the size it
 * asked for last; but when its last two sizes differed, the last size no
 * prediction got right: a copy of what was just made (std::map's node
 * value after the temporary it copies: 2% off (d)). */
static inline unsigned htr_pm_size_slot(uint32_t stack)
{
	return (stack * 2654435761u) >> 20 & (HTR_PM_STACK_SLOTS - 1);
}

static inline uint64_t htr_pm_size_predict(const struct htr_pack_model *m, unsigned slot)
{
	return m->stack_repeats[slot] ? m->stack_size[slot] : m->last_coded_size;
}

/* hit: the short tag said the size was the predicted one. */
static inline void htr_pm_size_seen(struct htr_pack_model *m, unsigned slot, uint64_t size, bool hit)
{
	m->stack_repeats[slot] = size == m->stack_size[slot];
	m->stack_size[slot] = size;
	if (!hit)
		m->last_coded_size = size;
}

/* Zeroed memory for the reader's tables, which every record reads at
 * random, in 2 MiB pages where the kernel hands them out on request
 * (transparent huge pages, "madvise"): with 4 KiB pages such reads miss
 * the TLB too. Whole 2 MiB pages, 2 MiB aligned (malloc counts the
 * alignment slack, address space that is never touched); free() it. NULL
 * out of memory. */
void *htr_pm_huge_zalloc(size_t bytes);

/* 0 on success, -1 out of memory. reader: the reader's side (a ring). */
int htr_pm_init(struct htr_pack_model *m, bool reader);
void htr_pm_fini(struct htr_pack_model *m);

/* Codes. Freed pointer: 0 null; else 1 + 4 * value + reference (see
 * HTR_PACK_REF_*). Allocated pointer: HTR_PACK_A_* below. A pointer that
 * no reference predicts is coded as zigzag(ptr - last pointer), inside the
 * code when that fits, else as HTR_PACK_F_FAR / HTR_PACK_A_FAR followed by
 * a varint of its own, so no pointer value can overflow a code. */
#define HTR_PACK_REF_NEWEST    0u /* value: newest ordinal - ordinal */
#define HTR_PACK_REF_LAST_FREE 1u /* value: zigzag(ordinal - last freed ordinal) */
#define HTR_PACK_REF_STACK     2u /* value: zigzag(ordinal - ordinal freed last by this stack) */
#define HTR_PACK_REF_ADDRESS   3u /* not in the live set: value 1 + zigzag(ptr - last pointer) */
#define HTR_PACK_F_FAR         (1u + HTR_PACK_REF_ADDRESS) /* value 0: the zigzag follows */
#define HTR_PACK_A_CLASS       0u /* + index among the blocks freed last in its size class and thread */
#define HTR_PACK_A_NULL        (HTR_PACK_A_CLASS + HTR_PM_CLASS_DEPTH) /* a failed allocation */
#define HTR_PACK_A_BUMP        (HTR_PACK_A_NULL + 1u) /* right after the previous allocation's chunk */
#define HTR_PACK_A_FAR         (HTR_PACK_A_BUMP + 1u) /* zigzag(ptr - last pointer) follows */
#define HTR_PACK_A_FREED       (HTR_PACK_A_FAR + 1u)  /* + index into the recently freed */
#define HTR_PACK_A_DELTA       (HTR_PACK_A_FREED + HTR_PM_FREED) /* + zigzag(ptr - last pointer) */
#define HTR_PACK_NEAR          (1ull << 60)                      /* zigzags below this go inside a code */

/* ---- steps both sides take ----
 *
 * Inline here, not in pack_model.c, as is the reader's decoding of a free
 * and of an allocation below: the reader takes them for every event, and
 * as calls they cost their calls, saved registers and a block passed
 * through memory ((d), read with the engine: 1473 -> 1419 M instructions). */

static inline uint64_t htr_pm_zigzag(uint64_t delta)
{
	return (delta << 1) ^ (uint64_t)((int64_t)delta >> 63);
}

static inline uint64_t htr_pm_unzigzag(uint64_t z)
{
	return (z >> 1) ^ (uint64_t) - (int64_t)(z & 1);
}

/* glibc's bins: a chunk is the request plus 8 bytes of header, rounded up
 * to 16, at least 32. Requests in one chunk size get the same blocks back.
 * Only the compression depends on this matching the allocator; the coding
 * is exact whatever the allocator does. */
static inline uint64_t htr_pm_chunk_size(uint64_t size)
{
	return size < 9 ? 32 : (size + 23) & ~(uint64_t)15;
}

/* Where the previous allocation's chunk ends (HTR_PACK_A_BUMP); 0 before
 * the first, which no allocation returns. */
static inline uint64_t htr_pm_bump_end(const struct htr_pack_model *m)
{
	return m->last_alloc != 0 ? m->last_alloc + htr_pm_chunk_size(m->last_alloc_size) : 0;
}

static inline unsigned htr_pm_size_class(uint64_t size)
{
	if (size < 4032u * 16u - 23u)
		return (unsigned)((size + 23u) >> 4);
	unsigned log2 = 63u - (unsigned)__builtin_clzll(size);
	return 4032u + log2;
}

static inline uint64_t *htr_pm_stack_last(struct htr_pack_model *m, uint32_t stack)
{
	return &m->stack_last[(stack * 2654435761u) >> 20 & (HTR_PM_STACK_SLOTS - 1)];
}

/* Small most-recent-first lists of pointers, kept as rings: entry i (0 is
 * the newest) sits at e[(head - 1 - i) % n], and an empty entry is 0. A
 * push is one store (over the oldest); taking entry i out moves the i
 * newer ones, usually none, since allocators hand out the newest. n is a
 * power of two, at most 32. */
struct htr_pm_recent {
	uint64_t *e;
	unsigned *head;
	unsigned n;
};

static inline unsigned htr_pm_recent_pos(const struct htr_pm_recent *r, unsigned i)
{
	return (*r->head - 1u - i) & (r->n - 1);
}

static inline uint64_t htr_pm_recent_at(const struct htr_pm_recent *r, unsigned i)
{
	return r->e[htr_pm_recent_pos(r, i)];
}

static inline void htr_pm_recent_take(struct htr_pm_recent *r, unsigned i)
{
	for (unsigned k = i; k > 0; k--)
		r->e[htr_pm_recent_pos(r, k)] = r->e[htr_pm_recent_pos(r, k - 1)];
	r->e[htr_pm_recent_pos(r, 0)] = 0;
	(*r->head)--;
}

/* No search for a copy already there: an allocation took the block out of
 * the list it was found in, and a stale copy elsewhere only costs a slot.
 * Both sides keep the same copies, which is all that exactness needs. */
static inline void htr_pm_recent_push(struct htr_pm_recent *r, uint64_t ptr)
{
	r->e[*r->head & (r->n - 1)] = ptr;
	(*r->head)++;
}

/* glibc caches freed blocks per thread (tcache), so the prediction is kept
 * per thread too; threads share the table, spread by a multiplicative hash. */
static inline struct htr_pm_recent htr_pm_class_list(struct htr_pack_model *m, uint64_t size)
{
	unsigned slot = (htr_pm_size_class(size) + m->last_thread * 2654435761u) & (HTR_PM_CLASS_SLOTS - 1);
	return (struct htr_pm_recent){m->by_class[slot], &m->class_head[slot], HTR_PM_CLASS_DEPTH};
}

static inline struct htr_pm_recent htr_pm_freed_list(struct htr_pack_model *m)
{
	return (struct htr_pm_recent){m->freed, &m->freed_head, HTR_PM_FREED};
}

/* What a free teaches both sides, whatever its code. */
static inline __attribute__((always_inline)) void htr_pm_learn_free(struct htr_pack_model *m,
                                                                    const struct htr_pm_block *blk, uint32_t stack)
{
	if (blk->tracked) {
		m->last_free_ord = blk->ord;
		*htr_pm_stack_last(m, stack) = blk->ord;
		struct htr_pm_recent c = htr_pm_class_list(m, blk->size);
		htr_pm_recent_push(&c, blk->ptr);
	}
	struct htr_pm_recent f = htr_pm_freed_list(m);
	htr_pm_recent_push(&f, blk->ptr);
	m->last_ptr = blk->ptr;
}

/* What an allocation teaches both sides; the live set is each side's own.
 * The block leaves the list its code found it in: the reader knows which
 * without searching. */
static inline __attribute__((always_inline)) void htr_pm_learn_alloc(struct htr_pack_model *m, uint64_t ptr,
                                                                     uint64_t size, struct htr_pm_recent *c,
                                                                     uint64_t code)
{
	if (code < HTR_PACK_A_CLASS + HTR_PM_CLASS_DEPTH) {
		htr_pm_recent_take(c, (unsigned)(code - HTR_PACK_A_CLASS));
	} else if (code >= HTR_PACK_A_FREED && code < HTR_PACK_A_DELTA) {
		struct htr_pm_recent f = htr_pm_freed_list(m);
		htr_pm_recent_take(&f, (unsigned)(code - HTR_PACK_A_FREED));
	}
	m->last_alloc = ptr;
	m->last_alloc_size = size;
	m->last_ptr = ptr;
	m->next_ord++;
}

/* The packer's side. A free is coded in two steps so that a realloc can
 * keep its old block when it failed: htr_pm_code_free looks it up and
 * updates the predictions, htr_pm_drop_by_ptr takes it out of the live set
 * (the slot found, no second lookup: nothing changes the table between). */
static inline __attribute__((always_inline)) uint64_t htr_pm_code_free(struct htr_pack_model *m, uint64_t ptr,
                                                                      uint32_t stack, struct htr_pm_block *blk)
{
	/* ord and size only where tracked says they are meant: the whole
	 * block cleared was 3 instructions more per free ((b): 1.615 ->
	 * 1.609 G). */
	blk->ptr = ptr;
	blk->extra = 0;
	blk->tracked = false;
	if (ptr == 0)
		return 0;
	size_t at = htr_live_find_at(&m->live, ptr);
	uint64_t code;
	if (at == HTR_LIVE_NONE) {
		uint64_t z = htr_pm_zigzag(ptr - m->last_ptr);
		if (z < HTR_PACK_NEAR) {
			code = 1 + 4 * (z + 1) + HTR_PACK_REF_ADDRESS;
		} else {
			blk->extra = z;
			code = HTR_PACK_F_FAR;
		}
	} else {
		const struct htr_live_slot *s = &m->live.slots[at];
		m->live.found = at;
		blk->tracked = true;
		blk->ord = s->a;
		blk->size = s->b;
		uint64_t v = m->next_ord - 1 - blk->ord, ref = HTR_PACK_REF_NEWEST;
		uint64_t z = htr_pm_zigzag(blk->ord - m->last_free_ord);
		if (z < v) {
			v = z;
			ref = HTR_PACK_REF_LAST_FREE;
		}
		z = htr_pm_zigzag(blk->ord - *htr_pm_stack_last(m, stack));
		if (z < v) {
			v = z;
			ref = HTR_PACK_REF_STACK;
		}
		code = 1 + 4 * v + ref;
	}
	htr_pm_learn_free(m, blk, stack);
	return code;
}

static inline __attribute__((always_inline)) void htr_pm_drop_by_ptr(struct htr_pack_model *m,
                                                                    const struct htr_pm_block *blk)
{
	if (blk->tracked)
		htr_live_remove_at(&m->live, m->live.found);
}

/* Packer only: newest first, so that the first found is the newest of a
 * pointer there twice (no push searches for a copy), and a hit near the
 * newest, the usual one, ends the scan. A branch-free compare of the whole
 * ring cost more: with no 64-bit vector comparison in SSE2 the compiler's
 * stand-in was a fifth of packing (c) ((c): 2.50 -> 2.27 G instructions,
 * 0.192 -> 0.168 s; (d) 1.489 -> 1.455 G; (b) the same). */
static inline int htr_pm_recent_find(const struct htr_pm_recent *r, uint64_t ptr)
{
	for (unsigned i = 0; i < r->n; i++)
		if (r->e[htr_pm_recent_pos(r, i)] == ptr)
			return (int)i;
	return -1;
}

/* Codes an allocated pointer (*extra set with HTR_PACK_A_FAR) and adds it
 * to the live set; -1 on out of memory. */
static inline __attribute__((always_inline)) int htr_pm_code_alloc(struct htr_pack_model *m, uint64_t ptr,
                                                                  uint64_t size, uint64_t *code, uint64_t *extra)
{
	if (ptr == 0) {
		*code = HTR_PACK_A_NULL;
		return 0;
	}
	struct htr_pm_recent c = htr_pm_class_list(m, size), f = htr_pm_freed_list(m);
	int i;
	if ((i = htr_pm_recent_find(&c, ptr)) >= 0)
		*code = HTR_PACK_A_CLASS + (unsigned)i;
	else if (ptr == htr_pm_bump_end(m))
		*code = HTR_PACK_A_BUMP;
	else if ((i = htr_pm_recent_find(&f, ptr)) >= 0)
		*code = HTR_PACK_A_FREED + (unsigned)i;
	else {
		uint64_t z = htr_pm_zigzag(ptr - m->last_ptr);
		if (z < HTR_PACK_NEAR) {
			*code = HTR_PACK_A_DELTA + z;
		} else {
			*code = HTR_PACK_A_FAR;
			*extra = z;
		}
	}
	uint64_t ord = m->next_ord;
	htr_pm_learn_alloc(m, ptr, size, &c, *code);
	return htr_live_put(&m->live, ptr, ord, size);
}

/* A realloc's new size, predicted from the old block's (when the live set
 * knows it) by the usual growth policies: + a little, x1.5, x2. Code
 * 4 * zigzag(size - prediction) + policy, or HTR_PACK_SIZE_PLAIN followed
 * by the size as a varint (*extra). */
#define HTR_PACK_SIZE_PLAIN 3u
uint64_t htr_pm_code_resize(const struct htr_pm_block *old, uint64_t size, uint64_t *extra);
/* false: corrupt code. */
bool htr_pm_decode_resize(const struct htr_pm_block *old, uint64_t code, uint64_t extra, uint64_t *size);

/* The reader's side, the same steps. The blocks that outlived their ring
 * slot are kept by ordinal in m->live: found, dropped and put there out of
 * line. */
const struct htr_live_slot *htr_pm_find_old(const struct htr_pack_model *m, uint64_t ord);
void htr_pm_drop_old(struct htr_pack_model *m, uint64_t ord);
int htr_pm_keep_old(struct htr_pack_model *m, uint64_t ord, uint64_t ptr, uint64_t size); /* 0, or -1 out of memory */

/* false: the code names no block the reader knows (corrupt data). */
static inline __attribute__((always_inline)) bool htr_pm_decode_free(struct htr_pack_model *m, uint64_t code,
                                                                     uint64_t extra, uint32_t stack,
                                                                     struct htr_pm_block *blk)
{
	*blk = (struct htr_pm_block){0};
	if (code == 0)
		return true;
	uint64_t ref = (code - 1) & 3, v = (code - 1) >> 2;
	if (ref == HTR_PACK_REF_ADDRESS) {
		if (v > HTR_PACK_NEAR)
			return false;
		blk->ptr = m->last_ptr + htr_pm_unzigzag(v == 0 ? extra : v - 1);
		if (blk->ptr == 0)
			return false;
	} else {
		uint64_t ord = ref == HTR_PACK_REF_NEWEST      ? m->next_ord - 1 - v
		               : ref == HTR_PACK_REF_LAST_FREE ? m->last_free_ord + htr_pm_unzigzag(v)
		                                               : *htr_pm_stack_last(m, stack) + htr_pm_unzigzag(v);
		if (ord == 0 || ord >= m->next_ord)
			return false;
		if (ord + HTR_PM_RING >= m->next_ord) {
			const struct htr_ring_slot *r = &m->ring[ord & (HTR_PM_RING - 1)];
			if (r->ptr == 0)
				return false;
			blk->ptr = r->ptr;
			blk->size = r->size;
		} else {
			const struct htr_live_slot *s = htr_pm_find_old(m, ord);
			if (s == NULL)
				return false;
			blk->ptr = s->a;
			blk->size = s->b;
		}
		blk->tracked = true;
		blk->ord = ord;
	}
	htr_pm_learn_free(m, blk, stack);
	return true;
}

/* Inline: every free takes it, and mostly it is one store. */
static inline void htr_pm_drop_by_ord(struct htr_pack_model *m, const struct htr_pm_block *blk)
{
	if (!blk->tracked)
		return;
	if (blk->ord + HTR_PM_RING >= m->next_ord)
		m->ring[blk->ord & (HTR_PM_RING - 1)].ptr = 0;
	else
		htr_pm_drop_old(m, blk->ord);
}

/* 0 ok, 1 corrupt code, -1 out of memory. */
static inline __attribute__((always_inline)) int htr_pm_decode_alloc(struct htr_pack_model *m, uint64_t code,
                                                                    uint64_t extra, uint64_t size, uint64_t *ptr)
{
	struct htr_pm_recent c = htr_pm_class_list(m, size), f = htr_pm_freed_list(m);
	uint64_t p;
	if (code == HTR_PACK_A_NULL) {
		*ptr = 0;
		return 0;
	} else if (code < HTR_PACK_A_CLASS + HTR_PM_CLASS_DEPTH) {
		p = htr_pm_recent_at(&c, (unsigned)(code - HTR_PACK_A_CLASS));
	} else if (code == HTR_PACK_A_BUMP) {
		p = htr_pm_bump_end(m);
	} else if (code == HTR_PACK_A_FAR) {
		p = m->last_ptr + htr_pm_unzigzag(extra);
	} else if (code < HTR_PACK_A_DELTA) {
		p = htr_pm_recent_at(&f, (unsigned)(code - HTR_PACK_A_FREED));
	} else if (code - HTR_PACK_A_DELTA < HTR_PACK_NEAR) {
		p = m->last_ptr + htr_pm_unzigzag(code - HTR_PACK_A_DELTA);
	} else {
		return 1;
	}
	if (p == 0)
		return 1;
	*ptr = p;
	uint64_t ord = m->next_ord;
	htr_pm_learn_alloc(m, p, size, &c, code);
	struct htr_ring_slot *r = &m->ring[ord & (HTR_PM_RING - 1)], old = *r;
	*r = (struct htr_ring_slot){p, size};
	/* Still live a ring ago: kept by ordinal, called last, a tail call. */
	return old.ptr != 0 ? htr_pm_keep_old(m, ord - HTR_PM_RING, old.ptr, old.size) : 0;
}

/* ---- the tag coder ----
 *
 * The TAG column's bytes are the trace's rhythm: which event comes next,
 * whether its stack and thread are the predicted ones, and the first
 * pointer code. They depend on what came before far more than zstd's
 * order-0 Huffman coder can see ((d): 1.14 MB as zstd codes them, 0.73 MB
 * coded given the previous event). So each byte is coded with the frequencies
 * seen in its context: the previous event of the thread last seen (its
 * code and stack, as the stack prediction keys it) and the previous
 * record's first tag byte, hashed into HTR_TC_BUCKETS; the long form's
 * second byte has a bucket of its own. The coder is rANS with tables that
 * stay fixed between rebuilds, so a byte decodes with one table lookup:
 * both sides count what they code, and a bucket's table is rebuilt from
 * its counts after each epoch of its own (epochs double from
 * HTR_TC_EPOCH_MIN to _MAX bytes in the bucket, counts halve at each
 * rebuild, so the model follows the program's phases). A byte that a
 * bucket had not seen at its last rebuild is an escape (the top slots,
 * HTR_TC_ESCAPE of them once the bucket has counts, all before) followed
 * by the byte at a uniform 8 bits. Only some blocks are counted (the
 * packer's choice: pack.c), and the mode byte of a block (HTR_TC_*) says
 * which; the others are coded with the tables as they are, and cost the
 * reader no counting. */
#define HTR_TC_BITS      9u
#define HTR_TC_TOTAL     (1u << HTR_TC_BITS)
#define HTR_TC_ESCAPE    2u
#define HTR_TC_BUCKETS   256u
#define HTR_TC_LONG      HTR_TC_BUCKETS /* the bucket of the long form's second byte */
#define HTR_TC_EPOCH_MIN 32u
#define HTR_TC_EPOCH_MAX 8192u /* counts stay below 2 * this: 16 bits */
#define HTR_TC_LOW       (1u << 23) /* the rANS state stays in [LOW, 256 * LOW) */
/* The first byte of the TAG column of a block: how the rest is coded, and
 * whether its bytes are counted (else the coder's state stays as it is). */
#define HTR_TC_PLAIN         0u /* the bytes as they are, not counted */
#define HTR_TC_RANS          1u /* the final rANS states (2 x 4 bytes, little-endian), then their bytes */
#define HTR_TC_PLAIN_COUNTED 2u /* the bytes as they are, counted */
#define HTR_TC_RANS_FIXED    3u /* as HTR_TC_RANS, not counted */
#define HTR_TC_MODES         4u

/* A slot as the reader decodes it, in one load: the byte, the slot's
 * offset in the byte's range, the range's size, and whether it is the
 * escape. */
#define HTR_TC_DEC_BIAS   8u
#define HTR_TC_DEC_ESCAPE (1u << 18)
#define HTR_TC_DEC_FREQ   21u

/* Per bucket, each in an array of its own, so that what a side touches
 * per byte shares cache lines with little else; the packer never touches
 * dec (0.5 MB). */
struct htr_tag_coder {
	uint8_t last_tag; /* the previous record's first tag byte */
	bool reader;      /* the side with the decoding tables */
	uint16_t esc_start[HTR_TC_BUCKETS + 1]; /* slots from here on are the escape */
	uint16_t left[HTR_TC_BUCKETS + 1];      /* bytes until the bucket's next rebuild */
	uint16_t epoch[HTR_TC_BUCKETS + 1];
	uint16_t count[HTR_TC_BUCKETS + 1][256];
	uint16_t freq[HTR_TC_BUCKETS + 1][256]; /* packer; 0: an escape */
	uint16_t start[HTR_TC_BUCKETS + 1][256];
	uint32_t dec[HTR_TC_BUCKETS + 1][HTR_TC_TOTAL]; /* reader; last: the packer never touches it */
};

/* One rANS step: the slots [start, start + freq) of HTR_TC_TOTAL. */
struct htr_tc_op {
	uint16_t start, freq;
};

/* reader: build the reader's tables (else the packer's). */
void htr_tc_init(struct htr_tag_coder *tc, bool reader);
void htr_tc_rebuild(struct htr_tag_coder *tc, unsigned bucket);

/* The bucket of a record's first tag byte; call once per record, before
 * it changes m->last_thread. */
static inline unsigned htr_tc_bucket_of(uint32_t prev, uint8_t last_tag)
{
	return (uint32_t)((prev * 256u + last_tag) * 2654435761u) >> 24;
}

static inline unsigned htr_tc_first_bucket(const struct htr_pack_model *m, const struct htr_tag_coder *tc)
{
	return htr_tc_bucket_of(m->thread_prev[m->last_thread & (HTR_PM_THREAD_SLOTS - 1)], tc->last_tag);
}

/* What both sides learn from a coded byte. */
static inline void htr_tc_count(struct htr_tag_coder *tc, unsigned bucket, uint8_t byte)
{
	tc->count[bucket][byte]++;
	if (__builtin_expect(--tc->left[bucket] == 0, 0))
		htr_tc_rebuild(tc, bucket);
}

/* Packer: the rANS steps of a byte (one, or two for an escape) into ops;
 * returns how many. */
static inline unsigned htr_tc_code(const struct htr_tag_coder *tc, unsigned bucket, uint8_t byte,
                                   struct htr_tc_op *ops)
{
	unsigned n = 1;
	if (tc->freq[bucket][byte] != 0) {
		ops[0] = (struct htr_tc_op){tc->start[bucket][byte], tc->freq[bucket][byte]};
	} else {
		uint16_t esc = tc->esc_start[bucket];
		ops[0] = (struct htr_tc_op){esc, (uint16_t)(HTR_TC_TOTAL - esc)};
		ops[1] = (struct htr_tc_op){(uint16_t)(byte * (HTR_TC_TOTAL / 256u)), HTR_TC_TOTAL / 256u};
		n = 2;
	}
	return n;
}

/* Packer: x / freq for x < 2^31 as (x * m) >> shift: with 2^(k-1) < freq
 * <= 2^k and m = ceil(2^(31+k) / freq) the quotient is exact (Granlund and
 * Montgomery), and a multiplication is cheaper than a division per byte. */
struct htr_tc_reciprocal {
	uint64_t m;
	unsigned shift;
};
void htr_tc_reciprocals_init(struct htr_tc_reciprocal *r); /* HTR_TC_TOTAL + 1 of them */

/* Packer: the ops of a block as rANS bytes, written backwards so that
 * they read forwards, ending at end: the states first, as HTR_TC_RANS
 * says. Two states take turns, op by op: a step waits on the one before
 * in its state (two multiplications), so two chains run twice as fast.
 * Returns where they start; NULL when they would start before limit. */
uint8_t *htr_tc_encode(const struct htr_tc_reciprocal *r, const struct htr_tc_op *ops, size_t n, uint8_t *limit,
                       uint8_t *end);

/* Reader: a block's rANS stream; x[0] decodes the next step, then the
 * states swap. */
struct htr_tc_stream {
	uint32_t x[2];
	const uint8_t *p, *end;
};

/* A step leaves a state that was at least HTR_TC_LOW at 2^14 or more (a
 * range's size times x >> HTR_TC_BITS), so it takes two bytes at most.
 * How many is data, and a loop on it is a branch no predictor learns
 * ((d) read 8% faster without): with two bytes left they go in by a shift
 * of 0, 8 or 16 bits, the bytes taken counted from the state's leading
 * zeros (1 to 8: none; to 16: one; 17: two), in fewer instructions than
 * two comparisons ((d): 16 M instructions fewer). Smaller states (the
 * stream ran out before) and the stream's last byte take the loop. */
static inline uint32_t htr_tc_renorm(uint32_t x, struct htr_tc_stream *s)
{
	if (__builtin_expect(s->end - s->p >= 2 && x >= HTR_TC_LOW >> 9, 1)) {
		unsigned n = (unsigned)(__builtin_clz(x) - 1) >> 3;
		uint64_t two = (uint64_t)s->p[0] << 8 | s->p[1];
		s->p += n;
		return (uint32_t)(((uint64_t)x << 16 | two) >> (16 - 8 * n));
	}
	while (x < HTR_TC_LOW && s->p < s->end)
		x = x << 8 | *s->p++;
	return x;
}

/* The next byte from the stream in this bucket, counted if count. A stream that
 * runs out (corrupt data) leaves the state below HTR_TC_LOW, and a block
 * is only valid when it ends with the state its coding started from: that
 * check is made once, at the end of the block. */
static inline uint8_t htr_tc_decode(struct htr_tag_coder *tc, unsigned bucket, struct htr_tc_stream *s, bool count)
{
	uint32_t x = s->x[0], e = tc->dec[bucket][x & (HTR_TC_TOTAL - 1)];
	s->x[0] = s->x[1];
	s->x[1] = htr_tc_renorm((e >> HTR_TC_DEC_FREQ) * (x >> HTR_TC_BITS) + (e >> HTR_TC_DEC_BIAS & (HTR_TC_TOTAL - 1)), s);
	uint8_t byte = (uint8_t)e;
	if (e & HTR_TC_DEC_ESCAPE) {
		x = s->x[0];
		uint32_t slot = x & (HTR_TC_TOTAL - 1);
		byte = (uint8_t)(slot / (HTR_TC_TOTAL / 256u));
		s->x[0] = s->x[1];
		s->x[1] = htr_tc_renorm((HTR_TC_TOTAL / 256u) * (x >> HTR_TC_BITS) + slot % (HTR_TC_TOTAL / 256u), s);
	}
	if (count)
		htr_tc_count(tc, bucket, byte);
	return byte;
}

#endif /* HEAPTRAIL_PACK_MODEL_H */
