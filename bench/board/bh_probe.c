/* Fill states and probes for the board-heap comparison (see bh_probe.h).
 *
 * A fill state is built the way a long-running firmware fragments its heap:
 * blocks of 16..271 bytes are allocated until twice the target (or the arena
 * is full), then every other block is freed until the live bytes are back at
 * the target, leaving holes between live blocks. A first-fit allocator has to
 * walk those holes; TLSF should not care. */
#include "bh_probe.h"

#include <stdint.h>

#define BH_MAX_LIVE 2048

/* The markers the counters key on. The firmware counter finds them by
 * address, so they stay noinline. Under callgrind they zero the counters and
 * dump them, so each dump file holds one probed call (callgrind's own
 * --toggle-collect with --dump-after writes empty dumps in 3.19). */
#ifdef BH_CALLGRIND
#include <valgrind/callgrind.h>
#define BH_MARK_BEGIN() CALLGRIND_ZERO_STATS
#define BH_MARK_END() CALLGRIND_DUMP_STATS
#else
#define BH_MARK_BEGIN() __asm__ volatile("" ::: "memory")
#define BH_MARK_END() __asm__ volatile("" ::: "memory")
#endif
__attribute__((noinline)) void bh_mark_begin(void);
__attribute__((noinline)) void bh_mark_end(void);
__attribute__((noinline)) void bh_mark_begin(void) { BH_MARK_BEGIN(); }
__attribute__((noinline)) void bh_mark_end(void) { BH_MARK_END(); }

static const struct bh_heap_ops *cur;
static void *live[BH_MAX_LIVE];
static size_t live_size[BH_MAX_LIVE];
static unsigned n_live;
static size_t live_bytes;
static uint32_t rng = 0x1234567u;

static uint32_t bh_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static void bh_nothing(void) { __asm__ volatile("" ::: "memory"); }

/* The probes: the same code on both counters. */
__attribute__((noinline)) void *bh_probe_malloc(size_t size);
__attribute__((noinline)) void bh_probe_free(void *ptr);
__attribute__((noinline)) void bh_probe_empty(void);

__attribute__((noinline)) void *bh_probe_malloc(size_t size)
{
	bh_mark_begin();
	void *p = cur->alloc(size);
	bh_mark_end();
	return p;
}

__attribute__((noinline)) void bh_probe_free(void *ptr)
{
	bh_mark_begin();
	cur->release(ptr);
	bh_mark_end();
}

/* Same shape as the probes, with an empty call through the same kind of
 * pointer: its count is the overhead to subtract. */
static void (*volatile bh_empty_fn)(void) = bh_nothing;
__attribute__((noinline)) void bh_probe_empty(void)
{
	bh_mark_begin();
	bh_empty_fn();
	bh_mark_end();
}

static void label(const char *op, const char *state)
{
	char buf[64];
	size_t n = 0;
	const char *parts[] = {"probe ", cur->tag, cur->tag[0] ? " " : "", op, " ", state, "\n"};
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		for (const char *s = parts[i]; *s != '\0' && n + 1 < sizeof buf; s++)
			buf[n++] = *s;
	buf[n] = '\0';
	bh_puts(buf);
}

static void release_all(void)
{
	for (unsigned i = 0; i < n_live; i++)
		cur->release(live[i]);
	n_live = 0;
	live_bytes = 0;
}

static void fill(size_t target)
{
	size_t high = 2u * target;
	if (high > BH_ARENA_BYTES - BH_ARENA_BYTES / 16u)
		high = BH_ARENA_BYTES - BH_ARENA_BYTES / 16u;
	while (target > 0 && live_bytes < high && n_live < BH_MAX_LIVE) {
		size_t size = 16u + (bh_rand() & 255u);
		void *p = cur->alloc(size);
		if (p == NULL)
			break;
		live[n_live] = p;
		live_size[n_live++] = size;
		live_bytes += size;
	}
	/* Punch holes: odd slots first, in allocation (mostly address) order. */
	unsigned kept = 0;
	for (unsigned i = 0; i < n_live; i++) {
		if ((i & 1u) && live_bytes > target) {
			cur->release(live[i]);
			live_bytes -= live_size[i];
			continue;
		}
		live[kept] = live[i];
		live_size[kept++] = live_size[i];
	}
	n_live = kept;
}

static const size_t probe_sizes[] = {8, 24, 64, 200, 512, 1500};
static const unsigned fill_percent[] = {0, 25, 50, 75, 90};
static const unsigned quick_percent[] = {0, 50};

static void state_name(unsigned pct, char *out)
{
	unsigned n = 0;
	if (pct >= 10)
		out[n++] = (char)('0' + pct / 10);
	out[n++] = (char)('0' + pct % 10);
	out[n++] = '%';
	out[n] = '\0';
}

void bh_run(const struct bh_heap_ops *ops, int quick)
{
	cur = ops;
	cur->reset();
	for (int i = 0; i < 4; i++) {
		label("empty", "calib");
		bh_probe_empty();
	}
	const unsigned *pcts = quick ? quick_percent : fill_percent;
	unsigned n_states = quick ? sizeof quick_percent / sizeof quick_percent[0]
				  : sizeof fill_percent / sizeof fill_percent[0];
	for (unsigned s = 0; s < n_states; s++) {
		char name[8];
		state_name(pcts[s], name);
		fill((size_t)BH_ARENA_BYTES * pcts[s] / 100u);
		/* A malloc/free pair leaves the state as it found it, so every
		 * size meets the same heap. */
		/* From 50% on, the large sizes find no hole and fail: a failed
		 * malloc is part of the worst case (a first-fit list walks every
		 * hole before giving up). free(NULL) is not probed. */
		for (unsigned k = 0; k < sizeof probe_sizes / sizeof probe_sizes[0]; k++) {
			label("malloc", name);
			void *p = bh_probe_malloc(probe_sizes[k]);
			if (p != NULL) {
				label("free", name);
				bh_probe_free(p);
			}
		}
		/* Freeing blocks that sit between holes: the coalescing path. */
		for (unsigned k = 0; k < 8 && n_live > 0; k++) {
			unsigned i = (unsigned)((uint64_t)n_live * (2u * k + 1u) / 16u);
			if (live[i] == NULL)
				continue;
			label("free", name);
			bh_probe_free(live[i]);
			live_bytes -= live_size[i];
			live[i] = live[n_live - 1];
			live_size[i] = live_size[n_live - 1];
			n_live--;
		}
		release_all();
	}
}
