/* Unit tests for packed traces: long streams that reach every path of the
 * pointer model (old blocks past the reader's ring, realloc's four cases,
 * pointers far apart, frees of unknown blocks, an address live twice) must
 * read back event for event; an old packed version is refused in one line;
 * damaged packed files end in a report, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pack.h"
#include "reader.h"

#define CHUNK      (64u * 1024u)
#define MAX_CHUNKS 512u

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
	memcpy(h.magic, HTR_TRACE_MAGIC, 8);
	h.version_major = HTR_TRACE_VERSION_MAJOR;
	h.version_minor = HTR_TRACE_VERSION_MINOR;
	h.header_size = HTR_FILE_HEADER_SIZE;
	h.pointer_size = 8;
	h.chunk_size = CHUNK;
	h.pid = 77;
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
	enum { POOL = 12000 }; /* lives long enough to pass the reader's ring (65536 ordinals) */
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

/* The long trace packed at level 1 into out ("<path>.p"), and its bytes. */
static uint8_t *packed_long_trace(char **path, char *out, size_t out_size, size_t *len)
{
	uint64_t events;
	*path = long_trace(&events);
	snprintf(out, out_size, "%s.p", *path);
	char err[256];
	struct htr_pack_result res;
	assert_int_equal(htr_pack(*path, out, 1, &res, err, sizeof(err)), 0);
	return slurp(out, len);
}

static void test_old_version_refused(void **state)
{
	(void)state;
	char *path, out[256], err[256];
	size_t len;
	uint8_t *buf = packed_long_trace(&path, out, sizeof(out), &len);
	/* 1: one interleaved stream; 2: one tag form */
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
 * never a crash, never an endless loop. */
static void test_damage_never_crashes(void **state)
{
	(void)state;
	char *path, out[256], err[256];
	size_t len;
	uint8_t *buf = packed_long_trace(&path, out, sizeof(out), &len);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_long_stream_round_trip),
	        cmocka_unit_test(test_old_version_refused),
	        cmocka_unit_test(test_damage_never_crashes),
	};
	return cmocka_run_group_tests_name("packed traces", tests, NULL, NULL);
}
