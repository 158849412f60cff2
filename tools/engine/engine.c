/* The engine proper: per-event bookkeeping and the JSON result.
 *
 * Per event the work is one or two open-addressing probes (live table,
 * aggregate table) and a few counter updates; nothing is allocated per
 * event. Memory is the live set plus one entry per distinct (stack, site)
 * and per stack/site definition, never a function of trace length. */
#include "engine.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define TIMELINE_POINTS 512u
#define MAX_ADDRS 4u
#define MAX_ERROR_GROUPS 10000u
#define AGG_CACHE_BITS 10u
#define AGG_CACHE (1u << AGG_CACHE_BITS) /* entries in the engine's agg_cache */
#define FREED_CACHE_BITS 12u /* 96 KiB: stays in cache; double frees follow their first free closely */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL) {
		fputs("htr-engine: out of memory\n", stderr);
		exit(3);
	}
	return q;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *q = calloc(n ? n : 1, sz);
	if (q == NULL) {
		fputs("htr-engine: out of memory\n", stderr);
		exit(3);
	}
	return q;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = xrealloc(NULL, n);
	memcpy(d, s, n);
	return d;
}

#define GROW(arr, len, cap)                                                        \
	do {                                                                       \
		if ((len) >= (cap)) {                                              \
			(cap) = (cap) ? (cap) * 2 : 16;                            \
			(arr) = xrealloc((arr), (cap) * sizeof(*(arr)));           \
		}                                                                  \
	} while (0)

/* The per-event path (eng_event and what it calls for an allocation or a
 * free) is a handful of small steps; as separate calls their prologues and
 * reloads of the engine's state cost as much as their work. */
#define HOT static inline __attribute__((always_inline))

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

/* ---- live blocks ------------------------------------------------------ */

/* valground keeps a failed allocation (ptr 0x0) in its table like any
 * block; in compatibility mode it lives in ours under this key, which no
 * allocator returns. */
#define FAILED_KEY UINT64_MAX

/* 32 bytes, two to a cache line: the live table is the engine's one
 * random access per event. */
struct block {
	uint64_t ptr; /* 0: empty slot (failed allocations are never live) */
	uint64_t size;
	uint64_t order; /* engine event number of the allocation */
	uint32_t agg;
	uint32_t seg : 31;
	uint32_t persistent : 1;
};
_Static_assert(sizeof(struct block) == 32, "a live block is half a cache line");

struct live_table {
	struct block *slots;
	size_t mask; /* capacity - 1 */
	size_t count;
	size_t limit; /* the count that makes the table grow before the next put */
	bool mapped; /* slots from map_huge, not malloc */
};

/* A table of 2 MiB or more is mapped in 2 MiB pages where the kernel hands
 * them out on request (transparent huge pages, "madvise"): a free reads
 * the table at random, and with 4 KiB pages such a read missed the TLB
 * too ((d), 65536 slots: 99.9 -> 97.8 ms, min of 25). Mapped, not
 * aligned_alloc'd, so that no alignment slack is mapped, and counted by
 * hand (live_mapped_bytes); zeroed, as fresh mappings are. NULL when the
 * mapping fails. */
#define HUGE_PAGE ((size_t)2 << 20)

static void *map_huge(size_t bytes)
{
	char *p = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	size_t head = (HUGE_PAGE - (uintptr_t)p % HUGE_PAGE) % HUGE_PAGE;
	if (head != 0)
		munmap(p, head);
	munmap(p + head + bytes, HUGE_PAGE - head);
	madvise(p + head, bytes, MADV_HUGEPAGE); /* a hint: 4 KiB pages work too */
	return p + head;
}

static void live_init(struct live_table *t, size_t cap)
{
	size_t bytes = cap * sizeof(*t->slots);
	t->slots = bytes % HUGE_PAGE == 0 ? map_huge(bytes) : NULL;
	t->mapped = t->slots != NULL;
	if (!t->mapped)
		t->slots = xcalloc(cap, sizeof(*t->slots));
	t->mask = cap - 1;
	t->count = 0;
	t->limit = cap / 3;
}

/* What the table's slots take outside malloc's heap. */
static size_t live_mapped_bytes(const struct live_table *t)
{
	return t->mapped ? (t->mask + 1) * sizeof(*t->slots) : 0;
}

static void live_release(struct live_table *t)
{
	if (t->mapped)
		munmap(t->slots, live_mapped_bytes(t));
	else
		free(t->slots);
	t->slots = NULL;
}

/* Keeps neighbours together: blocks allocated close in time sit close in
 * the heap, and k + k/256 puts them in nearby slots, so an allocation and
 * the frees around it touch lines that are already in cache (a scattering
 * hash made each a miss: (d) 116 -> 101 ms, (a) the same). The k/256 term
 * spreads blocks at page-aligned addresses (posix_memalign(4096), mmap'd
 * chunks), which k alone would pile onto one slot in 256 (20k live ones:
 * 32 ms, 63 with k alone; 100k: 72 ms, 131 with the scattering hash); the
 * high bits fold in so that arenas far apart do not overlap. */
static inline size_t live_home(const struct live_table *t, uint64_t ptr)
{
	uint64_t k = ptr >> 4;
	return (size_t)((k + (k >> 8)) ^ (k >> 22) * 0x9E3779B1u) & t->mask;
}

HOT struct block *live_find(struct live_table *t, uint64_t ptr)
{
	size_t i = live_home(t, ptr);
	for (;;) {
		struct block *b = &t->slots[i];
		if (b->ptr == ptr)
			return b;
		if (b->ptr == 0)
			return NULL;
		i = (i + 1) & t->mask;
	}
}

static void live_grow(struct live_table *t);

/* Whether live_put must grow the table first: (count + 1) * 3 > capacity,
 * a comparison with a limit set once ((d): 4 M instructions fewer). */
static inline bool live_full(const struct live_table *t)
{
	return t->count >= t->limit;
}

/* Returns the slot for ptr, filled with ptr; *fresh says whether it was new.
 * The caller has made room (live_full).
 *
 * At most a third full. Whether a block sits in its home slot, and whether
 * the slot after it is empty, are branches no predictor can learn when the
 * live set is large and used at random (a C++ map of strings), and each
 * miss costs about as much as the rest of the event: at the 0.7 this table
 * used to allow, the engine took 25% longer on such a trace. */
HOT struct block *live_put(struct live_table *t, uint64_t ptr, bool *fresh)
{
	size_t i = live_home(t, ptr);
	for (;;) {
		struct block *b = &t->slots[i];
		if (b->ptr == ptr) {
			*fresh = false;
			return b;
		}
		if (b->ptr == 0) {
			b->ptr = ptr;
			t->count++;
			*fresh = true;
			return b;
		}
		i = (i + 1) & t->mask;
	}
}

static void live_grow(struct live_table *t)
{
	struct live_table old = *t;
	struct block *slots = old.slots;
	size_t cap = t->mask + 1;
	live_init(t, cap * 2);
	for (size_t i = 0; i < cap; i++) {
		if (slots[i].ptr) {
			bool fresh;
			struct block *b = live_put(t, slots[i].ptr, &fresh);
			*b = slots[i];
		}
	}
	live_release(&old);
}

/* Backward-shift deletion keeps probe chains intact without tombstones, so
 * a long trace of alloc/free pairs never degrades the table. */
HOT void live_remove(struct live_table *t, struct block *b)
{
	size_t i = (size_t)(b - t->slots);
	size_t j = i;
	for (;;) {
		j = (j + 1) & t->mask;
		if (t->slots[j].ptr == 0)
			break;
		size_t k = live_home(t, t->slots[j].ptr);
		/* Move j back to i unless its home lies cyclically in (i, j]. */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].ptr = 0;
	t->count--;
}

/* ---- definitions: stacks, sites, processes ---------------------------- */

struct process {
	uint64_t pid, ppid, parent_pid;
	bool fork_child;
	int origin;
	size_t input;
	char *exe;
	char **args;
	uint32_t nargs;
	bool has_end;
	uint64_t end_status;
	/* stack id -> offset+1 in the frames arena (0: undefined) */
	size_t *stack_off;
	size_t nstack;
	/* site id -> offset+1 in the string arena, and line */
	size_t *site_off;
	uint32_t *site_line;
	size_t nsite;
	struct module *modules;
	size_t nmodules, capmodules;
	size_t agg_first;
	uint64_t peak_bytes, peak_seq, peak_time, peak_order;
	uint64_t epoch;
	/* The live bytes; the live blocks are at the end, apart: side by
	 * side, GCC's -O3 updates the pair with vector instructions, more of
	 * them than two scalar ones ((d): 8 M instructions fewer). */
	uint64_t cur_bytes;
	uint64_t loss_horizon; /* blocks allocated before this event number may have lost frees */
	uint64_t lost_events;
	bool any_loss;
	bool file_short;
	uint64_t cur_blocks; /* see cur_bytes */
};

struct module {
	char *path;
	uint64_t base, start, end;
	char build_id[2 * HTR_BUILD_ID_MAX + 1];
	bool unloaded;
};

struct agg {
	uint32_t proc, stack, site, pad;
	uint64_t allocations, total_bytes, failed, temporary, max_size;
	uint64_t live_blocks, live_bytes;
	uint64_t at_peak, mod_epoch, proc_peak;
	uint64_t leaked_blocks, leaked_bytes, unknown_blocks, unknown_bytes;
	uint64_t persistent_blocks, persistent_bytes;
	uint64_t addrs[MAX_ADDRS];
	uint32_t naddrs;
};

struct seg_leak {
	uint32_t seg, agg;
	uint32_t next; /* 1 + index of the segment's next group, 0: last */
	uint64_t blocks, bytes, unknown_blocks, unknown_bytes, persistent_blocks, persistent_bytes;
	uint64_t addrs[MAX_ADDRS];
	uint32_t naddrs;
};

struct segment {
	char *name;
	int kind; /* 0 start, 1 test, 2 marker, 3 init */
	uint32_t proc;
	uint64_t allocations, frees, total_bytes, peak_bytes, failed, free_errors, lost_events;
	uint64_t heap_base, heap_size;
	uint64_t start_seq;
	uint32_t leak_groups; /* seg_leak entries that name this segment */
	uint32_t first_leak;  /* 1 + index of its first seg_leak; chained by next */
};

struct free_error {
	int kind;
	uint32_t proc, seg;
	uint32_t stack, site, alloc_stack, alloc_site, free_stack, free_site;
	uint8_t call, alloc_call;
	uint64_t ptr, size, count, offset, seq;
};

struct input {
	char *path;
	char *format;
	uint32_t proc;
	bool complete;
	bool no_exit;
	char *stop_reason;
	uint64_t stop_offset;
	bool has_stop;
	uint64_t lost_events;
	uint64_t events;
	char *bad_reason;
	uint64_t bad_offset;
	uint64_t bad_count;
};

struct freed_slot {
	uint64_t ptr;
	uint32_t proc, free_stack, free_site, agg;
};

struct tl_point {
	uint64_t order, seq, time_ns, bytes;
};

struct engine {
	struct live_table live;
	struct agg *aggs;
	size_t naggs, capaggs;
	uint32_t *agg_index; /* open addressing: agg number + 1, 0 empty */
	size_t agg_mask;

	uint64_t *frames; /* arena: depth, then frames */
	size_t nframes, capframes;
	char *strings;
	size_t nstrings, capstrings;

	struct process *procs;
	size_t nprocs, capprocs;
	struct input *inputs;
	size_t ninputs, capinputs;
	struct segment *segs;
	size_t nsegs, capsegs;
	uint32_t cur_seg;
	struct segment *seg; /* &segs[cur_seg], a load where the index took four ((d): 16 M fewer) */

	struct seg_leak *leaks;
	size_t nleaks, capleaks;
	uint32_t *leak_index;
	size_t leak_mask;

	struct free_error *errs;
	size_t nerrs, caperrs;
	uint64_t errs_dropped, total_errors;

	struct freed_slot *freed;
	/* Most allocations come from a few hot (stack, site) pairs: a small
	 * direct-mapped cache saves the hash probe into the big table. */
	struct agg_cached {
		uint64_t key; /* agg_key */
		uint32_t agg;
	} agg_cache[AGG_CACHE];

	/* the current process */
	struct process *p;
	uint32_t pi;
	uint64_t order; /* events seen, all inputs */
	uint64_t input_first_order; /* order when the current input began */
	uint64_t last_seq, last_time;
	uint64_t last_alloc_ptr;
	uint32_t last_alloc_agg;
	bool vg_compat;
	char *test_name; /* the last pytest test id: the next heap's name */
	size_t mem_hwm;  /* heap in use just before the live table last shrank */

	/* totals */
	uint64_t allocations, frees, reallocs, failed, total_bytes, temporary;
	uint64_t unmatched_frees, persist_marks;
	uint64_t hist[65];

	/* heap statistics (board) */
	bool have_heap, have_check;
	uint64_t heap_base, heap_size, heap_peak_used;
	struct htr_heap_stats check;
	uint64_t checks, check_mismatches;
	uint64_t min_free_seen;

	/* timeline: TIMELINE_POINTS buckets of `tl_width` events each */
	struct tl_point tl[TIMELINE_POINTS];
	size_t ntl;
	uint64_t tl_width;
	uint64_t tl_left; /* notes the last bucket takes yet; 0: the next one starts a bucket */
};

struct engine *eng_new(void)
{
	struct engine *e = xcalloc(1, sizeof(*e));
	live_init(&e->live, 1u << 12);
	e->agg_mask = (1u << 10) - 1;
	e->agg_index = xcalloc(e->agg_mask + 1, sizeof(uint32_t));
	e->leak_mask = (1u << 8) - 1;
	e->leak_index = xcalloc(e->leak_mask + 1, sizeof(uint32_t));
	e->freed = xcalloc((size_t)1 << FREED_CACHE_BITS, sizeof(*e->freed));
	e->tl_width = 1;
	e->min_free_seen = UINT64_MAX;
	return e;
}

/* Everything is freed, although the process exits right after: the
 * sanitizer build checks the engine for leaks, and a leak it has to ignore
 * would hide one that matters. */
void eng_free(struct engine *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->nprocs; i++) {
		struct process *p = &e->procs[i];
		free(p->exe);
		for (uint32_t a = 0; a < p->nargs; a++)
			free(p->args[a]);
		free(p->args);
		free(p->stack_off);
		free(p->site_off);
		free(p->site_line);
		for (size_t m = 0; m < p->nmodules; m++)
			free(p->modules[m].path);
		free(p->modules);
	}
	free(e->procs);
	for (size_t i = 0; i < e->ninputs; i++) {
		free(e->inputs[i].path);
		free(e->inputs[i].format);
		free(e->inputs[i].stop_reason);
		free(e->inputs[i].bad_reason);
	}
	free(e->inputs);
	for (size_t i = 0; i < e->nsegs; i++)
		free(e->segs[i].name);
	free(e->segs);
	live_release(&e->live);
	free(e->aggs);
	free(e->agg_index);
	free(e->frames);
	free(e->strings);
	free(e->leaks);
	free(e->leak_index);
	free(e->errs);
	free(e->freed);
	free(e->test_name);
	free(e);
}

static size_t add_string(struct engine *e, const char *s)
{
	size_t n = strlen(s) + 1;
	while (e->nstrings + n > e->capstrings) {
		e->capstrings = e->capstrings ? e->capstrings * 2 : 4096;
		e->strings = xrealloc(e->strings, e->capstrings);
	}
	memcpy(e->strings + e->nstrings, s, n);
	e->nstrings += n;
	return e->nstrings - n;
}

/* ---- aggregates ------------------------------------------------------- */

static uint64_t agg_hash(uint32_t proc, uint32_t stack, uint32_t site)
{
	return mix64(((uint64_t)stack << 32 | site) ^ ((uint64_t)proc * 0x9e3779b97f4a7c15ULL));
}

static void agg_rehash(struct engine *e)
{
	size_t cap = (e->agg_mask + 1) * 2;
	free(e->agg_index);
	e->agg_index = xcalloc(cap, sizeof(uint32_t));
	e->agg_mask = cap - 1;
	for (size_t n = 0; n < e->naggs; n++) {
		struct agg *a = &e->aggs[n];
		size_t i = (size_t)agg_hash(a->proc, a->stack, a->site) & e->agg_mask;
		while (e->agg_index[i])
			i = (i + 1) & e->agg_mask;
		e->agg_index[i] = (uint32_t)n + 1;
	}
}

static uint32_t agg_get(struct engine *e, uint32_t stack, uint32_t site)
{
	size_t i = (size_t)agg_hash(e->pi, stack, site) & e->agg_mask;
	for (;;) {
		uint32_t v = e->agg_index[i];
		if (v == 0)
			break;
		struct agg *a = &e->aggs[v - 1];
		if (a->stack == stack && a->site == site && a->proc == e->pi)
			return v - 1;
		i = (i + 1) & e->agg_mask;
	}
	GROW(e->aggs, e->naggs, e->capaggs);
	struct agg *a = &e->aggs[e->naggs];
	memset(a, 0, sizeof(*a));
	a->proc = e->pi;
	a->stack = stack;
	a->site = site;
	a->mod_epoch = e->p->epoch;
	e->agg_index[i] = (uint32_t)e->naggs + 1;
	e->naggs++;
	if (e->naggs * 10 > (e->agg_mask + 1) * 7)
		agg_rehash(e);
	return (uint32_t)e->naggs - 1;
}

static inline uint64_t agg_key(uint32_t stack, uint32_t site)
{
	return (uint64_t)site << 32 | stack;
}

/* From the key, which is one load: a multiplication and a shift, where
 * stack * 31 + site took more ((d): 6 M instructions fewer). */
static inline size_t agg_cache_slot(uint64_t key)
{
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - AGG_CACHE_BITS));
}

/* An empty entry holds a key that belongs to another slot, which no lookup
 * of its own slot matches: one comparison per lookup, where a flag took
 * another ((d): 8 M instructions fewer). */
static void agg_cache_clear(struct engine *e)
{
	for (uint32_t i = 0; i < AGG_CACHE; i++)
		for (uint32_t site = 1;; site++) {
			e->agg_cache[i].key = agg_key(0, site);
			if (agg_cache_slot(e->agg_cache[i].key) != i)
				break;
		}
}

/* Lazy peak snapshot: an aggregate's bytes at the process's latest peak are
 * its current bytes unless it changed since; so it saves them just before
 * its first change after a new peak. O(1) per event. */
static inline void agg_touch(struct engine *e, struct agg *a)
{
	if (a->mod_epoch != e->p->epoch) {
		a->at_peak = a->live_bytes;
		a->mod_epoch = e->p->epoch;
	}
}

/* ---- timeline --------------------------------------------------------- */

/* rise: the event may have raised the live bytes. A free only lowers them,
 * so it cannot raise its bucket's maximum, only start a bucket; and a
 * count of the notes left in a bucket is one test where the count of those
 * taken was two ((d): eng_event 537 -> 515 M instructions). */
HOT void timeline_note(struct engine *e, bool rise)
{
	uint64_t bytes = e->p->cur_bytes;
	if (e->tl_left == 0) {
		if (e->ntl == TIMELINE_POINTS) {
			/* Full: merge neighbours, keeping each pair's maximum. */
			for (size_t i = 0; i < TIMELINE_POINTS / 2; i++) {
				struct tl_point a = e->tl[2 * i], b = e->tl[2 * i + 1];
				e->tl[i] = a.bytes > b.bytes ? a : b;
			}
			e->ntl = TIMELINE_POINTS / 2;
			e->tl_width *= 2;
		}
		e->tl[e->ntl++] = (struct tl_point){e->order, e->last_seq, e->last_time, bytes};
		e->tl_left = e->tl_width;
	} else if (rise) {
		struct tl_point *t = &e->tl[e->ntl - 1];
		if (bytes > t->bytes)
			*t = (struct tl_point){e->order, e->last_seq, e->last_time, bytes};
	}
	e->tl_left--;
}

/* ---- segments --------------------------------------------------------- */

static void seg_new(struct engine *e, const char *name, int kind)
{
	GROW(e->segs, e->nsegs, e->capsegs);
	struct segment *s = &e->segs[e->nsegs];
	memset(s, 0, sizeof(*s));
	s->name = xstrdup(name);
	s->kind = kind;
	s->proc = e->pi;
	s->peak_bytes = e->p ? e->p->cur_bytes : 0;
	s->start_seq = e->last_seq;
	if (e->have_heap) {
		s->heap_base = e->heap_base;
		s->heap_size = e->heap_size;
	}
	e->cur_seg = (uint32_t)e->nsegs;
	e->seg = s;
	e->nsegs++;
}

static struct seg_leak *seg_leak_get(struct engine *e, uint32_t seg, uint32_t agg)
{
	if ((e->nleaks + 1) * 10 > (e->leak_mask + 1) * 7) {
		size_t cap = (e->leak_mask + 1) * 2;
		free(e->leak_index);
		e->leak_index = xcalloc(cap, sizeof(uint32_t));
		e->leak_mask = cap - 1;
		for (size_t n = 0; n < e->nleaks; n++) {
			size_t i = (size_t)mix64((uint64_t)e->leaks[n].seg << 32 | e->leaks[n].agg) & e->leak_mask;
			while (e->leak_index[i])
				i = (i + 1) & e->leak_mask;
			e->leak_index[i] = (uint32_t)n + 1;
		}
	}
	size_t i = (size_t)mix64((uint64_t)seg << 32 | agg) & e->leak_mask;
	for (;;) {
		uint32_t v = e->leak_index[i];
		if (v == 0)
			break;
		if (e->leaks[v - 1].seg == seg && e->leaks[v - 1].agg == agg)
			return &e->leaks[v - 1];
		i = (i + 1) & e->leak_mask;
	}
	GROW(e->leaks, e->nleaks, e->capleaks);
	struct seg_leak *l = &e->leaks[e->nleaks];
	memset(l, 0, sizeof(*l));
	l->seg = seg;
	l->agg = agg;
	l->next = e->segs[seg].first_leak;
	e->segs[seg].first_leak = (uint32_t)e->nleaks + 1;
	e->segs[seg].leak_groups++;
	e->leak_index[i] = (uint32_t)e->nleaks + 1;
	e->nleaks++;
	return l;
}

static bool seg_has_leaks(struct engine *e, uint32_t seg)
{
	return e->segs[seg].leak_groups != 0;
}

/* ---- block life ------------------------------------------------------- */

static inline void hist_add(struct engine *e, uint64_t size)
{
	e->hist[size ? 64 - __builtin_clzll(size) : 0]++;
}

HOT void count_alloc(struct engine *e, uint32_t agg, uint64_t size, bool failed)
{
	struct agg *a = &e->aggs[agg];
	struct segment *s = e->seg;
	a->allocations++;
	a->total_bytes += size;
	if (size > a->max_size)
		a->max_size = size;
	e->allocations++;
	e->total_bytes += size;
	s->allocations++;
	s->total_bytes += size;
	hist_add(e, size);
	if (failed) {
		a->failed++;
		e->failed++;
		s->failed++;
	}
}

/* block_start with room in the live table made. */
HOT void block_place(struct engine *e, uint64_t ptr, uint64_t size, uint32_t agg)
{
	struct process *p = e->p;
	bool fresh;
	struct block *b = live_put(&e->live, ptr, &fresh);
	if (!fresh) {
		/* The free of the old block was not seen (lost, or allocated
		 * before tracing and handed out again): end it quietly. */
		struct agg *o = &e->aggs[b->agg];
		agg_touch(e, o);
		o->live_blocks--;
		o->live_bytes -= b->size;
		p->cur_bytes -= b->size;
		p->cur_blocks--;
	}
	b->size = size;
	b->order = e->order;
	b->agg = agg;
	b->seg = e->cur_seg;
	b->persistent = 0;
	struct agg *a = &e->aggs[agg];
	agg_touch(e, a);
	a->live_blocks++;
	a->live_bytes += size;
	p->cur_bytes += size;
	p->cur_blocks++;
	struct segment *s = e->seg;
	if (p->cur_bytes > s->peak_bytes)
		s->peak_bytes = p->cur_bytes;
	if (p->cur_bytes > p->peak_bytes) {
		p->peak_bytes = p->cur_bytes;
		p->peak_seq = e->last_seq;
		p->peak_time = e->last_time;
		p->peak_order = e->order;
		p->epoch++;
	}
	e->last_alloc_ptr = ptr;
	e->last_alloc_agg = agg;
	if (p->origin != HTR_ORIGIN_HOST) {
		struct freed_slot *f = &e->freed[mix64(ptr) & (((size_t)1 << FREED_CACHE_BITS) - 1)];
		if (f->ptr == ptr)
			f->ptr = 0;
	}
}

static void block_start(struct engine *e, uint64_t ptr, uint64_t size, uint32_t agg)
{
	if (live_full(&e->live))
		live_grow(&e->live);
	block_place(e, ptr, size, agg);
}

HOT void block_end(struct engine *e, struct block *b, bool temporary_check)
{
	struct process *p = e->p;
	struct agg *a = &e->aggs[b->agg];
	agg_touch(e, a);
	a->live_blocks--;
	a->live_bytes -= b->size;
	p->cur_bytes -= b->size;
	p->cur_blocks--;
	if (temporary_check && b->ptr == e->last_alloc_ptr) {
		a->temporary++;
		e->temporary++;
	}
	live_remove(&e->live, b);
}

HOT void remember_free(struct engine *e, uint64_t ptr, uint32_t agg, uint32_t stack, uint32_t site)
{
	/* Host traces carry the recorder's verdicts with all their stacks;
	 * only logs that the engine judges itself need the cache. */
	if (e->p->origin == HTR_ORIGIN_HOST)
		return;
	struct freed_slot *f = &e->freed[mix64(ptr) & (((size_t)1 << FREED_CACHE_BITS) - 1)];
	f->ptr = ptr;
	f->proc = e->pi;
	f->agg = agg;
	f->free_stack = stack;
	f->free_site = site;
}

static void add_error(struct engine *e, const struct free_error *fe)
{
	e->total_errors++;
	e->seg->free_errors++;
	for (size_t i = e->nerrs; i-- > 0;) {
		struct free_error *o = &e->errs[i];
		if (o->kind == fe->kind && o->proc == fe->proc && o->seg == fe->seg && o->stack == fe->stack &&
		    o->site == fe->site && o->alloc_stack == fe->alloc_stack && o->alloc_site == fe->alloc_site &&
		    o->free_stack == fe->free_stack && o->free_site == fe->free_site) {
			o->count++;
			return;
		}
		if (e->nerrs - i > 64)
			break; /* only near neighbours are merged: keeps this O(1) */
	}
	if (e->nerrs >= MAX_ERROR_GROUPS) {
		e->errs_dropped++;
		return;
	}
	GROW(e->errs, e->nerrs, e->caperrs);
	e->errs[e->nerrs] = *fe;
	e->errs[e->nerrs].count = 1;
	e->nerrs++;
}

/* A free the input itself did not judge (text logs): decide like valground,
 * but never blame a pointer whose allocation may have been lost. */
static void judge_unknown_free(struct engine *e, const struct htr_event *ev)
{
	if (ev->ptr == 0)
		return; /* free(NULL) is allowed */
	if (e->p->any_loss) {
		e->unmatched_frees++;
		return;
	}
	struct free_error fe = {0};
	fe.proc = e->pi;
	fe.seg = e->cur_seg;
	fe.stack = ev->stack;
	fe.site = ev->site;
	fe.ptr = ev->ptr == FAILED_KEY ? 0 : ev->ptr;
	fe.offset = ev->offset;
	fe.seq = ev->seq;
	fe.call = ev->call;
	struct freed_slot *f = &e->freed[mix64(ev->ptr) & (((size_t)1 << FREED_CACHE_BITS) - 1)];
	if (f->ptr == ev->ptr && f->proc == e->pi) {
		fe.kind = HTR_MISUSE_DOUBLE_FREE;
		fe.alloc_stack = e->aggs[f->agg].stack;
		fe.alloc_site = e->aggs[f->agg].site;
		fe.free_stack = f->free_stack;
		fe.free_site = f->free_site;
	} else {
		fe.kind = HTR_MISUSE_INVALID_FREE;
	}
	add_error(e, &fe);
}

static int by_order(const void *x, const void *y)
{
	const struct block *a = *(const struct block *const *)x, *b = *(const struct block *const *)y;
	return (a->order > b->order) - (a->order < b->order);
}

/* Ends every live block: at a heap init or the end of a process. A block
 * whose free may lie in lost data is "unknown", not a leak.
 *
 * Blocks are taken in the order they were allocated, not in the table's:
 * the addresses an aggregate shows are then its first MAX_ADDRS leaks, and
 * the order of leak groups follows the input, whatever the table's size. */
static void account_live(struct engine *e, bool all_unknown, bool shrink)
{
	struct live_table *t = &e->live;
	struct block **live = xrealloc(NULL, t->count * sizeof(*live));
	size_t n = 0;
	for (size_t i = 0; i <= t->mask; i++)
		if (t->slots[i].ptr != 0)
			live[n++] = &t->slots[i];
	qsort(live, n, sizeof(*live), by_order);
	for (size_t i = 0; i < n; i++) {
		struct block *b = live[i];
		struct agg *a = &e->aggs[b->agg];
		struct seg_leak *l = seg_leak_get(e, b->seg, b->agg);
		if (b->persistent) {
			a->persistent_blocks++;
			a->persistent_bytes += b->size;
			l->persistent_blocks++;
			l->persistent_bytes += b->size;
		} else if (all_unknown || b->order < e->p->loss_horizon) {
			a->unknown_blocks++;
			a->unknown_bytes += b->size;
			l->unknown_blocks++;
			l->unknown_bytes += b->size;
		} else {
			a->leaked_blocks++;
			a->leaked_bytes += b->size;
			uint64_t shown = b->ptr == FAILED_KEY ? 0 : b->ptr;
			if (a->naddrs < MAX_ADDRS)
				a->addrs[a->naddrs++] = shown;
			l->blocks++;
			l->bytes += b->size;
			if (l->naddrs < MAX_ADDRS)
				l->addrs[l->naddrs++] = shown;
		}
		agg_touch(e, a);
		a->live_blocks--;
		a->live_bytes -= b->size;
		b->ptr = 0;
	}
	free(live);
	t->count = 0;
	if (shrink && t->mask + 1 > (1u << 12)) {
		/* Walking a big empty table at every later heap init would
		 * cost its size each time: start small again. */
		struct mallinfo2 mi = mallinfo2();
		size_t now = mi.uordblks + mi.hblkhd + live_mapped_bytes(t);
		if (now > e->mem_hwm)
			e->mem_hwm = now;
		live_release(t);
		live_init(t, 1u << 12);
	}
	e->p->cur_bytes = 0;
	e->p->cur_blocks = 0;
	e->last_alloc_ptr = 0;
}

/* ---- inputs ----------------------------------------------------------- */

void eng_begin_input(struct engine *e, const char *path, const char *format, int origin)
{
	GROW(e->inputs, e->ninputs, e->capinputs);
	struct input *in = &e->inputs[e->ninputs];
	memset(in, 0, sizeof(*in));
	in->path = xstrdup(path);
	in->format = xstrdup(format);
	in->complete = true;
	in->proc = (uint32_t)e->nprocs;
	e->ninputs++;

	GROW(e->procs, e->nprocs, e->capprocs);
	struct process *p = &e->procs[e->nprocs];
	memset(p, 0, sizeof(*p));
	p->origin = origin;
	p->input = e->ninputs - 1;
	p->agg_first = e->naggs;
	e->pi = (uint32_t)e->nprocs;
	e->nprocs++;
	e->p = p;
	e->last_seq = 0;
	e->last_time = 0;
	e->last_alloc_ptr = 0;
	e->have_heap = false;
	e->input_first_order = e->order;
	free(e->test_name);
	e->test_name = NULL;
	e->vg_compat = false;
	agg_cache_clear(e);
	seg_new(e, "", 0);
}

void eng_set_format(struct engine *e, const char *format)
{
	struct input *in = &e->inputs[e->ninputs - 1];
	free(in->format);
	in->format = xstrdup(format);
	/* Caller PCs in board lines are Thumb addresses in the firmware. */
	if (strcmp(format, "board-text") == 0)
		e->p->origin = HTR_ORIGIN_BOARD;
}

void eng_set_valground_compat(struct engine *e, bool on)
{
	e->vg_compat = on;
}

void eng_set_process(struct engine *e, uint64_t pid, uint64_t ppid, uint64_t parent_pid, bool fork_child)
{
	e->p->pid = pid;
	e->p->ppid = ppid;
	e->p->parent_pid = parent_pid;
	e->p->fork_child = fork_child;
}

void eng_end_input(struct engine *e)
{
	struct process *p = e->p;
	struct input *in = &e->inputs[e->ninputs - 1];
	in->events = e->order - e->input_first_order;
	account_live(e, p->file_short, false);
	for (size_t n = p->agg_first; n < e->naggs; n++) {
		struct agg *a = &e->aggs[n];
		a->proc_peak = a->mod_epoch == p->epoch ? a->at_peak : a->live_bytes;
	}
	in->lost_events = p->lost_events;
}

/* ---- the sink ----------------------------------------------------------- */

/* The agg_cache entry of an allocation's (stack, site), when it holds them;
 * else NULL, and *slot is the entry to fill. */
HOT struct agg_cached *agg_cache_find(struct engine *e, const struct htr_event *ev, struct agg_cached **slot)
{
	uint64_t key = agg_key(ev->stack, ev->site);
	struct agg_cached *c = &e->agg_cache[agg_cache_slot(key)];
	*slot = c;
	return c->key == key ? c : NULL;
}

static uint32_t alloc_agg(struct engine *e, const struct htr_event *ev)
{
	struct agg_cached *c;
	if (agg_cache_find(e, ev, &c) != NULL)
		return c->agg;
	uint32_t agg = agg_get(e, ev->stack, ev->site);
	*c = (struct agg_cached){agg_key(ev->stack, ev->site), agg};
	return agg;
}

/* valground adds a failed allocation to its table under 0x0 and to its
 * running total; a second one replaces the table entry but its bytes stay
 * counted until the heap ends. */
static void vg_failed_alloc(struct engine *e, uint64_t size, uint32_t agg)
{
	struct block *old = live_find(&e->live, FAILED_KEY);
	if (old) {
		struct agg *o = &e->aggs[old->agg];
		agg_touch(e, o);
		o->live_blocks--;
		o->live_bytes -= old->size;
		/* p->cur_bytes keeps the old bytes, as valground's total does */
		e->p->cur_blocks--;
		live_remove(&e->live, old);
	}
	block_start(e, FAILED_KEY, size, agg);
	e->last_alloc_ptr = 0;
}

static void on_alloc(struct engine *e, const struct htr_event *ev)
{
	uint32_t agg = alloc_agg(e, ev);
	count_alloc(e, agg, ev->size, ev->ptr == 0);
	if (ev->ptr != 0)
		block_start(e, ev->ptr, ev->size, agg);
	else if (e->vg_compat)
		vg_failed_alloc(e, ev->size, agg);
	timeline_note(e, true);
}

/* A free of a live block (key: the block's, FAILED_KEY for valground's
 * failed allocation). */
HOT void free_found(struct engine *e, struct block *b, uint64_t key, const struct htr_event *ev)
{
	e->frees++;
	e->seg->frees++;
	uint32_t agg = b->agg;
	block_end(e, b, true);
	e->last_alloc_ptr = 0;
	remember_free(e, key, agg, ev->stack, ev->site);
	timeline_note(e, false);
}

static void on_free(struct engine *e, const struct htr_event *ev)
{
	uint64_t key = ev->ptr == 0 && e->vg_compat ? FAILED_KEY : ev->ptr;
	struct block *b = key ? live_find(&e->live, key) : NULL;
	if (b == NULL && key == FAILED_KEY) {
		/* valground: a free of 0x0 with no failed allocation to match
		 * is a free of something never allocated. */
		struct htr_event bad = *ev;
		bad.ptr = FAILED_KEY;
		judge_unknown_free(e, &bad);
		return;
	}
	if (b == NULL) {
		if (e->p->origin == HTR_ORIGIN_HOST) {
			/* Allocated before tracing or inherited over fork: the
			 * recorder's MISUSE records are the errors. */
			if (ev->ptr)
				e->unmatched_frees++;
		} else {
			judge_unknown_free(e, ev);
		}
		return;
	}
	free_found(e, b, key, ev);
}

static void on_realloc(struct engine *e, const struct htr_event *ev)
{
	e->reallocs++;
	if (ev->ptr == 0) {
		on_alloc(e, &(struct htr_event){.ptr = ev->ptr2, .size = ev->size, .stack = ev->stack,
						.site = ev->site});
		return;
	}
	if (ev->ptr2 == 0 && ev->size != 0) {
		/* Failed: the old block stays as it was. */
		count_alloc(e, alloc_agg(e, ev), ev->size, true);
		return;
	}
	struct block *b = live_find(&e->live, ev->ptr);
	bool was_persistent = false;
	if (b) {
		was_persistent = b->persistent;
		e->frees++;
		e->seg->frees++;
		uint32_t agg = b->agg;
		block_end(e, b, false);
		remember_free(e, ev->ptr, agg, ev->stack, ev->site);
	} else if (e->p->origin != HTR_ORIGIN_HOST) {
		judge_unknown_free(e, ev);
	}
	if (ev->ptr2 != 0) {
		uint32_t agg = alloc_agg(e, ev);
		count_alloc(e, agg, ev->size, false);
		block_start(e, ev->ptr2, ev->size, agg);
		if (was_persistent) {
			struct block *nb = live_find(&e->live, ev->ptr2);
			nb->persistent = 1;
		}
	}
	timeline_note(e, true);
}

static void on_misuse(struct engine *e, const struct htr_event *ev)
{
	struct free_error fe = {0};
	fe.kind = ev->kind;
	fe.proc = e->pi;
	fe.seg = e->cur_seg;
	fe.stack = ev->stack;
	fe.site = ev->site;
	fe.alloc_stack = ev->alloc_stack;
	fe.alloc_site = ev->alloc_site;
	fe.free_stack = ev->free_stack;
	fe.free_site = ev->free_site;
	fe.call = ev->call;
	fe.alloc_call = ev->alloc_call;
	fe.ptr = ev->ptr;
	fe.size = ev->size;
	fe.offset = ev->offset;
	fe.seq = ev->seq;
	struct block *b = ev->ptr ? live_find(&e->live, ev->ptr) : NULL;
	if (b && fe.alloc_stack == 0 && fe.alloc_site == 0) {
		fe.alloc_stack = e->aggs[b->agg].stack;
		fe.alloc_site = e->aggs[b->agg].site;
	}
	if (b && fe.size == 0)
		fe.size = b->size;
	if (fe.kind == HTR_MISUSE_DOUBLE_FREE && fe.free_stack == 0 && fe.free_site == 0) {
		struct freed_slot *f = &e->freed[mix64(ev->ptr) & (((size_t)1 << FREED_CACHE_BITS) - 1)];
		if (f->ptr == ev->ptr && f->proc == e->pi) {
			fe.free_stack = f->free_stack;
			fe.free_site = f->free_site;
			if (fe.alloc_stack == 0 && fe.alloc_site == 0) {
				fe.alloc_stack = e->aggs[f->agg].stack;
				fe.alloc_site = e->aggs[f->agg].site;
			}
		}
	}
	add_error(e, &fe);
	/* A mismatched free still frees the block (the program meant it). */
	if (ev->kind == HTR_MISUSE_MISMATCH && b) {
		e->frees++;
		e->seg->frees++;
		uint32_t agg = b->agg;
		block_end(e, b, false);
		remember_free(e, ev->ptr, agg, ev->stack, ev->site);
	}
}

static void def_stack(struct engine *e, const struct htr_event *ev)
{
	struct process *p = e->p;
	if (ev->id == 0)
		return;
	if (ev->id >= p->nstack) {
		size_t n = p->nstack ? p->nstack : 64;
		while (n <= ev->id)
			n *= 2;
		p->stack_off = xrealloc(p->stack_off, n * sizeof(size_t));
		memset(p->stack_off + p->nstack, 0, (n - p->nstack) * sizeof(size_t));
		p->nstack = n;
	}
	if (p->stack_off[ev->id])
		return;
	while (e->nframes + ev->depth + 1 > e->capframes) {
		e->capframes = e->capframes ? e->capframes * 2 : 4096;
		e->frames = xrealloc(e->frames, e->capframes * sizeof(uint64_t));
	}
	e->frames[e->nframes] = ev->depth;
	if (ev->depth)
		memcpy(&e->frames[e->nframes + 1], ev->frames, ev->depth * sizeof(uint64_t));
	p->stack_off[ev->id] = e->nframes + 1;
	e->nframes += ev->depth + 1;
}

static void def_site(struct engine *e, const struct htr_event *ev)
{
	struct process *p = e->p;
	if (ev->id == 0)
		return;
	if (ev->id >= p->nsite) {
		size_t n = p->nsite ? p->nsite : 64;
		while (n <= ev->id)
			n *= 2;
		p->site_off = xrealloc(p->site_off, n * sizeof(size_t));
		p->site_line = xrealloc(p->site_line, n * sizeof(uint32_t));
		memset(p->site_off + p->nsite, 0, (n - p->nsite) * sizeof(size_t));
		p->nsite = n;
	}
	if (p->site_off[ev->id])
		return;
	p->site_off[ev->id] = add_string(e, ev->text ? ev->text : "") + 1;
	p->site_line[ev->id] = ev->line;
}

static void on_module(struct engine *e, const struct htr_event *ev)
{
	struct process *p = e->p;
	if (ev->kind == HTR_MODULE_UNLOAD) {
		for (size_t i = p->nmodules; i-- > 0;) {
			if (p->modules[i].base == ev->base && !p->modules[i].unloaded) {
				p->modules[i].unloaded = true;
				break;
			}
		}
		return;
	}
	GROW(p->modules, p->nmodules, p->capmodules);
	struct module *m = &p->modules[p->nmodules++];
	memset(m, 0, sizeof(*m));
	m->path = xstrdup(ev->text ? ev->text : "");
	m->base = ev->base;
	m->start = ev->start;
	m->end = ev->end;
	for (uint32_t i = 0; i < ev->build_id_size && i < HTR_BUILD_ID_MAX; i++)
		snprintf(m->build_id + 2 * i, 3, "%02x", ev->build_id[i]);
}

static void on_loss(struct engine *e, uint64_t count)
{
	struct process *p = e->p;
	p->lost_events += count;
	p->any_loss = true;
	p->loss_horizon = e->order;
	e->seg->lost_events += count;
}

static void on_checkpoint(struct engine *e, const struct htr_event *ev)
{
	const struct htr_heap_stats *s = ev->stats;
	if (s == NULL)
		return;
	e->checks++;
	e->check = *s;
	e->have_check = true;
	if (s->heap_size) {
		e->have_heap = true;
		e->heap_size = s->heap_size;
	}
	if (s->min_free_bytes && s->min_free_bytes < e->min_free_seen)
		e->min_free_seen = s->min_free_bytes;
	if (s->live_blocks == e->p->cur_blocks && s->used_bytes == e->p->cur_bytes) {
		/* The target agrees with our live set: whatever was lost
		 * before did not change it, so blocks older than the loss
		 * are judged normally again. */
		e->p->loss_horizon = 0;
	} else {
		e->check_mismatches++;
	}
}

/* Any event; out of line, see eng_event. */
static __attribute__((noinline)) int on_event(struct engine *e, const struct htr_event *ev)
{
	switch (ev->type) {
	case HTR_EV_ALLOC:
		on_alloc(e, ev);
		break;
	case HTR_EV_FREE:
		on_free(e, ev);
		break;
	case HTR_EV_REALLOC:
		on_realloc(e, ev);
		break;
	case HTR_EV_MISUSE:
		on_misuse(e, ev);
		break;
	case HTR_EV_PERSIST: {
		struct block *b = live_find(&e->live, ev->ptr);
		e->persist_marks++;
		if (b)
			b->persistent = 1;
		break;
	}
	case HTR_EV_MARKER:
		if (ev->kind == ENG_MARK_TEST) {
			/* valground: a test id names the heap its next init
			 * starts; it does not end the current one. */
			free(e->test_name);
			e->test_name = xstrdup(ev->text ? ev->text : "");
			break;
		}
		seg_new(e, ev->text ? ev->text : "", 2);
		break;
	case HTR_EV_HEAP_INIT: {
		account_live(e, false, true);
		struct segment *cur = e->seg;
		e->have_heap = true;
		e->heap_base = ev->ptr;
		e->heap_size = ev->size;
		if (cur->allocations == 0 && cur->frees == 0 && cur->free_errors == 0 && cur->lost_events == 0 &&
		    !seg_has_leaks(e, e->cur_seg)) {
			/* Nothing happened since the test began (or the input
			 * started): the new heap belongs to that segment. */
			cur->heap_base = ev->ptr;
			cur->heap_size = ev->size;
			cur->peak_bytes = 0;
			if (e->test_name && cur->kind != 2) {
				free(cur->name);
				cur->name = xstrdup(e->test_name);
			}
			if (cur->kind == 0)
				cur->kind = 3;
		} else {
			char *keep = xstrdup(e->test_name ? e->test_name : cur->name);
			seg_new(e, keep, 3);
			free(keep);
		}
		/* The old heap's losses do not reach into the new one. */
		e->p->loss_horizon = 0;
		e->p->any_loss = false;
		break;
	}
	case HTR_EV_CHECKPOINT:
		on_checkpoint(e, ev);
		break;
	case HTR_EV_LOSS:
		on_loss(e, ev->count);
		break;
	case HTR_EV_STACK:
		def_stack(e, ev);
		break;
	case HTR_EV_SITE:
		def_site(e, ev);
		break;
	case HTR_EV_MODULE:
		on_module(e, ev);
		break;
	case HTR_EV_PROCESS: {
		struct process *p = e->p;
		/* The reader puts the pid in tid (and ptr), the ppid in ptr2. */
		if (ev->tid)
			p->pid = ev->tid;
		if (ev->ptr2)
			p->ppid = ev->ptr2;
		free(p->exe);
		p->exe = xstrdup(ev->text ? ev->text : "");
		const char *a = ev->args;
		for (uint32_t i = 0; a && i < ev->argc; i++) {
			p->args = xrealloc(p->args, (p->nargs + 1) * sizeof(char *));
			p->args[p->nargs++] = xstrdup(a);
			a += strlen(a) + 1;
		}
		break;
	}
	case HTR_EV_END:
		e->p->has_end = true;
		e->p->end_status = ev->size;
		break;
	case HTR_EV_TRUNCATED: {
		struct input *in = &e->inputs[e->ninputs - 1];
		if (ev->kind == HTR_TRUNC_NO_EXIT) {
			in->no_exit = true;
			if (in->has_stop)
				break;
		} else {
			in->complete = false;
			e->p->file_short = true;
		}
		in->has_stop = true;
		in->stop_offset = ev->offset;
		free(in->stop_reason);
		in->stop_reason = xstrdup(ev->text ? ev->text : "input ends early");
		break;
	}
	case HTR_EV_BAD_INPUT: {
		struct input *in = &e->inputs[e->ninputs - 1];
		if (in->bad_count++ == 0) {
			in->bad_offset = ev->offset;
			in->bad_reason = xstrdup(ev->text ? ev->text : "corrupt data");
		}
		break;
	}
	default:
		break; /* THREAD, FORK, TIME carry nothing the results need */
	}
	return 0;
}

/* An allocation whose aggregate the cache knows, of a block, with room in
 * the live table, is what nearly every allocation is; others go to
 * on_event. */
static __attribute__((noinline)) int alloc_event(struct engine *e, const struct htr_event *ev)
{
	struct agg_cached *slot, *c = agg_cache_find(e, ev, &slot);
	if (c == NULL || ev->ptr == 0 || live_full(&e->live))
		return on_event(e, ev);
	uint32_t agg = c->agg;
	count_alloc(e, agg, ev->size, false);
	block_place(e, ev->ptr, ev->size, agg);
	timeline_note(e, true);
	return 0;
}

/* A free of a live block; others go to on_event. */
static __attribute__((noinline)) int free_event(struct engine *e, const struct htr_event *ev)
{
	struct block *b = ev->ptr ? live_find(&e->live, ev->ptr) : NULL;
	if (b == NULL)
		return on_event(e, ev);
	free_found(e, b, ev->ptr, ev);
	return 0;
}

/* Allocations and frees, nearly every event, are tested for first, a
 * branch each (the switch's one jump through a table for all types
 * mispredicts as often), and each goes to a function of its own by a tail
 * call, as does everything else to on_event: the common paths then have no
 * call and need no stack frame ((d): eng_event 578 -> 537 M instructions,
 * 97.9 -> 97.0 ms), and each saves only the registers it uses (a path of
 * each in eng_event: 12 M more). */
int eng_event(void *ctx, const struct htr_event *ev)
{
	struct engine *e = ctx;
	e->order++;
	if (ev->seq)
		e->last_seq = ev->seq;
	if (ev->time_ns)
		e->last_time = ev->time_ns;
	if (ev->type == HTR_EV_ALLOC)
		return alloc_event(e, ev);
	if (ev->type == HTR_EV_FREE)
		return free_event(e, ev);
	return on_event(e, ev);
}

uint64_t eng_events(const struct engine *e)
{
	return e->order;
}

size_t eng_memory_high_water(const struct engine *e)
{
	/* Tables only grow, except the live table at a heap init, which
	 * notes the heap in use before it shrinks. */
	struct mallinfo2 mi = mallinfo2();
	size_t now = mi.uordblks + mi.hblkhd + live_mapped_bytes(&e->live);
	return now > e->mem_hwm ? now : e->mem_hwm;
}

/* ---- JSON output ------------------------------------------------------ */

static void jstr(FILE *o, const char *s)
{
	if (s == NULL) {
		fputs("null", o);
		return;
	}
	putc('"', o);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\') {
			putc('\\', o);
			putc(*c, o);
		} else if (*c < 0x20 || *c >= 0x7f) {
			/* Bytes, not characters: keeps the output valid JSON
			 * whatever the encoding of the log was. */
			fprintf(o, "\\u%04x", *c);
		} else {
			putc(*c, o);
		}
	}
	putc('"', o);
}

/* A fork child uses the stack and site ids its parent defined before the
 * fork without repeating them: undefined ids are looked up in the parent
 * (when its trace is among the inputs), and its parent's. */
static struct process *parent_of(struct engine *e, const struct process *p)
{
	if (!p->fork_child || p->parent_pid == 0)
		return NULL;
	for (size_t i = 0; i < e->nprocs; i++)
		if (&e->procs[i] != p && e->procs[i].pid == p->parent_pid && e->procs[i].origin == p->origin)
			return &e->procs[i];
	return NULL;
}

static struct process *site_owner(struct engine *e, struct process *p, uint32_t site)
{
	for (int depth = 0; p && depth < 64; depth++, p = parent_of(e, p))
		if (site < p->nsite && p->site_off[site])
			return p;
	return NULL;
}

static struct process *stack_owner(struct engine *e, struct process *p, uint32_t stack)
{
	for (int depth = 0; p && depth < 64; depth++, p = parent_of(e, p))
		if (stack < p->nstack && p->stack_off[stack])
			return p;
	return NULL;
}

static void jsite(struct engine *e, FILE *o, uint32_t proc, uint32_t site)
{
	struct process *p = site ? site_owner(e, &e->procs[proc], site) : NULL;
	if (p == NULL) {
		fputs("null", o);
		return;
	}
	const char *file = e->strings + p->site_off[site] - 1;
	if (p->site_line[site] == 0) {
		jstr(o, file);
		return;
	}
	size_t n = strlen(file) + 16;
	char *buf = xrealloc(NULL, n);
	snprintf(buf, n, "%s:%u", file, p->site_line[site]);
	jstr(o, buf);
	free(buf);
}

static void jframes(struct engine *e, FILE *o, uint32_t proc, uint32_t stack)
{
	struct process *p = stack ? stack_owner(e, &e->procs[proc], stack) : NULL;
	putc('[', o);
	if (p) {
		const uint64_t *f = &e->frames[p->stack_off[stack] - 1];
		for (uint64_t i = 0; i < f[0]; i++)
			fprintf(o, "%s\"0x%" PRIx64 "\"", i ? "," : "", f[1 + i]);
	}
	putc(']', o);
}

static const char *origin_name(int origin)
{
	switch (origin) {
	case HTR_ORIGIN_HOST:
		return "host";
	case HTR_ORIGIN_BOARD:
		return "board";
	default:
		return "text";
	}
}

static const char *misuse_name(int kind)
{
	switch (kind) {
	case HTR_MISUSE_DOUBLE_FREE:
		return "double-free";
	case HTR_MISUSE_INVALID_FREE:
		return "invalid-free";
	default:
		return "mismatch";
	}
}

static void jaddrs(FILE *o, const uint64_t *a, uint32_t n)
{
	putc('[', o);
	for (uint32_t i = 0; i < n; i++)
		fprintf(o, "%s\"0x%" PRIx64 "\"", i ? "," : "", a[i]);
	putc(']', o);
}

static const char *seg_kind_name(int k)
{
	static const char *const names[] = {"start", "test", "marker", "init"};
	return names[k];
}

void eng_write_json(struct engine *e, FILE *o)
{
	/* The process holding the highest peak owns the peak stacks. */
	size_t peak_proc = 0;
	uint64_t leaked_bytes = 0, leaked_blocks = 0, unknown_bytes = 0, unknown_blocks = 0;
	uint64_t pers_bytes = 0, pers_blocks = 0, lost = 0;
	for (size_t i = 0; i < e->nprocs; i++) {
		if (e->procs[i].peak_bytes > e->procs[peak_proc].peak_bytes)
			peak_proc = i;
		lost += e->procs[i].lost_events;
	}
	for (size_t n = 0; n < e->naggs; n++) {
		struct agg *a = &e->aggs[n];
		leaked_bytes += a->leaked_bytes;
		leaked_blocks += a->leaked_blocks;
		unknown_bytes += a->unknown_bytes;
		unknown_blocks += a->unknown_blocks;
		pers_bytes += a->persistent_bytes;
		pers_blocks += a->persistent_blocks;
	}
	struct process *pp = e->nprocs ? &e->procs[peak_proc] : NULL;

	fputs("{\"engine_version\":1,\n\"totals\":{", o);
	fprintf(o,
		"\"events\":%" PRIu64 ",\"allocations\":%" PRIu64 ",\"frees\":%" PRIu64 ",\"reallocs\":%" PRIu64
		",\"failed_allocations\":%" PRIu64 ",\"total_bytes\":%" PRIu64 ",\"temporary\":%" PRIu64
		",\"peak_bytes\":%" PRIu64 ",\"peak_process\":%zu,\"peak_seq\":%" PRIu64 ",\"peak_time_ns\":%" PRIu64
		",\"peak_event\":%" PRIu64 ",\"leaked_bytes\":%" PRIu64 ",\"leaked_blocks\":%" PRIu64
		",\"unknown_bytes\":%" PRIu64 ",\"unknown_blocks\":%" PRIu64 ",\"persistent_bytes\":%" PRIu64
		",\"persistent_blocks\":%" PRIu64 ",\"free_errors\":%" PRIu64 ",\"free_error_groups_dropped\":%" PRIu64
		",\"unmatched_frees\":%" PRIu64 ",\"lost_events\":%" PRIu64 "},\n",
		e->order, e->allocations, e->frees, e->reallocs, e->failed, e->total_bytes, e->temporary,
		pp ? pp->peak_bytes : 0, peak_proc, pp ? pp->peak_seq : 0, pp ? pp->peak_time : 0,
		pp ? pp->peak_order : 0, leaked_bytes, leaked_blocks, unknown_bytes, unknown_blocks, pers_bytes,
		pers_blocks, e->total_errors, e->errs_dropped, e->unmatched_frees, lost);

	fputs("\"inputs\":[", o);
	for (size_t i = 0; i < e->ninputs; i++) {
		struct input *in = &e->inputs[i];
		fprintf(o, "%s\n{\"path\":", i ? "," : "");
		jstr(o, in->path);
		fputs(",\"format\":", o);
		jstr(o, in->format);
		fprintf(o, ",\"process\":%u,\"complete\":%s,\"exited\":%s,\"events\":%" PRIu64 ",\"lost_events\":%" PRIu64,
			in->proc, in->complete ? "true" : "false", in->no_exit ? "false" : "true", in->events,
			in->lost_events);
		if (in->has_stop) {
			fprintf(o, ",\"stopped_at\":{\"offset\":%" PRIu64 ",\"reason\":", in->stop_offset);
			jstr(o, in->stop_reason);
			putc('}', o);
		} else {
			fputs(",\"stopped_at\":null", o);
		}
		if (in->bad_count) {
			fprintf(o, ",\"bad_input\":{\"count\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"reason\":",
				in->bad_count, in->bad_offset);
			jstr(o, in->bad_reason);
			putc('}', o);
		} else {
			fputs(",\"bad_input\":null", o);
		}
		putc('}', o);
	}
	fputs("],\n\"processes\":[", o);
	for (size_t i = 0; i < e->nprocs; i++) {
		struct process *p = &e->procs[i];
		fprintf(o,
			"%s\n{\"index\":%zu,\"input\":%zu,\"origin\":\"%s\",\"pid\":%" PRIu64 ",\"ppid\":%" PRIu64
			",\"parent_pid\":%" PRIu64 ",\"fork_child\":%s,\"peak_bytes\":%" PRIu64 ",\"lost_events\":%" PRIu64
			",\"exe\":",
			i ? "," : "", i, p->input, origin_name(p->origin), p->pid, p->ppid, p->parent_pid,
			p->fork_child ? "true" : "false", p->peak_bytes, p->lost_events);
		jstr(o, p->exe);
		fputs(",\"args\":[", o);
		for (uint32_t k = 0; k < p->nargs; k++) {
			if (k)
				putc(',', o);
			jstr(o, p->args[k]);
		}
		fputs("],\"end_status\":", o);
		if (p->has_end)
			fprintf(o, "%" PRIu64, p->end_status);
		else
			fputs("null", o);
		fputs(",\"modules\":[", o);
		for (size_t k = 0; k < p->nmodules; k++) {
			struct module *m = &p->modules[k];
			fprintf(o, "%s{\"path\":", k ? "," : "");
			jstr(o, m->path);
			fprintf(o,
				",\"base\":\"0x%" PRIx64 "\",\"start\":\"0x%" PRIx64 "\",\"end\":\"0x%" PRIx64
				"\",\"build_id\":\"%s\",\"unloaded\":%s}",
				m->base, m->start, m->end, m->build_id, m->unloaded ? "true" : "false");
		}
		fputs("]}", o);
	}

	fputs("],\n\"aggregates\":[", o);
	for (size_t n = 0; n < e->naggs; n++) {
		struct agg *a = &e->aggs[n];
		fprintf(o, "%s\n{\"id\":%zu,\"process\":%u,\"site\":", n ? "," : "", n, a->proc);
		jsite(e, o, a->proc, a->site);
		fputs(",\"frames\":", o);
		jframes(e, o, a->proc, a->stack);
		fprintf(o,
			",\"allocations\":%" PRIu64 ",\"total_bytes\":%" PRIu64 ",\"failed\":%" PRIu64
			",\"temporary\":%" PRIu64 ",\"max_size\":%" PRIu64 ",\"peak_bytes\":%" PRIu64
			",\"leaked_blocks\":%" PRIu64 ",\"leaked_bytes\":%" PRIu64 ",\"unknown_blocks\":%" PRIu64
			",\"unknown_bytes\":%" PRIu64 ",\"persistent_blocks\":%" PRIu64 ",\"persistent_bytes\":%" PRIu64
			",\"addresses\":",
			a->allocations, a->total_bytes, a->failed, a->temporary, a->max_size,
			a->proc == peak_proc ? a->proc_peak : 0, a->leaked_blocks, a->leaked_bytes, a->unknown_blocks,
			a->unknown_bytes, a->persistent_blocks, a->persistent_bytes);
		jaddrs(o, a->addrs, a->naddrs);
		putc('}', o);
	}

	fputs("],\n\"free_errors\":[", o);
	for (size_t n = 0; n < e->nerrs; n++) {
		struct free_error *f = &e->errs[n];
		fprintf(o, "%s\n{\"kind\":\"%s\",\"process\":%u,\"segment\":%u,\"count\":%" PRIu64 ",\"ptr\":\"0x%" PRIx64
			"\",\"size\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"call\":%u,\"alloc_call\":%u,\"site\":",
			n ? "," : "", misuse_name(f->kind), f->proc, f->seg, f->count, f->ptr, f->size, f->seq, f->offset,
			f->call, f->alloc_call);
		jsite(e, o, f->proc, f->site);
		fputs(",\"frames\":", o);
		jframes(e, o, f->proc, f->stack);
		fputs(",\"alloc_site\":", o);
		jsite(e, o, f->proc, f->alloc_site);
		fputs(",\"alloc_frames\":", o);
		jframes(e, o, f->proc, f->alloc_stack);
		fputs(",\"free_site\":", o);
		jsite(e, o, f->proc, f->free_site);
		fputs(",\"free_frames\":", o);
		jframes(e, o, f->proc, f->free_stack);
		putc('}', o);
	}

	fputs("],\n\"segments\":[", o);
	for (size_t s = 0; s < e->nsegs; s++) {
		struct segment *g = &e->segs[s];
		uint64_t lb = 0, lbytes = 0, ub = 0, ubytes = 0, pb = 0, pbytes = 0;
		for (uint32_t n1 = g->first_leak; n1; n1 = e->leaks[n1 - 1].next) {
			size_t n = n1 - 1;
			lb += e->leaks[n].blocks;
			lbytes += e->leaks[n].bytes;
			ub += e->leaks[n].unknown_blocks;
			ubytes += e->leaks[n].unknown_bytes;
			pb += e->leaks[n].persistent_blocks;
			pbytes += e->leaks[n].persistent_bytes;
		}
		fprintf(o, "%s\n{\"index\":%zu,\"name\":", s ? "," : "", s);
		jstr(o, g->name);
		fprintf(o,
			",\"kind\":\"%s\",\"process\":%u,\"start_seq\":%" PRIu64 ",\"allocations\":%" PRIu64
			",\"frees\":%" PRIu64 ",\"total_bytes\":%" PRIu64 ",\"peak_bytes\":%" PRIu64
			",\"failed_allocations\":%" PRIu64 ",\"free_errors\":%" PRIu64 ",\"lost_events\":%" PRIu64
			",\"heap_base\":\"0x%" PRIx64 "\",\"heap_size\":%" PRIu64 ",\"leaked_blocks\":%" PRIu64
			",\"leaked_bytes\":%" PRIu64 ",\"unknown_blocks\":%" PRIu64 ",\"unknown_bytes\":%" PRIu64
			",\"persistent_blocks\":%" PRIu64 ",\"persistent_bytes\":%" PRIu64 ",\"leaks\":[",
			seg_kind_name(g->kind), g->proc, g->start_seq, g->allocations, g->frees, g->total_bytes,
			g->peak_bytes, g->failed, g->free_errors, g->lost_events, g->heap_base, g->heap_size, lb,
			lbytes, ub, ubytes, pb, pbytes);
		bool first = true;
		for (uint32_t n1 = g->first_leak; n1; n1 = e->leaks[n1 - 1].next) {
			struct seg_leak *l = &e->leaks[n1 - 1];
			if (l->blocks == 0 && l->unknown_blocks == 0 && l->persistent_blocks == 0)
				continue;
			fprintf(o,
				"%s{\"aggregate\":%u,\"blocks\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"unknown_blocks\":%" PRIu64
				",\"unknown_bytes\":%" PRIu64 ",\"persistent_blocks\":%" PRIu64 ",\"persistent_bytes\":%" PRIu64
				",\"addresses\":",
				first ? "" : ",", l->agg, l->blocks, l->bytes, l->unknown_blocks, l->unknown_bytes,
				l->persistent_blocks, l->persistent_bytes);
			jaddrs(o, l->addrs, l->naddrs);
			putc('}', o);
			first = false;
		}
		fputs("]}", o);
	}

	fputs("],\n\"heap\":", o);
	if (e->have_heap || e->have_check) {
		/* The fullest heap: heaps of different sizes compare by share. */
		uint64_t seg_peak = 0, size = e->heap_size, seg_size = 0;
		for (size_t s = 0; s < e->nsegs; s++) {
			const struct segment *g = &e->segs[s];
			if (g->heap_size == 0)
				continue;
			if (seg_size == 0 || (double)g->peak_bytes / (double)g->heap_size > (double)seg_peak / (double)seg_size) {
				seg_peak = g->peak_bytes;
				seg_size = g->heap_size;
			}
		}
		fprintf(o, "{\"base\":\"0x%" PRIx64 "\",\"size\":%" PRIu64 ",\"peak_bytes\":%" PRIu64 ",\"peak_heap_size\":%" PRIu64
			",\"checks\":%" PRIu64 ",\"check_mismatches\":%" PRIu64,
			e->heap_base, size, seg_peak, seg_size ? seg_size : size, e->checks, e->check_mismatches);
		if (e->have_check) {
			const struct htr_heap_stats *c = &e->check;
			fprintf(o,
				",\"free\":%zu,\"largest_free\":%zu,\"free_blocks\":%zu,\"min_free\":%" PRIu64
				",\"fragmentation_permille\":%u,\"live_blocks\":%zu,\"used_bytes\":%zu",
				c->free_bytes, c->largest_free, c->free_blocks,
				e->min_free_seen == UINT64_MAX ? (uint64_t)c->min_free_bytes : e->min_free_seen,
				htr_fragmentation_permille(c), c->live_blocks, c->used_bytes);
		} else {
			fputs(",\"free\":null,\"largest_free\":null,\"free_blocks\":null,\"min_free\":null,"
			      "\"fragmentation_permille\":null",
			      o);
		}
		putc('}', o);
	} else {
		fputs("null", o);
	}

	fputs(",\n\"timeline\":[", o);
	for (size_t i = 0; i < e->ntl; i++)
		fprintf(o, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", i ? "," : "", e->tl[i].order,
			e->tl[i].seq, e->tl[i].time_ns, e->tl[i].bytes);
	fputs("],\n\"histogram\":[", o);
	bool first = true;
	for (int i = 0; i < 65; i++) {
		if (!e->hist[i])
			continue;
		/* bucket i holds sizes in [2^(i-1), 2^i) (bucket 0: size 0) */
		fprintf(o, "%s{\"min\":%" PRIu64 ",\"count\":%" PRIu64 "}", first ? "" : ",",
			i ? (uint64_t)1 << (i - 1) : 0, e->hist[i]);
		first = false;
	}
	fputs("]}\n", o);
}
