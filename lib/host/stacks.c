/* Backtraces and their interning. On x86-64 a backtrace is first looked up
 * in the chain cache (the same start over the same stack words gives the
 * same id), else walked by unwind.c, else made by libunwind. A backtrace is
 * hashed; a small per-thread cache maps hashes to ids without a lock, and a
 * global table behind one spinlock (taken on a cache miss only) holds the
 * frames, compares them exactly and hands out new ids. The thread that
 * creates an id writes its STACK record, once. */
#define _GNU_SOURCE
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "unwind.h"

#define CACHE_SLOTS 256u /* per thread, direct mapped */

struct cache_slot {
	uint64_t hash;
	uint32_t id;
	uint32_t depth;
};
static __thread struct cache_slot cache[CACHE_SLOTS] HTR_TLS;

struct table_entry {
	uint64_t hash;
	const uint64_t *frames;
	uint32_t id;
	uint32_t depth;
};

struct htr_stack_table {
	htr_spinlock lock;
	uint32_t next_id;
	uint64_t capacity, count;
	struct table_entry *slots;
	uint8_t *arena, *arena_end; /* frames storage, from mmap */
};

static struct htr_stack_table global_table;

/* The recorder's own code: frames inside it are not the program's. */
static uintptr_t self_start, self_end;

static inline uint64_t lane(uint64_t h, uint64_t frame)
{
	h ^= frame;
	h *= 0xff51afd7ed558ccdull;
	return h ^ (h >> 29);
}

/* Four independent lanes: one chain of multiplies was a tenth of the
 * recorder's CPU, bound by their latency, not by the work. */
uint64_t htr_stack_hash(const uint64_t *frames, uint32_t depth)
{
	uint64_t a = 0x9e3779b97f4a7c15ull ^ depth, b = 0xc2b2ae3d27d4eb4full,
		 c = 0x165667b19e3779f9ull, d = 0x27d4eb2f165667c5ull;
	uint32_t i = 0;
	for (; i + 4 <= depth; i += 4) {
		a = lane(a, frames[i]);
		b = lane(b, frames[i + 1]);
		c = lane(c, frames[i + 2]);
		d = lane(d, frames[i + 3]);
	}
	for (; i < depth; i++)
		a = lane(a, frames[i]);
	uint64_t h = lane(lane(lane(a, b), c), d);
	return h ? h : 1; /* 0 marks an empty cache slot */
}

static void *map_zeroed(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static const uint64_t *arena_copy(struct htr_stack_table *t, const uint64_t *frames,
				  uint32_t depth)
{
	size_t bytes = depth * sizeof(uint64_t);
	if (t->arena == NULL || (size_t)(t->arena_end - t->arena) < bytes) {
		size_t size = 1u << 20;
		uint8_t *a = map_zeroed(size);
		if (a == NULL)
			return NULL;
		t->arena = a;
		t->arena_end = a + size;
	}
	uint64_t *dst = (uint64_t *)t->arena;
	memcpy(dst, frames, bytes);
	t->arena += bytes;
	return dst;
}

static bool table_grow(struct htr_stack_table *t)
{
	uint64_t cap = t->capacity ? t->capacity * 2 : 4096;
	struct table_entry *n = map_zeroed(cap * sizeof(*n));
	if (n == NULL)
		return false;
	for (uint64_t i = 0; i < t->capacity; i++) {
		if (t->slots[i].id == 0)
			continue;
		uint64_t j = t->slots[i].hash & (cap - 1);
		while (n[j].id != 0)
			j = (j + 1) & (cap - 1);
		n[j] = t->slots[i];
	}
	if (t->slots != NULL)
		munmap(t->slots, t->capacity * sizeof(*t->slots));
	t->slots = n;
	t->capacity = cap;
	return true;
}

static uint32_t intern_locked(struct htr_stack_table *t, const uint64_t *frames, uint32_t depth,
			      uint64_t h, bool *is_new)
{
	*is_new = false;
	if ((t->count + 1) * 2 > t->capacity && !table_grow(t) && t->count + 1 >= t->capacity)
		return 0;
	uint64_t i = h & (t->capacity - 1);
	while (t->slots[i].id != 0) {
		struct table_entry *e = &t->slots[i];
		if (e->hash == h && e->depth == depth &&
		    memcmp(e->frames, frames, depth * sizeof(uint64_t)) == 0)
			return e->id;
		i = (i + 1) & (t->capacity - 1);
	}
	const uint64_t *copy = arena_copy(t, frames, depth);
	if (copy == NULL)
		return 0;
	struct table_entry *e = &t->slots[i];
	e->hash = h;
	e->frames = copy;
	e->depth = depth;
	e->id = ++t->next_id;
	t->count++;
	*is_new = true;
	return e->id;
}

struct htr_stack_table *htr_stack_table_new(void)
{
	return map_zeroed(sizeof(struct htr_stack_table));
}

uint32_t htr_stack_table_intern(struct htr_stack_table *t, const uint64_t *frames, uint32_t depth,
				bool *is_new)
{
	uint64_t h = htr_stack_hash(frames, depth);
	htr_spin_lock(&t->lock);
	uint32_t id = intern_locked(t, frames, depth, h, is_new);
	htr_spin_unlock(&t->lock);
	return id;
}

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	uintptr_t probe = (uintptr_t)data;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t s = info->dlpi_addr + ph->p_vaddr;
		if (s < lo)
			lo = s;
		if (s + ph->p_memsz > hi)
			hi = s + ph->p_memsz;
	}
	if (probe >= lo && probe < hi) {
		self_start = lo;
		self_end = hi;
		return 1;
	}
	return 0;
}

void htr_stacks_set_self(uintptr_t start, uintptr_t end)
{
	self_start = start;
	self_end = end;
}

void htr_stacks_init(void)
{
	dl_iterate_phdr(find_self, (void *)(uintptr_t)&htr_stacks_init);
}

static void write_stack(struct htr_writer *w, uint32_t id, const uint64_t *frames, uint32_t depth)
{
	size_t bytes = sizeof(struct htr_rec_stack) + depth * sizeof(uint64_t);
	struct htr_rec_stack *r = htr_writer_reserve(w, bytes);
	if (r == NULL)
		return; /* counted with the event that needed it */
	r->id = id;
	r->depth = depth;
	r->reserved = 0;
	memcpy(r + 1, frames, depth * sizeof(uint64_t));
	htr_record_commit(w, r, HTR_REC_STACK, 0, bytes);
}

/* The thread's last few stacks, compared frame by frame: a loop allocates
 * and frees from a handful of places, and comparing the frames (the first
 * one mostly decides) costs less than hashing them. */
#define RECENT 4u
#define RECENT_FRAMES 64u

struct recent_stack {
	uint32_t id; /* 0: empty */
	uint32_t depth;
	uint64_t frames[RECENT_FRAMES];
};
static __thread struct recent_stack recent[RECENT] HTR_TLS;
static __thread uint32_t recent_next HTR_TLS;

static inline uint32_t recent_find(const uint64_t *frames, uint32_t d)
{
	for (unsigned i = 0; i < RECENT; i++) {
		const struct recent_stack *r = &recent[i];
		if (r->depth == d && r->id != 0 && r->frames[0] == frames[0] &&
		    memcmp(r->frames, frames, d * sizeof(uint64_t)) == 0)
			return r->id;
	}
	return 0;
}

static inline void recent_add(const uint64_t *frames, uint32_t d, uint32_t id)
{
	if (d > RECENT_FRAMES)
		return;
	struct recent_stack *r = &recent[recent_next++ % RECENT];
	r->id = id;
	r->depth = d;
	memcpy(r->frames, frames, d * sizeof(uint64_t));
}

static int recorder_frames(const uint64_t *ips, int n)
{
	int first = 0;
	while (first < n && (uintptr_t)ips[first] >= self_start && (uintptr_t)ips[first] < self_end)
		first++;
	return first;
}

/* The id of frames[0..d), d >= 1: the thread's recent stacks, its hash
 * cache, then the global table (which writes STACK for a new id). */
static uint32_t intern_frames(struct htr_writer *w, const uint64_t *frames, uint32_t d)
{
	uint32_t id = recent_find(frames, d);
	if (id != 0)
		return id;
	uint64_t h = htr_stack_hash(frames, d);
	struct cache_slot *c = &cache[h & (CACHE_SLOTS - 1)];
	if (c->hash == h && c->depth == d) {
		recent_add(frames, d, c->id);
		return c->id;
	}

	bool is_new;
	htr_spin_lock(&global_table.lock);
	id = intern_locked(&global_table, frames, d, h, &is_new);
	htr_spin_unlock(&global_table.lock);
	if (id == 0)
		return 0;
	if (is_new) {
		/* A new stack may run through a module loaded since the last
		 * look: the module map must be in the trace before it. */
		htr_modules_scan(w, false);
		write_stack(w, id, frames, d);
	}
	c->hash = h;
	c->id = id;
	c->depth = d;
	recent_add(frames, d, id);
	return id;
}

/* How many frames to ask unw_backtrace for again, 0 when its n frames (of
 * `asked`, the program's from `first` on) will do. n == asked: the walk
 * stopped at the size, not at the stack's end, so more program frames may
 * follow. Each retry asks for more than the last (first + depth > n), up
 * to the buffer. */
static int ask_deeper(int n, int asked, int first, unsigned depth)
{
	if (n != asked || n - first >= (int)depth || asked >= (int)HTR_UNWIND_CAP)
		return 0;
	int more = first + (int)depth + (int)HTR_SKIP_MAX;
	return more > (int)HTR_UNWIND_CAP ? (int)HTR_UNWIND_CAP : more;
}

/* Interns the program's frames ips[first, n), at most depth of them; 0
 * when there are none. */
static uint32_t intern_program_frames(struct htr_writer *w, const uint64_t *ips, int n, int first,
				      unsigned depth)
{
	if (first >= n)
		return 0;
	uint32_t d = (uint32_t)(n - first);
	if (d > depth)
		d = depth;
	return intern_frames(w, &ips[first], d);
}

uint32_t htr_stack_intern(struct htr_writer *w, uint64_t *ips, int n, int asked, unsigned depth)
{
	int first = recorder_frames(ips, n);
	for (int more; (more = ask_deeper(n, asked, first, depth)) != 0;) {
		asked = more;
		n = unw_backtrace((void **)ips, asked);
		first = recorder_frames(ips, n);
	}
	return intern_program_frames(w, ips, n, first, depth);
}

static __thread struct htr_stack_counts counts HTR_TLS;

void htr_stack_counts_get(struct htr_stack_counts *out)
{
	*out = counts;
}

#if HTR_NATIVE_UNWIND
/* The chain cache. A walk is a function of its start (pc, CFA, and rbp if
 * a rule used it before restoring it) and of the words it read, in order;
 * the rules are fixed while the unwind generation is. So a backtrace from
 * the same start whose recorded words all still hold their values is the
 * same backtrace: its id is returned without walking, hashing or
 * interning. The words are compared in the order the walk read them and
 * the comparison stops at the first difference, so each read is one the
 * walk itself would make at that point.
 *
 * Fully associative: the same start (pc, CFA) recurs with different chains
 * when several callers at one depth allocate (wl_cxx: ~99.6% of backtraces
 * replayed with 16 entries, 73% with 8, 47% with 4 sets of 4). The keys sit
 * apart from the logs so that a scan reads four lines. */
#define CHAINS 16u

struct chain_key {
	uint64_t pc, cfa;
};

struct chain {
	uint64_t rbp;
	uint32_t id; /* 0: empty */
	uint32_t depth;
	struct htr_unwind_log log;
};
static __thread struct chain_key chain_keys[CHAINS] HTR_TLS;
static __thread struct chain chains[CHAINS] HTR_TLS;
static __thread uint32_t chains_gen HTR_TLS;
static __thread uint32_t chain_next HTR_TLS;

static inline bool replay(const struct chain *c)
{
	const uint64_t *addr = c->log.addr, *val = c->log.val;
	for (uint32_t i = 0, n = c->log.n; i < n; i++) {
		uint64_t v;
		memcpy(&v, (const void *)(uintptr_t)addr[i], sizeof(v));
		if (v != val[i])
			return false;
	}
	return true;
}

static inline bool chain_matches(unsigned i, const struct htr_unwind_regs *s, unsigned depth)
{
	if (chain_keys[i].cfa != s->cfa || chain_keys[i].pc != s->pc)
		return false;
	const struct chain *c = &chains[i];
	return c->id != 0 && c->depth == depth && (!c->log.uses_rbp || c->rbp == s->rbp) && replay(c);
}

/* libunwind for a backtrace the walker gave up on, cut to the same frames
 * the walk would have given: from s->pc on (this function's and the
 * capture's own frames are dropped by finding s->pc), the recorder's
 * leading frames dropped, at most depth kept. */
#define OWN_FRAMES_MAX 6 /* the capture's own frames before s->pc, at most */

static __attribute__((noinline)) uint32_t capture_libunwind(struct htr_writer *w,
							    const struct htr_unwind_regs *s,
							    unsigned depth)
{
	uint64_t ips[HTR_UNWIND_CAP];
	int asked = (int)depth + 4;
	if (asked > (int)HTR_UNWIND_CAP)
		asked = (int)HTR_UNWIND_CAP;
	for (;;) {
		int n = unw_backtrace((void **)ips, asked);
		int at = 0;
		while (at < n && at < OWN_FRAMES_MAX && ips[at] != s->pc)
			at++;
		if (at == n || at == OWN_FRAMES_MAX)
			return 0; /* libunwind did not see our own frames: nothing sane to keep */
		int first = at + recorder_frames(&ips[at], n - at);
		int more = ask_deeper(n, asked, first, depth);
		if (more != 0) {
			asked = more;
			continue;
		}
		uint32_t id = intern_program_frames(w, ips, n, first, depth);
		__asm__ volatile("" ::: "memory"); /* keep this frame: ips[0] is in it */
		return id;
	}
}

#ifdef HTR_UNWIND_VERIFY
/* A checking build (-DHTR_UNWIND_VERIFY): every backtrace, walked or
 * replayed, is made again by libunwind; equal frames intern to the same
 * id, so a different id is a different backtrace. */
static void verify(struct htr_writer *w, const struct htr_unwind_regs *s, unsigned depth,
		   uint32_t id)
{
	uint32_t ref = capture_libunwind(w, s, depth);
	if (ref == id)
		return;
	static const char msg[] = "heaptrail: unwind differs from libunwind's\n";
	if (write(2, msg, sizeof(msg) - 1) < 0)
		abort();
	abort();
}
#define VERIFY(regs, id) verify(w, regs, depth, id)

/* The main thread's counts at exit, when HTR_UNWIND_VERIFY_COUNTS is set. */
__attribute__((destructor)) static void verify_counts(void)
{
	if (getenv("HTR_UNWIND_VERIFY_COUNTS") == NULL)
		return;
	char line[160], *p = line, *end = line + sizeof(line);
	p = htr_str_append(p, end, "heaptrail: unwind hits ");
	p = htr_str_append_u64(p, end, counts.chain_hits);
	p = htr_str_append(p, end, " walks ");
	p = htr_str_append_u64(p, end, counts.walks);
	p = htr_str_append(p, end, " fallbacks ");
	p = htr_str_append_u64(p, end, counts.fallbacks);
	p = htr_str_append(p, end, "\n");
	if (write(2, line, (size_t)(p - line)) < 0)
		return;
}
#else
#define VERIFY(regs, id) (void)0
#endif

/* The walk, when no entry replays: out of line, so that the replay path
 * saves few registers and keeps no walk buffer. */
static __attribute__((noinline)) uint32_t capture_walk(struct htr_writer *w,
						       const struct htr_unwind_regs *s,
						       unsigned depth, uint32_t gen)
{
	if (HTR_UNLIKELY(chains_gen != gen)) {
		htr_unwind_sync(); /* the rule cache follows */
		for (unsigned i = 0; i < CHAINS; i++)
			chains[i].id = 0;
		chains_gen = gen;
	}
	/* The walk logs straight into the slot it will own. */
	unsigned victim = chain_next++ % CHAINS;
	struct chain *c = &chains[victim];
	c->id = 0;
	uint64_t ips[HTR_MAX_DEPTH];
	int n = htr_unwind_walk(s, ips, (int)depth, self_start, self_end, &c->log);
	if (HTR_UNLIKELY(n < 0)) {
		counts.fallbacks++;
		return capture_libunwind(w, s, depth);
	}
	counts.walks++;
	if (n == 0) {
		VERIFY(s, 0);
		return 0;
	}
	uint32_t id = intern_frames(w, ips, (uint32_t)n);
	if (id != 0 && !c->log.overflow) {
		chain_keys[victim].pc = s->pc;
		chain_keys[victim].cfa = s->cfa;
		c->rbp = s->rbp;
		c->depth = depth;
		c->id = id;
	}
	VERIFY(s, id);
	return id;
}

/* Its frame pointer (forced by __builtin_frame_address) gives the start:
 * the hook's rbp in the saved slot, the return address into the hook above
 * it, the hook's rsp after the call (this frame's CFA) above that. */
__attribute__((noinline)) uint32_t htr_stack_capture_native(struct htr_writer *w, unsigned depth)
{
	uint64_t *fp = __builtin_frame_address(0);
	struct htr_unwind_regs s = {
		.pc = (uint64_t)(uintptr_t)__builtin_return_address(0),
		.cfa = (uint64_t)(uintptr_t)(fp + 2),
		.rbp = fp[0],
	};
	/* One load when nothing was unloaded since this thread's last look. */
	uint32_t gen = __atomic_load_n(&htr_unwind_generation, __ATOMIC_ACQUIRE);
	uint32_t id = 0;
	bool hit = false;
	if (HTR_LIKELY(chains_gen == gen)) {
		for (unsigned i = 0; i < CHAINS; i++) {
			if (chain_matches(i, &s, depth)) {
				counts.chain_hits++;
				id = chains[i].id;
				hit = true;
				VERIFY(&s, id);
				break;
			}
		}
	}
	if (!hit)
		id = capture_walk(w, &s, depth, gen);
	__asm__ volatile("" ::: "memory"); /* no tail call: s lives in this frame */
	return id;
}
#endif /* HTR_NATIVE_UNWIND */

uint32_t htr_stack_frames(uint32_t id, uint64_t *out, uint32_t cap)
{
	uint32_t depth = 0;
	htr_spin_lock(&global_table.lock);
	for (uint64_t i = 0; i < global_table.capacity; i++) {
		const struct table_entry *e = &global_table.slots[i];
		if (e->id == id && id != 0) {
			depth = e->depth;
			memcpy(out, e->frames, (depth < cap ? depth : cap) * sizeof(uint64_t));
			break;
		}
	}
	htr_spin_unlock(&global_table.lock);
	return depth;
}

void htr_stacks_fork_prepare(void)
{
	htr_spin_lock(&global_table.lock);
}

void htr_stacks_fork_parent(void)
{
	htr_spin_unlock(&global_table.lock);
}

void htr_stacks_fork_child(void)
{
	global_table.lock.v = 0;
}
