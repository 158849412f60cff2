/* Unit tests for the host trace reader: traces are built byte by byte here,
 * as trace_format.h lays them out, so every path of the reader (merge order,
 * commit protocol, crash, cut files, corrupt records) is reached on purpose. */
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
#include "trace_testlib.h"

#define CHUNK 4096u

struct builder {
	uint8_t *buf;
	size_t size;
	uint64_t chunks;
	uint64_t pos[16]; /* write position per chunk */
};

static void builder_init(struct builder *b, uint64_t chunks, uint32_t state)
{
	b->chunks = chunks;
	b->size = HTR_FILE_HEADER_SIZE + chunks * CHUNK;
	b->buf = calloc(1, b->size);
	assert_non_null(b->buf);
	struct htr_file_header h = {0};
	trace_header_fill(&h, CHUNK, 4242);
	h.state = state;
	h.chunks_claimed = chunks;
	memcpy(b->buf, &h, sizeof(h));
	for (uint64_t c = 0; c < 16; c++)
		b->pos[c] = sizeof(struct htr_chunk_header);
}

static struct htr_file_header *builder_header(struct builder *b)
{
	return (struct htr_file_header *)b->buf;
}

static void builder_chunk_at(struct builder *b, uint64_t chunk, uint32_t thread, uint64_t first_seq)
{
	struct htr_chunk_header ch = {
		.magic = HTR_CHUNK_MAGIC, .thread_index = thread, .chunk_index = chunk, .first_seq = first_seq};
	memcpy(b->buf + HTR_FILE_HEADER_SIZE + chunk * CHUNK, &ch, sizeof(ch));
}

static void builder_chunk(struct builder *b, uint64_t chunk, uint32_t thread)
{
	builder_chunk_at(b, chunk, thread, 0);
}

/* Appends a record (its header's size must be set) to a chunk; returns its
 * file offset. */
static uint64_t put(struct builder *b, uint64_t chunk, const void *rec, size_t len)
{
	uint64_t off = HTR_FILE_HEADER_SIZE + chunk * CHUNK + b->pos[chunk];
	assert_true(b->pos[chunk] + len <= CHUNK);
	memcpy(b->buf + off, rec, len);
	b->pos[chunk] += (len + 7) & ~(size_t)7;
	return off;
}

static uint64_t put_alloc(struct builder *b, uint64_t chunk, uint64_t seq, uint64_t ptr, uint64_t size,
			  uint32_t stack)
{
	struct htr_rec_alloc a = {.h = {HTR_REC_ALLOC, HTR_CALL_MALLOC, sizeof(a)},
				  .stack = stack,
				  .seq = seq,
				  .ptr = ptr,
				  .size = size};
	return put(b, chunk, &a, sizeof(a));
}

static uint64_t put_free(struct builder *b, uint64_t chunk, uint64_t seq, uint64_t ptr)
{
	struct htr_rec_free f = {.h = {HTR_REC_FREE, HTR_CALL_FREE, sizeof(f)}, .seq = seq, .ptr = ptr};
	return put(b, chunk, &f, sizeof(f));
}

/* The short forms: seq is stored as the offset from the chunk's first_seq. */
static void put_alloc_short(struct builder *b, uint64_t chunk, uint64_t first_seq, uint64_t seq, uint64_t ptr,
			    uint64_t size, uint32_t stack)
{
	struct htr_rec_alloc_short a = {.h = {HTR_REC_ALLOC_SHORT, HTR_CALL_MALLOC, sizeof(a)},
					.stack = stack,
					.ptr_seq = ptr >> HTR_SHORT_PTR_SHIFT << HTR_SHORT_SEQ_BITS | (seq - first_seq),
					.size = size};
	put(b, chunk, &a, sizeof(a));
}

static void put_free_short(struct builder *b, uint64_t chunk, uint64_t first_seq, uint64_t seq, uint64_t ptr,
			   uint32_t stack)
{
	struct htr_rec_free_short f = {.h = {HTR_REC_FREE_SHORT, HTR_CALL_FREE, sizeof(f)},
				       .stack = stack,
				       .ptr_seq = ptr >> HTR_SHORT_PTR_SHIFT << HTR_SHORT_SEQ_BITS | (seq - first_seq)};
	put(b, chunk, &f, sizeof(f));
}

static void put_realloc_short(struct builder *b, uint64_t chunk, uint64_t first_seq, uint64_t seq,
			      uint64_t old_ptr, uint64_t new_ptr, uint64_t size)
{
	struct htr_rec_realloc_short ra = {
		.h = {HTR_REC_REALLOC_SHORT, HTR_CALL_REALLOC, sizeof(ra)},
		.stack = 2,
		.ptr_seq = old_ptr >> HTR_SHORT_PTR_SHIFT << HTR_SHORT_SEQ_BITS | (seq - first_seq),
		.new_ptr = new_ptr,
		.size = size};
	put(b, chunk, &ra, sizeof(ra));
}

static void put_stack(struct builder *b, uint64_t chunk, uint32_t id, uint32_t depth)
{
	uint8_t rec[sizeof(struct htr_rec_stack) + 8 * 8] = {0};
	struct htr_rec_stack st = {.h = {HTR_REC_STACK, 0, (uint16_t)(sizeof(st) + depth * 8)},
				   .id = id,
				   .depth = depth};
	memcpy(rec, &st, sizeof(st));
	for (uint32_t i = 0; i < depth; i++) {
		uint64_t frame = 0x1000u * id + i;
		memcpy(rec + sizeof(st) + i * 8, &frame, 8);
	}
	put(b, chunk, rec, st.h.size);
}

static void put_end(struct builder *b, uint64_t chunk, uint64_t seq)
{
	struct htr_rec_end e = {.h = {HTR_REC_END, HTR_END_EXIT, sizeof(e)}, .seq = seq, .status = 3};
	put(b, chunk, &e, sizeof(e));
}

static char *builder_write(struct builder *b, size_t size)
{
	char *path = strdup("/tmp/htr-reader-test-XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b->buf, size), (ssize_t)size);
	close(fd);
	free(b->buf);
	b->buf = NULL;
	return path;
}

/* What a test saw, flattened to a string per event, e.g. "alloc:1:0x10",
 * so a whole run compares in one assertion. */
struct seen {
	uint64_t hash; /* over every event, for streams too long for log */
	char log[4096];
	uint64_t offsets[64];
	size_t n;
};

static int record(void *ctx, const struct htr_event *ev)
{
	struct seen *s = ctx;
	char item[160];
	switch (ev->type) {
	case HTR_EV_ALLOC:
		snprintf(item, sizeof(item), "alloc:%llu:%llx:%llu:t%u ", (unsigned long long)ev->seq,
			 (unsigned long long)ev->ptr, (unsigned long long)ev->size, ev->thread);
		break;
	case HTR_EV_FREE:
		snprintf(item, sizeof(item), "free:%llu:%llx ", (unsigned long long)ev->seq,
			 (unsigned long long)ev->ptr);
		break;
	case HTR_EV_REALLOC:
		snprintf(item, sizeof(item), "realloc:%llu:%llx:%llx:%llu ", (unsigned long long)ev->seq,
			 (unsigned long long)ev->ptr, (unsigned long long)ev->ptr2, (unsigned long long)ev->size);
		break;
	case HTR_EV_STACK:
		snprintf(item, sizeof(item), "stack:%u:%u:%llx ", ev->id, ev->depth,
			 (unsigned long long)(ev->depth ? ev->frames[ev->depth - 1] : 0));
		break;
	case HTR_EV_END:
		snprintf(item, sizeof(item), "end:%llu ", (unsigned long long)ev->size);
		break;
	case HTR_EV_TRUNCATED:
		snprintf(item, sizeof(item), "truncated:%s ",
			 ev->kind == HTR_TRUNC_NO_EXIT ? "no_exit" : "file_short");
		break;
	case HTR_EV_BAD_INPUT:
		snprintf(item, sizeof(item), "bad ");
		break;
	case HTR_EV_LOSS:
		snprintf(item, sizeof(item), "loss:%llu ", (unsigned long long)ev->count);
		break;
	case HTR_EV_MARKER:
		snprintf(item, sizeof(item), "marker:%s ", ev->text);
		break;
	default:
		snprintf(item, sizeof(item), "type%u ", ev->type);
	}
	/* The hash also covers what the short log leaves out. */
	char detail[96];
	snprintf(detail, sizeof(detail), "t%u:s%u:i%u:c%u:a%u:k%u:%llu", ev->thread, ev->stack, ev->site, ev->call,
		 ev->alignment, ev->kind, (unsigned long long)ev->count);
	for (const char *c = item; *c; c++)
		s->hash = (s->hash ^ (uint8_t)*c) * 1099511628211ull;
	for (const char *c = detail; *c; c++)
		s->hash = (s->hash ^ (uint8_t)*c) * 1099511628211ull;
	strncat(s->log, item, sizeof(s->log) - strlen(s->log) - 1);
	if (s->n < 64)
		s->offsets[s->n] = ev->offset;
	s->n++;
	return 0;
}

static void read_all(const char *path, struct seen *seen)
{
	memset(seen, 0, sizeof(*seen));
	trace_read_all(path, record, seen);
}

/* Reads the raw trace, then packs it and checks that the packed form reads
 * back as exactly the same events. */
static void run_reader(const char *path, struct seen *seen)
{
	read_all(path, seen);
	char packed[256];
	snprintf(packed, sizeof(packed), "%s.packed", path);
	char err[256];
	struct htr_pack_result res;
	if (htr_pack(path, packed, 3, &res, err, sizeof(err)) != 0)
		fail_msg("pack: %s", err);
	struct seen again;
	read_all(packed, &again);
	assert_string_equal(again.log, seen->log);
	assert_int_equal(again.n, seen->n);
	assert_int_equal(again.hash, seen->hash);
	unlink(packed);
}

/* Writes the built trace (its first `size` bytes), reads it raw and packed,
 * and checks the events against `expected`. */
static void expect_log(struct builder *b, size_t size, const char *expected)
{
	char *path = builder_write(b, size);
	struct seen seen;
	run_reader(path, &seen);
	assert_string_equal(seen.log, expected);
	unlink(path);
	free(path);
}

static void test_single_thread_clean(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 1, HTR_STATE_CLEAN_EXIT);
	builder_chunk(&b, 0, 1);
	put_stack(&b, 0, 1, 3);
	put_alloc(&b, 0, 1, 0x10, 64, 1);
	put_free(&b, 0, 2, 0x10);
	put_end(&b, 0, 3);
	expect_log(&b, b.size, "stack:1:3:1002 alloc:1:10:64:t1 free:2:10 end:3 ");
}

/* Two threads' chunks interleave by seq; a definition comes right before the
 * sequenced record that follows it in its own thread (so that a follower
 * never waits for a record of that thread to place it). */
static void test_merge_by_seq(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 3, HTR_STATE_CLEAN_EXIT);
	builder_chunk(&b, 0, 1);
	builder_chunk(&b, 1, 2);
	builder_chunk(&b, 2, 1); /* thread 1's second chunk */
	put_alloc(&b, 0, 1, 0xa, 1, 0);
	put_stack(&b, 0, 7, 2);
	put_alloc(&b, 0, 4, 0xb, 2, 7);
	put_alloc(&b, 1, 2, 0xc, 3, 7);
	put_free(&b, 1, 3, 0xa);
	put_free(&b, 1, 6, 0xc);
	put_free(&b, 2, 5, 0xb);
	put_end(&b, 2, 7);
	expect_log(&b, b.size, "alloc:1:a:1:t1 alloc:2:c:3:t2 free:3:a stack:7:2:7001 alloc:4:b:2:t1 "
				      "free:5:b free:6:c end:3 ");
}

/* The short ALLOC and FREE forms take their seq from their own chunk's
 * first_seq, mixed with the long forms, across threads and chunks; the
 * largest pointer and offset they can hold read back exactly. */
static void test_short_forms(void **state)
{
	(void)state;
	const uint64_t top = HTR_SHORT_PTR_LIMIT - 16;
	const uint64_t far = (1u << HTR_SHORT_SEQ_BITS) - 1;
	struct builder b;
	builder_init(&b, 6, HTR_STATE_CLEAN_EXIT);
	builder_chunk_at(&b, 0, 1, 0);
	builder_chunk_at(&b, 1, 2, 1);
	builder_chunk_at(&b, 2, 1, 5);
	builder_chunk_at(&b, 3, 2, 7);
	builder_chunk_at(&b, 4, 1, far + 8);
	builder_chunk_at(&b, 5, 2, far + 9);
	put_alloc_short(&b, 0, 0, 1, 0x7f0000001000ull, 64, 1);
	put_alloc(&b, 0, 4, 0x7f0000002008ull, 8, 1);
	put_free_short(&b, 0, 0, 5, 0x7f0000001000ull, 0);
	put_alloc_short(&b, 1, 1, 2, 0x10, 3, 2);
	put_free_short(&b, 1, 1, 3, 0x10, 2);
	put_alloc_short(&b, 2, 5, 6, top, 1u << 31, 0);
	put_free(&b, 2, far + 8, 0x7f0000002008ull);
	put_free_short(&b, 3, 7, far + 7, top, 0);
	put_realloc_short(&b, 4, far + 8, far + 9, 0, 0x7f0000003000ull, 100);
	put_realloc_short(&b, 5, far + 9, far + 10, 0x7f0000003000ull, 0x7f0000004008ull, 200);
	put_end(&b, 4, far + 11);
	expect_log(&b, b.size, "alloc:1:7f0000001000:64:t1 alloc:2:10:3:t2 free:3:10 alloc:4:7f0000002008:8:t1 "
			       "free:5:7f0000001000 alloc:6:fffffffffff0:2147483648:t1 free:1048582:fffffffffff0 "
			       "free:1048583:7f0000002008 realloc:1048584:0:7f0000003000:100 "
			       "realloc:1048585:7f0000003000:7f0000004008:200 end:3 ");
}

/* A record whose first word is still zero (cut off by a crash mid-write)
 * ends its chunk: what follows it is not read. */
static void test_uncommitted_record_ends_chunk(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 1, HTR_STATE_RUNNING);
	builder_chunk(&b, 0, 1);
	put_alloc(&b, 0, 1, 0x10, 8, 0);
	uint64_t off = put_alloc(&b, 0, 2, 0x20, 8, 0);
	put_alloc(&b, 0, 3, 0x30, 8, 0);
	memset(b.buf + off, 0, sizeof(struct htr_rec_header));
	expect_log(&b, b.size, "alloc:1:10:8:t1 truncated:no_exit ");
}

static void test_file_cut_mid_record(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 1, HTR_STATE_RUNNING);
	builder_chunk(&b, 0, 1);
	put_alloc(&b, 0, 1, 0x10, 8, 0);
	uint64_t off = put_alloc(&b, 0, 2, 0x20, 8, 0);
	expect_log(&b, off + 12, "alloc:1:10:8:t1 truncated:file_short truncated:no_exit ");
}

/* The recorder cuts the file after the last record at a clean exit: that
 * is not a short file. */
static void test_clean_exit_trimmed_file(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 1, HTR_STATE_CLEAN_EXIT);
	builder_chunk(&b, 0, 1);
	put_alloc(&b, 0, 1, 0x10, 8, 0);
	put_end(&b, 0, 2);
	size_t used = HTR_FILE_HEADER_SIZE + b.pos[0];
	expect_log(&b, used, "alloc:1:10:8:t1 end:3 ");
}

static void test_corrupt_record_reported_with_offset(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 2, HTR_STATE_CLEAN_EXIT);
	builder_chunk(&b, 0, 1);
	builder_chunk(&b, 1, 1);
	put_alloc(&b, 0, 1, 0x10, 8, 0);
	uint64_t bad = put_alloc(&b, 0, 2, 0x20, 8, 0);
	put_alloc(&b, 0, 3, 0x30, 8, 0);
	put_alloc(&b, 1, 4, 0x40, 8, 0);
	put_end(&b, 1, 5);
	struct htr_rec_header broken = {HTR_REC_ALLOC, HTR_CALL_MALLOC, 13}; /* not a multiple of 8 */
	memcpy(b.buf + bad, &broken, sizeof(broken));
	char *path = builder_write(&b, b.size);
	struct seen seen;
	run_reader(path, &seen);
	assert_string_equal(seen.log, "alloc:1:10:8:t1 bad alloc:4:40:8:t1 end:3 ");
	assert_int_equal(seen.offsets[1], bad);
	unlink(path);
	free(path);
}

static void test_unknown_record_type_skipped(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 1, HTR_STATE_CLEAN_EXIT);
	builder_chunk(&b, 0, 1);
	put_alloc(&b, 0, 1, 0x10, 8, 0);
	uint8_t future[24] = {200, 0, 24, 0, 1, 2, 3};
	put(&b, 0, future, sizeof(future));
	put_free(&b, 0, 2, 0x10);
	put_end(&b, 0, 3);
	expect_log(&b, b.size, "alloc:1:10:8:t1 free:2:10 end:3 ");
}

static void test_string_without_nul_is_bad_input(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 1, HTR_STATE_CLEAN_EXIT);
	builder_chunk(&b, 0, 1);
	uint8_t rec[32];
	memset(rec, 'x', sizeof(rec));
	struct htr_rec_marker m = {.h = {HTR_REC_MARKER, 0, sizeof(rec)}, .seq = 1};
	memcpy(rec, &m, sizeof(m));
	put(&b, 0, rec, sizeof(rec));
	uint8_t ok[24] = {0};
	struct htr_rec_marker m2 = {.h = {HTR_REC_MARKER, 0, sizeof(ok)}, .seq = 2};
	memcpy(ok, &m2, sizeof(m2));
	memcpy(ok + sizeof(m2), "boot", 5);
	put(&b, 0, ok, sizeof(ok));
	put_end(&b, 0, 3);
	expect_log(&b, b.size, "bad marker:boot end:3 ");
}

static void test_drops_become_loss(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 1, HTR_STATE_CLEAN_EXIT);
	builder_header(&b)->dropped_events = 10;
	builder_chunk(&b, 0, 1);
	struct htr_rec_drops d = {.h = {HTR_REC_DROPS, HTR_DROP_NO_SPACE, sizeof(d)}, .seq = 1, .count = 4};
	put(&b, 0, &d, sizeof(d));
	put_end(&b, 0, 2);
	char *path = builder_write(&b, b.size);
	struct seen seen;
	run_reader(path, &seen);
	/* 4 from the record, the other 6 only in the header's counter. */
	assert_string_equal(seen.log, "loss:4 end:3 loss:6 ");
	unlink(path);
	free(path);
}

static void expect_open_error(const void *bytes, size_t len, const char *expected)
{
	char path[] = "/tmp/htr-reader-bad-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	close(fd);
	char err[256] = "";
	struct htr_reader *r = (struct htr_reader *)1;
	assert_int_equal(htr_reader_open(&r, path, err, sizeof(err)), -1);
	assert_null(r);
	assert_non_null(strstr(err, path));
	if (strstr(err, expected) == NULL)
		fail_msg("error '%s' lacks '%s'", err, expected);
	unlink(path);
}

static void test_open_errors(void **state)
{
	(void)state;
	uint8_t page[HTR_FILE_HEADER_SIZE + CHUNK] = {0};
	expect_open_error(page, 10, "too short");
	memcpy(page, "NOTATRCE", 8);
	expect_open_error(page, sizeof(page), "bad magic");

	struct builder b;
	builder_init(&b, 1, HTR_STATE_CLEAN_EXIT);
	builder_header(&b)->version_major = 3;
	expect_open_error(b.buf, b.size, "version 3.0");
	builder_header(&b)->version_major = 1; /* still read: 2 only added record types */
	builder_header(&b)->chunk_size = 100;
	expect_open_error(b.buf, b.size, "chunk size 100");
	free(b.buf);

	char err[256] = "";
	struct htr_reader *r;
	assert_int_equal(htr_reader_open(&r, "/nonexistent/trace.htr", err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/trace.htr: No such file or directory");
}

/* A long random stream over three threads: every field survives packing,
 * and the packed file is much smaller than the raw one. */
static void test_pack_random_stream(void **state)
{
	(void)state;
	enum { THREADS = 3, PER_CHUNK = 4096 / 48 - 1 };
	struct builder b;
	uint64_t chunks = 15;
	builder_init(&b, chunks, HTR_STATE_CLEAN_EXIT);
	uint64_t live[64] = {0};
	uint64_t seq = 0, x = 88172645463325252ull;
	for (uint64_t c = 0; c < chunks; c++) {
		builder_chunk(&b, c, (uint32_t)(c % THREADS));
		for (int i = 0; i < PER_CHUNK; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			unsigned slot = (unsigned)(x % 64);
			seq++;
			if (live[slot] == 0 && x % 5 < 2) {
				live[slot] = 0x7f0000001000ull + (x % 4096) * 16;
				put_alloc_short(&b, c, 0, seq, live[slot], x % 300, (uint32_t)(x % 5));
			} else if (live[slot] == 0) {
				live[slot] = 0x7f0000001000ull + (x % 4096) * 16;
				struct htr_rec_alloc a = {.h = {HTR_REC_ALLOC, (uint8_t)(x % 7 == 0 ? HTR_CALL_NEW : HTR_CALL_MALLOC),
								sizeof(a)},
							  .stack = (uint32_t)(x % 5),
							  .seq = seq,
							  .ptr = live[slot],
							  .size = x % 300,
							  .site = (uint32_t)(x % 11 == 0 ? 3 : 0),
							  .alignment = (uint32_t)(x % 13 == 0 ? 64 : 0)};
				put(&b, c, &a, sizeof(a));
			} else if (x % 3 == 0 && x % 5 < 2) {
				uint64_t moved = live[slot] + (x % 2) * 4096;
				put_realloc_short(&b, c, 0, seq, live[slot], moved, x % 1000);
				live[slot] = moved;
			} else if (x % 3 == 0) {
				struct htr_rec_realloc ra = {.h = {HTR_REC_REALLOC, HTR_CALL_REALLOC, sizeof(ra)},
							     .stack = 2,
							     .seq = seq,
							     .old_ptr = live[slot],
							     .new_ptr = live[slot] + (x % 2) * 4096,
							     .size = x % 1000};
				live[slot] = ra.new_ptr;
				put(&b, c, &ra, sizeof(ra));
			} else {
				if (x % 5 < 2)
					put_free_short(&b, c, 0, seq, live[slot], (uint32_t)(x % 4));
				else
					put_free(&b, c, seq, live[slot]);
				live[slot] = 0;
			}
		}
	}
	put_end(&b, chunks - 1, ++seq);
	size_t raw_size = b.size;
	char *path = builder_write(&b, b.size);
	struct seen seen;
	run_reader(path, &seen); /* asserts the packed events are the same */
	assert_int_equal(seen.n, chunks * PER_CHUNK + 1);

	char packed[256];
	snprintf(packed, sizeof(packed), "%s.p", path);
	char err[256];
	struct htr_pack_result res;
	assert_int_equal(htr_pack(path, packed, 6, &res, err, sizeof(err)), 0);
	assert_int_equal(res.raw_bytes, raw_size);
	assert_true(res.packed_bytes * 4 < res.raw_bytes);
	unlink(packed);
	unlink(path);
	free(path);
}

static void test_packed_cut_and_corrupt(void **state)
{
	(void)state;
	struct builder b;
	builder_init(&b, 1, HTR_STATE_CLEAN_EXIT);
	builder_chunk(&b, 0, 1);
	for (uint64_t i = 1; i <= 60; i++)
		put_alloc(&b, 0, i, 0x1000 * i, i, 1);
	put_end(&b, 0, 61);
	char *path = builder_write(&b, b.size);
	char packed[256];
	snprintf(packed, sizeof(packed), "%s.p", path);
	char err[256];
	struct htr_pack_result res;
	assert_int_equal(htr_pack(path, packed, 3, &res, err, sizeof(err)), 0);

	FILE *f = fopen(packed, "rb");
	assert_non_null(f);
	uint8_t buf[8192];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_true(len > sizeof(struct htr_pack_header) + 20);

	/* Cut in the middle of the compressed stream. */
	f = fopen(packed, "wb");
	fwrite(buf, 1, len - 10, f);
	fclose(f);
	struct seen seen;
	read_all(packed, &seen);
	assert_non_null(strstr(seen.log, "truncated:file_short"));

	/* Garbage in the compressed stream. */
	memset(buf + sizeof(struct htr_pack_header) + 4, 0xA5, 16);
	f = fopen(packed, "wb");
	fwrite(buf, 1, len, f);
	fclose(f);
	read_all(packed, &seen);
	assert_non_null(strstr(seen.log, "bad truncated:file_short"));

	/* Packing a packed trace is refused. */
	assert_int_equal(htr_pack(packed, path, 3, &res, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "already packed"));
	unlink(packed);
	unlink(path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_thread_clean),
		cmocka_unit_test(test_merge_by_seq),
		cmocka_unit_test(test_short_forms),
		cmocka_unit_test(test_uncommitted_record_ends_chunk),
		cmocka_unit_test(test_file_cut_mid_record),
		cmocka_unit_test(test_clean_exit_trimmed_file),
		cmocka_unit_test(test_corrupt_record_reported_with_offset),
		cmocka_unit_test(test_unknown_record_type_skipped),
		cmocka_unit_test(test_string_without_nul_is_bad_input),
		cmocka_unit_test(test_drops_become_loss),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_pack_random_stream),
		cmocka_unit_test(test_packed_cut_and_corrupt),
	};
	return cmocka_run_group_tests_name("trace reader", tests, NULL, NULL);
}
