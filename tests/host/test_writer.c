/* The record writer: the commit protocol (a reader sees only committed
 * records, a half-written one reads as the chunk's end), record encoding,
 * and the trace file: header, chunk claiming from several threads, growth,
 * orderly finish, file mode and symlink safety.
 *
 * walk() below is a deliberately small reader of what this file's tests
 * write, kept here; it is not the project's trace reader. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_stubs.h"

/* Records of one chunk, as a reader sees them. */
static int walk(const uint8_t *chunk, size_t size, uint8_t *types, int max)
{
	const struct htr_chunk_header *ch = (const void *)chunk;
	if (__atomic_load_n(&ch->magic, __ATOMIC_ACQUIRE) != HTR_CHUNK_MAGIC)
		return -1;
	size_t off = sizeof(*ch);
	int n = 0;
	while (off + 4 <= size) {
		uint32_t word = __atomic_load_n((const uint32_t *)(chunk + off), __ATOMIC_ACQUIRE);
		if (word == 0)
			break;
		struct htr_rec_header h;
		memcpy(&h, &word, 4);
		assert_true(h.size >= 8 && h.size % 8 == 0 && off + h.size <= size);
		if (n < max)
			types[n] = h.type;
		n++;
		off += h.size;
	}
	return n;
}

static void test_encoding(void **state)
{
	(void)state;
	uint8_t buf[64] __attribute__((aligned(8)));
	memset(buf, 0, sizeof(buf));
	htr_rec_publish(buf, HTR_REC_ALLOC, HTR_CALL_NEW_ARRAY, sizeof(struct htr_rec_alloc));
	assert_int_equal(buf[0], HTR_REC_ALLOC);
	assert_int_equal(buf[1], HTR_CALL_NEW_ARRAY);
	assert_int_equal(buf[2] | buf[3] << 8, 40);
	struct htr_rec_header h;
	memcpy(&h, buf, sizeof(h));
	assert_int_equal(h.type, HTR_REC_ALLOC);
	assert_int_equal(h.kind, HTR_CALL_NEW_ARRAY);
	assert_int_equal(h.size, 40);
	assert_int_equal(htr_align8(33), 40);
	assert_int_equal(htr_align8(40), 40);
	assert_int_equal(offsetof(struct htr_rec_alloc, seq), 8);
	assert_int_equal(offsetof(struct htr_rec_misuse, call), 52);
}

static void test_commit_protocol(void **state)
{
	(void)state;
	size_t size = 4096;
	uint8_t *chunk = aligned_alloc(4096, size);
	memset(chunk, 0, size);
	uint8_t types[16];
	assert_int_equal(walk(chunk, size, types, 16), -1); /* no magic: unused chunk */

	struct htr_chunk_writer cw;
	htr_chunk_init(&cw, chunk, size, 3, 7, 100);
	const struct htr_chunk_header *ch = (const void *)chunk;
	assert_int_equal(ch->magic, HTR_CHUNK_MAGIC);
	assert_int_equal(ch->thread_index, 3);
	assert_int_equal(ch->chunk_index, 7);
	assert_int_equal(ch->first_seq, 100);
	assert_int_equal(walk(chunk, size, types, 16), 0);

	struct htr_rec_free *a = htr_chunk_reserve(&cw, sizeof(*a));
	struct htr_rec_free *b = htr_chunk_reserve(&cw, sizeof(*b));
	assert_ptr_equal((uint8_t *)a, chunk + sizeof(struct htr_chunk_header));
	assert_ptr_equal(b, a + 1);
	/* b's body is complete but a is still being written: nothing visible. */
	b->seq = 2;
	b->ptr = 0xbeef;
	htr_rec_publish(b, HTR_REC_FREE, HTR_CALL_FREE, sizeof(*b));
	a->seq = 1;
	a->ptr = 0xdead;
	assert_int_equal(walk(chunk, size, types, 16), 0);
	htr_rec_publish(a, HTR_REC_FREE, HTR_CALL_FREE, sizeof(*a));
	assert_int_equal(walk(chunk, size, types, 16), 2);
	assert_int_equal(types[0], HTR_REC_FREE);

	/* A record that does not fit is refused, never cut. */
	assert_null(htr_chunk_reserve(&cw, size));
	size_t left = (size_t)(cw.end - cw.cur);
	assert_non_null(htr_chunk_reserve(&cw, left));
	assert_null(htr_chunk_reserve(&cw, 8));
	free(chunk);
}

/* ALLOC and FREE take the short forms exactly when every field fits, and
 * give the bytes they do not use back to the chunk; otherwise the long. */
static void test_short_forms(void **state)
{
	(void)state;
	size_t size = 4096;
	uint8_t *chunk = aligned_alloc(4096, size);
	memset(chunk, 0, size);
	struct htr_chunk_writer cw;
	htr_chunk_init(&cw, chunk, size, 1, 0, 100);
	struct htr_writer w = {.cur = cw.cur, .end = cw.end, .generation = htr_file_generation, .chunk_seq = 100};
	const uint64_t far = 100 + (1u << HTR_SHORT_SEQ_BITS);
	struct {
		bool is_alloc;
		uint64_t seq, ptr;
		uint32_t site, alignment;
		uint8_t type;
	} cases[] = {
		{true, 101, 0x7f0000001010ull, 0, 0, HTR_REC_ALLOC_SHORT},
		{false, 102, 0x7f0000001010ull, 0, 0, HTR_REC_FREE_SHORT},
		{true, 103, 0, 0, 0, HTR_REC_ALLOC_SHORT},              /* failed: ptr 0 */
		{true, 104, 0x7f0000001020ull, 3, 0, HTR_REC_ALLOC},      /* a site */
		{true, 105, 0x7f0000001040ull, 0, 64, HTR_REC_ALLOC},     /* an alignment */
		{true, 106, 0x7f0000001008ull, 0, 0, HTR_REC_ALLOC},      /* 8-aligned */
		{false, 107, 0x7f0000001008ull, 0, 0, HTR_REC_FREE},
		{false, 108, HTR_SHORT_PTR_LIMIT, 0, 0, HTR_REC_FREE},    /* too high */
		{false, 109, 0x7f0000001020ull, 7, 0, HTR_REC_FREE},      /* a site */
		{true, far - 1, HTR_SHORT_PTR_LIMIT - 16, 0, 0, HTR_REC_ALLOC_SHORT},
		{true, far, 0x7f0000001050ull, 0, 0, HTR_REC_ALLOC},      /* seq too far */
		{false, far + 1, 0x7f0000001050ull, 0, 0, HTR_REC_FREE},
		{true, 99, 0x7f0000001060ull, 0, 0, HTR_REC_ALLOC},       /* before first_seq */
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	for (size_t i = 0; i < n; i++) {
		size_t reserved = cases[i].is_alloc ? sizeof(struct htr_rec_alloc) : sizeof(struct htr_rec_free);
		uint8_t *r = htr_writer_reserve(&w, reserved);
		assert_non_null(r);
		if (cases[i].is_alloc)
			htr_put_alloc(&w, r, HTR_CALL_MALLOC, 9, cases[i].seq, cases[i].ptr, 48, cases[i].site,
				      cases[i].alignment);
		else
			htr_put_free(&w, r, HTR_CALL_FREE, 9, cases[i].seq, cases[i].ptr, cases[i].site);
		struct htr_rec_header h;
		memcpy(&h, r, sizeof(h));
		assert_int_equal(h.type, cases[i].type);
		assert_ptr_equal(w.cur, r + h.size); /* what the short form leaves goes back */
		uint64_t seq, ptr;
		if (h.type == HTR_REC_ALLOC_SHORT || h.type == HTR_REC_FREE_SHORT) {
			uint64_t ptr_seq;
			memcpy(&ptr_seq, r + 8, 8);
			seq = htr_short_seq(ptr_seq, 100);
			ptr = htr_short_ptr(ptr_seq);
			assert_int_equal(h.size, h.type == HTR_REC_ALLOC_SHORT ? 24 : 16);
		} else {
			memcpy(&seq, r + 8, 8);
			memcpy(&ptr, r + 16, 8);
			assert_int_equal(h.size, reserved);
		}
		assert_int_equal(seq, cases[i].seq);
		assert_int_equal(ptr, cases[i].ptr);
		uint32_t stack;
		memcpy(&stack, r + 4, 4);
		assert_int_equal(stack, 9);
		if (h.type == HTR_REC_ALLOC_SHORT) {
			uint64_t sz;
			memcpy(&sz, r + 16, 8);
			assert_int_equal(sz, 48);
		}
	}
	/* REALLOC: old_ptr decides (0 fits), new_ptr and size are kept whole. */
	uint8_t *ra = htr_writer_reserve(&w, sizeof(struct htr_rec_realloc));
	htr_put_realloc(&w, ra, HTR_CALL_REALLOC, 5, 120, 0, 0xffff00000008ull, (uint64_t)1 << 40, 0);
	assert_int_equal(ra[0], HTR_REC_REALLOC_SHORT);
	assert_ptr_equal(w.cur, ra + sizeof(struct htr_rec_realloc_short));
	const struct htr_rec_realloc_short *rs = (const void *)ra;
	assert_int_equal(htr_short_seq(rs->ptr_seq, 100), 120);
	assert_int_equal(htr_short_ptr(rs->ptr_seq), 0);
	assert_int_equal(rs->new_ptr, 0xffff00000008ull);
	assert_int_equal(rs->size, (uint64_t)1 << 40);
	uint8_t *rl = htr_writer_reserve(&w, sizeof(struct htr_rec_realloc));
	htr_put_realloc(&w, rl, HTR_CALL_REALLOCARRAY, 5, 121, 0x7f0000001008ull, 0x10, 1, 0);
	assert_int_equal(rl[0], HTR_REC_REALLOC);
	assert_int_equal(rl[1], HTR_CALL_REALLOCARRAY);
	const struct htr_rec_realloc *rr = (const void *)rl;
	assert_int_equal(rr->seq, 121);
	assert_int_equal(rr->old_ptr, 0x7f0000001008ull);
	assert_int_equal(rr->new_ptr, 0x10);

	/* Not the latest reservation: the space after it is taken, so the long
	 * form fills what was reserved. */
	uint8_t *a = htr_writer_reserve(&w, sizeof(struct htr_rec_alloc));
	uint8_t *b = htr_writer_reserve(&w, sizeof(struct htr_rec_free));
	htr_put_alloc(&w, a, HTR_CALL_MALLOC, 0, 110, 0x7f0000001070ull, 1, 0, 0);
	htr_put_free(&w, b, HTR_CALL_FREE, 0, 111, 0x7f0000001070ull, 0);
	assert_int_equal(a[0], HTR_REC_ALLOC);
	assert_int_equal(b[0], HTR_REC_FREE_SHORT);
	uint8_t types[32];
	assert_int_equal(walk(chunk, size, types, 32), (int)n + 4);
	free(chunk);
}

/* seq and used_bytes change together in one locked instruction, alongside
 * plain seq increments from other threads: nothing is lost from either, and
 * every seq handed out is distinct. Both ways: cmpxchg16b, and the two
 * atomics used without it. */
#define PAIR_THREADS 4
#define PAIR_ROUNDS 100000

static void *pair_thread(void *arg)
{
	int64_t size = (int64_t)(uintptr_t)arg;
	uint64_t last = 0;
	intptr_t errors = 0;
	for (int i = 0; i < PAIR_ROUNDS; i++) {
		int64_t used;
		uint64_t a = htr_next_seq_used(size, &used);
		errors += used < size; /* our own add is in it */
		uint64_t b = htr_next_seq();
		uint64_t c = htr_next_seq_used(-size, &used);
		errors += !(last < a && a < b && b < c);
		last = c;
	}
	return (void *)errors;
}

static void seq_and_used_together(void)
{
	uint64_t seq0 = __atomic_load_n(&htr_hot.seq, __ATOMIC_RELAXED);
	int64_t used0 = __atomic_load_n(&htr_hot.used_bytes, __ATOMIC_RELAXED);
	pthread_t th[PAIR_THREADS];
	for (uintptr_t i = 0; i < PAIR_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, pair_thread, (void *)(16 * (i + 1))), 0);
	for (int i = 0; i < PAIR_THREADS; i++) {
		void *errors;
		pthread_join(th[i], &errors);
		assert_int_equal((intptr_t)errors, 0);
	}
	assert_int_equal(htr_hot.seq, seq0 + 3ull * PAIR_THREADS * PAIR_ROUNDS);
	assert_int_equal(htr_hot.used_bytes, used0);
}

/* Before the process has a second thread (this runs first): the same
 * arithmetic without locked instructions. */
static void test_seq_and_used_single_threaded(void **state)
{
	(void)state;
#if defined(HTR_HAVE_SINGLE_THREADED) && defined(__x86_64__)
	assert_true(htr_single_threaded());
#endif
	uint64_t seq0 = htr_hot.seq;
	int64_t used0 = htr_hot.used_bytes, used;
	assert_int_equal(htr_next_seq_used(100, &used), seq0 + 1);
	assert_int_equal(used, used0 + 100);
	assert_int_equal(htr_next_seq(), seq0 + 2);
	assert_int_equal(htr_next_seq_used(-60, &used), seq0 + 3);
	assert_int_equal(used, used0 + 40);
	assert_int_equal(htr_hot.used_bytes, used0 + 40);
	htr_hot.used_bytes = used0;
}

static void test_seq_and_used_together(void **state)
{
	(void)state;
	htr_have_cx16 = false;
	seq_and_used_together();
	htr_hot_init();
#if defined(__x86_64__)
	assert_true(htr_have_cx16);
#endif
	seq_and_used_together();
}

/* A writer fills a chunk while a reader thread walks it again and again:
 * every record the reader can see must be complete (its body was written
 * before its first word), and the count it sees only grows. */
#define RACE_CHUNK (1u << 20)

struct race {
	uint8_t *chunk;
	volatile int done;
	int bad;
	int max_seen;
};

static void *race_reader(void *arg)
{
	struct race *r = arg;
	int last = 0;
	for (;;) {
		int finished = r->done;
		size_t off = sizeof(struct htr_chunk_header);
		int n = 0;
		while (off + sizeof(struct htr_rec_realloc) <= RACE_CHUNK) {
			uint32_t word = __atomic_load_n((uint32_t *)(r->chunk + off), __ATOMIC_ACQUIRE);
			if (word == 0)
				break;
			const struct htr_rec_realloc *rec = (const void *)(r->chunk + off);
			/* the body: seq, and three fields derived from it */
			if (rec->old_ptr != rec->seq * 3 || rec->new_ptr != ~rec->seq ||
			    rec->size != rec->seq + 7 || rec->seq != (uint64_t)n + 1)
				r->bad++;
			n++;
			off += sizeof(*rec);
		}
		if (n < last)
			r->bad++;
		last = n;
		if (finished)
			break;
	}
	r->max_seen = last;
	return NULL;
}

static void test_reader_sees_only_committed(void **state)
{
	(void)state;
	struct race r = { 0 };
	r.chunk = mmap(NULL, RACE_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(r.chunk != MAP_FAILED);
	struct htr_chunk_writer cw;
	htr_chunk_init(&cw, r.chunk, RACE_CHUNK, 1, 0, 0);
	pthread_t reader;
	assert_int_equal(pthread_create(&reader, NULL, race_reader, &r), 0);
	int written = 0;
	for (;;) {
		struct htr_rec_realloc *rec = htr_chunk_reserve(&cw, sizeof(*rec));
		if (rec == NULL)
			break;
		uint64_t seq = (uint64_t)++written;
		rec->seq = seq;
		rec->old_ptr = seq * 3;
		rec->new_ptr = ~seq;
		rec->size = seq + 7;
		htr_rec_publish(rec, HTR_REC_REALLOC, HTR_CALL_REALLOC, sizeof(*rec));
	}
	r.done = 1;
	pthread_join(reader, NULL);
	assert_int_equal(r.bad, 0);
	assert_int_equal(r.max_seen, written);
	assert_true(written > 20000);
	munmap(r.chunk, RACE_CHUNK);
}

static char dir[] = "/tmp/htr-writer-XXXXXX";

static int setup_dir(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int remove_dir(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static uint8_t *map_file(const char *path, size_t *size)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	*size = (size_t)st.st_size;
	uint8_t *p = mmap(NULL, *size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	close(fd);
	return p;
}

#define WRITERS 4
#define EVENTS_PER_WRITER 3000

static void *writer_thread(void *arg)
{
	(void)arg;
	struct htr_thread *t = &htr_self;
	htr_thread_attach(t);
	for (int i = 0; i < EVENTS_PER_WRITER; i++) {
		struct htr_rec_alloc *r = htr_writer_reserve(&t->w, sizeof(*r));
		if (r == NULL)
			return (void *)1;
		memset((char *)r + 4, 0, sizeof(*r) - 4);
		r->seq = htr_next_seq();
		r->ptr = (uint64_t)i + 1;
		r->size = (uint64_t)t->w.thread_index;
		htr_record_commit(&t->w, r, HTR_REC_ALLOC, HTR_CALL_MALLOC, sizeof(*r));
	}
	return NULL;
}

static void test_trace_file(void **state)
{
	(void)state;
	char planted[256], target[256];
	/* A symlink where the next file would go must not be followed. */
	snprintf(target, sizeof(target), "%s/victim", dir);
	snprintf(planted, sizeof(planted), "%s/heaptrail.%d.1.htr", dir, (int)getpid());
	assert_int_equal(symlink(target, planted), 0);
	char first[256];
	snprintf(first, sizeof(first), "%s/heaptrail.%d.0.htr", dir, (int)getpid());
	assert_int_equal(close(open(first, O_CREAT | O_WRONLY, 0644)), 0);

	struct htr_options o;
	memset(&o, 0, sizeof(o));
	snprintf(o.output, sizeof(o.output), "%s", dir);
	o.depth = 5;
	o.chunk_kb = 16;
	htr_opts = o;
	assert_int_equal(htr_tracefile_open(&o, 0, 0, 0), 0);
	htr_state = HTR_ST_ON;

	pthread_t th[WRITERS];
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, writer_thread, NULL), 0);
	for (int i = 0; i < WRITERS; i++) {
		void *r;
		pthread_join(th[i], &r);
		assert_null(r);
	}
	htr_state = HTR_ST_OFF;
	htr_tracefile_finish(HTR_END_EXIT, 3);

	struct stat st;
	assert_int_equal(lstat(target, &st), -1); /* nothing created through the link */
	char path[256];
	snprintf(path, sizeof(path), "%s/heaptrail.%d.2.htr", dir, (int)getpid());
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	size_t size;
	uint8_t *f = map_file(path, &size);
	const struct htr_file_header *h = (const void *)f;
	assert_memory_equal(h->magic, HTR_TRACE_MAGIC, 8);
	assert_int_equal(h->version_major, HTR_TRACE_VERSION_MAJOR);
	assert_int_equal(h->header_size, HTR_FILE_HEADER_SIZE);
	assert_int_equal(h->pointer_size, 8);
	assert_int_equal(h->chunk_size, 16384);
	assert_int_equal(h->pid, (uint32_t)getpid());
	assert_int_equal(h->max_depth, 5);
	assert_int_equal(h->state, HTR_STATE_CLEAN_EXIT);
	assert_int_equal(h->dropped_events, 0);
	/* Truncated to exactly the claimed chunks. */
	assert_int_equal(size, HTR_FILE_HEADER_SIZE + h->chunks_claimed * 16384u);
	/* 4 writers x 3000 x 40 B needs at least 30 chunks of 16 KiB. */
	assert_true(h->chunks_claimed >= 30);

	uint64_t allocs = 0, ends = 0, times = 0, starts = 0, max_seq = 0;
	uint64_t per_thread[WRITERS + 2] = { 0 };
	for (uint64_t c = 0; c < h->chunks_claimed; c++) {
		const uint8_t *chunk = f + HTR_FILE_HEADER_SIZE + c * 16384u;
		const struct htr_chunk_header *ch = (const void *)chunk;
		assert_int_equal(ch->magic, HTR_CHUNK_MAGIC);
		assert_int_equal(ch->chunk_index, c);
		size_t off = sizeof(*ch);
		uint64_t last_seq = 0;
		bool at_start = true;
		while (off + 8 <= 16384u) {
			const struct htr_rec_header *rh = (const void *)(chunk + off);
			if (rh->type == 0)
				break;
			uint64_t seq;
			memcpy(&seq, chunk + off + 8, 8);
			/* seq rises within a chunk */
			if (rh->type != HTR_REC_STACK && rh->type != HTR_REC_SITE) {
				assert_true(seq > last_seq);
				last_seq = seq;
				if (seq > max_seq)
					max_seq = seq;
			}
			/* Chunk 0 starts with PROCESS (written by process.c, not here). */
			if (at_start && c != 0) {
				assert_int_equal(rh->type, HTR_REC_TIME);
				at_start = false;
			}
			if (rh->type == HTR_REC_ALLOC) {
				const struct htr_rec_alloc *a = (const void *)rh;
				assert_int_equal(a->size, ch->thread_index);
				per_thread[ch->thread_index]++;
				allocs++;
			}
			ends += rh->type == HTR_REC_END;
			times += rh->type == HTR_REC_TIME;
			starts += rh->type == HTR_REC_THREAD;
			off += rh->size;
		}
	}
	assert_int_equal(allocs, WRITERS * EVENTS_PER_WRITER);
	for (int i = 1; i <= WRITERS; i++)
		assert_int_equal(per_thread[i], EVENTS_PER_WRITER);
	assert_int_equal(ends, 1);
	assert_int_equal(times, h->chunks_claimed - 1);
	assert_int_equal(starts, WRITERS + 1); /* the finishing thread attaches too */
	assert_int_equal(h->last_seq, max_seq);
	munmap(f, size);
}

static void test_unwritable_dir(void **state)
{
	(void)state;
	struct htr_options o;
	memset(&o, 0, sizeof(o));
	snprintf(o.output, sizeof(o.output), "%s/does/not/exist", dir);
	o.depth = 5;
	o.chunk_kb = 16;
	htr_tracefile_forget();
	/* One warning line goes to stderr; the call fails cleanly. */
	assert_int_equal(htr_tracefile_open(&o, 0, 0, 0), -1);
	assert_false(htr_tracefile_active());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seq_and_used_single_threaded),
		cmocka_unit_test(test_encoding),
		cmocka_unit_test(test_commit_protocol),
		cmocka_unit_test(test_short_forms),
		cmocka_unit_test(test_seq_and_used_together),
		cmocka_unit_test(test_reader_sees_only_committed),
		cmocka_unit_test(test_trace_file),
		cmocka_unit_test(test_unwritable_dir),
	};
	return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
