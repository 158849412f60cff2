/* The packer: a raw trace, read through the reader's record hook, written
 * as a packed one. */
#define _GNU_SOURCE
#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "pack_model.h"
#include "reader_internal.h"

/* Coded bytes collected per block, over all columns, before compressing.
 * The total is looked at after every RAW or NOTICE record and every
 * CHECK_EVERY records (adding the column lengths per record cost a tenth
 * of the packing), so a block can pass STAGE by CHECK_EVERY coded events
 * (at most ~90 bytes each) plus one RAW record (64 KiB): 216 KiB at most,
 * which must fit the reader's 256 KiB window; no column passes COLUMN_MAX. */
#define STAGE (128u * 1024u)
#define CHECK_EVERY 256u
#define COLUMN_MAX (STAGE + 70000u)
/* The TAG column is rANS-coded (pack_model.h) only where that pays for
 * its reading time (~4 ns/event): by half a bit per record at least
 * ((d): 0.85). Where the tags repeat a long pattern that one event of
 * context cannot see, zstd codes them better anyway ((c): 10 KB against
 * 190 KB), and where they are near constant the gain is nothing ((a)).
 * Every TAG_TRIAL_EVERY blocks the packer weighs both codings (zstd at
 * level 1: the difference is never close where it matters) and keeps the
 * choice until the next weighing. The coder's tables are learnt from the
 * first TAG_LEARN blocks and the weighed ones; the others are coded with
 * the tables as they are, which spares both sides the counting ((d):
 * 4% fewer instructions to read, 2% less time to pack, 0.1% more bytes).
 * The mode byte of a block says whether it was counted. */
#define TAG_TRIAL_EVERY 16u
#define TAG_TRIAL_LEVEL 1
#define TAG_LEARN       4u

struct packer {
	struct htr_pack_model st;
	struct htr_tag_coder tc;
	struct htr_tc_reciprocal rcp[HTR_TC_TOTAL + 1];
	struct htr_tc_op ops[2 * COLUMN_MAX]; /* the TAG column's rANS steps, an escape takes two */
	size_t n_ops;
	uint8_t coded_tags[COLUMN_MAX + 1];
	ZSTD_CCtx *trial_cctx;
	uint8_t trial[ZSTD_COMPRESSBOUND(COLUMN_MAX)];
	unsigned trial_in; /* blocks until the next weighing */
	bool tags_rans;    /* what the last weighing chose */
	bool coding;       /* this block's tags may be rANS-coded */
	bool counting;     /* ... and feed the coder's counts */
	uint64_t blocks;
	ZSTD_CCtx *cctx;
	int fd;
	uint8_t col[HTR_PACK_COLUMNS][COLUMN_MAX];
	size_t len[HTR_PACK_COLUMNS];
	uint64_t in_block; /* records */
	uint8_t out[64 * 1024];
	uint64_t records;
	uint64_t written;
	int write_errno;
};

static void put_byte(struct packer *p, unsigned col, uint8_t b)
{
	p->col[col][p->len[col]++] = b;
}

static void put_varint(struct packer *p, unsigned col, uint64_t v)
{
	uint8_t *out = p->col[col];
	size_t n = p->len[col];
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	p->len[col] = n;
}

/* The bucket of a record's first tag byte, taken before the record changes
 * the model; any when the block does not count. */
static unsigned tag_bucket(const struct packer *p)
{
	return p->coding ? htr_tc_first_bucket(&p->st, &p->tc) : 0;
}

/* A record's tag bytes: the first in its bucket, the long form's second in
 * its own. The context is kept in coding blocks only: the reader reads the
 * others in place. */
static inline __attribute__((always_inline)) void put_tag(struct packer *p, unsigned bucket, uint8_t first,
                                                         uint8_t second)
{
	if (p->coding) {
		p->n_ops += htr_tc_code(&p->tc, bucket, first, p->ops + p->n_ops);
		if (p->counting)
			htr_tc_count(&p->tc, bucket, first);
		if (first == HTR_PACK_LONG) {
			p->n_ops += htr_tc_code(&p->tc, HTR_TC_LONG, second, p->ops + p->n_ops);
			if (p->counting)
				htr_tc_count(&p->tc, HTR_TC_LONG, second);
		}
		p->tc.last_tag = first;
	}
	put_byte(p, HTR_PACK_COL_TAG, first);
	if (first == HTR_PACK_LONG)
		put_byte(p, HTR_PACK_COL_TAG, second);
}

static void put_bytes(struct packer *p, unsigned col, const void *src, size_t n)
{
	memcpy(p->col[col] + p->len[col], src, n);
	p->len[col] += n;
}

/* A pointer code of 128 or more is 128 + code / 256 in its column and its
 * low byte in the LOW column: the low bits of a far ordinal are noise, and
 * mixed into a varint's bytes they spoiled zstd's statistics for the high
 * bits as well ((c) -2.8%, (d) -0.9%). */
static void put_ptr_code(struct packer *p, unsigned col, uint64_t code, bool has_extra, uint64_t extra)
{
	if (code >= 128 && col != HTR_PACK_COL_SIZE) {
		put_varint(p, col, 128 + (code >> 8));
		put_byte(p, HTR_PACK_COL_LOW, (uint8_t)code);
	} else {
		put_varint(p, col, code);
	}
	if (has_extra)
		put_varint(p, col, extra);
}

static int write_all(struct packer *p, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(p->fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			p->write_errno = errno;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
		p->written += (uint64_t)n;
	}
	return 0;
}

/* mode: ZSTD_e_continue, ZSTD_e_flush (the input ends a zstd block) or
 * ZSTD_e_end (the frame is closed). */
static int compress(struct packer *p, const void *src, size_t len, ZSTD_EndDirective mode)
{
	ZSTD_inBuffer ib = {src, len, 0};
	for (;;) {
		ZSTD_outBuffer ob = {p->out, sizeof(p->out), 0};
		size_t left = ZSTD_compressStream2(p->cctx, &ob, &ib, mode);
		if (ZSTD_isError(left)) {
			p->write_errno = EIO;
			return -1;
		}
		if (write_all(p, p->out, ob.pos) != 0)
			return -1;
		if (mode == ZSTD_e_continue ? ib.pos == ib.size : left == 0)
			return 0;
	}
}

static size_t varint_to(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

/* Writes the staged block: its record count, each column's length, then
 * the columns. Like fields sit together, which is what zstd's entropy
 * coder and match finder want; each column also ends a zstd block, so it
 * gets Huffman and FSE tables of its own instead of sharing them with its
 * neighbours ((d) 0.91 -> 0.85 bytes/event, (c) 1.78 -> 1.69; the stream
 * is the same to the reader). end: the end mark (a block of no records)
 * follows, and the frame is closed. */
static int flush_block(struct packer *p, bool end)
{
	if (p->in_block > 0) {
		/* The TAG column rANS-coded when the coding pays (a weighing
		 * block weighs it); else as it is. */
		size_t raw_tags = p->len[HTR_PACK_COL_TAG];
		uint8_t *tags_end = p->coded_tags + sizeof(p->coded_tags), *tags = NULL;
		if (p->coding)
			tags = htr_tc_encode(p->rcp, p->ops, p->n_ops, tags_end - raw_tags, tags_end);
		if (p->trial_in == 0) {
			size_t z = ZSTD_compressCCtx(p->trial_cctx, p->trial, sizeof(p->trial), p->col[HTR_PACK_COL_TAG],
			                             raw_tags, TAG_TRIAL_LEVEL);
			p->tags_rans = tags != NULL && !ZSTD_isError(z) &&
			               (size_t)(tags_end - tags) + p->in_block / 16 < z;
			if (!p->tags_rans)
				tags = NULL;
		}
		if (tags != NULL) {
			*--tags = p->counting ? HTR_TC_RANS : HTR_TC_RANS_FIXED;
		} else {
			tags = tags_end - raw_tags - 1;
			tags[0] = p->counting ? HTR_TC_PLAIN_COUNTED : HTR_TC_PLAIN;
			memcpy(tags + 1, p->col[HTR_PACK_COL_TAG], raw_tags);
		}
		p->len[HTR_PACK_COL_TAG] = (size_t)(tags_end - tags);
		uint8_t head[10 * (HTR_PACK_COLUMNS + 1)];
		size_t n = varint_to(head, p->in_block);
		for (unsigned i = 0; i < HTR_PACK_COLUMNS; i++)
			n += varint_to(head + n, p->len[i]);
		if (compress(p, head, n, ZSTD_e_continue) != 0)
			return -1;
		for (unsigned i = 0; i < HTR_PACK_COLUMNS; i++) {
			const uint8_t *col = i == HTR_PACK_COL_TAG ? tags : p->col[i];
			if (p->len[i] > 0 && compress(p, col, p->len[i], ZSTD_e_flush) != 0)
				return -1;
		}
	}
	if (end) {
		uint8_t mark = 0;
		if (compress(p, &mark, 1, ZSTD_e_end) != 0)
			return -1;
	}
	memset(p->len, 0, sizeof(p->len));
	p->n_ops = 0;
	p->records += p->in_block;
	p->in_block = 0;
	p->tc.last_tag = 0; /* so a reader can skip the tags of a plain block */
	p->trial_in = (p->trial_in == 0 ? TAG_TRIAL_EVERY : p->trial_in) - 1;
	p->blocks++;
	p->coding = p->trial_in == 0 || p->tags_rans;
	p->counting = p->trial_in == 0 || (p->coding && p->blocks < TAG_LEARN);
	return 0;
}

static int record_done(struct packer *p, bool raw)
{
	p->in_block++; /* p->records counts them a block at a time: (b) -4 M */
	if (!raw && p->in_block % CHECK_EVERY != 0)
		return 0;
	size_t staged = 0;
	for (unsigned i = 0; i < HTR_PACK_COLUMNS; i++)
		staged += p->len[i];
	return staged >= STAGE ? flush_block(p, false) : 0;
}

static uint8_t code_for(uint8_t type)
{
	switch (type) {
	case HTR_EV_ALLOC: return HTR_PACK_ALLOC;
	case HTR_EV_FREE: return HTR_PACK_FREE;
	case HTR_EV_REALLOC: return HTR_PACK_REALLOC;
	default: return HTR_PACK_RAW;
	}
}

/* The pointer code that a short tag carries, or that goes to its column
 * (with the varint that follows a FAR code). Returns the short tag's bits
 * for it, none when the record has no short tag (in_tag false): a short
 * tag written through a pointer lived in memory ((b): 1.599 -> 1.585 G). */
static uint8_t put_ptr(struct packer *p, unsigned col, bool in_tag, uint64_t code, bool has_extra,
                       uint64_t extra)
{
	if (in_tag && code < HTR_PACK_S_IN_COLUMN) {
		if (has_extra)
			put_varint(p, col, extra);
		return (uint8_t)(code << HTR_PACK_S_PTR_SHIFT);
	}
	put_ptr_code(p, col, code, has_extra, extra);
	return in_tag ? HTR_PACK_S_IN_COLUMN << HTR_PACK_S_PTR_SHIFT : 0;
}

static int pack_record(void *ctx, const struct htr_event *ev, const uint8_t *rec)
{
	struct packer *p = ctx;
	struct htr_pack_model *st = &p->st;
	uint8_t code = code_for(ev->type);
	unsigned bucket = tag_bucket(p);
	uint8_t tag = code; /* the long form's second byte */
	bool same_thread = ev->thread == st->last_thread;
	if (same_thread)
		tag |= HTR_PACK_SAME_THREAD;
	else
		put_varint(p, HTR_PACK_COL_ORDER, ev->thread);
	st->last_thread = ev->thread;

	if (code == HTR_PACK_RAW) {
		uint16_t size;
		memcpy(&size, rec + 2, sizeof(size));
		put_varint(p, HTR_PACK_COL_RAW, size);
		put_bytes(p, HTR_PACK_COL_RAW, rec, size);
		if (ev->seq != 0)
			st->last_seq = ev->seq;
		put_tag(p, bucket, HTR_PACK_LONG, tag);
		return record_done(p, true);
	}
	if (ev->seq == st->last_seq + 1)
		tag |= HTR_PACK_SEQ_NEXT;
	else
		put_varint(p, HTR_PACK_COL_ORDER, ev->seq - st->last_seq);
	st->last_seq = ev->seq;
	uint32_t *predicted = htr_pm_stack_slot(st, code);
	bool same_stack = ev->stack == *predicted;
	if (same_stack)
		tag |= HTR_PACK_SAME_STACK;
	else
		put_varint(p, HTR_PACK_COL_STACK, ev->stack);
	htr_pm_stack_seen(st, predicted, code, ev->stack);
	/* One test, not three branches: the usual event has none of them
	 * (with the short tag built from flags, (b): 1.627 -> 1.615 G). */
	uint32_t differs = (uint32_t)(ev->call ^ st->last_kind[code]) | ev->site |
	                   (code == HTR_PACK_ALLOC ? ev->alignment : 0);
	bool extra = differs != 0;
	if (extra) {
		tag |= HTR_PACK_EXTRA;
		put_byte(p, HTR_PACK_COL_CALL, ev->call);
		put_varint(p, HTR_PACK_COL_CALL, ev->site);
		if (code == HTR_PACK_ALLOC)
			put_varint(p, HTR_PACK_COL_CALL, ev->alignment);
		st->last_kind[code] = ev->call;
	}
	/* The usual event (seq next, no extra) in one byte, with its first
	 * pointer code: one symbol instead of two for zstd's Huffman coder,
	 * which spends at least a bit on each. */
	uint8_t short_tag = 0;
	bool inl = (tag & (HTR_PACK_SEQ_NEXT | HTR_PACK_EXTRA)) == HTR_PACK_SEQ_NEXT;
	/* The short tag's flags shifted down from the long one's, not set
	 * again from the comparisons ((b): 1.563 -> 1.557 G instructions). */
	if (inl)
		short_tag = (uint8_t)(code | (tag & HTR_PACK_SAME_THREAD) / (HTR_PACK_SAME_THREAD / HTR_PACK_S_SAME_THREAD) |
		                      (tag & HTR_PACK_SAME_STACK) / (HTR_PACK_SAME_STACK / HTR_PACK_S_SAME_STACK));
	uint64_t pcode, pextra = 0;
	struct htr_pm_block blk;
	switch (code) {
	case HTR_PACK_ALLOC: {
		/* A short ALLOC's nibble: 2 * pointer code + (size as
		 * predicted) for codes below HTR_PACK_S_A_CODES, else
		 * HTR_PACK_S_A_SIZE_HIT or HTR_PACK_S_IN_COLUMN. */
		unsigned size_slot = htr_pm_size_slot(ev->stack);
		bool size_hit = inl && ev->size == htr_pm_size_predict(st, size_slot);
		htr_pm_size_seen(st, size_slot, ev->size, size_hit);
		if (!size_hit)
			put_varint(p, HTR_PACK_COL_SIZE, ev->size);
		if (htr_pm_code_alloc(st, ev->ptr, ev->size, &pcode, &pextra) != 0)
			goto oom;
		if (inl && pcode < HTR_PACK_S_A_CODES) {
			short_tag |= (uint8_t)((2 * pcode + size_hit) << HTR_PACK_S_PTR_SHIFT);
		} else {
			if (inl)
				short_tag |=
				        (uint8_t)((size_hit ? HTR_PACK_S_A_SIZE_HIT : HTR_PACK_S_IN_COLUMN)
				                  << HTR_PACK_S_PTR_SHIFT);
			put_ptr_code(p, HTR_PACK_COL_NEW, pcode, pcode == HTR_PACK_A_FAR, pextra);
		}
		break;
	}
	case HTR_PACK_FREE:
		pcode = htr_pm_code_free(st, ev->ptr, ev->stack, &blk);
		short_tag |= put_ptr(p, HTR_PACK_COL_OLD, inl, pcode, pcode == HTR_PACK_F_FAR, blk.extra);
		htr_pm_drop_by_ptr(st, &blk);
		break;
	default:
		pcode = htr_pm_code_free(st, ev->ptr, ev->stack, &blk);
		short_tag |= put_ptr(p, HTR_PACK_COL_OLD, inl, pcode, pcode == HTR_PACK_F_FAR, blk.extra);
		pcode = htr_pm_code_resize(&blk, ev->size, &pextra);
		put_ptr_code(p, HTR_PACK_COL_SIZE, pcode, pcode == HTR_PACK_SIZE_PLAIN, pextra);
		/* A failed realloc leaves the old block live. */
		if (!(ev->ptr2 == 0 && ev->size != 0))
			htr_pm_drop_by_ptr(st, &blk);
		if (htr_pm_code_alloc(st, ev->ptr2, ev->size, &pcode, &pextra) != 0)
			goto oom;
		put_ptr_code(p, HTR_PACK_COL_NEW, pcode, pcode == HTR_PACK_A_FAR, pextra);
		break;
	}
	put_tag(p, bucket, short_tag, tag); /* short tag 0: the long form's byte follows */
	return record_done(p, false);
oom:
	p->write_errno = ENOMEM;
	return -1;
}

/* What the reader says about the raw file itself. */
static int pack_notice(void *ctx, const struct htr_event *ev)
{
	struct packer *p = ctx;
	size_t len = ev->text ? strlen(ev->text) : 0;
	if (len > 500)
		len = 500;
	put_tag(p, tag_bucket(p), HTR_PACK_LONG, HTR_PACK_NOTICE);
	put_varint(p, HTR_PACK_COL_RAW, ev->type);
	put_byte(p, HTR_PACK_COL_RAW, ev->kind);
	put_varint(p, HTR_PACK_COL_RAW, ev->offset);
	put_varint(p, HTR_PACK_COL_RAW, ev->count);
	put_varint(p, HTR_PACK_COL_RAW, len);
	put_bytes(p, HTR_PACK_COL_RAW, ev->text ? ev->text : "", len);
	return record_done(p, true);
}

static int pack_reader(struct htr_reader *r, const char *raw_path, const char *out_path, int level,
		       int lag_ms, struct htr_pack_result *result, char *err, size_t errlen);

int htr_pack(const char *raw_path, const char *out_path, int level, struct htr_pack_result *result, char *err,
	     size_t errlen)
{
	struct htr_reader *r;
	if (htr_reader_open(&r, raw_path, err, errlen) != 0)
		return -1;
	return pack_reader(r, raw_path, out_path, level, -1, result, err, errlen);
}

int htr_pack_follow(const char *raw_path, int pid, unsigned lag_ms, const char *out_path, int level,
		    struct htr_pack_result *result, char *err, size_t errlen)
{
	struct htr_reader *r;
	if (htr_reader_open_follow(&r, raw_path, pid, err, errlen) != 0)
		return -1;
	int rc = pack_reader(r, raw_path, out_path, level, (int)(lag_ms > 60000 ? 60000 : lag_ms), result, err,
			     errlen);
	if (rc != HTR_FOLLOW_REDO)
		return rc;
	/* What was delivered was not the trace's order: the process has ended
	 * now, so pack the finished file as htr_pack does. */
	int again = htr_pack(raw_path, out_path, level, result, err, errlen);
	if (again == 0 && result != NULL)
		result->redone = 1;
	return again;
}

/* Packs what the reader delivers; lag_ms >= 0: it follows a live trace.
 * Closes the reader. */
static int pack_reader(struct htr_reader *r, const char *raw_path, const char *out_path, int level,
		       int lag_ms, struct htr_pack_result *result, char *err, size_t errlen)
{
	if (r->packed != NULL) {
		htr_set_err(err, errlen, "%s: already packed", raw_path);
		htr_reader_close(r);
		return -1;
	}

	char *dir_copy = strdup(out_path);
	char *tmp = NULL;
	struct packer *p = calloc(1, sizeof(*p));
	if (dir_copy == NULL || p == NULL ||
	    asprintf(&tmp, "%s/.%s.XXXXXX", dirname(dir_copy), "heaptrail-pack") < 0) {
		htr_set_err(err, errlen, "%s: out of memory", out_path);
		free(dir_copy);
		free(p);
		htr_reader_close(r);
		return -1;
	}
	free(dir_copy);
	p->fd = mkostemp(tmp, O_CLOEXEC);
	if (p->fd < 0) {
		htr_set_err(err, errlen, "%s: cannot create a file beside it: %s", out_path, strerror(errno));
		free(tmp);
		free(p);
		htr_reader_close(r);
		return -1;
	}
	fchmod(p->fd, 0600);
	p->cctx = ZSTD_createCCtx();
	p->trial_cctx = ZSTD_createCCtx();
	int rc = -1;
	htr_tc_init(&p->tc, false);
	p->coding = p->counting = true; /* the first block is weighed (trial_in 0) */
	htr_tc_reciprocals_init(p->rcp);
	if (p->cctx == NULL || p->trial_cctx == NULL || htr_pm_init(&p->st, false) != 0) {
		htr_set_err(err, errlen, "%s: out of memory", out_path);
		goto out;
	}
	ZSTD_CCtx_setParameter(p->cctx, ZSTD_c_compressionLevel, level);

	struct htr_pack_header h = {0};
	memcpy(h.magic, HTR_PACK_MAGIC, sizeof(h.magic));
	h.version_major = HTR_PACK_VERSION_MAJOR;
	h.version_minor = HTR_PACK_VERSION_MINOR;
	h.header_size = sizeof(h);
	if (write_all(p, (const uint8_t *)&h, sizeof(h)) != 0)
		goto write_failed;

	r->record_hook = pack_record;
	r->hook_ctx = p;
	int ran = lag_ms < 0 ? htr_reader_run(r, pack_notice, p)
			     : htr_reader_follow(r, (unsigned)lag_ms, pack_notice, p);
	if (ran == HTR_FOLLOW_REDO) {
		rc = HTR_FOLLOW_REDO;
		goto out;
	}
	if (ran != 0 || p->write_errno != 0)
		goto write_failed;
	if (flush_block(p, true) != 0)
		goto write_failed;

	/* The header last: the live counters as the program left them. */
	h.records = p->records;
	memcpy(&h.trace, r->map, sizeof(h.trace));
	if (pwrite(p->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		p->write_errno = errno;
		goto write_failed;
	}
	if (close(p->fd) != 0) {
		p->fd = -1;
		p->write_errno = errno;
		goto write_failed;
	}
	p->fd = -1;
	if (rename(tmp, out_path) != 0) {
		htr_set_err(err, errlen, "%s: cannot rename into place: %s", out_path, strerror(errno));
		goto out;
	}
	if (result != NULL) {
		result->records = p->records;
		result->raw_bytes = r->size;
		result->packed_bytes = p->written;
		result->redone = 0;
	}
	rc = 0;
	goto out;

write_failed:
	htr_set_err(err, errlen, "%s: cannot write: %s", out_path, strerror(p->write_errno ? p->write_errno : EIO));
out:
	if (p->fd >= 0)
		close(p->fd);
	if (rc != 0)
		unlink(tmp);
	ZSTD_freeCCtx(p->cctx);
	ZSTD_freeCCtx(p->trial_cctx);
	htr_pm_fini(&p->st);
	free(tmp);
	free(p);
	htr_reader_close(r);
	return rc;
}
