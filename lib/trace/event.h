/* One event model for every input the analyser reads: host traces (the
 * reader), board binary logs (the wire decoder), board and valground ==MP
 * text, glibc mtrace logs. Parsers fill a struct htr_event and hand it to a
 * sink; the engine is one such sink, the dump tool another. Pointers inside
 * an event are valid only during the call. */
#ifndef HEAPTRAIL_EVENT_H
#define HEAPTRAIL_EVENT_H

#include <stdint.h>

#include "heaptrail.h"
#include "heaptrail/trace_format.h"

enum htr_event_type {
	HTR_EV_ALLOC = 1,      /* ptr, size, call, stack, site, alignment; ptr 0: failed */
	HTR_EV_FREE = 2,       /* ptr, call, stack, site */
	HTR_EV_REALLOC = 3,    /* ptr (old), ptr2 (new), size; see struct htr_rec_realloc */
	HTR_EV_MISUSE = 4,     /* kind: enum htr_misuse_kind; ptr, size, call, stack, site,
				* alloc_call, alloc_stack, alloc_site, free_stack, free_site */
	HTR_EV_PERSIST = 5,    /* ptr: the block just allocated is persistent */
	HTR_EV_MARKER = 6,     /* text: a test or phase boundary */
	HTR_EV_HEAP_INIT = 7,  /* ptr: heap base, size: heap size. Starts a new heap: live set cleared */
	HTR_EV_CHECKPOINT = 8, /* stats: what the target believes (live blocks/bytes, heap stats) */
	HTR_EV_LOSS = 9,       /* count: events lost here (a sequence gap, a drop counter, a DROPS record) */
	HTR_EV_STACK = 10,     /* id, depth, frames: a definition */
	HTR_EV_SITE = 11,      /* id, text (file), line: a definition */
	HTR_EV_MODULE = 12,    /* kind: enum htr_module_kind; text (path), base, start, end, build_id */
	HTR_EV_THREAD = 13,    /* kind: enum htr_thread_kind; thread, tid */
	HTR_EV_PROCESS = 14,   /* pid, ppid, text (exe), args (argc NUL-terminated strings) */
	HTR_EV_FORK = 15,      /* tid: child pid */
	HTR_EV_END = 16,       /* kind: enum htr_end_kind; size: status */
	HTR_EV_TIME = 17,      /* time_ns */
	HTR_EV_TRUNCATED = 18, /* kind: enum htr_truncation; text says what, offset says where */
	HTR_EV_BAD_INPUT = 19, /* corrupt bytes skipped: text says what, offset says where */
};

/* HTR_EV_TRUNCATED kinds. A process that died is not data loss: every event
 * before its end is there. A file cut short is. */
enum htr_truncation {
	HTR_TRUNC_NO_EXIT = 1,   /* no orderly exit: crash, kill or _exit; data complete to that point */
	HTR_TRUNC_FILE_SHORT = 2,/* the input ends inside a record or chunk: data after offset lost */
};

/* Where an event came from: selects how stack frames are symbolised. */
enum htr_origin {
	HTR_ORIGIN_HOST = 1,   /* x86_64 return addresses, module map in the trace */
	HTR_ORIGIN_BOARD = 2,  /* Thumb caller PCs: symbolise (pc & ~1) - 1 in the firmware ELF */
	HTR_ORIGIN_TEXT = 3,   /* file:line only (valground, mtrace) */
};

struct htr_event {
	uint8_t type;       /* enum htr_event_type */
	uint8_t kind;       /* per type */
	uint8_t call;       /* enum htr_call_kind, 0 when not known */
	uint8_t alloc_call; /* MISUSE: how the block was made */
	uint32_t thread;    /* thread index, 0 when not known */
	uint64_t seq;       /* order within the input; 0 for definitions */
	uint64_t time_ns;   /* 0 when not known */
	uint64_t offset;    /* byte offset in the input (or line number for text), for messages */
	uint64_t ptr;
	uint64_t ptr2;
	uint64_t size;
	uint64_t count;
	uint64_t tid;
	uint32_t stack, site, alignment;
	uint32_t alloc_stack, alloc_site, free_stack, free_site;
	uint32_t id, depth, line, argc;
	uint64_t base, start, end;
	uint32_t build_id_size;
	const uint8_t *build_id;
	const uint64_t *frames; /* STACK: depth return addresses or caller PCs */
	const char *text;
	const char *args;
	const struct htr_heap_stats *stats; /* CHECKPOINT, or NULL */
};

/* A sink gets every event in input order. Returning non-zero stops the
 * parser, which then returns that value. */
typedef int (*htr_event_sink)(void *ctx, const struct htr_event *ev);

#endif /* HEAPTRAIL_EVENT_H */
