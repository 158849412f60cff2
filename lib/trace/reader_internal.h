/* Shared by the raw reader (reader.c), the packed reader and the packer
 * (packed.c, pack.c). Not installed. */
#ifndef HEAPTRAIL_READER_INTERNAL_H
#define HEAPTRAIL_READER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reader.h"

struct thread_stream;
struct htr_packed_input;

/* Called for every valid record of a raw trace, in merged order, with the
 * event decoded from it: how the packer sees a trace. */
typedef int (*htr_record_hook)(void *ctx, const struct htr_event *ev, const uint8_t *rec);

struct htr_reader {
	char *path;
	struct htr_file_header header;
	bool ran;
	uint64_t time_ns;

	/* raw traces */
	int fd;
	const uint8_t *map;
	uint64_t size;
	uint64_t nchunks; /* whole or partial chunks present in the file */
	uint64_t chunk_size;
	struct thread_stream *threads;
	size_t nthreads;
	size_t *heap; /* min-heap of stream indexes by next_seq */
	size_t heap_len;
	uint64_t drops_seen;
	bool saw_end;
	bool saw_short; /* a chunk ran past the end of the file */
	htr_record_hook record_hook;
	void *hook_ctx;
	/* The event handed to the sink. Allocation events overwrite all of
	 * their fields; the whole struct is cleared only after another type
	 * left other fields set (ev_clean false): clearing it per event cost
	 * a sixth of the reading. */
	struct htr_event ev;
	bool ev_clean;

	/* packed traces */
	struct htr_packed_input *packed;
};

/* A one-line reason into err (nothing when errlen is 0). */
void htr_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Hands the sink a TRUNCATED, BAD_INPUT or LOSS event whose text is fmt. */
int htr_emit_notice(struct htr_reader *r, htr_event_sink sink, void *ctx, uint8_t type, uint8_t kind,
		    uint64_t offset, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* Decodes one raw record; false when its payload is inconsistent. */
bool htr_record_decode(struct htr_reader *r, const uint8_t *rec, uint32_t thread, struct htr_event *ev);

/* Known fixed size of a record type, 0 for a type this reader does not know. */
size_t htr_record_fixed_size(uint8_t type);

int htr_packed_open(struct htr_reader *r, int fd, char *err, size_t errlen);
int htr_packed_run(struct htr_reader *r, htr_event_sink sink, void *ctx);
void htr_packed_close(struct htr_reader *r);

/* Coding state that the packer and the packed reader keep in step. */
struct htr_pack_state {
	uint64_t last_seq;
	uint32_t last_thread;
	uint32_t last_stack[4]; /* by enum htr_pack_code */
	uint8_t last_kind[4];
	uint64_t last_ptr;
	uint64_t live[16];  /* recently allocated pointers, newest first */
	uint64_t freed[16]; /* recently freed pointers, newest first */
	/* Last pointer allocated per size class: an allocator hands back the
	 * block it last freed of that class, which is mostly the one it last
	 * handed out. A hit codes as 0, so in a malloc/free loop the pointer
	 * costs nothing but the size. */
	uint64_t by_class[4096];
};

void htr_pack_state_init(struct htr_pack_state *st);
/* Pointer codes. Freed: an index into the recently allocated
 * (< HTR_PACK_PTR_CACHE), or HTR_PACK_PTR_CACHE + zigzag(ptr - last_ptr).
 * Allocated (with the block's size, coded before it): 0 for the size
 * class's prediction, 1 + an index into the recently freed, or
 * 1 + HTR_PACK_PTR_CACHE + zigzag(ptr - last_ptr). */
uint64_t htr_pack_code_allocated(struct htr_pack_state *st, uint64_t ptr, uint64_t size);
uint64_t htr_pack_code_freed(struct htr_pack_state *st, uint64_t ptr);
void htr_pack_decode_allocated(struct htr_pack_state *st, uint64_t code, uint64_t size, uint64_t *ptr);
void htr_pack_decode_freed(struct htr_pack_state *st, uint64_t code, uint64_t *ptr);

#endif /* HEAPTRAIL_READER_INTERNAL_H */
