/* Packed traces: the coding state shared with the packer, and the streaming
 * reader. Memory stays fixed whatever the trace length: one input buffer,
 * one window of decompressed bytes. */
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

#define WINDOW (256u * 1024u)
#define RECORD_MAX (65536u + 64u) /* a RAW record's u16 size plus its prefix */

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

/* Bounded cursor over the window. */
struct cursor {
	const uint8_t *p, *end;
	bool short_read;
};

static uint64_t get_varint(struct cursor *c)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (c->p >= c->end) {
			c->short_read = true;
			return 0;
		}
		uint8_t b = *c->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	c->short_read = true; /* over-long varint: corrupt */
	return 0;
}

static uint8_t get_byte(struct cursor *c)
{
	if (c->p >= c->end) {
		c->short_read = true;
		return 0;
	}
	return *c->p++;
}


static int run_packed(struct htr_reader *r, struct htr_pack_model *m, htr_event_sink sink, void *ctx)
{
	struct htr_packed_input *in = r->packed;
	uint64_t ordinal = 0;
	char text[512];

	for (;; ordinal++) {
		fill(in, 128);
		if (in->start == in->end)
			break; /* the stream ended before its END tag */
		struct cursor c = {in->win + in->start, in->win + in->end, false};
		uint8_t tag = get_byte(&c);
		uint8_t code = tag & 0x0f;
		if (code == HTR_PACK_END)
			return 0;
		/* The reader's own event, cleared only when another type left
		 * fields set (see struct htr_reader). */
		struct htr_event *evp = &r->ev;
		bool hot = code == HTR_PACK_ALLOC || code == HTR_PACK_FREE || code == HTR_PACK_REALLOC;
		if (!(hot && r->ev_clean))
			*evp = (struct htr_event){0};
		r->ev_clean = hot;
#define ev (*evp)
		ev.offset = ordinal;
		if (hot || code == HTR_PACK_RAW) {
			if (!(tag & HTR_PACK_SAME_THREAD))
				m->last_thread = (uint32_t)get_varint(&c);
			ev.thread = m->last_thread;
		}
		if (hot) {
			m->last_seq += (tag & HTR_PACK_SEQ_NEXT) ? 1 : get_varint(&c);
			ev.seq = m->last_seq;
			if (!(tag & HTR_PACK_SAME_STACK))
				m->last_stack[code] = (uint32_t)get_varint(&c);
			ev.stack = m->last_stack[code];
			ev.site = 0;
			ev.alignment = 0;
			if (tag & HTR_PACK_EXTRA) {
				m->last_kind[code] = get_byte(&c);
				ev.site = (uint32_t)get_varint(&c);
				if (code == HTR_PACK_ALLOC)
					ev.alignment = (uint32_t)get_varint(&c);
			}
			ev.call = m->last_kind[code];
			ev.time_ns = r->time_ns;
			ev.ptr2 = 0;
			ev.size = 0;
		}
		uint64_t pcode, extra = 0;
		struct htr_pm_block blk;
		int arc;
		switch (code) {
		case HTR_PACK_ALLOC:
			ev.type = HTR_EV_ALLOC;
			ev.size = get_varint(&c);
			pcode = get_varint(&c);
			if (pcode == HTR_PACK_A_FAR)
				extra = get_varint(&c);
			if (c.short_read)
				goto cut;
			arc = htr_pm_decode_alloc(m, pcode, extra, ev.size, &ev.ptr);
			if (arc < 0)
				goto oom;
			if (arc > 0)
				goto corrupt;
			break;
		case HTR_PACK_FREE:
			ev.type = HTR_EV_FREE;
			pcode = get_varint(&c);
			if (pcode == HTR_PACK_F_FAR)
				extra = get_varint(&c);
			if (c.short_read)
				goto cut;
			if (!htr_pm_decode_free(m, pcode, extra, ev.stack, &blk))
				goto corrupt;
			htr_pm_drop_by_ord(m, &blk);
			ev.ptr = blk.ptr;
			break;
		case HTR_PACK_REALLOC:
			ev.type = HTR_EV_REALLOC;
			pcode = get_varint(&c);
			if (pcode == HTR_PACK_F_FAR)
				extra = get_varint(&c);
			if (c.short_read)
				goto cut;
			if (!htr_pm_decode_free(m, pcode, extra, ev.stack, &blk))
				goto corrupt;
			ev.ptr = blk.ptr;
			pcode = get_varint(&c);
			extra = pcode == HTR_PACK_SIZE_PLAIN ? get_varint(&c) : 0;
			if (c.short_read)
				goto cut;
			if (!htr_pm_decode_resize(&blk, pcode, extra, &ev.size))
				goto corrupt;
			pcode = get_varint(&c);
			extra = 0;
			if (pcode == HTR_PACK_A_FAR)
				extra = get_varint(&c);
			if (c.short_read)
				goto cut;
			/* A failed realloc leaves the old block live. */
			if (!(pcode == HTR_PACK_A_NULL && ev.size != 0))
				htr_pm_drop_by_ord(m, &blk);
			arc = htr_pm_decode_alloc(m, pcode, extra, ev.size, &ev.ptr2);
			if (arc < 0)
				goto oom;
			if (arc > 0)
				goto corrupt;
			break;
		case HTR_PACK_RAW: {
			uint64_t len = get_varint(&c);
			if (c.short_read || len < 8 || len > 65535 || len % 8 != 0)
				goto corrupt;
			size_t prefix = (size_t)(c.p - (in->win + in->start));
			fill(in, prefix + len);
			c.p = in->win + in->start + prefix;
			c.end = in->win + in->end;
			if ((size_t)(c.end - c.p) < len)
				goto cut;
			memcpy(in->raw, c.p, len);
			c.p += len;
			uint32_t thread = ev.thread;
			uint16_t size;
			memcpy(&size, in->raw + 2, sizeof(size));
			if (size != len)
				goto corrupt;
			size_t fixed = htr_record_fixed_size(in->raw[0]);
			if (fixed == 0 || len < fixed || !htr_record_decode(r, in->raw, thread, evp))
				goto corrupt;
			ev.offset = ordinal;
			if (ev.seq != 0)
				m->last_seq = ev.seq;
			break;
		}
		case HTR_PACK_NOTICE: {
			ev.type = (uint8_t)get_varint(&c);
			ev.kind = get_byte(&c);
			ev.offset = get_varint(&c);
			ev.count = get_varint(&c);
			uint64_t len = get_varint(&c);
			if (c.short_read || len >= sizeof(text) || (size_t)(c.end - c.p) < len ||
			    (ev.type != HTR_EV_TRUNCATED && ev.type != HTR_EV_BAD_INPUT && ev.type != HTR_EV_LOSS))
				goto corrupt;
			memcpy(text, c.p, len);
			text[len] = '\0';
			c.p += len;
			ev.text = text;
			ev.time_ns = r->time_ns;
			break;
		}
		default:
			goto corrupt;
		}
		if (c.short_read)
			goto cut;
		in->start = (size_t)(c.p - in->win);
		int rc = sink(ctx, evp);
		if (rc != 0)
			return rc;
#undef ev
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

int htr_packed_run(struct htr_reader *r, htr_event_sink sink, void *ctx)
{
	struct htr_pack_model *model = malloc(sizeof(*model));
	if (model == NULL || htr_pm_init(model) != 0) {
		free(model);
		return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, 0, "out of memory reading the packed trace");
	}
	int rc = run_packed(r, model, sink, ctx);
	htr_pm_fini(model);
	free(model);
	return rc;
}
