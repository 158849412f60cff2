/* Encoders turn heap events into records for a transport. Two exist:
 * text lines (enc_text.c, a superset of valground's ==MP lines) and the
 * compact binary encoding (enc_bin.c, wire.h). Both number every record they
 * attempt, so a record the transport drops leaves a sequence gap, and both
 * report drops in band before the next record that gets through. */
#ifndef HTR_BOARD_ENC_H
#define HTR_BOARD_ENC_H

#include <stddef.h>
#include <stdint.h>

#include "heaptrail.h"
#include "transport.h"
#include "wire.h"

/* How a block was made: the values of enum htr_call_kind
 * (include/heaptrail/trace_format.h), repeated here so that target code stays
 * C99 (that header needs C11); tests/board/test_wire.c checks they agree. */
#define HTR_ENC_CALL_MALLOC 1
#define HTR_ENC_CALL_CALLOC 2
#define HTR_ENC_CALL_ALIGNED_ALLOC 6
#define HTR_ENC_CALL_STRDUP 10

struct htr_site {
	const char *file; /* NULL: unknown */
	int line;
	uintptr_t pc;
};

#ifndef HTR_ENC_SITES
#define HTR_ENC_SITES 32u /* binary: file:line:pc triples remembered as sent */
#endif

struct htr_enc;

struct htr_enc_ops {
	void (*init)(struct htr_enc *e, uintptr_t base, size_t size);
	void (*region)(struct htr_enc *e, uintptr_t base, size_t size);
	/* call: HTR_ENC_CALL_*; ptr NULL: failed */
	void (*alloc)(struct htr_enc *e, int call, int persist, const void *ptr, size_t size,
		      size_t align, const struct htr_site *site);
	/* status: enum htr_heap_status */
	void (*free)(struct htr_enc *e, const void *ptr, int status, const struct htr_site *site);
	/* new_ptr NULL with size != 0: failed, old stays */
	void (*realloc)(struct htr_enc *e, const void *old_ptr, const void *new_ptr, size_t size,
			const struct htr_site *site);
	void (*mark)(struct htr_enc *e, const char *name);
	void (*check)(struct htr_enc *e, const struct htr_heap_stats *stats, uint32_t ticks);
	/* Sends the pending drop count (with htr_enc_send_raw); 0 when it went
	 * out. */
	int (*drop)(struct htr_enc *e, uint32_t count);
};

struct htr_enc_site_slot {
	const char *file;
	int line;
	uintptr_t pc;
	uint8_t sent;
};

struct htr_enc {
	const struct htr_enc_ops *ops;
	const struct htr_transport *tp;
	uint32_t seq;           /* next record's number */
	uint32_t pending_drops; /* records lost since the last drop record went out */
	uint32_t total_drops;
	uint32_t records;       /* records that went out */
	uint32_t bytes;         /* bytes that went out */
	uint8_t in_drop;        /* sending a drop record: do not recurse */
	uintptr_t base;         /* binary: pointers travel relative to it */
	/* binary: kind (1 alloc, 2 free, 0 other or lost) and site id of the
	 * last HTR_WIRE_RECENT records, by sequence number, for the *_AGAIN
	 * records (wire.h) */
	uint8_t recent_kind[HTR_WIRE_RECENT];
	uint8_t recent_site[HTR_WIRE_RECENT];
	uint8_t again_run[2]; /* *_AGAIN records in a row, alloc and free */
	struct htr_enc_site_slot sites[HTR_ENC_SITES];
};

extern const struct htr_enc_ops htr_enc_text_ops;
extern const struct htr_enc_ops htr_enc_bin_ops;

void htr_enc_init(struct htr_enc *e, const struct htr_enc_ops *ops, const struct htr_transport *tp);
/* Sends one record whose number was taken with htr_enc_next_seq().
 * 0 sent, -1 dropped (and counted). */
int htr_enc_send(struct htr_enc *e, const uint8_t *buf, size_t len);
/* Takes the next record number, first sending any pending drop record. */
uint32_t htr_enc_next_seq(struct htr_enc *e);
/* The same as htr_enc_send, for the encoders' drop(). */
int htr_enc_send_raw(struct htr_enc *e, const uint8_t *buf, size_t len);
/* Counts a record as lost without sending it (its number was taken). */
void htr_enc_lost(struct htr_enc *e);

#endif /* HTR_BOARD_ENC_H */
