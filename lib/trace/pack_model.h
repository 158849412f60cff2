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
};

#define HTR_PM_CLASS_SLOTS  4096u
#define HTR_PM_STACK_SLOTS  4096u
#define HTR_PM_FREED        32u
#define HTR_PM_RING         65536u
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
	uint64_t last_alloc_end;    /* where the previous allocation's chunk ends */
	struct htr_live_table live; /* packer: ptr -> ordinal, size; reader: old ordinal -> ptr, size */
	/* Reader: the blocks of the last HTR_PM_RING ordinals by ordinal,
	 * ptr 0 when no longer live. Most blocks die young, and a ring
	 * indexed by ordinal is what a hash table is not: in cache. A block
	 * still live when its slot comes round again moves to `live`. 65536
	 * slots (1 MiB): a C++ container's entries live tens of thousands of
	 * ordinals ((d): with 16384 most went through `live`, 5% of reading). */
	struct htr_ring_slot *ring;
	uint64_t freed[HTR_PM_FREED]; /* recently freed pointers, a ring (pack_model.c) */
	unsigned freed_head;
	/* The blocks freed last per size class and thread, newest first: what
	 * glibc's tcache and fast bins hand out next. */
	uint64_t by_class[HTR_PM_CLASS_SLOTS][HTR_PM_CLASS_DEPTH]; /* rings too */
	unsigned class_head[HTR_PM_CLASS_SLOTS];
	uint64_t stack_last[HTR_PM_STACK_SLOTS]; /* ordinal freed last by a stack */
	uint64_t stack_size[HTR_PM_STACK_SLOTS]; /* size an ALLOC of a stack asked for last */
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
static inline uint32_t *htr_pm_stack_slot(struct htr_pack_model *m, unsigned code)
{
	uint32_t prev = m->thread_prev[m->last_thread & (HTR_PM_THREAD_SLOTS - 1)];
	return &m->next_stack[((prev + code) * 2654435761u) >> 16 & (HTR_PM_NEXT_SLOTS - 1)];
}

static inline void htr_pm_stack_seen(struct htr_pack_model *m, uint32_t *slot, unsigned code, uint32_t stack)
{
	*slot = stack;
	m->thread_prev[m->last_thread & (HTR_PM_THREAD_SLOTS - 1)] = stack * 8u + code;
}

/* The size an ALLOC with this stack asked for last: a call site mostly
 * asks for one size, and a short tag says so in a bit. */
static inline uint64_t *htr_pm_size_slot(struct htr_pack_model *m, uint32_t stack)
{
	return &m->stack_size[(stack * 2654435761u) >> 20 & (HTR_PM_STACK_SLOTS - 1)];
}

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

/* The packer's side. A free is coded in two steps so that a realloc can
 * keep its old block when it failed: htr_pm_code_free looks it up and
 * updates the predictions, htr_pm_drop takes it out of the live set. */
uint64_t htr_pm_code_free(struct htr_pack_model *m, uint64_t ptr, uint32_t stack, struct htr_pm_block *blk);
void htr_pm_drop_by_ptr(struct htr_pack_model *m, const struct htr_pm_block *blk);
/* Codes an allocated pointer (*extra set with HTR_PACK_A_FAR) and adds it
 * to the live set; -1 on out of memory. */
int htr_pm_code_alloc(struct htr_pack_model *m, uint64_t ptr, uint64_t size, uint64_t *code, uint64_t *extra);

/* A realloc's new size, predicted from the old block's (when the live set
 * knows it) by the usual growth policies: + a little, x1.5, x2. Code
 * 4 * zigzag(size - prediction) + policy, or HTR_PACK_SIZE_PLAIN followed
 * by the size as a varint (*extra). */
#define HTR_PACK_SIZE_PLAIN 3u
uint64_t htr_pm_code_resize(const struct htr_pm_block *old, uint64_t size, uint64_t *extra);
/* false: corrupt code. */
bool htr_pm_decode_resize(const struct htr_pm_block *old, uint64_t code, uint64_t extra, uint64_t *size);

/* The reader's side, the same steps. false: the code names no block the
 * reader knows (corrupt data). */
bool htr_pm_decode_free(struct htr_pack_model *m, uint64_t code, uint64_t extra, uint32_t stack,
                        struct htr_pm_block *blk);
void htr_pm_drop_by_ord(struct htr_pack_model *m, const struct htr_pm_block *blk);
/* 0 ok, 1 corrupt code, -1 out of memory. */
int htr_pm_decode_alloc(struct htr_pack_model *m, uint64_t code, uint64_t extra, uint64_t size,
                        uint64_t *ptr);

#endif /* HEAPTRAIL_PACK_MODEL_H */
