/* The streaming reader of packed traces. Memory stays fixed whatever the
 * trace length: one input buffer, one window of decompressed bytes (a
 * block), and the pointer model (pack_model.c), which grows only with the
 * blocks that stay live long. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "pack_model.h"
#include "reader_internal.h"

/* ---- reading ---- */

/* A block's coded bytes: the packer stops a block soon after 128 KiB (see
 * STAGE in pack.c), plus at most one RAW record. */
#define WINDOW (256u * 1024u)
#define RECORD_MAX 65536u /* a RAW record's u16 size */

struct htr_packed_input {
	int fd;
	ZSTD_DCtx *dctx;
	uint8_t in[64 * 1024];
	ZSTD_inBuffer ib;
	uint64_t in_offset; /* file offset of in[0] */
	bool in_eof;
	bool corrupt;
	const char *zstd_error;
	uint8_t *win;
	size_t start, end;
	_Alignas(8) uint8_t raw[RECORD_MAX]; /* a RAW record, aligned for decoding */
};

int htr_packed_open(struct htr_reader *r, int fd, char *err, size_t errlen)
{
	struct htr_pack_header h;
	ssize_t got = pread(fd, &h, sizeof(h), 0);
	const char *why = NULL;
	char buf[160];
	if (got != (ssize_t)sizeof(h)) {
		why = "packed trace header is cut short";
	} else if (h.version_major != HTR_PACK_VERSION_MAJOR) {
		snprintf(buf, sizeof(buf), "packed trace version %u.%u; this reader reads version %u.x",
			 h.version_major, h.version_minor, HTR_PACK_VERSION_MAJOR);
		why = buf;
	} else if (h.header_size != sizeof(h) || memcmp(h.trace.magic, HTR_TRACE_MAGIC, 8) != 0) {
		why = "packed trace header at offset 0 is corrupt";
	}
	struct htr_packed_input *in = why ? NULL : calloc(1, sizeof(*in));
	if (why == NULL && in == NULL)
		why = "out of memory";
	if (in != NULL) {
		in->win = malloc(WINDOW + RECORD_MAX);
		in->dctx = ZSTD_createDCtx();
		if (in->win == NULL || in->dctx == NULL)
			why = "out of memory";
	}
	if (why != NULL) {
		if (in != NULL) {
			free(in->win);
			ZSTD_freeDCtx(in->dctx);
			free(in);
		}
		close(fd);
		htr_set_err(err, errlen, "%s: %s", r->path, why);
		return -1;
	}
	in->fd = fd;
	in->in_offset = sizeof(h);
	in->ib = (ZSTD_inBuffer){in->in, 0, 0};
	if (lseek(fd, (off_t)sizeof(h), SEEK_SET) < 0) {
		/* pread worked, so a regular file: cannot happen, but say so if it does */
		htr_set_err(err, errlen, "%s: %s", r->path, strerror(errno));
		htr_packed_close(r);
		return -1;
	}
	r->header = h.trace;
	r->packed = in;
	return 0;
}

void htr_packed_close(struct htr_reader *r)
{
	struct htr_packed_input *in = r->packed;
	if (in == NULL)
		return;
	close(in->fd);
	ZSTD_freeDCtx(in->dctx);
	free(in->win);
	free(in);
	r->packed = NULL;
}

/* Makes at least `need` bytes available in the window unless the stream
 * ends first. */
static void fill(struct htr_packed_input *in, size_t need)
{
	if (in->end - in->start >= need || in->corrupt)
		return;
	memmove(in->win, in->win + in->start, in->end - in->start);
	in->end -= in->start;
	in->start = 0;
	while (in->end - in->start < need && !in->corrupt) {
		if (in->ib.pos == in->ib.size) {
			if (in->in_eof)
				return;
			in->in_offset += in->ib.size;
			ssize_t n = read(in->fd, in->in, sizeof(in->in));
			if (n <= 0) {
				in->in_eof = true;
				in->ib = (ZSTD_inBuffer){in->in, 0, 0};
				return;
			}
			in->ib = (ZSTD_inBuffer){in->in, (size_t)n, 0};
		}
		ZSTD_outBuffer ob = {in->win, WINDOW + RECORD_MAX, in->end};
		size_t rc = ZSTD_decompressStream(in->dctx, &ob, &in->ib);
		if (ZSTD_isError(rc)) {
			in->corrupt = true;
			in->zstd_error = ZSTD_getErrorName(rc);
			return;
		}
		in->end = ob.pos;
		if (ob.pos == ob.size)
			return; /* window full: enough for any record */
	}
}

/* Bounded cursor over the window. The cursors of a block share one flag:
 * a record is checked once, after all of its fields are read (what it
 * decoded meanwhile from a short column is thrown away with the block). */
struct cursor {
	const uint8_t *p, *end;
	bool *bad;
};

static uint64_t get_varint(struct cursor *c)
{
	const uint8_t *p = c->p;
	uint64_t v = 0;
	/* most reads are far from the end: no bound check per byte there */
	size_t room = (size_t)(c->end - p) < 10 ? (size_t)(c->end - p) : 10;
	for (unsigned i = 0; i < room; i++) {
		uint8_t b = p[i];
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			c->p = p + i + 1;
			return v;
		}
	}
	*c->bad = true; /* ran off the column, or an over-long varint: corrupt */
	return 0;
}

/* A varint whose length varies from one to the next as the data does (a
 * size, a far pointer): up to 8 bytes in one load, without the loop's
 * branch on the length, which mispredicts there ((a) read 42 -> 37 ms).
 * Where varints are mostly one byte (a stack, a seq, a pointer code) the
 * loop's branch is predicted and its one byte is quicker to hand on: with
 * this for pointer codes too, (d) read 2% slower. */
static uint64_t get_varint_wide(struct cursor *c)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint8_t *p = c->p;
	if (__builtin_expect(c->end - p >= 8, 1)) {
		uint64_t w;
		memcpy(&w, p, sizeof(w));
		uint64_t stop = ~w & 0x8080808080808080ull; /* bytes that end a varint */
		if (stop != 0) {
			c->p = p + (__builtin_ctzll(stop) >> 3) + 1;
			w &= stop ^ (stop - 1); /* the varint's bytes, none after */
			w = (w & 0x007f007f007f007full) | (w & 0x7f007f007f007f00ull) >> 1;
			w = (w & 0x00003fff00003fffull) | (w & 0x3fff00003fff0000ull) >> 2;
			return (w & 0x000000000fffffffull) | (w & 0x0fffffff00000000ull) >> 4;
		}
	}
#endif
	return get_varint(c);
}

static uint8_t get_byte(struct cursor *c)
{
	if (c->p >= c->end) {
		*c->bad = true;
		return 0;
	}
	return *c->p++;
}

/* A block's TAG column: rANS-coded or plain, and counted or not, as its
 * mode byte (HTR_TC_*) says: what the packer counted, the reader counts,
 * so that both rebuild the same tables. */
struct tags {
	struct htr_tag_coder *tc;
	uint8_t next[2]; /* the next record's tag bytes, decoded ahead */
	bool rans, counted;
	struct htr_tc_stream s;
	struct cursor plain;
};

static bool tags_open(struct tags *t, const struct cursor *col)
{
	if (col->p == col->end)
		return false;
	t->plain = *col;
	uint8_t mode = *t->plain.p++;
	t->rans = mode == HTR_TC_RANS || mode == HTR_TC_RANS_FIXED;
	t->counted = mode == HTR_TC_RANS || mode == HTR_TC_PLAIN_COUNTED;
	if (!t->rans)
		return mode == HTR_TC_PLAIN || mode == HTR_TC_PLAIN_COUNTED;
	if (t->plain.end - t->plain.p < 8)
		return false;
	const uint8_t *p = t->plain.p;
	t->s = (struct htr_tc_stream){.p = p + 8, .end = t->plain.end};
	for (unsigned i = 0; i < 2; i++) {
		t->s.x[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
		            (uint32_t)p[4 * i + 3] << 24;
		if (t->s.x[i] < HTR_TC_LOW || t->s.x[i] >= 256u * HTR_TC_LOW)
			return false;
	}
	return true;
}

/* A valid block ends with its column used up and, coded, the state the
 * packer's coding started from. */
static bool tags_done(const struct tags *t)
{
	return t->rans ? t->s.p == t->s.end && t->s.x[0] == HTR_TC_LOW && t->s.x[1] == HTR_TC_LOW
	               : t->plain.p == t->plain.end;
}

static inline __attribute__((always_inline)) uint8_t get_tag(struct tags *t, unsigned bucket)
{
	if (t->rans)
		return htr_tc_decode(t->tc, bucket, &t->s, t->counted);
	uint8_t b = get_byte(&t->plain);
	if (t->counted)
		htr_tc_count(t->tc, bucket, b);
	return b;
}

/* The next record's tag bytes, decoded as soon as the record before is
 * done, before its event goes to the sink: the context is a chain of
 * dependent loads, and all of a record's branches wait on its tag (decoded
 * on the spot, (d) read in 0.20 s instead of 0.17). */
static inline __attribute__((always_inline)) void tags_ahead_in(struct tags *t, unsigned bucket)
{
	t->next[0] = get_tag(t, bucket);
	t->tc->last_tag = t->next[0];
	if (t->next[0] == HTR_PACK_LONG)
		t->next[1] = get_tag(t, HTR_TC_LONG);
}

static inline __attribute__((always_inline)) void tags_ahead(struct tags *t, const struct htr_pack_model *m)
{
	tags_ahead_in(t, t->counted || t->rans ? htr_tc_first_bucket(m, t->tc) : 0);
}

/* A pointer code in its column: below 128 as it is, else 128 + code / 256
 * with the low byte in the LOW column. */
static uint64_t get_ptr_code(struct cursor *c, struct cursor *low)
{
	uint64_t v = get_varint(c);
	if (v < 128)
		return v;
	if (v - 128 >= (1ull << 56)) {
		*c->bad = true;
		return 0;
	}
	return (v - 128) << 8 | get_byte(low);
}

/* The code and stack of the last event of the current thread, which its
 * next event's stack and the next tag are predicted from. */
static inline uint32_t thread_prev(const struct htr_pack_model *m)
{
	return m->thread_prev[m->last_thread & (HTR_PM_THREAD_SLOTS - 1)];
}

/* One record from the block's columns into *evp. Returns 0, 1 for
 * corrupt data, -1 out of memory. */
/* The block a FREE or a REALLOC lets go of: its pointer code is inline in
 * the tag or in the OLD column (+ LOW), a far one followed by its varint.
 * false: the code names no block the model knows. */
static inline __attribute__((always_inline)) bool decode_freed(struct htr_pack_model *m, uint64_t inl,
							       struct cursor *old, struct cursor *low, uint32_t stack,
							       struct htr_pm_block *blk)
{
	uint64_t pcode = inl != HTR_PACK_S_IN_COLUMN ? inl : get_ptr_code(old, low);
	uint64_t extra = pcode == HTR_PACK_F_FAR ? get_varint_wide(old) : 0;
	return htr_pm_decode_free(m, pcode, extra, stack, blk);
}

/* A short tag's low nibble as the long form's flags (and code): one load
 * instead of the bits moved one by one ((d): 12 M instructions fewer). */
#define SHORT_FLAGS(t)                                                                     \
	(((t) & HTR_PACK_S_CODE) | HTR_PACK_SEQ_NEXT |                                     \
	 ((t) & HTR_PACK_S_SAME_THREAD ? HTR_PACK_SAME_THREAD : 0) |                       \
	 ((t) & HTR_PACK_S_SAME_STACK ? HTR_PACK_SAME_STACK : 0))
static const uint8_t short_flags[16] = {
	SHORT_FLAGS(0),  SHORT_FLAGS(1),  SHORT_FLAGS(2),  SHORT_FLAGS(3),  SHORT_FLAGS(4),  SHORT_FLAGS(5),
	SHORT_FLAGS(6),  SHORT_FLAGS(7),  SHORT_FLAGS(8),  SHORT_FLAGS(9),  SHORT_FLAGS(10), SHORT_FLAGS(11),
	SHORT_FLAGS(12), SHORT_FLAGS(13), SHORT_FLAGS(14), SHORT_FLAGS(15),
};
#undef SHORT_FLAGS

static inline __attribute__((always_inline)) int decode_record(struct htr_reader *r, struct htr_pack_model *m,
                                                               struct cursor *col, const uint8_t *tags,
                                                               struct htr_event *evp, uint64_t ordinal,
                                                               char *text, size_t textlen, uint32_t *prev)
{
	struct cursor *order = &col[HTR_PACK_COL_ORDER];
	struct cursor *tagc = &col[HTR_PACK_COL_TAG];
	uint8_t tag = tags ? tags[0] : get_byte(tagc);
	uint8_t code = tag & HTR_PACK_S_CODE;
	/* The first pointer code, when the short tag carries it. */
	uint64_t inl = HTR_PACK_S_IN_COLUMN;
	if (code != HTR_PACK_LONG) {
		inl = tag >> HTR_PACK_S_PTR_SHIFT;
		tag = short_flags[tag & 0x0f];
	} else {
		tag = tags ? tags[1] : get_byte(tagc);
		code = tag & 0x0f;
	}
	/* The reader's own event, cleared only when another type left fields
	 * set (see struct htr_reader). */
	bool hot = code == HTR_PACK_ALLOC || code == HTR_PACK_FREE || code == HTR_PACK_REALLOC;
	if (!(hot && r->ev_clean))
		*evp = (struct htr_event){0};
	r->ev_clean = hot;
#define ev (*evp)
	ev.offset = ordinal;
	if (hot || code == HTR_PACK_RAW) {
		if (!(tag & HTR_PACK_SAME_THREAD))
			m->last_thread = (uint32_t)get_varint(order);
		ev.thread = m->last_thread;
	}
	uint64_t pcode, extra = 0;
	struct htr_pm_block blk;
	int arc;
	if (hot) {
		m->last_seq += (tag & HTR_PACK_SEQ_NEXT) ? 1 : get_varint(order);
		ev.seq = m->last_seq;
		uint32_t *predicted =
		        htr_pm_stack_slot_of(m, tag & HTR_PACK_SAME_THREAD ? *prev : thread_prev(m), code);
		ev.stack = (tag & HTR_PACK_SAME_STACK) ? *predicted : (uint32_t)get_varint(&col[HTR_PACK_COL_STACK]);
		htr_pm_stack_seen(m, predicted, code, ev.stack);
		ev.site = 0;
		ev.alignment = 0;
		if (tag & HTR_PACK_EXTRA) {
			struct cursor *call = &col[HTR_PACK_COL_CALL];
			m->last_kind[code] = get_byte(call);
			ev.site = (uint32_t)get_varint(call);
			if (code == HTR_PACK_ALLOC)
				ev.alignment = (uint32_t)get_varint(call);
		}
		ev.call = m->last_kind[code];
		ev.time_ns = r->time_ns;
		ev.ptr2 = 0;
		ev.size = 0;
	}
	/* What the thread's next event and the next tag are predicted from,
	 * as m->thread_prev holds it for this thread now. */
	*prev = hot ? ev.stack * 8u + code : thread_prev(m);
	struct cursor *size = &col[HTR_PACK_COL_SIZE], *old = &col[HTR_PACK_COL_OLD], *new = &col[HTR_PACK_COL_NEW];
	struct cursor *low = &col[HTR_PACK_COL_LOW];
	/* Allocations and frees first, a branch each: a switch's one jump
	 * through a table mispredicts as often, and costs more to take ((d):
	 * 17 M instructions fewer). */
	if (code == HTR_PACK_ALLOC) {
		ev.type = HTR_EV_ALLOC;
		unsigned size_slot = htr_pm_size_slot(ev.stack);
		bool size_hit = inl < HTR_PACK_S_A_SIZE_HIT ? (inl & 1) != 0 : inl == HTR_PACK_S_A_SIZE_HIT;
		ev.size = size_hit ? htr_pm_size_predict(m, size_slot) : get_varint_wide(size);
		htr_pm_size_seen(m, size_slot, ev.size, size_hit);
		pcode = inl < HTR_PACK_S_A_SIZE_HIT ? inl >> 1 : get_ptr_code(new, low);
		if (pcode == HTR_PACK_A_FAR)
			extra = get_varint_wide(new);
		arc = htr_pm_decode_alloc(m, pcode, extra, ev.size, &ev.ptr);
		if (arc != 0)
			return arc;
	} else if (code == HTR_PACK_FREE) {
		ev.type = HTR_EV_FREE;
		if (!decode_freed(m, inl, old, low, ev.stack, &blk))
			return 1;
		htr_pm_drop_by_ord(m, &blk);
		ev.ptr = blk.ptr;
	} else switch (code) {
	case HTR_PACK_REALLOC:
		ev.type = HTR_EV_REALLOC;
		if (!decode_freed(m, inl, old, low, ev.stack, &blk))
			return 1;
		ev.ptr = blk.ptr;
		pcode = get_varint_wide(size);
		extra = pcode == HTR_PACK_SIZE_PLAIN ? get_varint_wide(size) : 0;
		if (!htr_pm_decode_resize(&blk, pcode, extra, &ev.size))
			return 1;
		pcode = get_ptr_code(new, low);
		extra = pcode == HTR_PACK_A_FAR ? get_varint_wide(new) : 0;
		/* A failed realloc leaves the old block live. */
		if (!(pcode == HTR_PACK_A_NULL && ev.size != 0))
			htr_pm_drop_by_ord(m, &blk);
		arc = htr_pm_decode_alloc(m, pcode, extra, ev.size, &ev.ptr2);
		if (arc != 0)
			return arc;
		break;
	case HTR_PACK_RAW: {
		struct cursor *raw = &col[HTR_PACK_COL_RAW];
		uint64_t len = get_varint(raw);
		if (*raw->bad || len < 8 || len > 65535 || len % 8 != 0 || (size_t)(raw->end - raw->p) < len)
			return 1;
		/* copied out: the record's fields are decoded in place, aligned */
		struct htr_packed_input *in = r->packed;
		memcpy(in->raw, raw->p, len);
		raw->p += len;
		uint32_t thread = ev.thread;
		uint16_t rsize;
		memcpy(&rsize, in->raw + 2, sizeof(rsize));
		if (rsize != len)
			return 1;
		size_t fixed = htr_record_fixed_size(in->raw[0]);
		if (fixed == 0 || len < fixed || !htr_record_decode(r, in->raw, thread, evp))
			return 1;
		ev.offset = ordinal;
		if (ev.seq != 0)
			m->last_seq = ev.seq;
		break;
	}
	case HTR_PACK_NOTICE: {
		struct cursor *raw = &col[HTR_PACK_COL_RAW];
		ev.type = (uint8_t)get_varint(raw);
		ev.kind = get_byte(raw);
		ev.offset = get_varint(raw);
		ev.count = get_varint(raw);
		uint64_t len = get_varint(raw);
		if (*raw->bad || len >= textlen || (size_t)(raw->end - raw->p) < len ||
		    (ev.type != HTR_EV_TRUNCATED && ev.type != HTR_EV_BAD_INPUT && ev.type != HTR_EV_LOSS))
			return 1;
		memcpy(text, raw->p, len);
		text[len] = '\0';
		raw->p += len;
		ev.text = text;
		ev.time_ns = r->time_ns;
		break;
	}
	default:
		return 1;
	}
#undef ev
	return *col[0].bad ? 1 : 0;
}

static int run_packed(struct htr_reader *r, struct htr_pack_model *m, struct htr_tag_coder *tc, htr_event_sink sink,
		      void *ctx)
{
	struct htr_packed_input *in = r->packed;
	uint64_t ordinal = 0;
	char text[512];

	for (;;) {
		/* The block header: a record count (0: the end mark), then
		 * each column's length. */
		fill(in, 10 * (HTR_PACK_COLUMNS + 1));
		if (in->start == in->end)
			goto cut; /* the stream ended before its end mark */
		bool head_bad = false;
		struct cursor head = {in->win + in->start, in->win + in->end, &head_bad};
		uint64_t records = get_varint(&head);
		if (!head_bad && records == 0)
			return 0;
		uint64_t len[HTR_PACK_COLUMNS], total = 0;
		for (unsigned i = 0; i < HTR_PACK_COLUMNS; i++) {
			len[i] = get_varint(&head);
			total += len[i] < WINDOW ? len[i] : WINDOW;
		}
		if (head_bad)
			goto cut;
		size_t head_len = (size_t)(head.p - (in->win + in->start));
		/* A record takes a byte of the TAG column at least before it is
		 * coded, and a block's columns fit the window then. */
		if (total > WINDOW - head_len || records > WINDOW)
			goto corrupt;
		fill(in, head_len + total);
		if (in->end - in->start < head_len + total)
			goto cut;
		struct cursor col[HTR_PACK_COLUMNS];
		bool bad = false;
		const uint8_t *at = in->win + in->start + head_len;
		for (unsigned i = 0; i < HTR_PACK_COLUMNS; i++) {
			col[i] = (struct cursor){at, at + len[i], &bad};
			at += len[i];
		}
		struct tags tags = {.tc = tc};
		if (!tags_open(&tags, &col[HTR_PACK_COL_TAG]))
			goto corrupt;
		tc->last_tag = 0; /* each block starts its context afresh (pack.c: flush_block) */
		if (!tags.counted && !tags.rans) {
			/* Neither coded nor counted: read in place, as in v3. */
			col[HTR_PACK_COL_TAG] = tags.plain;
			uint32_t prev = thread_prev(m);
			for (uint64_t i = 0; i < records; i++, ordinal++) {
				int rc = decode_record(r, m, col, NULL, &r->ev, ordinal, text, sizeof(text),
				                       &prev);
				if (__builtin_expect(rc != 0, 0)) {
					if (rc < 0)
						goto oom;
					goto corrupt;
				}
				rc = sink(ctx, &r->ev);
				if (rc != 0)
					return rc;
			}
			tags.plain = col[HTR_PACK_COL_TAG];
		} else {
			tags_ahead(&tags, m);
			uint32_t prev = thread_prev(m);
			for (uint64_t i = 0; i < records; i++, ordinal++) {
				uint8_t tag[2] = {tags.next[0], tags.next[1]};
				int rc = decode_record(r, m, col, tag, &r->ev, ordinal, text, sizeof(text),
				                       &prev);
				/* one test of rc per record ((d): 5 M instructions fewer) */
				if (__builtin_expect(rc != 0, 0)) {
					if (rc < 0)
						goto oom;
					goto corrupt;
				}
				/* The context from registers, not read back from
				 * what the record just stored: it is the chain that
				 * every record of the block waits on. */
				if (i + 1 < records)
					tags_ahead_in(&tags, htr_tc_bucket_of(prev, tag[0]));
				rc = sink(ctx, &r->ev);
				if (rc != 0)
					return rc;
			}
		}
		for (unsigned i = 0; i < HTR_PACK_COLUMNS; i++)
			if (i != HTR_PACK_COL_TAG && col[i].p != col[i].end)
				goto corrupt; /* the block says more than its records used */
		if (!tags_done(&tags))
			goto corrupt;
		in->start += head_len + total;
	}
cut:
	if (in->corrupt)
		goto corrupt;
	snprintf(text, sizeof(text),
		 "packed stream ends after %" PRIu64 " records without its end mark: the file was cut short",
		 ordinal);
	return htr_emit_notice(r, sink, ctx, HTR_EV_TRUNCATED, HTR_TRUNC_FILE_SHORT, in->in_offset + in->ib.pos, "%s", text);
corrupt:
	snprintf(text, sizeof(text), "corrupt packed data near file offset %" PRIu64 " (record %" PRIu64 "%s%s)",
		 in->in_offset + in->ib.pos, ordinal, in->zstd_error ? ": " : "",
		 in->zstd_error ? in->zstd_error : "");
	int rc = htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, in->in_offset + in->ib.pos, "%s", text);
	if (rc != 0)
		return rc;
	return htr_emit_notice(r, sink, ctx, HTR_EV_TRUNCATED, HTR_TRUNC_FILE_SHORT, in->in_offset + in->ib.pos,
			       "reading stopped at the corrupt packed data; events after it are lost");
oom:
	return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, in->in_offset + in->ib.pos,
			       "out of memory reading the packed trace near file offset %" PRIu64
			       "; events after it are lost",
			       in->in_offset + in->ib.pos);
}

/* The model and the tag coder (1.8 MB) share one 2 MiB page: every
 * record reads both at random (stack and size predictions, the per-class
 * lists, the coder's tables). With the ring in a page of its own, (d)
 * with the engine 97.8 -> 96.5 ms (min of 25). */
struct reader_state {
	struct htr_pack_model model;
	struct htr_tag_coder tc;
};

int htr_packed_run(struct htr_reader *r, htr_event_sink sink, void *ctx)
{
	struct reader_state *st = htr_pm_huge_zalloc(sizeof(*st));
	struct htr_pack_model *model = st ? &st->model : NULL;
	struct htr_tag_coder *tc = st ? &st->tc : NULL;
	if (st == NULL || htr_pm_init(model, true) != 0) {
		free(st);
		return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, 0, "out of memory reading the packed trace");
	}
	htr_tc_init(tc, true);
	int rc = run_packed(r, model, tc, sink, ctx);
	htr_pm_fini(model);
	free(st);
	return rc;
}
