/* The binary board encoding, decoded. Spec: docs/board-wire.md. */
#include <string.h>

#include "heaptrail/trace_format.h"
#include "wire_decode.h"

struct cursor {
	const uint8_t *b;
	size_t pos, end;
	int bad;
};

static uint64_t get(struct cursor *c)
{
	uint64_t v = 0;
	if (!c->bad && htr_wire_get_varint(c->b, c->end, &c->pos, &v) != 0)
		c->bad = 1;
	return c->bad ? 0 : v;
}

static uint8_t get_u8(struct cursor *c)
{
	if (c->bad || c->pos >= c->end) {
		c->bad = 1;
		return 0;
	}
	return c->b[c->pos++];
}

static int emit(struct htr_wire_decoder *dec, struct htr_event *ev)
{
	if (dec->stopped)
		return dec->stopped;
	dec->stopped = dec->sink(dec->ctx, ev);
	return dec->stopped;
}

static void commit_seq(struct htr_wire_decoder *dec);

static void event_init(struct htr_wire_decoder *dec, struct htr_event *ev, uint8_t type)
{
	commit_seq(dec);
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->offset = dec->frame_start;
	ev->seq = dec->seq;
}

static void bad_input(struct htr_wire_decoder *dec, const char *why)
{
	struct htr_event ev;
	dec->bad_frames++;
	dec->seq_pending = 0;
	event_init(dec, &ev, HTR_EV_BAD_INPUT);
	ev.seq = 0;
	ev.text = why;
	emit(dec, &ev);
}

static void loss(struct htr_wire_decoder *dec, uint64_t count, uint8_t kind, uint64_t first_seq)
{
	struct htr_event ev;
	dec->lost += count;
	event_init(dec, &ev, HTR_EV_LOSS);
	ev.kind = kind;
	ev.count = count;
	ev.seq = first_seq;
	emit(dec, &ev);
}

/* Turns the record's 5-bit number into the full one, reporting a gap. */
static void advance_seq(struct htr_wire_decoder *dec, unsigned s5)
{
	if (!dec->have_seq) {
		dec->have_seq = 1;
		dec->seq = s5;
		return;
	}
	uint64_t expected = dec->seq + 1u;
	uint64_t gap = (s5 - expected) & HTR_WIRE_SEQ_MASK;
	if (gap != 0) {
		loss(dec, gap, HTR_WIRE_LOSS_GAP, expected);
		dec->gap_since_drop += gap;
	}
	dec->seq = expected + gap;
}

/* The number of the current record, before commit_seq takes it. */
static uint64_t pending_seq(const struct htr_wire_decoder *dec)
{
	if (!dec->have_seq)
		return dec->pending_s5;
	uint64_t expected = dec->seq + 1u;
	return expected + ((dec->pending_s5 - expected) & HTR_WIRE_SEQ_MASK);
}

/* A full sequence number (INIT, CHECK) re-anchors: gaps of 32 or more
 * records wrap the 5-bit number and show up only here. */
static void anchor_seq(struct htr_wire_decoder *dec, uint64_t full)
{
	if (full > dec->seq) {
		loss(dec, full - dec->seq, HTR_WIRE_LOSS_CHECKPOINT, dec->seq + 1u);
		dec->gap_since_drop += full - dec->seq;
	}
	dec->seq = full;
}

/* enc is 8-byte units from ref (the heap base, or a realloc's old block). */
static int ptr_ok(const struct htr_wire_decoder *dec, uint64_t enc, uint64_t ref, uint64_t *ptr)
{
	if (enc == 0) {
		*ptr = 0;
		return 1;
	}
	int64_t units = htr_wire_unzigzag(enc - 1u);
	if (!dec->have_base || units < -((int64_t)1 << 40) || units > ((int64_t)1 << 40))
		return 0;
	uint64_t p = (uint64_t)((int64_t)ref + units * 8);
	/* A pointer outside every announced region is noise that passed the
	 * CRC, not an allocation. */
	for (unsigned i = 0; i < dec->region_count; i++) {
		if (p >= dec->regions[i].base && p - dec->regions[i].base < dec->regions[i].size) {
			*ptr = p;
			return 1;
		}
	}
	return 0;
}

static void add_region(struct htr_wire_decoder *dec, uint64_t base, uint64_t size)
{
	if (dec->region_count < HTR_WIRE_MAX_REGIONS) {
		dec->regions[dec->region_count].base = base;
		dec->regions[dec->region_count].size = size;
		dec->region_count++;
	}
}

enum { KIND_OTHER, KIND_ALLOC, KIND_FREE };
#define SITE_UNKNOWN HTR_WIRE_MAX_SITE_IDS

/* Notes the current record's kind and wire site id for later *_AGAIN
 * records. Every well-formed record is noted, as KIND_OTHER first. */
static void note_recent(struct htr_wire_decoder *dec, uint8_t kind, uint64_t site)
{
	unsigned k = (unsigned)(dec->seq % HTR_WIRE_RECENT);
	dec->recent[k].seq = dec->seq;
	dec->recent[k].site = site;
	dec->recent[k].kind = kind;
	dec->recent[k].used = 1;
}

/* The current record is well-formed: it takes its number (reporting the
 * gap before it) and is noted for *_AGAIN records as KIND_OTHER until its
 * handler says more. */
static void commit_seq(struct htr_wire_decoder *dec)
{
	if (!dec->seq_pending)
		return;
	dec->seq_pending = 0;
	dec->records++;
	advance_seq(dec, dec->pending_s5);
	note_recent(dec, KIND_OTHER, 0);
}

/* The site of an *_AGAIN record of kind: that of the latest record of the
 * same kind among the HTR_WIRE_RECENT before it. SITE_UNKNOWN when one of
 * those was not received (it may have been the one); -1 when all were and
 * none has the kind, which the encoder never sends. */
static int recent_site(const struct htr_wire_decoder *dec, uint8_t kind, uint64_t *site)
{
	uint64_t seq = pending_seq(dec);
	*site = SITE_UNKNOWN;
	for (uint64_t d = 1; d <= HTR_WIRE_RECENT; d++) {
		unsigned k = (unsigned)((seq - d) % HTR_WIRE_RECENT);
		if (seq < d || !dec->recent[k].used || dec->recent[k].seq != seq - d)
			return 0;
		if (dec->recent[k].kind == kind) {
			*site = dec->recent[k].site;
			return 0;
		}
	}
	return -1;
}

static uint32_t site_of(const struct htr_wire_decoder *dec, uint64_t id)
{
	return id < HTR_WIRE_MAX_SITE_IDS ? dec->site_map[id] : 0;
}

static uint32_t stack_of(const struct htr_wire_decoder *dec, uint64_t id)
{
	return id < HTR_WIRE_MAX_SITE_IDS ? dec->stack_map[id] : 0;
}

/* Starts an event about a heap block made or freed at wire site id. */
static void site_event(struct htr_wire_decoder *dec, struct htr_event *ev, uint8_t type, uint64_t site)
{
	event_init(dec, ev, type);
	ev->site = site_of(dec, site);
	ev->stack = stack_of(dec, site);
}

/* The stack id of a caller PC: one per distinct PC, defined (a STACK event)
 * the first time it is seen, so the engine groups by caller. */
static uint32_t intern_pc(struct htr_wire_decoder *dec, uint64_t pc, int *fresh)
{
	uint32_t h = (uint32_t)((pc * 0x9E3779B97F4A7C15ull) >> 40) & (HTR_WIRE_MAX_PCS - 1u);
	*fresh = 0;
	for (uint32_t probe = 0; probe < HTR_WIRE_MAX_PCS; probe++) {
		uint32_t i = (h + probe) & (HTR_WIRE_MAX_PCS - 1u);
		if (dec->pcs[i].id != 0 && dec->pcs[i].pc == pc)
			return dec->pcs[i].id;
		if (dec->pcs[i].id == 0) {
			dec->pcs[i].pc = pc;
			dec->pcs[i].id = ++dec->next_stack;
			*fresh = 1;
			return dec->pcs[i].id;
		}
	}
	/* Table full (over a thousand call sites): a new id each time. */
	*fresh = 1;
	return ++dec->next_stack;
}

static void do_site(struct htr_wire_decoder *dec, struct cursor *c)
{
	uint64_t id = get(c), line = get(c), pc = get(c);
	size_t flen = c->end - c->pos;
	if (c->bad || id == 0 || id >= HTR_WIRE_MAX_SITE_IDS || line > 0xFFFFFFFFu || flen == 0 ||
	    flen > HTR_WIRE_FILE_MAX || memchr(c->b + c->pos, 0, flen) != NULL) {
		bad_input(dec, "malformed SITE record");
		return;
	}
	char file[HTR_WIRE_FILE_MAX + 1u];
	memcpy(file, c->b + c->pos, flen);
	file[flen] = '\0';
	uint32_t site = ++dec->next_site;
	int fresh;
	uint32_t stack = intern_pc(dec, pc, &fresh);
	dec->site_map[id] = site;
	dec->stack_map[id] = stack;
	struct htr_event ev;
	event_init(dec, &ev, HTR_EV_SITE);
	ev.seq = 0;
	ev.id = site;
	ev.text = file;
	ev.line = (uint32_t)line;
	if (emit(dec, &ev) != 0 || !fresh)
		return;
	uint64_t frame = pc;
	event_init(dec, &ev, HTR_EV_STACK);
	ev.seq = 0;
	ev.id = stack;
	ev.depth = 1;
	ev.frames = &frame;
	emit(dec, &ev);
}

enum alloc_form { FORM_MALLOC, FORM_AGAIN, FORM_CALLOC, FORM_PERSIST, FORM_CALL };

static void do_alloc(struct htr_wire_decoder *dec, struct cursor *c, enum alloc_form form)
{
	uint8_t call = form == FORM_CALL ? get_u8(c) : form == FORM_CALLOC ? HTR_CALL_CALLOC : HTR_CALL_MALLOC;
	uint64_t site = 0;
	int orphan = 0;
	if (form == FORM_AGAIN)
		orphan = recent_site(dec, KIND_ALLOC, &site) != 0;
	else
		site = get(c);
	uint64_t size = get(c), penc = get(c);
	uint64_t align = form == FORM_CALL ? get(c) : 0;
	uint64_t ptr;
	if (c->bad || c->pos != c->end || orphan || !ptr_ok(dec, penc, dec->base, &ptr) ||
	    size > 0xFFFFFFFFu || align > 0xFFFFFFFFu ||
	    (form == FORM_CALL && (call == 0 || call > HTR_CALL_PVALLOC + 1u))) {
		bad_input(dec, form == FORM_PERSIST ? "malformed PERSIST record" : "malformed ALLOC record");
		return;
	}
	commit_seq(dec);
	if (form == FORM_MALLOC || form == FORM_AGAIN)
		note_recent(dec, KIND_ALLOC, site);
	struct htr_event ev;
	site_event(dec, &ev, HTR_EV_ALLOC, site);
	ev.call = call;
	ev.ptr = ptr;
	ev.size = size;
	ev.alignment = (uint32_t)align;
	if (emit(dec, &ev) != 0 || form != FORM_PERSIST || ptr == 0)
		return;
	site_event(dec, &ev, HTR_EV_PERSIST, site);
	ev.ptr = ptr;
	ev.size = size;
	emit(dec, &ev);
}

static void do_free(struct htr_wire_decoder *dec, struct cursor *c, int again)
{
	uint64_t site = 0;
	int orphan = 0;
	if (again)
		orphan = recent_site(dec, KIND_FREE, &site) != 0;
	else
		site = get(c);
	uint64_t penc = get(c), ptr;
	if (c->bad || c->pos != c->end || orphan || penc == 0 || !ptr_ok(dec, penc, dec->base, &ptr)) {
		bad_input(dec, "malformed FREE record");
		return;
	}
	commit_seq(dec);
	note_recent(dec, KIND_FREE, site);
	struct htr_event ev;
	site_event(dec, &ev, HTR_EV_FREE, site);
	ev.call = HTR_CALL_FREE;
	ev.ptr = ptr;
	emit(dec, &ev);
}

static void do_realloc(struct htr_wire_decoder *dec, struct cursor *c)
{
	uint64_t site = get(c), size = get(c), oenc = get(c), nenc = get(c), old_ptr, new_ptr;
	/* The new block travels relative to the old one. */
	if (c->bad || c->pos != c->end || oenc == 0 || !ptr_ok(dec, oenc, dec->base, &old_ptr) ||
	    !ptr_ok(dec, nenc, old_ptr, &new_ptr) || size > 0xFFFFFFFFu) {
		bad_input(dec, "malformed REALLOC record");
		return;
	}
	struct htr_event ev;
	site_event(dec, &ev, HTR_EV_REALLOC, site);
	ev.call = HTR_CALL_REALLOC;
	ev.ptr = old_ptr;
	ev.ptr2 = new_ptr;
	ev.size = size;
	emit(dec, &ev);
}

static void do_check(struct htr_wire_decoder *dec, struct cursor *c)
{
	uint64_t v[15];
	for (unsigned i = 0; i < 15u; i++)
		v[i] = get(c);
	if (c->bad || c->pos != c->end) {
		bad_input(dec, "malformed CHECK record");
		return;
	}
	commit_seq(dec);
	anchor_seq(dec, v[0]);
	if (!dec->have_base) {
		dec->have_base = 1;
		dec->base = v[1];
		dec->heap_size = v[2];
		add_region(dec, v[1], v[2]);
	}
	struct htr_heap_stats *s = &dec->stats;
	memset(s, 0, sizeof(*s));
	s->heap_size = (size_t)v[2];
	s->live_blocks = (size_t)v[3];
	s->used_bytes = (size_t)v[4];
	s->free_bytes = (size_t)v[5];
	s->largest_free = (size_t)v[6];
	s->free_blocks = (size_t)v[7];
	s->min_free_bytes = (size_t)v[8];
	s->peak_used_bytes = (size_t)v[9];
	s->alloc_count = (uint32_t)v[10];
	s->free_count = (uint32_t)v[11];
	s->failed_count = (uint32_t)v[12];
	s->misuse_count = (uint32_t)v[13];
	struct htr_event ev;
	event_init(dec, &ev, HTR_EV_CHECKPOINT);
	ev.stats = s;
	ev.ptr = v[1];
	ev.size = v[2];
	ev.count = v[3];
	emit(dec, &ev);
}

static void do_ext(struct htr_wire_decoder *dec, struct cursor *c)
{
	uint8_t x = get_u8(c);
	struct htr_event ev;
	switch (x) {
	case HTR_WIRE_X_INIT: {
		uint64_t full = get(c), base = get(c), size = get(c), version = get(c);
		if (c->bad || c->pos != c->end || version != HTR_WIRE_VERSION) {
			bad_input(dec, "malformed or unknown-version INIT record");
			return;
		}
		/* A restarted target starts numbering again: not a loss. */
		if (dec->have_seq && full > dec->seq + 1u)
			loss(dec, full - dec->seq - 1u, HTR_WIRE_LOSS_CHECKPOINT, dec->seq + 1u);
		dec->records++;
		dec->have_seq = 1;
		dec->seq = full;
		dec->gap_since_drop = 0;
		dec->have_base = 1;
		dec->base = base;
		dec->heap_size = size;
		dec->region_count = 0;
		add_region(dec, base, size);
		memset(dec->site_map, 0, sizeof(dec->site_map));
		memset(dec->stack_map, 0, sizeof(dec->stack_map));
		memset(dec->recent, 0, sizeof(dec->recent));
		note_recent(dec, KIND_OTHER, 0);
		event_init(dec, &ev, HTR_EV_HEAP_INIT);
		ev.ptr = base;
		ev.size = size;
		emit(dec, &ev);
		return;
	}
	case HTR_WIRE_X_MARK: {
		size_t n = c->end - c->pos;
		char name[HTR_WIRE_NAME_MAX + 1u];
		if (n > HTR_WIRE_NAME_MAX || memchr(c->b + c->pos, 0, n) != NULL) {
			bad_input(dec, "malformed MARK record");
			return;
		}
		memcpy(name, c->b + c->pos, n);
		name[n] = '\0';
		event_init(dec, &ev, HTR_EV_MARKER);
		ev.text = name;
		emit(dec, &ev);
		return;
	}
	case HTR_WIRE_X_DROP: {
		uint64_t count = get(c);
		if (c->bad || c->pos != c->end) {
			bad_input(dec, "malformed DROP record");
			return;
		}
		commit_seq(dec);
		/* The gaps before this record already counted most drops; report
		 * only what they missed. */
		if (count > dec->gap_since_drop) {
			uint64_t extra = count - dec->gap_since_drop;
			/* The records behind the extra all came before this one: its
			 * 5-bit number wrapped past them. */
			loss(dec, extra, HTR_WIRE_LOSS_DROPS, dec->seq);
			dec->seq += extra;
		}
		dec->gap_since_drop = 0;
		return;
	}
	case HTR_WIRE_X_MISUSE: {
		uint8_t kind = get_u8(c);
		uint64_t site = get(c), addr = get(c);
		if (c->bad || c->pos != c->end || (kind != 1 && kind != 2)) {
			bad_input(dec, "malformed MISUSE record");
			return;
		}
		site_event(dec, &ev, HTR_EV_MISUSE, site);
		ev.kind = kind == 1 ? HTR_MISUSE_DOUBLE_FREE : HTR_MISUSE_INVALID_FREE;
		ev.call = HTR_CALL_FREE;
		ev.ptr = addr;
		emit(dec, &ev);
		return;
	}
	case HTR_WIRE_X_ALLOC:
		do_alloc(dec, c, FORM_CALL);
		return;
	case HTR_WIRE_X_PERSIST:
		do_alloc(dec, c, FORM_PERSIST);
		return;
	case HTR_WIRE_X_SITE:
		do_site(dec, c);
		return;
	case HTR_WIRE_X_CHECK:
		do_check(dec, c);
		return;
	case HTR_WIRE_X_REGION: {
		uint64_t base = get(c), size = get(c);
		if (c->bad || c->pos != c->end) {
			bad_input(dec, "malformed REGION record");
			return;
		}
		add_region(dec, base, size);
		return;
	}
	case HTR_WIRE_X_GUARD:
		/* No event type carries this yet; a well-formed one is skipped. */
		get(c);
		get(c);
		if (c->bad || c->pos != c->end)
			bad_input(dec, "malformed GUARD record");
		return;
	default:
		bad_input(dec, "unknown record type");
		return;
	}
}

static void do_frame(struct htr_wire_decoder *dec)
{
	uint8_t rec[HTR_WIRE_FRAME_MAX];
	long n = htr_wire_cobs_decode(dec->frame, dec->len, rec);
	if (n < 2) {
		bad_input(dec, n < 0 ? "not a COBS frame" : "frame too short");
		return;
	}
	if (htr_wire_crc8(rec, (size_t)n - 1u) != rec[n - 1]) {
		bad_input(dec, "CRC mismatch");
		return;
	}
	unsigned type = rec[0] >> HTR_WIRE_SEQ_BITS;
	if (type == 0) {
		bad_input(dec, "unknown record type");
		return;
	}
	struct cursor c = {rec, 1, (size_t)n - 1u, 0};
	/* INIT carries its own full number; anything else takes the next by
	 * its 5-bit one, once it proves well-formed (commit_seq). */
	int is_init = type == HTR_WIRE_EXT && n >= 3 && rec[1] == HTR_WIRE_X_INIT;
	dec->seq_pending = !is_init;
	dec->pending_s5 = rec[0] & HTR_WIRE_SEQ_MASK;
	switch (type) {
	case HTR_WIRE_ALLOC:
		do_alloc(dec, &c, FORM_MALLOC);
		break;
	case HTR_WIRE_ALLOC_AGAIN:
		do_alloc(dec, &c, FORM_AGAIN);
		break;
	case HTR_WIRE_CALLOC:
		do_alloc(dec, &c, FORM_CALLOC);
		break;
	case HTR_WIRE_FREE:
		do_free(dec, &c, 0);
		break;
	case HTR_WIRE_FREE_AGAIN:
		do_free(dec, &c, 1);
		break;
	case HTR_WIRE_REALLOC:
		do_realloc(dec, &c);
		break;
	default:
		do_ext(dec, &c);
		break;
	}
	/* Well-formed records that emit nothing (REGION, GUARD) */
	commit_seq(dec);
}

void htr_wire_decoder_init(struct htr_wire_decoder *dec, htr_event_sink sink, void *ctx)
{
	memset(dec, 0, sizeof(*dec));
	dec->sink = sink;
	dec->ctx = ctx;
}

int htr_wire_decoder_feed(struct htr_wire_decoder *dec, const uint8_t *bytes, size_t len)
{
	for (size_t i = 0; i < len && !dec->stopped; i++) {
		uint8_t b = bytes[i];
		if (dec->len == 0 && !dec->overflow)
			dec->frame_start = dec->offset;
		dec->offset++;
		if (b != 0) {
			if (dec->len < sizeof(dec->frame))
				dec->frame[dec->len++] = b;
			else
				dec->overflow = 1;
			continue;
		}
		if (dec->overflow)
			bad_input(dec, "frame too long");
		else if (dec->len != 0)
			do_frame(dec);
		dec->len = 0;
		dec->overflow = 0;
	}
	return dec->stopped;
}

int htr_wire_decoder_finish(struct htr_wire_decoder *dec)
{
	if (!dec->stopped && (dec->len != 0 || dec->overflow)) {
		struct htr_event ev;
		event_init(dec, &ev, HTR_EV_TRUNCATED);
		ev.seq = 0;
		ev.text = "stream ended inside a frame";
		emit(dec, &ev);
		dec->len = 0;
		dec->overflow = 0;
	}
	return dec->stopped;
}
