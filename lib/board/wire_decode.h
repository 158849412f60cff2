/* Host-side decoder for the binary board encoding (wire.h): bytes in,
 * struct htr_event (lib/trace/event.h) out. Feed it any chunking of the
 * stream; it never trusts a frame that fails COBS, CRC-8 or the record's
 * own shape, reporting it as BAD_INPUT instead. */
#ifndef HTR_BOARD_WIRE_DECODE_H
#define HTR_BOARD_WIRE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "wire.h"

#define HTR_WIRE_MAX_SITE_IDS 256u
#define HTR_WIRE_MAX_REGIONS 8u
#define HTR_WIRE_MAX_PCS 1024u /* a power of two */

enum htr_wire_loss_kind {
	HTR_WIRE_LOSS_GAP = 1,        /* the sequence numbers skipped */
	HTR_WIRE_LOSS_DROPS = 2,      /* the target's drop count says more than the gaps showed */
	HTR_WIRE_LOSS_CHECKPOINT = 3, /* a checkpoint's full sequence number showed a longer gap */
};

struct htr_wire_decoder {
	htr_event_sink sink;
	void *ctx;
	int stopped; /* the sink's non-zero return, sticky */
	uint8_t frame[HTR_WIRE_FRAME_MAX];
	size_t len;
	int overflow;          /* current frame too long: skipping to the next delimiter */
	uint64_t offset;       /* bytes fed so far */
	uint64_t frame_start;  /* offset of the current frame's first byte */
	int have_seq;
	uint64_t seq;          /* last record's full sequence number */
	/* The current frame's 5-bit number, counted only once the record
	 * proves well-formed: a frame that passes the CRC by chance but not
	 * its shape takes no number. */
	int seq_pending;
	unsigned pending_s5;
	uint64_t gap_since_drop;
	int have_base;
	uint64_t base;
	uint64_t heap_size;
	struct {
		uint64_t base, size;
	} regions[HTR_WIRE_MAX_REGIONS];
	unsigned region_count;
	uint32_t next_site;    /* engine site ids handed out */
	uint32_t next_stack;   /* engine stack ids handed out */
	uint32_t site_map[HTR_WIRE_MAX_SITE_IDS];  /* wire site id -> engine site id, 0: unknown */
	uint32_t stack_map[HTR_WIRE_MAX_SITE_IDS]; /* wire site id -> engine stack id */
	struct {
		uint64_t pc;
		uint32_t id;
	} pcs[HTR_WIRE_MAX_PCS]; /* caller PCs interned as 1-frame stacks */
	struct {
		uint64_t seq;
		uint64_t site; /* wire site id; HTR_WIRE_MAX_SITE_IDS: unknown */
		uint8_t kind;  /* 0 none, 1 alloc, 2 free */
		uint8_t used;
	} recent[HTR_WIRE_RECENT]; /* the last records, by seq, for *_AGAIN */
	struct htr_heap_stats stats;
	/* Totals, for tools and tests. */
	uint64_t records, bad_frames, lost;
};

void htr_wire_decoder_init(struct htr_wire_decoder *dec, htr_event_sink sink, void *ctx);
/* Returns 0, or the sink's non-zero return (decoding stops there). */
int htr_wire_decoder_feed(struct htr_wire_decoder *dec, const uint8_t *bytes, size_t len);
/* Reports a frame left unfinished as TRUNCATED. Returns like feed. */
int htr_wire_decoder_finish(struct htr_wire_decoder *dec);

#endif /* HTR_BOARD_WIRE_DECODE_H */
