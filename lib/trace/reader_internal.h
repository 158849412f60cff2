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
	/* Min-heap of streams by next_seq, the key kept beside the index: the
	 * merge of a multi-threaded trace sifts about once per record, and
	 * reaching each key through its stream made that sift a chain of
	 * dependent loads (packing (b): -2% CPU). */
	struct merge_slot {
		uint64_t next_seq; /* threads[stream].next_seq when it was placed */
		size_t stream;
	} *heap;
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

	/* Following a raw trace while it is written (htr_reader_follow). */
	bool follow;       /* records may still be committed */
	bool final;        /* the writer is gone: what the file holds is all */
	bool violated;     /* the order already emitted proved wrong, or following failed */
	int pid;
	int pidfd;         /* -1: watched through /proc */
	uint64_t map_len;  /* bytes mapped, beyond the file's end while following */
	uint64_t scanned;  /* chunks [0, scanned) are sorted into streams */
	uint64_t *pending; /* claimed chunks not initialised yet when scanned */
	size_t npending, pending_cap;
	uint64_t emitted_seq; /* the last sequenced record delivered */
	uint64_t max_seq;     /* the highest seq read */
	uint64_t taken_seq;   /* the highest chunk first_seq seen: a seq handed out */
	uint64_t *assumed;    /* offsets of zero words taken for the end of a left chunk */
	size_t nassumed, assumed_cap;
	size_t heap_cap;
	/* Seqs are dense: the committed records whose seqs are in
	 * [seen_base, seen_base + HTR_SEEN_BITS) have their bit set in this
	 * ring (bit seq % HTR_SEEN_BITS); every seq below seen_base is known
	 * to be committed or settled. NULL: not tracked. */
	uint64_t *seen;
	uint64_t seen_base;
};
#define HTR_SEEN_BITS ((uint64_t)1 << 20)

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

#endif /* HEAPTRAIL_READER_INTERNAL_H */
