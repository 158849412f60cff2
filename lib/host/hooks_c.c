/* The C allocation functions, interposed, and the recording core they share
 * with the C++ operators and the API table.
 *
 * Every hook keeps the C library's contract: errno is what libc leaves
 * (free never changes it; posix_memalign never sets it), alignments are
 * passed through unchanged, realloc(p, 0) frees and returns NULL. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heaptrail.h"
#include "internal.h"

struct htr_real htr_real;

static int resolve_state; /* 0 not yet, 1 in progress, 2 done */
static __thread int resolving HTR_TLS;

/* The versioned lookup first: a preloaded debug allocator that exports only
 * versioned symbols (glibc's libc_malloc_debug.so) is then still found. */
static void *next_symbol(const char *name, const char *version)
{
#if defined(__x86_64__) && defined(__GLIBC__)
	void *p = dlvsym(RTLD_NEXT, name, version);
	if (p != NULL)
		return p;
#else
	(void)version;
#endif
	return dlsym(RTLD_NEXT, name);
}

void htr_resolve_real(void)
{
	if (HTR_LIKELY(__atomic_load_n(&resolve_state, __ATOMIC_ACQUIRE) == 2))
		return;
	if (resolving)
		return; /* dlsym allocating on this thread: served by the bootstrap pool */
	int expected = 0;
	if (!__atomic_compare_exchange_n(&resolve_state, &expected, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&resolve_state, __ATOMIC_ACQUIRE) != 2)
			sched_yield();
		return;
	}
	resolving = 1;
	struct htr_real r;
	/* dlsym returns an object pointer; memcpy is the ISO-clean conversion. */
#define NEXT(field, name, version)                                   \
	do {                                                         \
		void *sym_ = next_symbol(name, version);             \
		memcpy(&r.field, &sym_, sizeof(sym_));               \
	} while (0)
	NEXT(malloc, "malloc", "GLIBC_2.2.5");
	NEXT(free, "free", "GLIBC_2.2.5");
	NEXT(calloc, "calloc", "GLIBC_2.2.5");
	NEXT(realloc, "realloc", "GLIBC_2.2.5");
	NEXT(posix_memalign, "posix_memalign", "GLIBC_2.2.5");
	NEXT(aligned_alloc, "aligned_alloc", "GLIBC_2.16");
	NEXT(memalign, "memalign", "GLIBC_2.2.5");
	NEXT(valloc, "valloc", "GLIBC_2.2.5");
	NEXT(pvalloc, "pvalloc", "GLIBC_2.2.5");
	NEXT(malloc_usable_size, "malloc_usable_size", "GLIBC_2.2.5");
	NEXT(fork, "fork", "GLIBC_2.2.5");
#undef NEXT
	htr_real = r;
	resolving = 0;
	if (r.malloc == NULL || r.free == NULL || r.calloc == NULL || r.realloc == NULL) {
		htr_warn_stderr(NULL, "cannot find the C library's malloc; aborting");
		abort();
	}
	__atomic_store_n(&resolve_state, 2, __ATOMIC_RELEASE);
}

static inline bool ready(void)
{
	htr_resolve_real();
	return htr_real.malloc != NULL;
}

uint8_t htr_family_of(uint8_t call)
{
	switch (call) {
	case HTR_CALL_NEW:
	case HTR_CALL_DELETE:
		return HTR_FAMILY_NEW;
	case HTR_CALL_NEW_ARRAY:
	case HTR_CALL_DELETE_ARRAY:
		return HTR_FAMILY_NEW_ARRAY;
	default:
		return HTR_FAMILY_MALLOC;
	}
}

/* used_bytes stays one atomic, on seq's line (htr_hot): the peak is of the
 * process's total. malloc and free change it together with taking their seq
 * (htr_next_seq_used); the rarer paths use add_used. The counts are the
 * thread's own (see htr_thread). */
static inline void note_peak(int64_t used)
{
	int64_t peak = __atomic_load_n(&htr_hot.peak_used_bytes, __ATOMIC_RELAXED);
	while (used > peak && !__atomic_compare_exchange_n(&htr_hot.peak_used_bytes, &peak, used,
							   true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static inline void add_used(int64_t delta)
{
	int64_t used = __atomic_add_fetch(&htr_hot.used_bytes, delta, __ATOMIC_RELAXED);
	if (delta > 0)
		note_peak(used);
}

static inline void count_alloc_only(struct htr_thread *t)
{
	if (HTR_LIKELY(t->counted))
		__atomic_store_n(&t->allocs, t->allocs + 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&htr_counters.alloc_count, 1, __ATOMIC_RELAXED);
}

static inline void count_free_only(struct htr_thread *t)
{
	if (HTR_LIKELY(t->counted))
		__atomic_store_n(&t->frees, t->frees + 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&htr_counters.free_count, 1, __ATOMIC_RELAXED);
}

static inline void count_alloc(struct htr_thread *t, uint64_t size)
{
	add_used((int64_t)size);
	count_alloc_only(t);
}

static inline void count_free(struct htr_thread *t, uint64_t size)
{
	add_used(-(int64_t)size);
	count_free_only(t);
}

int htr_stats_fill(struct htr_heap_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!htr_recording())
		return -1;
	int64_t used = __atomic_load_n(&htr_hot.used_bytes, __ATOMIC_RELAXED);
	uint64_t allocs, frees;
	htr_counts_sum(&allocs, &frees);
	out->used_bytes = used > 0 ? (size_t)used : 0;
	out->peak_used_bytes = (size_t)__atomic_load_n(&htr_hot.peak_used_bytes, __ATOMIC_RELAXED);
	out->live_blocks = allocs > frees ? (size_t)(allocs - frees) : 0;
	out->alloc_count = (uint32_t)allocs;
	out->free_count = (uint32_t)frees;
	out->failed_count = __atomic_load_n(&htr_counters.failed_count, __ATOMIC_RELAXED);
	out->misuse_count = __atomic_load_n(&htr_counters.misuse_count, __ATOMIC_RELAXED);
	return 0;
}

/* realloc and seq order. realloc's one seq is taken after libc returns (an
 * allocation's rule), but libc may free the old block inside the call and
 * hand its address to another thread, whose ALLOC must sort after the
 * REALLOC that ended it. So the old address stays in this small set from
 * before the call until the REALLOC has its seq, and an allocation that
 * got an address in the set waits for it to leave before taking its seq.
 * The set is almost always empty: then the cost is one load. */
#define PENDING_SLOTS 64u
static uint32_t pending_count;
static uint64_t pending[PENDING_SLOTS];

static int pending_add(uint64_t addr)
{
	__atomic_add_fetch(&pending_count, 1, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < PENDING_SLOTS; i++) {
		uint64_t expected = 0;
		if (__atomic_compare_exchange_n(&pending[i], &expected, addr, false, __ATOMIC_SEQ_CST,
						__ATOMIC_RELAXED))
			return (int)i;
	}
	__atomic_sub_fetch(&pending_count, 1, __ATOMIC_SEQ_CST);
	return -1; /* full: this realloc goes unprotected */
}

static void pending_remove(int slot)
{
	if (slot < 0)
		return;
	__atomic_store_n(&pending[slot], 0, __ATOMIC_SEQ_CST);
	__atomic_sub_fetch(&pending_count, 1, __ATOMIC_SEQ_CST);
}

/* Waits while another thread's realloc still owns addr's old life. */
static void pending_wait(uint64_t addr, int own_slot)
{
	if (HTR_LIKELY(__atomic_load_n(&pending_count, __ATOMIC_SEQ_CST) == 0))
		return;
	for (unsigned i = 0; i < PENDING_SLOTS; i++) {
		if ((int)i == own_slot)
			continue;
		unsigned spins = 0;
		while (__atomic_load_n(&pending[i], __ATOMIC_SEQ_CST) == addr) {
			if (++spins < 64)
				__builtin_ia32_pause();
			else
				sched_yield();
		}
	}
}

/* malloc and free inline the recording core (note_alloc, do_free) and
 * with it the unwind: every recorder frame between the program and
 * unw_backtrace is one more frame for the unwinder to walk. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Records an allocation the C library just made (p NULL: it failed). */
static ALWAYS_INLINE void note_alloc(uint8_t call, void *p, size_t size, size_t alignment,
				     const char *file, int line, bool persist)
{
	struct htr_thread *t = &htr_self;
	struct htr_live_entry e = { .ptr = (uint64_t)(uintptr_t)p, .size = size, .call = call };
	if (!htr_recording() || t->busy) {
		if (p != NULL) {
			/* busy while a shard lock is held: see atfork_prepare */
			t->busy++;
			e.flags = HTR_LIVE_UNTRACED;
			htr_live_insert(&e);
			t->busy--;
		}
		return;
	}
	int saved_errno = errno;
	t->busy++;
	htr_thread_attach(t);
	uint32_t site = file != NULL ? htr_site_intern(&t->w, file, line) : 0;
	uint32_t stack = htr_stack_capture(&t->w, htr_opts.depth);
	if (p != NULL) {
		e.stack = stack;
		e.site = site;
		e.flags = persist ? HTR_LIVE_PERSIST : 0;
		htr_live_insert(&e);
		count_alloc_only(t);
	} else {
		__atomic_add_fetch(&htr_counters.failed_count, 1, __ATOMIC_RELAXED);
	}
	size_t bytes = sizeof(struct htr_rec_alloc) + (persist && p ? sizeof(struct htr_rec_persist) : 0);
	struct htr_rec_alloc *r = htr_writer_reserve(&t->w, bytes);
	if (r != NULL) {
		uint64_t seq;
		if (p != NULL) {
			pending_wait(e.ptr, -1);
			int64_t used;
			seq = htr_next_seq_used((int64_t)size, &used);
			note_peak(used);
		} else {
			seq = htr_next_seq();
		}
		htr_put_alloc(&t->w, r, call, stack, seq, e.ptr, size, site, (uint32_t)alignment);
		if (persist && p != NULL) {
			struct htr_rec_persist *ps = (struct htr_rec_persist *)(r + 1);
			ps->reserved = 0;
			ps->seq = htr_next_seq();
			ps->ptr = e.ptr;
			htr_record_commit(&t->w, ps, HTR_REC_PERSIST, 0, sizeof(*ps));
		}
	} else {
		htr_writer_drop(&t->w);
		if (p != NULL)
			add_used((int64_t)size);
	}
	t->busy--;
	errno = saved_errno;
}

void htr_note_alloc(uint8_t call, void *p, size_t size, size_t alignment, const char *file,
		    int line, bool persist)
{
	note_alloc(call, p, size, alignment, file, line, persist);
}

static ALWAYS_INLINE void do_free(uint8_t call, void *ptr, const char *file, int line)
{
	if (ptr == NULL || htr_bootstrap_owns(ptr))
		return; /* free(NULL) is not an event; pool blocks never reach libc */
	if (!ready())
		return;
	int saved_errno = errno;
	struct htr_thread *t = &htr_self;
	struct htr_live_entry e;
	struct htr_freed_entry f;
	uint64_t p = (uint64_t)(uintptr_t)ptr;

	if (!htr_recording() || t->busy) {
		/* Not checking: the recorder's own frees, and anything before the
		 * trace starts or after it ended. */
		t->busy++;
		htr_live_remove(p, &e, &f, false, 0, 0, 0);
		t->busy--;
		htr_real.free(ptr);
		errno = saved_errno;
		return;
	}
	t->busy++;
	htr_thread_attach(t);
	uint32_t site = file != NULL ? htr_site_intern(&t->w, file, line) : 0;
	/* HEAPTRAIL_FREE_DEPTH: a free's stack only names the first free in a
	 * double-free report, and costs as much as an allocation's. */
	unsigned free_depth = htr_opts.free_depth;
	uint32_t stack = free_depth ? htr_stack_capture(&t->w, free_depth) : 0;
	enum htr_live_result found = htr_live_remove(p, &e, &f, true, stack, site, call);
	bool misuse = found != HTR_LIVE_FOUND ||
		      (!(e.flags & HTR_LIVE_UNTRACED) && htr_family_of(e.call) != htr_family_of(call));
	if (HTR_UNLIKELY(misuse) && free_depth < htr_opts.depth)
		stack = htr_stack_capture(&t->w, htr_opts.depth); /* a report's bad call: in full */
	if (found == HTR_LIVE_FOUND && (e.flags & HTR_LIVE_UNTRACED)) {
		htr_real.free(ptr);
	} else if (found == HTR_LIVE_FOUND && htr_family_of(e.call) != htr_family_of(call)) {
		count_free(t, e.size);
		htr_misuse_report(&t->w, HTR_MISUSE_MISMATCH, p, call, stack, site, &e, NULL);
		htr_real.free(ptr); /* the program meant to free it: free it correctly */
	} else if (found == HTR_LIVE_FOUND) {
		struct htr_rec_free *r = htr_writer_reserve(&t->w, sizeof(*r));
		/* seq before the block goes back: see trace_format.h, Ordering */
		int64_t used;
		uint64_t seq = htr_next_seq_used(-(int64_t)e.size, &used);
		if (r != NULL) {
			htr_put_free(&t->w, r, call, stack, seq, p, site);
		} else {
			htr_writer_drop(&t->w);
		}
		count_free_only(t);
		htr_real.free(ptr);
	} else {
		htr_misuse_report(&t->w,
				  found == HTR_LIVE_FREED ? HTR_MISUSE_DOUBLE_FREE : HTR_MISUSE_INVALID_FREE,
				  p, call, stack, site, NULL, found == HTR_LIVE_FREED ? &f : NULL);
		/* not passed to libc: glibc would abort or corrupt its heap */
	}
	t->busy--;
	errno = saved_errno;
}

void htr_do_free(uint8_t call, void *ptr, const char *file, int line)
{
	do_free(call, ptr, file, line);
}

/* realloc and reallocarray. The old block leaves the live table before the
 * C library sees it: once libc frees it, another thread may get the same
 * address and insert it. */
void *htr_do_realloc(uint8_t call, void *ptr, size_t size, const char *file, int line)
{
	if (!ready()) {
		void *n = htr_bootstrap_alloc(size, 16);
		if (n != NULL && ptr != NULL) {
			size_t old = htr_bootstrap_size(ptr);
			memcpy(n, ptr, old < size ? old : size);
		}
		return n;
	}
	struct htr_thread *t = &htr_self;
	uint64_t p = (uint64_t)(uintptr_t)ptr;
	struct htr_live_entry e = { 0 };
	struct htr_freed_entry f;

	if (ptr != NULL && htr_bootstrap_owns(ptr)) {
		/* A pool block cannot be resized by libc: move it out. */
		size_t old = htr_bootstrap_size(ptr);
		void *n = htr_real.malloc(size ? size : 1);
		if (n != NULL)
			memcpy(n, ptr, old < size ? old : size);
		htr_note_alloc(call, n, size, 0, file, line, false);
		return n;
	}
	if (!htr_recording() || t->busy) {
		enum htr_live_result found = HTR_LIVE_UNKNOWN;
		t->busy++;
		if (ptr != NULL)
			found = htr_live_remove(p, &e, &f, false, 0, 0, 0);
		void *n = htr_real.realloc(ptr, size);
		int saved_errno = errno;
		if (n != NULL) {
			struct htr_live_entry ne = { .ptr = (uint64_t)(uintptr_t)n, .size = size,
						     .call = call, .flags = HTR_LIVE_UNTRACED };
			htr_live_insert(&ne);
		} else if (found == HTR_LIVE_FOUND && size != 0) {
			htr_live_insert(&e);
		}
		t->busy--;
		errno = saved_errno;
		return n;
	}

	int saved_errno = errno;
	t->busy++;
	htr_thread_attach(t);
	uint32_t site = file != NULL ? htr_site_intern(&t->w, file, line) : 0;
	uint32_t stack = htr_stack_capture(&t->w, htr_opts.depth);
	uint64_t old_ptr = 0;
	if (ptr != NULL) {
		enum htr_live_result found = htr_live_remove(p, &e, &f, true, stack, site, call);
		if (found != HTR_LIVE_FOUND) {
			htr_misuse_report(&t->w,
					  found == HTR_LIVE_FREED ? HTR_MISUSE_DOUBLE_FREE
								  : HTR_MISUSE_INVALID_FREE,
					  p, call, stack, site, NULL, found == HTR_LIVE_FREED ? &f : NULL);
			t->busy--;
			errno = ENOMEM; /* the call is refused: to the program it failed */
			return NULL;
		}
		if (e.flags & HTR_LIVE_UNTRACED) {
			old_ptr = 0; /* the trace never saw it: the result is a new block */
		} else if (htr_family_of(e.call) != HTR_FAMILY_MALLOC) {
			count_free(t, e.size);
			htr_misuse_report(&t->w, HTR_MISUSE_MISMATCH, p, call, stack, site, &e, NULL);
			old_ptr = 0;
		} else {
			old_ptr = p;
		}
	}
	struct htr_rec_realloc *r = htr_writer_reserve(&t->w, sizeof(*r));
	uint64_t seq = 0;
	int slot = -1;
	if (ptr != NULL && size == 0)
		seq = htr_next_seq(); /* a pure free: seq before libc has the block */
	else if (old_ptr != 0)
		slot = pending_add(old_ptr);
	errno = saved_errno;
	void *n = htr_real.realloc(ptr, size);
	saved_errno = errno;
	if (seq == 0) {
		if (n != NULL)
			pending_wait((uint64_t)(uintptr_t)n, slot);
		seq = htr_next_seq();
	}
	pending_remove(slot);
	if (n != NULL) {
		struct htr_live_entry ne = { .ptr = (uint64_t)(uintptr_t)n, .size = size, .stack = stack,
					     .site = site, .call = call };
		htr_live_insert(&ne);
		if (old_ptr != 0)
			count_free(t, e.size);
		count_alloc(t, size);
	} else if (ptr != NULL && size != 0) {
		htr_live_insert(&e); /* failed: the old block stays as it was */
		__atomic_add_fetch(&htr_counters.failed_count, 1, __ATOMIC_RELAXED);
	} else if (ptr != NULL) {
		if (old_ptr != 0)
			count_free(t, e.size);
	} else {
		__atomic_add_fetch(&htr_counters.failed_count, 1, __ATOMIC_RELAXED);
	}
	if (r != NULL && (old_ptr != 0 || n != NULL || size != 0)) {
		htr_put_realloc(&t->w, r, call, stack, seq, old_ptr, (uint64_t)(uintptr_t)n, size, site);
	} else if (r != NULL) {
		/* Nothing to say (an untraced block freed by realloc(p, 0)): the
		 * reserved space must still hold a valid record. */
		struct htr_rec_time *tm = (struct htr_rec_time *)(void *)r;
		struct htr_rec_time copy = { .seq = seq, .monotonic_ns = htr_now_ns(CLOCK_MONOTONIC) };
		memcpy((char *)tm + 4, (char *)&copy + 4, sizeof(copy) - 4);
		memset((char *)tm + sizeof(copy), 0, sizeof(*r) - sizeof(copy));
		htr_record_commit(&t->w, tm, HTR_REC_TIME, 0, sizeof(*r));
	} else {
		htr_writer_drop(&t->w);
	}
	t->busy--;
	errno = saved_errno;
	return n;
}

/* ---- the hooks ---- */

HTR_EXPORT void *malloc(size_t size)
{
	if (HTR_UNLIKELY(!ready()))
		return htr_bootstrap_alloc(size, 16);
	void *p = htr_real.malloc(size);
	note_alloc(HTR_CALL_MALLOC, p, size, 0, NULL, 0, false);
	return p;
}

HTR_EXPORT void free(void *ptr)
{
	do_free(HTR_CALL_FREE, ptr, NULL, 0);
}

HTR_EXPORT void *calloc(size_t count, size_t size)
{
	if (HTR_UNLIKELY(!ready())) {
		if (size != 0 && count > SIZE_MAX / size)
			return NULL;
		return htr_bootstrap_alloc(count * size, 16);
	}
	void *p = htr_real.calloc(count, size);
	size_t total;
	if (__builtin_mul_overflow(count, size, &total))
		total = SIZE_MAX;
	htr_note_alloc(HTR_CALL_CALLOC, p, total, 0, NULL, 0, false);
	return p;
}

HTR_EXPORT void *realloc(void *ptr, size_t size)
{
	return htr_do_realloc(HTR_CALL_REALLOC, ptr, size, NULL, 0);
}

/* glibc's own reallocarray calls realloc through the interposable symbol;
 * doing the overflow check here and calling libc's realloc directly
 * records it once, as reallocarray. */
HTR_EXPORT void *reallocarray(void *ptr, size_t count, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(count, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return htr_do_realloc(HTR_CALL_REALLOCARRAY, ptr, total, NULL, 0);
}

HTR_EXPORT int posix_memalign(void **memptr, size_t alignment, size_t size)
{
	int saved_errno = errno;
	if (HTR_UNLIKELY(!ready())) {
		void *p = htr_bootstrap_alloc(size, alignment);
		if (p == NULL)
			return ENOMEM;
		*memptr = p;
		return 0;
	}
	void *p = NULL;
	int rc = htr_real.posix_memalign(&p, alignment, size);
	errno = saved_errno;
	if (rc == 0)
		*memptr = p;
	if (rc != EINVAL)
		htr_note_alloc(HTR_CALL_POSIX_MEMALIGN, rc == 0 ? p : NULL, size, alignment, NULL, 0,
			       false);
	return rc;
}

HTR_EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
	if (HTR_UNLIKELY(!ready()))
		return htr_bootstrap_alloc(size, alignment);
	void *p = htr_real.aligned_alloc(alignment, size);
	htr_note_alloc(HTR_CALL_ALIGNED_ALLOC, p, size, alignment, NULL, 0, false);
	return p;
}

HTR_EXPORT void *memalign(size_t alignment, size_t size)
{
	if (HTR_UNLIKELY(!ready()))
		return htr_bootstrap_alloc(size, alignment);
	void *p = htr_real.memalign(alignment, size);
	htr_note_alloc(HTR_CALL_MEMALIGN, p, size, alignment, NULL, 0, false);
	return p;
}

HTR_EXPORT void *valloc(size_t size)
{
	if (HTR_UNLIKELY(!ready()))
		return htr_bootstrap_alloc(size, 4096);
	void *p = htr_real.valloc(size);
	htr_note_alloc(HTR_CALL_VALLOC, p, size, (size_t)sysconf(_SC_PAGESIZE), NULL, 0, false);
	return p;
}

HTR_EXPORT void *pvalloc(size_t size)
{
	if (HTR_UNLIKELY(!ready()))
		return htr_bootstrap_alloc(size, 4096);
	void *p = htr_real.pvalloc(size);
	htr_note_alloc(HTR_CALL_PVALLOC, p, size, (size_t)sysconf(_SC_PAGESIZE), NULL, 0, false);
	return p;
}

HTR_EXPORT size_t malloc_usable_size(void *ptr)
{
	if (ptr == NULL)
		return 0;
	if (htr_bootstrap_owns(ptr))
		return htr_bootstrap_size(ptr);
	if (!ready())
		return 0;
	return htr_real.malloc_usable_size(ptr);
}
