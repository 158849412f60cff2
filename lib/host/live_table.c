/* The live-pointer table: every block the C library handed out through the
 * hooks, so that a free can be checked before it reaches libc.
 *
 * Sharded by region and pointer hash (see GROUPS), one spinlock per shard,
 * open addressing with linear probing and backward-shift deletion (no
 * tombstones). Storage comes
 * from mmap, never from malloc: the table is used inside malloc. Each shard
 * also keeps a ring of its most recent frees (HTR_FREED_RING), which is how
 * a double free names the first free; older frees are forgotten, and a
 * double free of one of them reads as an invalid free. */
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

/* Shards come in groups, a group per 64 MiB region of address space: glibc
 * gives each thread's arena a 64 MiB aligned heap of its own, so a thread's
 * blocks live in shards (lock, slots, ring) that only its core touches,
 * instead of each event moving shard lines between cores. Within a group
 * the pointer's hash picks the shard: one arena still has several locks
 * and rings. */
#define GROUPS 16u
#define GROUP_SHARDS 8u
#define SHARDS (GROUPS * GROUP_SHARDS)
#define REGION_SHIFT 26
#define INITIAL_CAPACITY 1024u

struct shard {
	htr_spinlock lock;
	uint32_t ring_head;            /* next slot to overwrite */
	uint64_t capacity;             /* power of two, 0 before first use */
	uint64_t count;
	struct htr_live_entry *slots;  /* ptr 0 = empty */
	struct htr_freed_entry *ring;  /* HTR_FREED_RING entries */
	char pad[64 - 40];
};

static struct shard shards[SHARDS] __attribute__((aligned(64)));

/* The shard lock, none while the process is single-threaded (see
 * htr_single_threaded). The flag can only change inside pthread_create on
 * this thread, never between a lock and its unlock; the result is kept
 * anyway so that they always pair. */
static inline bool shard_lock(struct shard *s)
{
	if (htr_single_threaded())
		return false;
	htr_spin_lock(&s->lock);
	return true;
}

static inline void shard_unlock(struct shard *s, bool locked)
{
	if (locked)
		htr_spin_unlock(&s->lock);
}

static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static inline struct shard *shard_of(uint64_t ptr, uint64_t *h)
{
	*h = mix(ptr);
	/* The region number's low bits, not a hash of it: glibc maps its
	 * arenas' heaps next to each other, so up to GROUPS of them get a
	 * group each, where a hash made two of eight share one most times. */
	uint64_t group = (ptr >> REGION_SHIFT) & (GROUPS - 1);
	return &shards[group * GROUP_SHARDS + (*h & (GROUP_SHARDS - 1))];
}

static void *map_zeroed(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Slots are indexed by the hash bits above the shard bits. */
static inline uint64_t home(uint64_t h, uint64_t capacity)
{
	return (h >> 6) & (capacity - 1);
}

static void raw_insert(struct htr_live_entry *slots, uint64_t capacity,
		       const struct htr_live_entry *e, uint64_t h)
{
	uint64_t i = home(h, capacity);
	while (slots[i].ptr != 0 && slots[i].ptr != e->ptr)
		i = (i + 1) & (capacity - 1);
	slots[i] = *e;
}

static bool grow(struct shard *s)
{
	uint64_t cap = s->capacity ? s->capacity * 2 : INITIAL_CAPACITY;
	struct htr_live_entry *n = map_zeroed(cap * sizeof(*n));
	if (n == NULL)
		return false;
	for (uint64_t i = 0; i < s->capacity; i++)
		if (s->slots[i].ptr != 0)
			raw_insert(n, cap, &s->slots[i], mix(s->slots[i].ptr));
	if (s->slots != NULL)
		munmap(s->slots, s->capacity * sizeof(*s->slots));
	s->slots = n;
	s->capacity = cap;
	return true;
}

static int64_t find(const struct shard *s, uint64_t ptr, uint64_t h)
{
	if (s->capacity == 0)
		return -1;
	uint64_t i = home(h, s->capacity);
	while (s->slots[i].ptr != 0) {
		if (s->slots[i].ptr == ptr)
			return (int64_t)i;
		i = (i + 1) & (s->capacity - 1);
	}
	return -1;
}

static void erase(struct shard *s, uint64_t i)
{
	uint64_t mask = s->capacity - 1;
	uint64_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (s->slots[j].ptr == 0)
			break;
		uint64_t k = home(mix(s->slots[j].ptr), s->capacity);
		/* Move j back into the hole at i unless its home lies in (i, j]. */
		bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			s->slots[i] = s->slots[j];
			i = j;
		}
	}
	s->slots[i].ptr = 0;
	s->count--;
}

void htr_live_insert(const struct htr_live_entry *e)
{
	uint64_t h;
	struct shard *s = shard_of(e->ptr, &h);
	bool locked = shard_lock(s);
	if ((s->count + 1) * 2 > s->capacity && !grow(s) && s->count + 1 >= s->capacity) {
		/* Out of memory for the table: the block is simply not tracked;
		 * its free will read as invalid. Better than corrupting. */
		shard_unlock(s, locked);
		return;
	}
	int64_t at = find(s, e->ptr, h);
	if (at >= 0) {
		s->slots[at] = *e; /* the C library reused an address we missed the free of */
	} else {
		raw_insert(s->slots, s->capacity, e, h);
		s->count++;
	}
	shard_unlock(s, locked);
}

enum htr_live_result htr_live_remove(uint64_t ptr, struct htr_live_entry *out,
				     struct htr_freed_entry *freed, bool remember, uint32_t free_stack,
				     uint32_t free_site, uint8_t free_call)
{
	uint64_t h;
	struct shard *s = shard_of(ptr, &h);
	enum htr_live_result r = HTR_LIVE_UNKNOWN;
	bool locked = shard_lock(s);
	int64_t at = find(s, ptr, h);
	if (at >= 0) {
		*out = s->slots[at];
		erase(s, (uint64_t)at);
		r = HTR_LIVE_FOUND;
		if (remember) {
			if (s->ring == NULL)
				s->ring = map_zeroed(HTR_FREED_RING * sizeof(*s->ring));
			if (s->ring != NULL) {
				struct htr_freed_entry *f = &s->ring[s->ring_head];
				s->ring_head = (s->ring_head + 1) % HTR_FREED_RING;
				f->ptr = ptr;
				f->size = out->size;
				f->alloc_stack = out->stack;
				f->alloc_site = out->site;
				f->free_stack = free_stack;
				f->free_site = free_site;
				f->alloc_call = out->call;
				f->free_call = free_call;
				f->flags = out->flags;
			}
		}
	} else if (s->ring != NULL) {
		/* Newest first: the address may have been freed more than once. */
		for (uint32_t n = 0; n < HTR_FREED_RING; n++) {
			uint32_t i = (s->ring_head + HTR_FREED_RING - 1 - n) % HTR_FREED_RING;
			if (s->ring[i].ptr == ptr) {
				*freed = s->ring[i];
				r = HTR_LIVE_FREED;
				break;
			}
		}
	}
	shard_unlock(s, locked);
	return r;
}

bool htr_live_lookup(uint64_t ptr, struct htr_live_entry *out)
{
	uint64_t h;
	struct shard *s = shard_of(ptr, &h);
	bool locked = shard_lock(s);
	int64_t at = find(s, ptr, h);
	if (at >= 0)
		*out = s->slots[at];
	shard_unlock(s, locked);
	return at >= 0;
}

size_t htr_live_count(void)
{
	size_t n = 0;
	for (unsigned i = 0; i < SHARDS; i++)
		n += __atomic_load_n(&shards[i].count, __ATOMIC_RELAXED);
	return n;
}

void htr_live_fork_prepare(void)
{
	for (unsigned i = 0; i < SHARDS; i++)
		htr_spin_lock(&shards[i].lock);
}

void htr_live_fork_parent(void)
{
	for (unsigned i = SHARDS; i-- > 0;)
		htr_spin_unlock(&shards[i].lock);
}

void htr_live_fork_child(void)
{
	for (unsigned i = 0; i < SHARDS; i++)
		shards[i].lock.v = 0;
}

void htr_live_reset_for_tests(void)
{
	for (unsigned i = 0; i < SHARDS; i++) {
		struct shard *s = &shards[i];
		if (s->slots != NULL)
			munmap(s->slots, s->capacity * sizeof(*s->slots));
		if (s->ring != NULL)
			munmap(s->ring, HTR_FREED_RING * sizeof(*s->ring));
		memset(s, 0, sizeof(*s));
	}
}
