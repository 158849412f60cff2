/* The heaptrail host trace format, version 2. docs/trace-format.md is the
 * prose version of this file; where they disagree, this file is right.
 *
 * A trace file is the recorder's shared mapping itself: the program writes
 * its records straight into file-backed pages, so whatever it recorded is in
 * the file even when it crashes, calls _exit or is killed with SIGKILL. No
 * helper thread and no collector is needed for that.
 *
 *   offset 0                 struct htr_file_header (HTR_FILE_HEADER_SIZE)
 *   HTR_FILE_HEADER_SIZE     chunk 0   (header->chunk_size bytes)
 *   ... + chunk_size         chunk 1
 *   ...
 *
 * Each chunk belongs to one thread, which claims it with an atomic increment
 * of header->chunks_claimed and fills it with records from offset
 * sizeof(struct htr_chunk_header). A chunk whose magic is 0 was never used
 * (claimed at a crash, or space reserved ahead): readers skip it. Within a
 * chunk, records follow each other, 8-byte aligned; the first record whose
 * first 4 bytes are 0 ends the chunk.
 *
 * Commit protocol: a writer fills a record's body first and stores its first
 * 32-bit word (type, kind, size) last, with release ordering. A reader that
 * finds a non-zero first word may read the whole record. A record cut off by
 * a crash therefore reads as the end of its chunk, never as garbage.
 *
 * Ordering: every event record carries `seq`, taken from one process-wide
 * counter. A free takes its seq before the memory goes back to the C library
 * and an allocation after the C library returned it, so when an address is
 * reused by another thread the free always sorts first. Readers merge the
 * per-thread streams by seq (the short ALLOC and FREE forms carry it as an
 * offset from their chunk's first_seq). Definition records (STACK, SITE)
 * have no seq: they stand right after the preceding sequenced record of
 * their thread, and a consumer must accept an id used before its definition
 * is seen.
 *
 * All integers are little-endian (the file is read on the machine that wrote
 * it, or one like it: pointer size and byte order are in the header).
 */
#ifndef HEAPTRAIL_TRACE_FORMAT_H
#define HEAPTRAIL_TRACE_FORMAT_H

#include <stdint.h>

#define HTR_TRACE_MAGIC "HTRTRACE"  /* 8 bytes, no NUL */
#define HTR_TRACE_VERSION_MAJOR 2   /* readers refuse another major, but read 1 (2 added the short forms) */
#define HTR_TRACE_VERSION_MINOR 0   /* readers accept any minor (new record types are skipped) */
#define HTR_FILE_HEADER_SIZE 4096u
#define HTR_CHUNK_MAGIC 0x43525448u /* "HTRC" little-endian */
#define HTR_MAX_DEPTH 256u          /* most frames a STACK record holds */
#define HTR_BUILD_ID_MAX 32u

/* header->state: the recorder sets RUNNING when it creates the file and
 * CLEAN_EXIT in its exit path. A reader that finds RUNNING in a file no
 * process writes any more is looking at a crash or a kill. */
enum htr_file_state {
	HTR_STATE_RUNNING = 1,
	HTR_STATE_CLEAN_EXIT = 2,
};

/* header->flags */
#define HTR_FILE_FORK_CHILD 0x1u /* created in a fork child: see parent_pid, fork_seq */
#define HTR_FILE_EXEC_IMAGE 0x2u /* the pid already had a trace: an exec'd image */

struct htr_file_header {
	char magic[8];              /* HTR_TRACE_MAGIC */
	uint16_t version_major;
	uint16_t version_minor;
	uint16_t header_size;       /* HTR_FILE_HEADER_SIZE */
	uint8_t pointer_size;       /* 8 on x86_64 */
	uint8_t big_endian;         /* 0 */
	uint32_t chunk_size;        /* bytes per chunk, a multiple of the page size */
	uint32_t flags;             /* HTR_FILE_* */
	uint32_t pid;
	uint32_t ppid;
	uint32_t parent_pid;        /* with HTR_FILE_FORK_CHILD: the forking process */
	uint32_t max_depth;         /* HEAPTRAIL_DEPTH in force */
	uint64_t fork_seq;          /* with HTR_FILE_FORK_CHILD: seq of FORK in the parent's trace */
	uint64_t start_realtime_ns; /* CLOCK_REALTIME at creation */
	uint64_t start_monotonic_ns;/* CLOCK_MONOTONIC at creation; TIME records use this clock */
	/* Updated while the program runs, through the shared mapping. */
	uint64_t chunks_claimed;    /* atomic; chunks [0, chunks_claimed) may hold data */
	uint64_t dropped_events;    /* atomic; events that could not be recorded (see DROPS) */
	uint32_t state;             /* enum htr_file_state */
	uint32_t reserved0;
	uint64_t last_seq;          /* at CLEAN_EXIT: the last seq handed out */
};

struct htr_chunk_header {
	uint32_t magic;        /* HTR_CHUNK_MAGIC, stored last with release order */
	uint32_t thread_index; /* small per-process number; THREAD records map it to a tid */
	uint64_t chunk_index;  /* its own position, as a check */
	uint64_t first_seq;    /* seq counter value when the chunk was claimed */
	uint64_t reserved;
};

enum htr_record_type {
	HTR_REC_END_OF_CHUNK = 0, /* never written: a zero first word ends a chunk */
	HTR_REC_ALLOC = 1,        /* struct htr_rec_alloc */
	HTR_REC_FREE = 2,         /* struct htr_rec_free */
	HTR_REC_REALLOC = 3,      /* struct htr_rec_realloc */
	HTR_REC_MISUSE = 4,       /* struct htr_rec_misuse */
	HTR_REC_STACK = 5,        /* struct htr_rec_stack (definition) */
	HTR_REC_SITE = 6,         /* struct htr_rec_site (definition) */
	HTR_REC_MARKER = 7,       /* struct htr_rec_marker */
	HTR_REC_MODULE = 8,       /* struct htr_rec_module */
	HTR_REC_THREAD = 9,       /* struct htr_rec_thread */
	HTR_REC_PROCESS = 10,     /* struct htr_rec_process */
	HTR_REC_FORK = 11,        /* struct htr_rec_fork */
	HTR_REC_TIME = 12,        /* struct htr_rec_time */
	HTR_REC_DROPS = 13,       /* struct htr_rec_drops */
	HTR_REC_END = 14,         /* struct htr_rec_end */
	HTR_REC_PERSIST = 15,     /* struct htr_rec_persist: marks a live block persistent */
	HTR_REC_ALLOC_SHORT = 16, /* struct htr_rec_alloc_short (version 2) */
	HTR_REC_FREE_SHORT = 17,  /* struct htr_rec_free_short (version 2) */
	HTR_REC_REALLOC_SHORT = 18, /* struct htr_rec_realloc_short (version 2) */
};

/* Which function made or ended a block. The analyser uses it for mismatch
 * reports; the recorder uses it to check frees against allocations. */
enum htr_call_kind {
	HTR_CALL_MALLOC = 1,
	HTR_CALL_CALLOC = 2,
	HTR_CALL_REALLOC = 3,
	HTR_CALL_REALLOCARRAY = 4,
	HTR_CALL_POSIX_MEMALIGN = 5,
	HTR_CALL_ALIGNED_ALLOC = 6,
	HTR_CALL_MEMALIGN = 7,
	HTR_CALL_VALLOC = 8,
	HTR_CALL_PVALLOC = 9,
	HTR_CALL_STRDUP = 10,      /* htr_strdup_at */
	HTR_CALL_FREE = 11,
	HTR_CALL_NEW = 16,         /* operator new, all forms but [] */
	HTR_CALL_NEW_ARRAY = 17,   /* operator new[], all forms */
	HTR_CALL_DELETE = 18,      /* operator delete, all forms but [] */
	HTR_CALL_DELETE_ARRAY = 19,/* operator delete[], all forms */
};

/* The family a block belongs to; freeing it through another family is a
 * mismatch. */
enum htr_family {
	HTR_FAMILY_MALLOC = 1, /* malloc .. pvalloc, strdup; freed by free/realloc */
	HTR_FAMILY_NEW = 2,    /* new; freed by delete */
	HTR_FAMILY_NEW_ARRAY = 3, /* new[]; freed by delete[] */
};

enum htr_misuse_kind {
	HTR_MISUSE_DOUBLE_FREE = 1,  /* the block was freed already */
	HTR_MISUSE_INVALID_FREE = 2, /* never returned by an allocator: interior, stack, global, garbage */
	HTR_MISUSE_MISMATCH = 3,     /* freed through the wrong family; the block *is* freed */
};

/* First word of every record. `size` is the whole record in bytes, a
 * multiple of 8; a reader skips a type it does not know by `size`. */
struct htr_rec_header {
	uint8_t type; /* enum htr_record_type */
	uint8_t kind; /* per type, below */
	uint16_t size;
};

/* kind: enum htr_call_kind. ptr 0 is a failed allocation (size still set). */
struct htr_rec_alloc {
	struct htr_rec_header h;
	uint32_t stack;     /* 0: no backtrace */
	uint64_t seq;
	uint64_t ptr;
	uint64_t size;      /* as requested (count*size for calloc) */
	uint32_t site;      /* 0: not made through the header's macros */
	uint32_t alignment; /* 0: the allocator's default */
};

/* kind: enum htr_call_kind. Only frees the recorder accepted are FREE
 * records; refused ones are MISUSE records. free(NULL) is not recorded. */
struct htr_rec_free {
	struct htr_rec_header h;
	uint32_t stack;
	uint64_t seq;
	uint64_t ptr;
	uint32_t site;
	uint32_t reserved;
};

/* kind: HTR_CALL_REALLOC or HTR_CALL_REALLOCARRAY. One event, never split:
 *   old_ptr 0                -> an allocation of size (new_ptr 0: failed)
 *   new_ptr != 0             -> old_ptr ended, new_ptr lives with size
 *   new_ptr 0, size 0        -> old_ptr freed (realloc(p, 0))
 *   new_ptr 0, size != 0     -> failed: old_ptr stays live, unchanged */
struct htr_rec_realloc {
	struct htr_rec_header h;
	uint32_t stack;
	uint64_t seq;
	uint64_t old_ptr;
	uint64_t new_ptr;
	uint64_t size;
	uint32_t site;
	uint32_t reserved;
};

/* The short forms of ALLOC (site 0, alignment 0), FREE and REALLOC (site 0),
 * for a 16-byte aligned ptr (REALLOC: old_ptr, which may be 0) below 2^48
 * whose seq is less than 2^20 past its chunk's first_seq: nearly every event
 * of a malloc/free loop. They cut what the
 * recorder writes from 36 to 20 bytes per event, and the kernel's page work
 * with it. One word holds ptr and seq:
 *   ptr_seq = (ptr >> HTR_SHORT_PTR_SHIFT) << HTR_SHORT_SEQ_BITS | (seq - first_seq)
 * A writer uses the long form whenever a field does not fit. */
#define HTR_SHORT_PTR_SHIFT 4u
#define HTR_SHORT_SEQ_BITS 20u
#define HTR_SHORT_PTR_LIMIT ((uint64_t)1 << 48) /* ptr < this */
static inline uint64_t htr_short_ptr(uint64_t ptr_seq)
{
	return ptr_seq >> HTR_SHORT_SEQ_BITS << HTR_SHORT_PTR_SHIFT;
}
static inline uint64_t htr_short_seq(uint64_t ptr_seq, uint64_t first_seq)
{
	return first_seq + (ptr_seq & (((uint64_t)1 << HTR_SHORT_SEQ_BITS) - 1));
}
struct htr_rec_alloc_short {
	struct htr_rec_header h; /* kind: enum htr_call_kind */
	uint32_t stack;
	uint64_t ptr_seq;
	uint64_t size;
};
struct htr_rec_free_short {
	struct htr_rec_header h; /* kind: enum htr_call_kind */
	uint32_t stack;
	uint64_t ptr_seq;
};
struct htr_rec_realloc_short {
	struct htr_rec_header h; /* kind: as REALLOC's, and the same four cases */
	uint32_t stack;
	uint64_t ptr_seq; /* old_ptr and seq */
	uint64_t new_ptr;
	uint64_t size;
};

/* kind: enum htr_misuse_kind. The call was not passed to the C library
 * (except a MISMATCH, which frees the block correctly: the program meant
 * to free it). Stacks and sites are 0 where unknown. */
struct htr_rec_misuse {
	struct htr_rec_header h;
	uint32_t stack;       /* the bad call */
	uint64_t seq;
	uint64_t ptr;
	uint64_t size;        /* the block's size where known */
	uint32_t site;        /* the bad call's site */
	uint32_t alloc_stack; /* where the block was allocated */
	uint32_t alloc_site;
	uint32_t free_stack;  /* DOUBLE_FREE: where it was freed first */
	uint32_t free_site;
	uint8_t call;         /* enum htr_call_kind of the bad call */
	uint8_t alloc_call;   /* enum htr_call_kind that made the block, 0 if unknown */
	uint16_t reserved;
};

/* A backtrace, interned: ids start at 1 and are unique within a process
 * (a fork child keeps its parent's ids and definitions it inherited are not
 * repeated; see docs). frames[0] is the innermost caller of the allocation
 * function; every frame is a return address as the unwinder gave it. */
struct htr_rec_stack {
	struct htr_rec_header h;
	uint32_t id;
	uint32_t depth;
	uint32_t reserved;
	/* followed by uint64_t frames[depth] */
};

/* A file:line from the header's macros. file is NUL-terminated, zero padded
 * to the record size. */
struct htr_rec_site {
	struct htr_rec_header h;
	uint32_t id;
	uint32_t line;
	uint32_t reserved;
	/* followed by char file[], NUL-terminated */
};

/* htr_mark(name). name is NUL-terminated, zero padded. */
struct htr_rec_marker {
	struct htr_rec_header h;
	uint32_t reserved;
	uint64_t seq;
	/* followed by char name[], NUL-terminated */
};

/* kind: HTR_MODULE_LOAD or HTR_MODULE_UNLOAD. Written for every module
 * mapped at start, and for each dlopen/dlclose that changes the set.
 * Addresses in stacks belong to the module with start <= addr < end; the
 * symboliser looks up addr - base in the file at path (or by build id). */
enum htr_module_kind {
	HTR_MODULE_LOAD = 1,
	HTR_MODULE_UNLOAD = 2,
};
struct htr_rec_module {
	struct htr_rec_header h;
	uint32_t build_id_size; /* bytes used in build_id; 0: none */
	uint64_t seq;
	uint64_t base;          /* load bias (dlpi_addr) */
	uint64_t start;         /* lowest address of its PT_LOAD segments */
	uint64_t end;           /* one past the highest */
	uint8_t build_id[HTR_BUILD_ID_MAX];
	/* followed by char path[], NUL-terminated; "" for the main program: see PROCESS */
};

/* kind: HTR_THREAD_START or HTR_THREAD_EXIT. */
enum htr_thread_kind {
	HTR_THREAD_START = 1,
	HTR_THREAD_EXIT = 2,
};
struct htr_rec_thread {
	struct htr_rec_header h;
	uint32_t thread_index;
	uint64_t seq;
	uint64_t tid; /* kernel thread id */
};

/* Once per trace, first record of the first chunk. data holds exe, then
 * argc arguments, each NUL-terminated; zero padded. Long command lines are
 * cut at HTR_PROCESS_DATA_MAX bytes (flag bit 0 of kind says so). */
#define HTR_PROCESS_DATA_MAX 8192u
struct htr_rec_process {
	struct htr_rec_header h;
	uint32_t argc;
	uint64_t seq;
	uint64_t pid;
	uint64_t ppid;
	/* followed by char data[]: exe, then argc arguments */
};

/* In the parent, when fork() returned a child pid. */
struct htr_rec_fork {
	struct htr_rec_header h;
	uint32_t reserved;
	uint64_t seq;
	uint64_t child_pid;
};

/* Maps seq to time. Written at least at every chunk start; the analyser
 * interpolates between them. */
struct htr_rec_time {
	struct htr_rec_header h;
	uint32_t reserved;
	uint64_t seq;
	uint64_t monotonic_ns;
};

/* Events lost: count of events that could not be recorded since the previous
 * DROPS record of this thread (no space, mapping failed, reentrant call from
 * inside the unwinder). kind: enum htr_drop_reason. */
enum htr_drop_reason {
	HTR_DROP_NO_SPACE = 1,
	HTR_DROP_REENTRANT = 2,
	HTR_DROP_OTHER = 3,
};
struct htr_rec_drops {
	struct htr_rec_header h;
	uint32_t reserved;
	uint64_t seq;
	uint64_t count;
};

/* Orderly end of the process. kind: HTR_END_EXIT (status = exit status as far
 * as the recorder can tell, from its exit path) or HTR_END_EXEC (the image is
 * being replaced; the next image writes its own trace). A trace with no END
 * record ended in a crash, a kill or _exit. */
enum htr_end_kind {
	HTR_END_EXIT = 1,
	HTR_END_EXEC = 2,
};
struct htr_rec_end {
	struct htr_rec_header h;
	uint32_t reserved;
	uint64_t seq;
	uint64_t status;
};

/* htr_persistent_at: the block at ptr (just recorded by an ALLOC) is meant to
 * live for ever. */
struct htr_rec_persist {
	struct htr_rec_header h;
	uint32_t reserved;
	uint64_t seq;
	uint64_t ptr;
};

/* Packed traces. The raw file above is built for recording: per-thread
 * chunks, fixed-size records, crash safety. Once the program has ended,
 * `heaptrail run` (or `heaptrail pack`) rewrites it for keeping: one stream in
 * seq order, compactly coded, zstd-compressed. Readers open both forms the
 * same way. docs/trace-format.md describes the coding; the pointer and size
 * codes and the TAG column's coder are defined by lib/trace/pack_model.[ch],
 * the one implementation of the model that the packer and the reader share.
 *
 *   struct htr_pack_header, then one zstd stream of blocks:
 *     varint records (0: the end mark; a stream without it was cut short)
 *     varint length of each of the HTR_PACK_COLUMNS columns
 *     the columns, in enum htr_pack_column order
 *   A record's fields are read from the columns in the order below, each
 *   column with its own cursor; a block's records use up its columns
 *   exactly. The TAG column starts with a mode byte (HTR_TC_* in
 *   pack_model.h): its bytes as they are, or rANS-coded in the context of
 *   the previous event. Version 4 (coded tags); versions 1 (one
 *   interleaved stream, no ordinals), 2 (one tag form) and 3 (tags as zstd
 *   codes them) are refused. */
#define HTR_PACK_MAGIC "HTRPACK\0" /* 8 bytes */
#define HTR_PACK_VERSION_MAJOR 4
#define HTR_PACK_VERSION_MINOR 0

struct htr_pack_header {
	char magic[8];
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t header_size;         /* sizeof(struct htr_pack_header) */
	uint64_t records;             /* packed records */
	struct htr_file_header trace; /* the raw trace's header when it was packed */
};

/* A packed record starts with a short tag byte in the TAG column: the usual
 * ALLOC, FREE or REALLOC (seq = previous + 1, no extra) with its first
 * pointer code (an ALLOC's allocated one, else the freed one) in the high
 * nibble, HTR_PACK_S_IN_COLUMN when that does not fit: then the code is in
 * its column as in the long form. A short tag of HTR_PACK_LONG (0) is
 * followed by the long form's tag byte, also in the TAG column: a code in
 * the low nibble, flags above. Fields in [] are present when the flags say
 * so. */
#define HTR_PACK_LONG 0x00u
#define HTR_PACK_S_CODE 0x03u        /* HTR_PACK_ALLOC, _FREE or _REALLOC; HTR_PACK_LONG */
#define HTR_PACK_S_SAME_STACK 0x04u  /* as HTR_PACK_SAME_STACK */
#define HTR_PACK_S_SAME_THREAD 0x08u /* as HTR_PACK_SAME_THREAD */
#define HTR_PACK_S_PTR_SHIFT 4u
#define HTR_PACK_S_IN_COLUMN 15u
/* An ALLOC's nibble: 2 * pointer code + 1 when the size is the predicted
 * one (pack_model.h: htr_pm_size_predict; then no size in its column), for
 * codes below HTR_PACK_S_A_CODES; else HTR_PACK_S_A_SIZE_HIT (that size,
 * pointer code in its column) or HTR_PACK_S_IN_COLUMN (both in theirs). */
#define HTR_PACK_S_A_CODES 7u
#define HTR_PACK_S_A_SIZE_HIT 14u
enum htr_pack_code {
	HTR_PACK_END = 0,     /* not used in a tag since version 2: a block of 0 records ends */
	HTR_PACK_ALLOC = 1,   /* [thread] [seq] [stack] [extra: kind site alignment] size ptr */
	HTR_PACK_FREE = 2,    /* [thread] [seq] [stack] [extra: kind site] ptr */
	HTR_PACK_REALLOC = 3, /* [thread] [seq] [stack] [extra: kind site] old size new */
	HTR_PACK_RAW = 4,     /* [thread] length, then the record as in a raw trace */
	HTR_PACK_NOTICE = 5,  /* event type, kind, offset, count, text length, text: what the
			       * reader said about the raw file (cut, corrupt, lost) */
};
/* The coded fields of a block, column by column (see docs). */
enum htr_pack_column {
	HTR_PACK_COL_TAG = 0,   /* tag bytes, after a mode byte: plain or rANS-coded */
	HTR_PACK_COL_ORDER = 1, /* thread, seq delta */
	HTR_PACK_COL_STACK = 2, /* stack ids */
	HTR_PACK_COL_CALL = 3,  /* kind, site, alignment */
	HTR_PACK_COL_SIZE = 4,  /* sizes; a realloc's as a code against the old block's */
	HTR_PACK_COL_NEW = 5,   /* allocated pointer codes */
	HTR_PACK_COL_OLD = 6,   /* freed pointer codes */
	HTR_PACK_COL_RAW = 7,   /* RAW and NOTICE bodies */
	HTR_PACK_COL_LOW = 8,   /* low bytes of pointer codes of 128 and more (packed.c) */
	HTR_PACK_COLUMNS = 9,
};
#define HTR_PACK_SEQ_NEXT 0x10u    /* seq = previous seq + 1; else a varint delta follows */
#define HTR_PACK_SAME_THREAD 0x20u /* thread = previous record's; else a varint follows */
#define HTR_PACK_SAME_STACK 0x40u  /* stack = the predicted one (pack_model.h); else a varint */
#define HTR_PACK_EXTRA 0x80u       /* kind, site (and alignment) follow; else: previous kind, 0, 0 */

#ifdef __cplusplus
#define HTR_STATIC_ASSERT static_assert
#else
#define HTR_STATIC_ASSERT _Static_assert
#endif
HTR_STATIC_ASSERT(sizeof(struct htr_file_header) <= HTR_FILE_HEADER_SIZE, "file header fits");
HTR_STATIC_ASSERT(sizeof(struct htr_chunk_header) == 32, "chunk header layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_alloc) == 40, "alloc record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_free) == 32, "free record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_realloc) == 48, "realloc record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_alloc_short) == 24, "short alloc record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_free_short) == 16, "short free record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_realloc_short) == 32, "short realloc record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_misuse) == 56, "misuse record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_stack) == 16, "stack record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_module) == 72, "module record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_thread) == 24, "thread record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_process) == 32, "process record layout");
HTR_STATIC_ASSERT(sizeof(struct htr_rec_time) == 24, "time record layout");

#endif /* HEAPTRAIL_TRACE_FORMAT_H */
