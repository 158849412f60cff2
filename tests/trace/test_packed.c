/* Unit tests for packed traces: long streams that reach every path of the
 * pointer model (old blocks past the reader's ring, realloc's four cases,
 * pointers far apart, frees of unknown blocks, an address live twice) must
 * read back event for event; so must the tag coder's every path (escapes,
 * rebuilds, both rANS states, blocks coded, plain, counted or not); an old
 * packed version is refused in one line; damaged packed files end in a
 * report, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zstd.h>

#include "heaptrail/trace_format.h"
#include "pack.h"
#include "pack_model.h"
#include "reader.h"
#include "trace_testlib.h"

#define CHUNK      (64u * 1024u)
#define MAX_CHUNKS 1024u

struct trace {
	uint8_t *buf;
	size_t size;
	uint64_t chunks;
	uint64_t pos; /* in the current chunk */
	uint64_t seq;
	uint32_t thread;
};

static void trace_init(struct trace *t)
{
	memset(t, 0, sizeof(*t));
	t->buf = calloc(1, HTR_FILE_HEADER_SIZE + (size_t)MAX_CHUNKS * CHUNK);
	assert_non_null(t->buf);
	struct htr_file_header h = {0};
	trace_header_fill(&h, CHUNK, 77);
	h.state = HTR_STATE_CLEAN_EXIT;
	memcpy(t->buf, &h, sizeof(h));
	t->pos = CHUNK; /* the first record opens a chunk */
}

/* Each thread switch or full chunk opens a new chunk, as the recorder's
 * per-thread chunks would look once merged by seq. */
static void trace_put(struct trace *t, uint32_t thread, const void *rec, size_t len)
{
	if (thread != t->thread || t->pos + len > CHUNK) {
		assert_true(t->chunks < MAX_CHUNKS);
		struct htr_chunk_header ch = {
		        .magic = HTR_CHUNK_MAGIC, .thread_index = thread, .chunk_index = t->chunks};
		memcpy(t->buf + HTR_FILE_HEADER_SIZE + t->chunks * CHUNK, &ch, sizeof(ch));
		t->chunks++;
		t->pos = sizeof(ch);
		t->thread = thread;
	}
	memcpy(t->buf + HTR_FILE_HEADER_SIZE + (t->chunks - 1) * CHUNK + t->pos, rec, len);
	t->pos += len;
}

static void trace_alloc(struct trace *t, uint32_t thread, uint8_t call, uint64_t ptr, uint64_t size,
                        uint32_t stack)
{
	struct htr_rec_alloc a = {.h = {HTR_REC_ALLOC, call, sizeof(a)},
	                          .stack = stack,
	                          .seq = ++t->seq,
	                          .ptr = ptr,
	                          .size = size,
	                          .site = stack % 17 == 0 ? 5 : 0,
	                          .alignment = stack % 23 == 0 ? 64 : 0};
	trace_put(t, thread, &a, sizeof(a));
}

static void trace_free(struct trace *t, uint32_t thread, uint64_t ptr, uint32_t stack)
{
	struct htr_rec_free f = {
	        .h = {HTR_REC_FREE, HTR_CALL_FREE, sizeof(f)}, .stack = stack, .seq = ++t->seq, .ptr = ptr};
	trace_put(t, thread, &f, sizeof(f));
}

static void trace_realloc(struct trace *t, uint32_t thread, uint64_t old, uint64_t new, uint64_t size)
{
	struct htr_rec_realloc r = {.h = {HTR_REC_REALLOC, HTR_CALL_REALLOC, sizeof(r)},
	                            .stack = 3,
	                            .seq = ++t->seq,
	                            .old_ptr = old,
	                            .new_ptr = new,
	                            .size = size};
	trace_put(t, thread, &r, sizeof(r));
}

static char *trace_write(struct trace *t)
{
	struct htr_rec_end e = {.h = {HTR_REC_END, HTR_END_EXIT, sizeof(e)}, .seq = ++t->seq};
	trace_put(t, t->thread, &e, sizeof(e));
	struct htr_file_header *h = (struct htr_file_header *)t->buf;
	h->chunks_claimed = t->chunks;
	h->last_seq = t->seq;
	t->size = HTR_FILE_HEADER_SIZE + t->chunks * CHUNK;
	char *path = strdup("/tmp/htr-packed-test-XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, t->buf, t->size), (ssize_t)t->size);
	close(fd);
	free(t->buf);
	t->buf = NULL;
	return path;
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* A stream that reaches every path of the model. */
static char *long_trace(uint64_t *events)
{
	enum { POOL = 12000 }; /* lives long enough to pass the reader's ring (HTR_PM_RING ordinals) */
	struct trace t;
	trace_init(&t);
	static uint64_t pool[POOL];
	memset(pool, 0, sizeof(pool));
	uint64_t x = 0x9E3779B97F4A7C15ull, bump = 0x555555000000ull;
	for (int i = 0; i < 120000; i++) {
		uint64_t r = next(&x);
		uint32_t thread = (uint32_t)(i / 700) % 3;
		unsigned slot = (unsigned)(r >> 8) % POOL;
		uint64_t size = 1 + (r >> 20) % 300;
		if ((r >> 16) % 16 == 0)
			size <<= (r >> 24) % 48; /* sizes coded in 1 to 8 bytes */
		switch (r % 8) {
		case 0: /* a short-lived pair: pushes ordinals on past the ring */
		case 1: {
			uint64_t p = bump + (r >> 40) % 64 * 32;
			trace_alloc(&t, thread, HTR_CALL_MALLOC, p, size, 1 + (uint32_t)(r >> 50) % 4);
			trace_free(&t, thread, p, 9);
			break;
		}
		case 2: /* a long-lived block, or one freed very late */
		case 3:
			if (pool[slot] == 0) {
				pool[slot] = bump += 48 + (r >> 30) % 4 * 16;
				trace_alloc(&t, thread, (r >> 33) % 5 == 0 ? HTR_CALL_NEW : HTR_CALL_CALLOC,
				            pool[slot], size, 10 + (uint32_t)(r >> 36) % 40);
			} else {
				trace_free(&t, thread, pool[slot], 20 + (uint32_t)(r >> 36) % 3);
				pool[slot] = 0;
			}
			break;
		case 4: /* realloc: in place, moved, grown by a policy */
			if (pool[slot] != 0) {
				uint64_t to = (r >> 35) % 2 ? pool[slot] : (bump += 4096);
				trace_realloc(&t, thread, pool[slot], to, size * ((r >> 45) % 3 + 1));
				pool[slot] = to;
			}
			break;
		case 5: /* realloc(NULL, n), realloc(p, 0), a failed realloc */
			if (pool[slot] == 0) {
				pool[slot] = bump += 64;
				trace_realloc(&t, thread, 0, pool[slot], size);
			} else if ((r >> 40) % 2) {
				trace_realloc(&t, thread, pool[slot], 0, 0);
				pool[slot] = 0;
			} else {
				trace_realloc(&t, thread, pool[slot], 0, size); /* stays live */
			}
			break;
		case 6: /* pointers far apart, in both directions, and a failed malloc */
			trace_alloc(&t, thread, HTR_CALL_MALLOC, 0xfffffffffffffff0ull - (r >> 50) * 16, size,
			            7);
			trace_alloc(&t, thread, HTR_CALL_MALLOC, 0x10 + (r >> 50) * 16, size, 8);
			trace_free(&t, thread, 0xfffffffffffffff0ull - (r >> 50) * 16, 7);
			trace_free(&t, thread, 0x10 + (r >> 50) * 16, 8);
			trace_alloc(&t, thread, HTR_CALL_MALLOC, 0, size, 7);
			break;
		default: /* a free of a block never seen allocated; an address live twice */
			trace_free(&t, thread, 0x7000000000ull + (r >> 30) % 4096 * 16, 11);
			if (pool[slot] != 0)
				trace_alloc(&t, thread, HTR_CALL_MALLOC, pool[slot], size, 12);
			break;
		}
	}
	*events = t.seq;
	return trace_write(&t);
}

/* The rhythm of a C++ container under random inserts and erases (the
 * benchmark's (d)): which path each operation takes is random, but each
 * event follows from the one before, which is what the tag coder codes. */
static uint64_t rhythm_values, rhythm_copies; /* allocations of a random size, and copies of one */

static void trace_marker(struct trace *t, uint32_t thread)
{
	struct {
		struct htr_rec_marker m;
		char name[8];
	} rec = {.m = {.h = {HTR_REC_MARKER, 0, sizeof(rec)}, .seq = ++t->seq}, .name = "phase"};
	trace_put(t, thread, &rec, sizeof(rec));
}

/* marked: now and then a marker (a record the packer keeps raw) and a
 * pair in another thread break the rhythm, inside its coded blocks. */
static void rhythm(struct trace *t, int ops, bool marked)
{
	enum { KEYS = 4096 };
	static uint64_t node[KEYS], copy[KEYS];
	memset(node, 0, sizeof(node));
	rhythm_values = rhythm_copies = 0;
	uint64_t x = 0x2545F4914F6CDD1Dull, bump = 0x600000000000ull, key = 0x500000000000ull;
	for (int i = 0; i < ops; i++) {
		uint64_t r = next(&x);
		unsigned k = (unsigned)(r >> 8) % KEYS;
		trace_alloc(t, 1, HTR_CALL_NEW, key, 38, 1);
		if (r & 1) {
			uint64_t value = bump += 96, size = 24 + (r >> 20) % 64;
			trace_alloc(t, 1, HTR_CALL_NEW, value, size, 3);
			rhythm_values++;
			if (node[k] == 0) {
				node[k] = bump += 128;
				trace_alloc(t, 1, HTR_CALL_NEW, node[k], 96, 4);
				copy[k] = bump += 96;
				trace_alloc(t, 1, HTR_CALL_NEW, copy[k], size, 6); /* the value copied into the node */
				rhythm_copies++;
			}
			trace_free(t, 1, value, 7);
		} else if (node[k] != 0) {
			trace_free(t, 1, copy[k], 8);
			trace_free(t, 1, node[k], 10);
			node[k] = 0;
		}
		trace_free(t, 1, key, 2);
		if (marked && i % 53 == 0)
			trace_marker(t, 1);
		if (marked && i % 701 == 0) {
			trace_alloc(t, 2, HTR_CALL_MALLOC, 0x900000000000ull + (r >> 40) % 64 * 32, 40, 12);
			trace_free(t, 2, 0x900000000000ull + (r >> 40) % 64 * 32, 13);
		}
	}
}

static char *rhythm_trace(uint64_t *events)
{
	struct trace t;
	trace_init(&t);
	rhythm(&t, 60000, false);
	*events = t.seq;
	return trace_write(&t);
}

static char *marked_rhythm_trace(uint64_t *events)
{
	struct trace t;
	trace_init(&t);
	rhythm(&t, 60000, true);
	*events = t.seq;
	return trace_write(&t);
}

/* Events in no order for a dozen blocks, then the rhythm: the packer
 * weighs the tags again at block 16 and codes them from then on, so the
 * file has blocks plain and not counted, plain and counted, and coded. */
static char *switch_trace(uint64_t *events)
{
	struct trace t;
	trace_init(&t);
	enum { POOL = 1024 };
	static uint64_t pool[POOL];
	memset(pool, 0, sizeof(pool));
	uint64_t x = 0x9E3779B97F4A7C15ull, bump = 0x700000000000ull;
	for (int i = 0; i < 450000; i++) {
		uint64_t r = next(&x);
		unsigned slot = (unsigned)(r >> 8) % POOL;
		if (pool[slot] == 0) {
			pool[slot] = bump += 16 * (1 + (r >> 20) % 64);
			trace_alloc(&t, 1, HTR_CALL_MALLOC, pool[slot], 1 + (r >> 30) % 500, 1 + (uint32_t)(r >> 40) % 200);
		} else {
			trace_free(&t, 1, pool[slot], 300 + (uint32_t)(r >> 40) % 200);
			pool[slot] = 0;
		}
	}
	rhythm(&t, 100000, false);
	*events = t.seq;
	return trace_write(&t);
}

/* How many blocks of a packed file have their TAG column in each mode
 * (HTR_TC_*), and the length of each column over all blocks, read from its
 * zstd stream. */
static void tag_modes(const uint8_t *buf, size_t len, unsigned modes[HTR_TC_MODES], uint64_t cols[HTR_PACK_COLUMNS])
{
	size_t cap = 64u << 20, got = 0;
	uint8_t *out = malloc(cap);
	assert_non_null(out);
	ZSTD_DCtx *d = ZSTD_createDCtx();
	size_t head = sizeof(struct htr_pack_header);
	ZSTD_inBuffer ib = {buf + head, len - head, 0};
	while (ib.pos < ib.size) {
		ZSTD_outBuffer ob = {out, cap, got};
		assert_false(ZSTD_isError(ZSTD_decompressStream(d, &ob, &ib)));
		got = ob.pos;
		assert_true(got < cap);
	}
	ZSTD_freeDCtx(d);
	memset(modes, 0, HTR_TC_MODES * sizeof(*modes));
	memset(cols, 0, HTR_PACK_COLUMNS * sizeof(*cols));
	for (size_t at = 0;;) {
		uint64_t v[HTR_PACK_COLUMNS + 1], total = 0;
		for (unsigned i = 0; i <= HTR_PACK_COLUMNS; i++) {
			v[i] = 0;
			for (unsigned shift = 0;; shift += 7) {
				assert_true(at < got);
				v[i] |= (uint64_t)(out[at] & 0x7f) << shift;
				if (!(out[at++] & 0x80))
					break;
			}
			if (i == 0 && v[0] == 0)
				break;
			total += i > 0 ? v[i] : 0;
			if (i > 0)
				cols[i - 1] += v[i];
		}
		if (v[0] == 0)
			break;
		assert_true(out[at] < HTR_TC_MODES);
		modes[out[at]]++;
		at += total;
	}
	free(out);
}

/* Every field of every event, folded into one hash. */
struct digest {
	uint64_t hash, n, bad, truncated;
};

static void mix(struct digest *d, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		d->hash = (d->hash ^ (v & 0xff)) * 1099511628211ull;
}

static int digest(void *ctx, const struct htr_event *ev)
{
	struct digest *d = ctx;
	mix(d, ev->type);
	mix(d, ev->kind);
	mix(d, ev->call);
	mix(d, ev->thread);
	mix(d, ev->seq);
	mix(d, ev->ptr);
	mix(d, ev->ptr2);
	mix(d, ev->size);
	mix(d, ev->count);
	mix(d, ev->stack);
	mix(d, ev->site);
	mix(d, ev->alignment);
	mix(d, ev->depth);
	d->n++;
	d->bad += ev->type == HTR_EV_BAD_INPUT;
	d->truncated += ev->type == HTR_EV_TRUNCATED;
	return 0;
}

static int read_digest(const char *path, struct digest *d, char *err, size_t errlen)
{
	memset(d, 0, sizeof(*d));
	struct htr_reader *r;
	if (htr_reader_open(&r, path, err, errlen) != 0)
		return -1;
	assert_int_equal(htr_reader_run(r, digest, d), 0);
	htr_reader_close(r);
	return 0;
}

static void test_long_stream_round_trip(void **state)
{
	(void)state;
	uint64_t events;
	char *path = long_trace(&events);
	char err[256];
	struct digest raw, packed;
	assert_int_equal(read_digest(path, &raw, err, sizeof(err)), 0);
	assert_int_equal(raw.bad, 0);
	char out[256];
	snprintf(out, sizeof(out), "%s.p", path);
	for (int level = 1; level <= 19; level += 9) {
		struct htr_pack_result res;
		if (htr_pack(path, out, level, &res, err, sizeof(err)) != 0)
			fail_msg("pack: %s", err);
		assert_true(res.packed_bytes * 8 < res.raw_bytes);
		assert_int_equal(read_digest(out, &packed, err, sizeof(err)), 0);
		assert_int_equal(packed.n, raw.n);
		assert_int_equal(packed.hash, raw.hash);
	}
	assert_true(raw.n >= events);
	unlink(out);
	unlink(path);
	free(path);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc(*len);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, *len, f), *len);
	fclose(f);
	return buf;
}

static void spill(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
}

/* A trace packed at level 1 into out ("<path>.p"), and its bytes. */
static uint8_t *packed_trace(char *(*make)(uint64_t *), char **path, char *out, size_t out_size, size_t *len)
{
	uint64_t events;
	*path = make(&events);
	snprintf(out, out_size, "%s.p", *path);
	char err[256];
	struct htr_pack_result res;
	assert_int_equal(htr_pack(*path, out, 1, &res, err, sizeof(err)), 0);
	return slurp(out, len);
}

/* Packs path to out at level: it must read back event for event, with
 * what the raw trace said about itself, and clean; modes and cols: how
 * its blocks coded their tags, and the size of each column. */
static void pack_reads_back(const char *path, const char *out, int level, unsigned modes[HTR_TC_MODES],
			    uint64_t cols[HTR_PACK_COLUMNS])
{
	char err[256];
	struct digest raw, packed;
	assert_int_equal(read_digest(path, &raw, err, sizeof(err)), 0);
	struct htr_pack_result res;
	if (htr_pack(path, out, level, &res, err, sizeof(err)) != 0)
		fail_msg("pack: %s", err);
	assert_int_equal(read_digest(out, &packed, err, sizeof(err)), 0);
	assert_int_equal(packed.n, raw.n);
	assert_int_equal(packed.hash, raw.hash);
	assert_int_equal(raw.bad, 0);
	assert_int_equal(packed.bad, 0);
	size_t len;
	uint8_t *buf = slurp(out, &len);
	tag_modes(buf, len, modes, cols);
	free(buf);
}

/* Each reads back exactly, at zstd levels 3 and 19: the rhythm trace with
 * its tags rANS-coded in every block (counted in the first four), the long
 * trace (events in no order) with them plain, the switching one with
 * blocks in all four modes. */
static void test_tag_modes_round_trip(void **state)
{
	(void)state;
	char *(*make[3])(uint64_t *) = {rhythm_trace, long_trace, switch_trace};
	for (int which = 0; which < 3; which++) {
		uint64_t events;
		char *path = make[which](&events), out[256];
		snprintf(out, sizeof(out), "%s.p", path);
		for (int level = 3; level <= 19; level += 16) {
			unsigned modes[HTR_TC_MODES];
			uint64_t cols[HTR_PACK_COLUMNS];
			pack_reads_back(path, out, level, modes, cols);
			if (which == 0) {
				assert_int_equal(modes[HTR_TC_RANS], 4);
				assert_true(modes[HTR_TC_RANS_FIXED] >= 1);
				assert_int_equal(modes[HTR_TC_PLAIN] + modes[HTR_TC_PLAIN_COUNTED], 0);
				/* A copy's size is the one before it that no prediction
				 * got: it costs no byte in the size column (a value's
				 * size is one byte; 38 and 96 are their stacks' own). */
				assert_true(rhythm_copies > 10000);
				assert_true(cols[HTR_PACK_COL_SIZE] <= rhythm_values + 2);
			} else if (which == 1) {
				assert_int_equal(modes[HTR_TC_RANS] + modes[HTR_TC_RANS_FIXED], 0);
				assert_true(modes[HTR_TC_PLAIN] >= 1);
				assert_int_equal(modes[HTR_TC_PLAIN_COUNTED], 1); /* the weighed first block */
			} else {
				assert_true(modes[HTR_TC_PLAIN] >= 10);
				assert_int_equal(modes[HTR_TC_PLAIN_COUNTED], 1);
				assert_int_equal(modes[HTR_TC_RANS], 1); /* weighed at block 16 */
				assert_true(modes[HTR_TC_RANS_FIXED] >= 2);
			}
		}
		unlink(out);
		unlink(path);
		free(path);
	}
}

/* Records of other kinds and threads between the rhythm's, in coded
 * blocks: a tag's context after them is the thread's last event, as the
 * packer has it, whatever the reader kept of the record before. */
static void test_tags_across_raw_records(void **state)
{
	(void)state;
	uint64_t events;
	char *path = marked_rhythm_trace(&events), out[256];
	snprintf(out, sizeof(out), "%s.p", path);
	unsigned modes[HTR_TC_MODES];
	uint64_t cols[HTR_PACK_COLUMNS];
	pack_reads_back(path, out, 3, modes, cols);
	assert_true(modes[HTR_TC_RANS] + modes[HTR_TC_RANS_FIXED] >= 2);
	unlink(out);
	unlink(path);
	free(path);
}

/* x / f by the packer's multiplication, exact for every f and the states'
 * whole range. */
static void test_tag_coder_reciprocals(void **state)
{
	(void)state;
	static struct htr_tc_reciprocal r[HTR_TC_TOTAL + 1];
	htr_tc_reciprocals_init(r);
	uint64_t s = 99;
	for (uint32_t f = 1; f <= HTR_TC_TOTAL; f++) {
		uint32_t xs[] = {0, 1, f - 1, f, f + 1, HTR_TC_LOW, 256u * HTR_TC_LOW - 1, 0x7fffffffu};
		for (unsigned i = 0; i < sizeof(xs) / sizeof(xs[0]) + 200; i++) {
			uint32_t x = i < sizeof(xs) / sizeof(xs[0]) ? xs[i] : (uint32_t)(next(&s) & 0x7fffffffu);
			assert_int_equal((uint32_t)((x * r[f].m) >> r[f].shift), x / f);
		}
	}
}

/* The coder alone: bytes whose bucket follows from the byte before, some
 * never seen (escapes), across many rebuilds and blocks of odd and even
 * length, counted or coded with the tables as they are, decode to
 * themselves, end in the states they started from, and code in a fraction
 * of their size; a block that would not fit its limit is refused. */
static void test_tag_coder_round_trip(void **state)
{
	(void)state;
	enum { N = 300000 };
	static uint8_t bytes[N];
	static unsigned bucket[N];
	static struct htr_tc_op ops[2 * N];
	static uint8_t coded[4 * N];
	static struct htr_tc_reciprocal r[HTR_TC_TOTAL + 1];
	struct htr_tag_coder *pack = malloc(sizeof(*pack)), *read = malloc(sizeof(*read));
	assert_non_null(pack);
	assert_non_null(read);
	htr_tc_init(pack, false);
	htr_tc_init(read, true);
	htr_tc_reciprocals_init(r);
	uint64_t s = 7;
	uint8_t prev = 0;
	for (size_t i = 0; i < N; i++) {
		uint64_t v = next(&s);
		bucket[i] = i % 97 == 0 ? HTR_TC_LONG : (prev * 37u) % HTR_TC_BUCKETS;
		/* mostly one of two bytes per bucket; now and then any byte */
		bytes[i] = v % 64 == 0 ? (uint8_t)(v >> 8) : (uint8_t)(prev * 5u + 1u + (v >> 16) % 2);
		prev = bytes[i];
	}
	size_t blocks[] = {1, 2, 3, 1000, 4097, 60000, 100000, N};
	size_t from = 0, total = 0;
	for (unsigned b = 0; b < sizeof(blocks) / sizeof(blocks[0]); b++) {
		bool count = b != 6;
		size_t n = 0;
		for (size_t i = from; i < blocks[b]; i++) {
			n += htr_tc_code(pack, bucket[i], bytes[i], ops + n);
			if (count)
				htr_tc_count(pack, bucket[i], bytes[i]);
		}
		uint8_t *end = coded + sizeof(coded);
		assert_null(htr_tc_encode(r, ops, n, end - 7, end));
		uint8_t *start = htr_tc_encode(r, ops, n, coded, end);
		assert_non_null(start);
		total += (size_t)(end - start);
		struct htr_tc_stream st = {.p = start + 8, .end = end};
		for (unsigned k = 0; k < 2; k++)
			memcpy(&st.x[k], start + 4 * k, 4); /* little-endian, as HTR_TC_RANS says */
		for (size_t i = from; i < blocks[b]; i++)
			assert_int_equal(htr_tc_decode(read, bucket[i], &st, count), bytes[i]);
		assert_true(st.p == st.end);
		assert_int_equal(st.x[0], HTR_TC_LOW);
		assert_int_equal(st.x[1], HTR_TC_LOW);
		from = blocks[b];
	}
	assert_true(total < N / 3);
	free(pack);
	free(read);
}

/* Renormalization takes bytes until the state is at least HTR_TC_LOW or
 * the stream ends, whatever the state and however many bytes are left:
 * the same as taking them one at a time. */
static void test_tag_renorm(void **state)
{
	(void)state;
	static const uint8_t bytes[] = {0x00, 0xa5, 0xff, 0x01, 0x80};
	uint64_t s = 11;
	for (unsigned i = 0; i < 20000; i++) {
		uint64_t v = next(&s);
		/* a state below 2^14 only once the stream has run out, but
		 * any is renormalized right */
		uint32_t x = (uint32_t)(v >> (i % 4 == 0 ? 42 : 33));
		for (unsigned left = 0; left <= 4; left++) {
			struct htr_tc_stream st = {.p = bytes + (v >> 40) % 2, .end = NULL};
			st.end = st.p + left;
			uint32_t want = x;
			const uint8_t *p = st.p;
			while (want < HTR_TC_LOW && p < st.end)
				want = want << 8 | *p++;
			assert_int_equal(htr_tc_renorm(x, &st), want);
			assert_ptr_equal(st.p, p);
		}
	}
}

static void test_old_version_refused(void **state)
{
	(void)state;
	char *path, out[256], err[256];
	size_t len;
	uint8_t *buf = packed_trace(long_trace, &path, out, sizeof(out), &len);
	/* 1: one interleaved stream; 2: one tag form; 3: tags as zstd codes them */
	for (uint16_t old = 1; old < HTR_PACK_VERSION_MAJOR; old++) {
		struct htr_pack_header h;
		memcpy(&h, buf, sizeof(h));
		h.version_major = old;
		memcpy(buf, &h, sizeof(h));
		spill(out, buf, len);
		struct digest d;
		char want[40];
		snprintf(want, sizeof(want), "packed trace version %u.0", old);
		assert_int_equal(read_digest(out, &d, err, sizeof(err)), -1);
		assert_non_null(strstr(err, want));
		assert_null(strchr(err, '\n'));
	}
	free(buf);
	unlink(out);
	unlink(path);
	free(path);
}

/* Cut anywhere or with bytes flipped anywhere, a packed file reads to a
 * report of what happened (or, when zstd cannot tell, to other events):
 * never a crash, never an endless loop; with its tags plain or coded. */
static void damage(char *(*make)(uint64_t *))
{
	char *path, out[256], err[256];
	size_t len;
	uint8_t *buf = packed_trace(make, &path, out, sizeof(out), &len);
	struct digest whole;
	assert_int_equal(read_digest(out, &whole, err, sizeof(err)), 0);
	uint8_t *copy = malloc(len);
	assert_non_null(copy);
	size_t head = sizeof(struct htr_pack_header);
	uint64_t x = 12345;
	for (int i = 0; i < 40; i++) {
		size_t cut = head + (size_t)(next(&x) % (len - head));
		spill(out, buf, cut);
		struct digest d;
		assert_int_equal(read_digest(out, &d, err, sizeof(err)), 0);
		assert_true(d.truncated >= 1);
		assert_true(d.n < whole.n);

		memcpy(copy, buf, len);
		for (int k = 0; k < 1 + i % 4; k++)
			copy[head + next(&x) % (len - head)] ^= (uint8_t)(1 + next(&x) % 255);
		spill(out, copy, len);
		assert_int_equal(read_digest(out, &d, err, sizeof(err)), 0);
	}
	free(copy);
	free(buf);
	unlink(out);
	unlink(path);
	free(path);
}

static void test_damage_never_crashes(void **state)
{
	(void)state;
	damage(long_trace);
	damage(rhythm_trace);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_long_stream_round_trip),  cmocka_unit_test(test_tag_modes_round_trip),
	        cmocka_unit_test(test_tags_across_raw_records), cmocka_unit_test(test_tag_coder_reciprocals),
	        cmocka_unit_test(test_tag_coder_round_trip),    cmocka_unit_test(test_tag_renorm),
	        cmocka_unit_test(test_old_version_refused),     cmocka_unit_test(test_damage_never_crashes),
	};
	return cmocka_run_group_tests_name("packed traces", tests, NULL, NULL);
}
