/* Private interfaces between the parts of the host recorder (libheaptrail.so).
 * Nothing here is exported: the library is built with -fvisibility=hidden and
 * only the hooks and the ABI table carry HTR_EXPORT. */
#ifndef HEAPTRAIL_HOST_INTERNAL_H
#define HEAPTRAIL_HOST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "heaptrail/trace_format.h"

struct htr_heap_stats; /* heaptrail.h; not included here so C++ parts stay -Wshadow clean */

#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define HTR_HAVE_SINGLE_THREADED 1
#endif
#endif

#define HTR_EXPORT __attribute__((visibility("default")))
#define HTR_TLS __attribute__((tls_model("initial-exec")))
#define HTR_LIKELY(x) __builtin_expect(!!(x), 1)
#define HTR_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Whether the process has never had a second thread: glibc's own flag
 * (2.32+), cleared by pthread_create before the thread exists and never set
 * again, the one glibc's malloc skips its arena locks by. While it is set,
 * the live table takes no lock and seq no locked instruction: in a
 * single-threaded malloc/free loop those were a quarter of the recorder's
 * time. (A thread made by a raw clone is not seen; glibc's malloc does not
 * see it either, see README, Known limits.) */
static inline bool htr_single_threaded(void)
{
#if defined(HTR_HAVE_SINGLE_THREADED) && defined(__x86_64__)
	return __atomic_load_n(&__libc_single_threaded, __ATOMIC_RELAXED) != 0;
#else
	return false;
#endif
}

/* ---- spinlock.h-style helpers (tiny, header only) ---- */
typedef struct {
	int v;
} htr_spinlock;

void htr_spin_lock_slow(htr_spinlock *l);
/* Inline: a free or malloc takes a live-table shard lock, and the call to
 * an out-of-line lock cost as much as the uncontended exchange itself. */
static inline void htr_spin_lock(htr_spinlock *l)
{
	if (HTR_LIKELY(!__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE)))
		return;
	htr_spin_lock_slow(l);
}
static inline void htr_spin_unlock(htr_spinlock *l)
{
	__atomic_store_n(&l->v, 0, __ATOMIC_RELEASE);
}

/* ---- options.c ---- */
enum htr_on_error {
	HTR_ON_ERROR_CONTINUE = 0,
	HTR_ON_ERROR_ABORT = 1,
};

struct htr_options {
	char output[4096];   /* directory for trace files */
	unsigned depth;      /* frames per backtrace, 1..HTR_MAX_DEPTH */
	unsigned free_depth; /* frames per free backtrace, 0 (none)..HTR_MAX_DEPTH */
	unsigned chunk_kb;   /* chunk size in KiB, multiple of 4 */
	enum htr_on_error on_error;
};

#ifndef HTR_DEFAULT_DEPTH
#define HTR_DEFAULT_DEPTH 64
#endif
/* 128 rather than 64: half the claims (map, populate, retire: 3 syscalls
 * each) cut the system time on a malloc/free loop by a fifth, for 64 KiB
 * more resident per thread. 256 rather than 128 once a chunk is prefilled
 * in one write (large folios, see prefill): `heaptrail run` CPU of 8
 * threads -10% (0.286 -> 0.257 s, wall 0.223 -> 0.208 s), of a
 * malloc/free loop -4%, for 128 KiB more per live thread; 512 gained
 * nothing more on the threads. */
#define HTR_DEFAULT_CHUNK_KB 256u
#define HTR_MIN_CHUNK_KB 16u
#define HTR_MAX_CHUNK_KB 65536u

/* Reports one problem: `line` is a complete message without prefix or newline. */
typedef void (*htr_warn_fn)(void *ctx, const char *line);

/* Fills *out from the HEAPTRAIL_* entries of envp (defaults for the rest).
 * Calls warn once per unknown variable or invalid value. Returns the number
 * of warnings. Never allocates. */
int htr_options_parse(char *const *envp, struct htr_options *out, htr_warn_fn warn, void *ctx);

/* Writes "heaptrail: <line>\n" to stderr with one write(2). */
void htr_warn_stderr(void *ctx, const char *line);

/* Small formatting helpers that do not allocate. Each returns the new end of
 * the string at dst (always NUL-terminated, never past dst_end - 1). */
char *htr_str_append(char *dst, char *dst_end, const char *s);
char *htr_str_append_u64(char *dst, char *dst_end, uint64_t v);

/* ---- bootstrap.c ---- */
void *htr_bootstrap_alloc(size_t size, size_t alignment);
bool htr_bootstrap_owns(const void *p);
size_t htr_bootstrap_size(const void *p);

/* ---- real allocator (hooks_c.c) ---- */
struct htr_real {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*malloc_usable_size)(void *);
	pid_t (*fork)(void);
};
extern struct htr_real htr_real;
/* Makes sure htr_real is filled (idempotent, thread-safe). */
void htr_resolve_real(void);

/* ---- tracefile.c ---- */
/* Creates the trace file (flags: HTR_FILE_*). Returns 0, or -1 after one
 * warning line (then the process runs untraced). */
int htr_tracefile_open(const struct htr_options *opt, uint32_t flags, uint32_t parent_pid,
		       uint64_t fork_seq);
/* In a fork child: forget the parent's file and mappings (no syscall to the
 * parent's file is made). */
void htr_tracefile_forget(void);
/* Orderly end: END record, CLEAN_EXIT, last_seq, truncation. */
void htr_tracefile_finish(uint32_t end_kind, uint64_t status);
/* After a failed exec: undo the END of htr_tracefile_finish. */
void htr_tracefile_resume(void);
bool htr_tracefile_active(void);
/* fork: prepare takes the chunk-claim lock, parent releases it, the child
 * just forgets it. */
void htr_tracefile_fork_prepare(void);
void htr_tracefile_fork_parent(void);
void htr_tracefile_forget_lock(void);
struct htr_file_header *htr_tracefile_header(void);

/* The words every event updates, on one cache line of their own: the
 * process-wide sequence counter and the heap statistics' used bytes and
 * peak. With threads on several cores an event then moves one line between
 * cores instead of two, and nothing else shares the line. */
struct htr_hot {
	uint64_t seq;            /* last seq handed out */
	int64_t used_bytes;      /* live bytes of the blocks the hooks counted */
	int64_t peak_used_bytes; /* highest used_bytes so far */
} __attribute__((aligned(64)));
extern struct htr_hot htr_hot;
/* The CPU has cmpxchg16b (all but the first x86-64 CPUs); set by
 * htr_hot_init before the trace starts. */
extern bool htr_have_cx16;
void htr_hot_init(void);
static inline uint64_t htr_next_seq(void)
{
	return __atomic_add_fetch(&htr_hot.seq, 1, __ATOMIC_RELAXED);
}
/* Takes the next seq and adds delta to used_bytes in one locked instruction
 * (cmpxchg16b on the pair; they are adjacent and 16-aligned): a malloc or
 * free then pays one atomic on htr_hot instead of two. *used gets
 * used_bytes after the add. */
static inline uint64_t htr_next_seq_used(int64_t delta, int64_t *used)
{
#if defined(__x86_64__)
	if (htr_single_threaded()) {
		/* xadd without lock: one instruction, so a signal handler on
		 * this (the only) thread cannot split it. */
		uint64_t seq = 1;
		int64_t old = delta;
		__asm__ __volatile__("xaddq %0, %1" : "+r"(seq), "+m"(htr_hot.seq) : : "memory");
		__asm__ __volatile__("xaddq %0, %1" : "+r"(old), "+m"(htr_hot.used_bytes) : : "memory");
		*used = old + delta;
		return seq + 1;
	}
	if (HTR_LIKELY(htr_have_cx16)) {
		uint64_t seq = __atomic_load_n(&htr_hot.seq, __ATOMIC_RELAXED);
		int64_t old = __atomic_load_n(&htr_hot.used_bytes, __ATOMIC_RELAXED);
		bool done;
		do {
			/* On failure rdx:rax get the pair's current value: retry from it. */
			__asm__ __volatile__("lock cmpxchg16b %[pair]"
					     : "=@ccz"(done), [pair] "+m"(htr_hot), "+a"(seq), "+d"(old)
					     : "b"(seq + 1), "c"(old + delta)
					     : "memory");
		} while (!done);
		*used = old + delta;
		return seq + 1;
	}
#endif
	*used = __atomic_add_fetch(&htr_hot.used_bytes, delta, __ATOMIC_RELAXED);
	return htr_next_seq();
}

/* Per-thread writer state (one per thread, in TLS). */
struct htr_writer {
	uint8_t *cur;   /* next record goes here */
	uint8_t *end;   /* end of the current chunk */
	uint32_t thread_index;
	uint32_t generation; /* file generation this chunk belongs to */
	uint64_t chunk_seq;  /* the chunk's first_seq: the short forms' seq base */
	uint64_t pending_drops;
	/* A record reserved now and filled later (the FORK slot): its chunk
	 * must stay mapped until it is filled, even if the thread moves on. */
	void *pin;
	uint8_t *held; /* full chunk kept mapped for pin */
};

extern uint32_t htr_file_generation;
void *htr_writer_reserve_slow(struct htr_writer *w, size_t bytes);
/* Makes room for `bytes` in the thread's chunk (claiming a new chunk, which
 * starts with a TIME record, when needed). Returns a pointer to write the
 * records at, or NULL (the caller counts a drop). The common case (room
 * left, nothing to report first) is inline: a compare and an add. */
static inline void *htr_writer_reserve(struct htr_writer *w, size_t bytes)
{
	if (HTR_LIKELY(w->generation == htr_file_generation && w->pending_drops == 0 &&
		       w->cur != NULL && (size_t)(w->end - w->cur) >= bytes)) {
		void *p = w->cur;
		w->cur += bytes;
		return p;
	}
	return htr_writer_reserve_slow(w, bytes);
}
static inline void htr_rec_publish(void *rec, uint8_t type, uint8_t kind, size_t bytes)
{
	uint32_t word = (uint32_t)type | (uint32_t)kind << 8 | (uint32_t)bytes << 16;
	__atomic_store_n((uint32_t *)rec, word, __ATOMIC_RELEASE);
}
/* Publishes a record built at rec: body first, then the first word with
 * release order. rec must come from htr_writer_reserve; `bytes` is the
 * record's size (multiple of 8). */
static inline void htr_record_commit(struct htr_writer *w, void *rec, uint8_t type, uint8_t kind,
				     size_t bytes)
{
	(void)w;
	htr_rec_publish(rec, type, kind, bytes);
}
/* The short ALLOC and FREE forms (trace_format.h), when ptr and seq fit. */
static inline bool htr_short_fits(const struct htr_writer *w, uint64_t ptr, uint64_t seq)
{
	return (ptr & ((1u << HTR_SHORT_PTR_SHIFT) - 1)) == 0 && ptr < HTR_SHORT_PTR_LIMIT &&
	       seq - w->chunk_seq < ((uint64_t)1 << HTR_SHORT_SEQ_BITS);
}
static inline uint64_t htr_short_pack(const struct htr_writer *w, uint64_t ptr, uint64_t seq)
{
	return ptr >> HTR_SHORT_PTR_SHIFT << HTR_SHORT_SEQ_BITS | (seq - w->chunk_seq);
}

/* Writes an ALLOC at r, which must be w's latest reservation, made for a
 * long ALLOC: in the short form when it fits, and the bytes that form does
 * not use go back to the chunk. */
static inline void htr_put_alloc(struct htr_writer *w, void *r, uint8_t call, uint32_t stack,
				 uint64_t seq, uint64_t ptr, uint64_t size, uint32_t site,
				 uint32_t alignment)
{
	if (HTR_LIKELY(site == 0 && alignment == 0 && htr_short_fits(w, ptr, seq) &&
		       w->cur == (uint8_t *)r + sizeof(struct htr_rec_alloc))) {
		struct htr_rec_alloc_short *s = (struct htr_rec_alloc_short *)r;
		s->stack = stack;
		s->ptr_seq = htr_short_pack(w, ptr, seq);
		s->size = size;
		w->cur = (uint8_t *)r + sizeof(*s);
		htr_rec_publish(s, HTR_REC_ALLOC_SHORT, call, sizeof(*s));
		return;
	}
	struct htr_rec_alloc *a = (struct htr_rec_alloc *)r;
	a->stack = stack;
	a->seq = seq;
	a->ptr = ptr;
	a->size = size;
	a->site = site;
	a->alignment = alignment;
	htr_rec_publish(a, HTR_REC_ALLOC, call, sizeof(*a));
}

/* The same for a FREE, at a reservation made for a long FREE. */
static inline void htr_put_free(struct htr_writer *w, void *r, uint8_t call, uint32_t stack,
				uint64_t seq, uint64_t ptr, uint32_t site)
{
	if (HTR_LIKELY(site == 0 && htr_short_fits(w, ptr, seq) &&
		       w->cur == (uint8_t *)r + sizeof(struct htr_rec_free))) {
		struct htr_rec_free_short *s = (struct htr_rec_free_short *)r;
		s->stack = stack;
		s->ptr_seq = htr_short_pack(w, ptr, seq);
		w->cur = (uint8_t *)r + sizeof(*s);
		htr_rec_publish(s, HTR_REC_FREE_SHORT, call, sizeof(*s));
		return;
	}
	struct htr_rec_free *f = (struct htr_rec_free *)r;
	f->stack = stack;
	f->seq = seq;
	f->ptr = ptr;
	f->site = site;
	f->reserved = 0;
	htr_rec_publish(f, HTR_REC_FREE, call, sizeof(*f));
}

/* The same for a REALLOC (ptr_seq holds old_ptr), at a reservation made
 * for a long REALLOC. */
static inline void htr_put_realloc(struct htr_writer *w, void *r, uint8_t call, uint32_t stack,
				   uint64_t seq, uint64_t old_ptr, uint64_t new_ptr, uint64_t size,
				   uint32_t site)
{
	if (HTR_LIKELY(site == 0 && htr_short_fits(w, old_ptr, seq) &&
		       w->cur == (uint8_t *)r + sizeof(struct htr_rec_realloc))) {
		struct htr_rec_realloc_short *s = (struct htr_rec_realloc_short *)r;
		s->stack = stack;
		s->ptr_seq = htr_short_pack(w, old_ptr, seq);
		s->new_ptr = new_ptr;
		s->size = size;
		w->cur = (uint8_t *)r + sizeof(*s);
		htr_rec_publish(s, HTR_REC_REALLOC_SHORT, call, sizeof(*s));
		return;
	}
	struct htr_rec_realloc *a = (struct htr_rec_realloc *)r;
	a->stack = stack;
	a->seq = seq;
	a->old_ptr = old_ptr;
	a->new_ptr = new_ptr;
	a->size = size;
	a->site = site;
	a->reserved = 0;
	htr_rec_publish(a, HTR_REC_REALLOC, call, sizeof(*a));
}

/* Ends the pin; a chunk it kept mapped is retired now. */
void htr_writer_unpin(struct htr_writer *w);
/* The thread is done with its chunk (thread exit): its pages leave the
 * process; the next record, if any, claims a fresh chunk. */
void htr_writer_retire(struct htr_writer *w);
/* Writes a TIME record. */
void htr_writer_time(struct htr_writer *w);
/* Counts an event that could not be written. */
void htr_writer_drop(struct htr_writer *w);

/* Raw chunk-level writer, also used by the unit tests on a plain buffer. */
struct htr_chunk_writer {
	uint8_t *base, *cur, *end;
};
void htr_chunk_init(struct htr_chunk_writer *cw, void *chunk, size_t chunk_size,
		    uint32_t thread_index, uint64_t chunk_index, uint64_t first_seq);
void *htr_chunk_reserve(struct htr_chunk_writer *cw, size_t bytes);

static inline size_t htr_align8(size_t n)
{
	return (n + 7u) & ~(size_t)7u;
}

/* ---- threads.c ---- */
struct htr_thread {
	struct htr_writer w;
	int busy;            /* recursion guard: inside the recorder */
	int started;         /* THREAD START written for the current generation */
	int in_fork;         /* inside our fork() wrapper */
	void *fork_slot;     /* reserved FORK record (see process.c) */
	uint64_t fork_seq;
	/* This thread's share of htr_get_heap_stats' counts, while counted is
	 * set (it is then on the list htr_counts_sum walks): plain stores on
	 * the hot path instead of atomics on one shared line. */
	int counted;
	uint64_t allocs, frees;
	struct htr_thread *next_counted;
};
extern __thread struct htr_thread htr_self HTR_TLS;
void htr_thread_attach_slow(struct htr_thread *t);
/* Writes THREAD START for this thread if not done yet for the current file. */
static inline void htr_thread_attach(struct htr_thread *t)
{
	if (HTR_LIKELY(t->started && t->w.generation == htr_file_generation))
		return;
	htr_thread_attach_slow(t);
}
/* Gives the thread its index without writing anything (the first thread of
 * a trace writes PROCESS before its THREAD START). */
void htr_thread_assign(struct htr_thread *t);
void htr_thread_write_start(struct htr_thread *t);
void htr_threads_init(void);
void htr_threads_after_fork_child(void);
void htr_threads_fork_prepare(void);
void htr_threads_fork_parent(void);
/* Sums of the per-thread counts (live threads and those that ended). */
void htr_counts_sum(uint64_t *allocs, uint64_t *frees);

/* ---- stacks.c ---- */
#define HTR_SKIP_MAX 8u /* recorder frames we may have to drop */
#define HTR_UNWIND_CAP (HTR_MAX_DEPTH + HTR_SKIP_MAX)
int unw_backtrace(void **buffer, int size); /* libunwind.h, without its macros */
/* Interns the frames unw_backtrace gave when asked for `asked` of them (the
 * recorder's own dropped, at most depth kept; unwinds again, deeper, when
 * the recorder's frames cut the program's short). Writes the STACK
 * definition through w the first time an id is seen. Returns the id, 0 when
 * nothing was left. ips holds HTR_UNWIND_CAP entries. */
uint32_t htr_stack_intern(struct htr_writer *w, uint64_t *ips, int n, int asked, unsigned depth);

/* x86-64 with _dl_find_object (glibc 2.35): the recorder's own unwinder
 * (unwind.c), libunwind only for what it does not handle. Elsewhere,
 * libunwind alone. */
#if defined(__x86_64__) && defined(__GLIBC__) && !defined(HTR_NO_NATIVE_UNWIND)
#if __GLIBC_PREREQ(2, 35)
#define HTR_NATIVE_UNWIND 1
#endif
#endif
#ifndef HTR_NATIVE_UNWIND
#define HTR_NATIVE_UNWIND 0
#endif

#if HTR_NATIVE_UNWIND
/* Unwinds from its own return address (into the hook) and interns. Not
 * inlined: its frame pointer and return address are the walk's start. A
 * backtrace from the same place over the same stack words as one before
 * returns that one's id without walking (see stacks.c). */
uint32_t htr_stack_capture_native(struct htr_writer *w, unsigned depth);
static inline __attribute__((always_inline)) uint32_t htr_stack_capture(struct htr_writer *w,
									unsigned depth)
{
	return htr_stack_capture_native(w, depth);
}
#else
/* Unwinds the caller's stack and interns it. Inlined so that the hooks
 * that inline it leave fewer recorder frames for the unwinder to walk
 * (each costs as much as one of the program's). It asks for two frames
 * more than depth (unw_backtrace's and the hook's): every frame asked for
 * is walked, even when the recorder drops it. */
static inline __attribute__((always_inline)) uint32_t htr_stack_capture(struct htr_writer *w,
									unsigned depth)
{
	uint64_t ips[HTR_UNWIND_CAP];
	int asked = (int)depth + 2;
	int n = unw_backtrace((void **)ips, asked);
	return htr_stack_intern(w, ips, n, asked, depth);
}
#endif

/* How this thread's backtraces were made (for the tests and profiling). */
struct htr_stack_counts {
	uint64_t chain_hits; /* replayed from the chain cache, no walk */
	uint64_t walks;      /* walked by unwind.c */
	uint64_t fallbacks;  /* handed to libunwind */
};
void htr_stack_counts_get(struct htr_stack_counts *out);
/* The frames of an interned stack (a scan: for the tests). Returns its
 * depth, 0 when the id is unknown; copies at most cap frames. */
uint32_t htr_stack_frames(uint32_t id, uint64_t *out, uint32_t cap);
void htr_stacks_init(void);
/* Which addresses count as the recorder's own frames (tests set none). */
void htr_stacks_set_self(uintptr_t start, uintptr_t end);
void htr_stacks_fork_prepare(void);
void htr_stacks_fork_parent(void);
void htr_stacks_fork_child(void);

/* Interning table, exposed for the unit tests. */
struct htr_stack_table;
struct htr_stack_table *htr_stack_table_new(void);
/* Returns the id; *is_new says whether it was just created. */
uint32_t htr_stack_table_intern(struct htr_stack_table *t, const uint64_t *frames, uint32_t depth,
				bool *is_new);
uint64_t htr_stack_hash(const uint64_t *frames, uint32_t depth);

/* ---- sites.c ---- */
uint32_t htr_site_intern(struct htr_writer *w, const char *file, int line);
void htr_sites_fork_prepare(void);
void htr_sites_fork_parent(void);
void htr_sites_fork_child(void);

/* ---- modules.c ---- */
void htr_modules_scan(struct htr_writer *w, bool force);
void htr_modules_reset(void);
void htr_modules_fork_prepare(void);
void htr_modules_fork_parent(void);
void htr_modules_fork_child(void);

/* ---- live_table.c ---- */
#define HTR_LIVE_UNTRACED 0x1u /* allocated while not recording: free it silently */
#define HTR_LIVE_PERSIST 0x2u

struct htr_live_entry {
	uint64_t ptr;
	uint64_t size;
	uint32_t stack;
	uint32_t site;
	uint8_t call;  /* enum htr_call_kind */
	uint8_t flags; /* HTR_LIVE_* */
	uint16_t reserved;
	uint32_t reserved2;
};

struct htr_freed_entry {
	uint64_t ptr;
	uint64_t size;
	uint32_t alloc_stack, alloc_site;
	uint32_t free_stack, free_site;
	uint8_t alloc_call, free_call, flags, reserved;
	uint32_t reserved2;
};

enum htr_live_result {
	HTR_LIVE_FOUND = 1,      /* removed; *out holds the block */
	HTR_LIVE_FREED = 2,      /* not live, freed before: *freed holds the first free */
	HTR_LIVE_UNKNOWN = 3,    /* never seen */
};

void htr_live_insert(const struct htr_live_entry *e);
/* Removes ptr; when found and `remember` is set, remembers the free with
 * free_stack/free_site/free_call for double-free reports. */
enum htr_live_result htr_live_remove(uint64_t ptr, struct htr_live_entry *out,
				     struct htr_freed_entry *freed, bool remember, uint32_t free_stack,
				     uint32_t free_site, uint8_t free_call);
bool htr_live_lookup(uint64_t ptr, struct htr_live_entry *out);
void htr_live_fork_prepare(void);
void htr_live_fork_parent(void);
void htr_live_fork_child(void);
size_t htr_live_count(void);
void htr_live_reset_for_tests(void);
#define HTR_FREED_RING 2048u /* remembered frees per shard */

/* ---- misuse.c / hooks ---- */
struct htr_call {
	uint8_t call;       /* enum htr_call_kind */
	uint32_t site;      /* interned, or 0 */
	const char *file;   /* API calls: where, else NULL */
	int line;
};

/* The recording core (hooks_c.c). */
void *htr_do_alloc(uint8_t call, size_t size, size_t alignment, const char *file, int line,
		   bool persist);
void htr_do_free(uint8_t call, void *ptr, const char *file, int line);
void *htr_do_realloc(uint8_t call, void *ptr, size_t size, const char *file, int line);
void htr_note_alloc(uint8_t call, void *p, size_t size, size_t alignment, const char *file,
		    int line, bool persist);

uint8_t htr_family_of(uint8_t call);
/* Handles a free of a block that is not live. Returns after recording (or
 * aborts when HEAPTRAIL_ON_ERROR=abort). */
void htr_misuse_report(struct htr_writer *w, uint8_t kind, uint64_t ptr, uint8_t call,
		       uint32_t stack, uint32_t site, const struct htr_live_entry *alloc,
		       const struct htr_freed_entry *freed);

/* ---- process.c ---- */
extern struct htr_options htr_opts;
/* 0 not started, 1 initialising, 2 recording, 3 untraced (disabled or ended) */
extern int htr_state;
enum {
	HTR_ST_NONE = 0,
	HTR_ST_INIT = 1,
	HTR_ST_ON = 2,
	HTR_ST_OFF = 3,
};
static inline bool htr_recording(void)
{
	return __atomic_load_n(&htr_state, __ATOMIC_ACQUIRE) == HTR_ST_ON;
}
void htr_write_process_record(struct htr_writer *w);
uint64_t htr_now_ns(int clock);

/* ---- stats (hooks_c.c) ---- */
/* used_bytes and its peak are in htr_hot. */
struct htr_counters {
	/* Counts of threads that are not counted per thread (see htr_thread)
	 * or have ended. Live blocks are allocs - frees. */
	uint64_t alloc_count, free_count;
	uint32_t failed_count, misuse_count;
};
extern struct htr_counters htr_counters;
int htr_stats_fill(struct htr_heap_stats *out);

#endif /* HEAPTRAIL_HOST_INTERNAL_H */
