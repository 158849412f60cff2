/* Unit tests for following a raw trace while it is written: this test
 * writes the trace itself, in stages, through a shared mapping and the
 * commit protocol of trace_format.h, while the follower runs in a thread.
 * A forked child stands for the recording process: when it ends, the
 * follower finishes. Whatever the follower delivers must be exactly what a
 * reader of the finished file delivers, and a record that turns up below
 * the order already delivered must make it start again (HTR_FOLLOW_REDO). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pack.h"
#include "reader.h"
#include "trace_testlib.h"

#define CHUNK 4096u
#define MAX_CHUNKS 8u

/* The "recording process": lives until the test closes its pipe. */
struct writer {
	pid_t pid;
	int pipe_w;
	char path[64];
	int fd;
	uint8_t *map;
	uint64_t pos[MAX_CHUNKS];
	uint64_t first_seq[MAX_CHUNKS];
};

static void writer_start(struct writer *w)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	w->pid = fork();
	assert_true(w->pid >= 0);
	if (w->pid == 0) {
		char c;
		close(p[1]);
		while (read(p[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(p[0]);
	w->pipe_w = p[1];
	snprintf(w->path, sizeof(w->path), "/tmp/htr-follow-test-%d.htr", (int)w->pid);
	w->fd = open(w->path, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(w->fd >= 0);
	assert_int_equal(ftruncate(w->fd, HTR_FILE_HEADER_SIZE + MAX_CHUNKS * CHUNK), 0);
	w->map = mmap(NULL, HTR_FILE_HEADER_SIZE + MAX_CHUNKS * CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
	assert_true(w->map != MAP_FAILED);
	struct htr_file_header *h = (struct htr_file_header *)w->map;
	trace_header_fill(h, CHUNK, (uint32_t)w->pid);
	__atomic_store_n(&h->state, HTR_STATE_RUNNING, __ATOMIC_RELEASE);
}

/* The process ends: a zombie until writer_reap. */
static void writer_end(struct writer *w, bool clean)
{
	struct htr_file_header *h = (struct htr_file_header *)w->map;
	if (clean)
		__atomic_store_n(&h->state, HTR_STATE_CLEAN_EXIT, __ATOMIC_RELEASE);
	close(w->pipe_w);
	siginfo_t info;
	waitid(P_PID, (id_t)w->pid, &info, WEXITED | WNOWAIT);
}

static void writer_reap(struct writer *w)
{
	waitpid(w->pid, NULL, 0);
	munmap(w->map, HTR_FILE_HEADER_SIZE + MAX_CHUNKS * CHUNK);
	close(w->fd);
	unlink(w->path);
}

static void claim(struct writer *w, uint64_t chunk, uint32_t thread, uint64_t first_seq)
{
	struct htr_file_header *h = (struct htr_file_header *)w->map;
	__atomic_store_n(&h->chunks_claimed, chunk + 1, __ATOMIC_RELEASE);
	struct htr_chunk_header *ch = (struct htr_chunk_header *)(w->map + HTR_FILE_HEADER_SIZE + chunk * CHUNK);
	ch->thread_index = thread;
	ch->chunk_index = chunk;
	ch->first_seq = first_seq;
	__atomic_store_n(&ch->magic, HTR_CHUNK_MAGIC, __ATOMIC_RELEASE);
	w->pos[chunk] = sizeof(*ch);
	w->first_seq[chunk] = first_seq;
}

/* Room for a record, left uncommitted (all zero) until commit(). */
static uint8_t *reserve(struct writer *w, uint64_t chunk, size_t len)
{
	uint8_t *rec = w->map + HTR_FILE_HEADER_SIZE + chunk * CHUNK + w->pos[chunk];
	w->pos[chunk] += len;
	return rec;
}

/* Body first, then the first word with release order. */
static void commit(uint8_t *at, const void *rec, size_t len)
{
	memcpy(at + 4, (const uint8_t *)rec + 4, len - 4);
	uint32_t word;
	memcpy(&word, rec, 4);
	__atomic_store_n((uint32_t *)(void *)at, word, __ATOMIC_RELEASE);
}

static void alloc(struct writer *w, uint64_t chunk, uint64_t seq, uint64_t ptr, uint32_t stack)
{
	struct htr_rec_alloc_short a = {.h = {HTR_REC_ALLOC_SHORT, HTR_CALL_MALLOC, sizeof(a)},
					.stack = stack,
					.ptr_seq = ptr >> 4 << 20 | (seq - w->first_seq[chunk]),
					.size = 32};
	commit(reserve(w, chunk, sizeof(a)), &a, sizeof(a));
}

static void free_(struct writer *w, uint64_t chunk, uint64_t seq, uint64_t ptr)
{
	struct htr_rec_free f = {.h = {HTR_REC_FREE, HTR_CALL_FREE, sizeof(f)}, .seq = seq, .ptr = ptr};
	commit(reserve(w, chunk, sizeof(f)), &f, sizeof(f));
}

static void stack(struct writer *w, uint64_t chunk, uint32_t id)
{
	uint8_t rec[sizeof(struct htr_rec_stack) + 16] = {0};
	struct htr_rec_stack st = {.h = {HTR_REC_STACK, 0, sizeof(rec)}, .id = id, .depth = 2};
	memcpy(rec, &st, sizeof(st));
	uint64_t frames[2] = {0x1000u * id, 0x1000u * id + 1};
	memcpy(rec + sizeof(st), frames, sizeof(frames));
	commit(reserve(w, chunk, sizeof(rec)), rec, sizeof(rec));
}

static void end(struct writer *w, uint64_t chunk, uint64_t seq)
{
	struct htr_rec_end e = {.h = {HTR_REC_END, HTR_END_EXIT, sizeof(e)}, .seq = seq};
	commit(reserve(w, chunk, sizeof(e)), &e, sizeof(e));
}

/* Events as one string each, and a count the writer can wait on. */
struct seen {
	char log[4096];
	int n;
};

static int record(void *ctx, const struct htr_event *ev)
{
	struct seen *s = ctx;
	char item[96];
	snprintf(item, sizeof(item), "%u:%llu:%llx:t%u:s%u ", ev->type, (unsigned long long)ev->seq,
		 (unsigned long long)ev->ptr, ev->thread, ev->type == HTR_EV_STACK ? ev->id : ev->stack);
	strncat(s->log, item, sizeof(s->log) - strlen(s->log) - 1);
	__atomic_add_fetch(&s->n, 1, __ATOMIC_RELEASE);
	return 0;
}

struct follow_job {
	struct writer *w;
	unsigned lag_ms;
	struct seen seen;
	int rc;
	pthread_t thread;
};

static void *follow_main(void *arg)
{
	struct follow_job *j = arg;
	char err[256];
	struct htr_reader *r;
	if (htr_reader_open_follow(&r, j->w->path, j->w->pid, err, sizeof(err)) != 0) {
		fprintf(stderr, "open: %s\n", err);
		j->rc = -99;
		return NULL;
	}
	j->rc = htr_reader_follow(r, j->lag_ms, record, &j->seen);
	htr_reader_close(r);
	return NULL;
}

static void follow_start(struct follow_job *j, struct writer *w, unsigned lag_ms)
{
	memset(j, 0, sizeof(*j));
	j->w = w;
	j->lag_ms = lag_ms;
	assert_int_equal(pthread_create(&j->thread, NULL, follow_main, j), 0);
}

/* Until the follower has delivered n events (or 10 s went by). */
static void wait_seen(struct follow_job *j, int n)
{
	for (int i = 0; i < 10000 && __atomic_load_n(&j->seen.n, __ATOMIC_ACQUIRE) < n; i++)
		usleep(1000);
	assert_true(__atomic_load_n(&j->seen.n, __ATOMIC_ACQUIRE) >= n);
}

static void read_finished(const char *path, struct seen *seen)
{
	memset(seen, 0, sizeof(*seen));
	trace_read_all(path, record, seen);
}

/* Two threads commit in stages; thread 1 defines a stack long after its
 * previous record, moves on to a new chunk, and the trace ends cleanly. */
static void write_in_order(struct writer *w, struct follow_job *j)
{
	claim(w, 0, 1, 0);
	alloc(w, 0, 1, 0x10, 0);
	claim(w, 1, 2, 1);
	alloc(w, 1, 2, 0x20, 0);
	free_(w, 1, 3, 0x20);
	if (j != NULL)
		wait_seen(j, 2);
	else
		usleep(20000);
	stack(w, 0, 7);
	alloc(w, 0, 4, 0x30, 7);
	free_(w, 1, 5, 0x10);
	claim(w, 2, 1, 5);
	alloc(w, 2, 6, 0x40, 7);
	if (j != NULL)
		wait_seen(j, 5);
	else
		usleep(20000);
	free_(w, 2, 7, 0x30);
	stack(w, 1, 8);
	end(w, 2, 8);
}

static void test_follow_in_order_same_as_finished(void **state)
{
	(void)state;
	for (unsigned lag = 0; lag <= 50; lag += 50) {
		struct writer w;
		writer_start(&w);
		struct follow_job j;
		follow_start(&j, &w, lag);
		write_in_order(&w, lag == 0 ? &j : NULL);
		writer_end(&w, true);
		pthread_join(j.thread, NULL);
		assert_int_equal(j.rc, 0);
		struct seen finished;
		read_finished(w.path, &finished);
		assert_string_equal(j.seen.log, finished.log);
		/* The stack comes right before the record after it in its
		 * thread; the one at thread 2's end after everything. */
		assert_non_null(strstr(finished.log, "10:0:0:t1:s7 1:4:30:t1:s7 "));
		assert_non_null(strstr(finished.log, "16:8:0:t1:s0 10:0:0:t2:s8 "));
		writer_reap(&w);
	}
}

/* Thread 1 commits seqs 1, 4 and 5, which are delivered; thread 2 then
 * commits seq 3, taken before them: the follower must give up. */
static void test_follow_out_of_order_redone(void **state)
{
	(void)state;
	struct writer w;
	writer_start(&w);
	struct follow_job j;
	follow_start(&j, &w, 0);
	claim(&w, 0, 1, 0);
	claim(&w, 1, 2, 1);
	alloc(&w, 0, 1, 0x10, 0);
	alloc(&w, 1, 2, 0x20, 0);
	uint8_t *late = reserve(&w, 1, sizeof(struct htr_rec_free));
	alloc(&w, 0, 4, 0x30, 0);
	alloc(&w, 0, 5, 0x40, 0);
	wait_seen(&j, 4);
	struct htr_rec_free f = {.h = {HTR_REC_FREE, HTR_CALL_FREE, sizeof(f)}, .seq = 3, .ptr = 0x20};
	commit(late, &f, sizeof(f));
	writer_end(&w, false);
	pthread_join(j.thread, NULL);
	/* What htr_pack_follow then does: test_pack_follow_same_file. */
	assert_int_equal(j.rc, HTR_FOLLOW_REDO);
	writer_reap(&w);
}

/* A zero word in a chunk its thread has left is taken for the chunk's
 * end; a record committed there later (a reserved FORK slot) is caught
 * when the process has ended. */
static void test_follow_left_chunk_filled_later_redone(void **state)
{
	(void)state;
	struct writer w;
	writer_start(&w);
	struct follow_job j;
	follow_start(&j, &w, 0);
	claim(&w, 0, 1, 0);
	alloc(&w, 0, 1, 0x10, 0);
	uint8_t *slot = reserve(&w, 0, sizeof(struct htr_rec_fork));
	claim(&w, 1, 1, 2);
	alloc(&w, 1, 3, 0x20, 0);
	alloc(&w, 1, 4, 0x30, 0);
	wait_seen(&j, 3);
	struct htr_rec_fork fk = {.h = {HTR_REC_FORK, 0, sizeof(fk)}, .seq = 2, .child_pid = 77};
	commit(slot, &fk, sizeof(fk));
	writer_end(&w, false);
	pthread_join(j.thread, NULL);
	assert_int_equal(j.rc, HTR_FOLLOW_REDO);
	writer_reap(&w);
}

/* Events delivered now, without waiting for more. */
static int seen_now(struct follow_job *j)
{
	return __atomic_load_n(&j->seen.n, __ATOMIC_ACQUIRE);
}

/* Seqs are dense: once every seq up to X is committed, the follower
 * delivers up to X even though a thread that has not written since seq 1
 * (blocked in a join, say) bounds nothing, and the lag (a minute here)
 * settles nothing. A seq taken but not committed yet holds back what
 * comes after it, and only that. first_seq: the seq counter at the start
 * (a fork child's goes on from its parent's). */
static void follow_dense(uint64_t first_seq, bool fork_child)
{
	struct writer w;
	writer_start(&w);
	struct htr_file_header *h = (struct htr_file_header *)w.map;
	if (fork_child) {
		h->flags = HTR_FILE_FORK_CHILD;
		h->fork_seq = first_seq;
	}
	struct follow_job j;
	follow_start(&j, &w, 60000);
	uint64_t s = first_seq;
	claim(&w, 0, 1, s);
	alloc(&w, 0, s + 1, 0x10, 0);
	claim(&w, 1, 2, s + 1);
	alloc(&w, 1, s + 2, 0x20, 0);
	free_(&w, 1, s + 3, 0x20);
	alloc(&w, 1, s + 4, 0x30, 0);
	wait_seen(&j, 4);
	/* Thread 1 has taken s + 5 and not committed it. */
	uint8_t *held = reserve(&w, 0, sizeof(struct htr_rec_free));
	free_(&w, 1, s + 6, 0x30);
	alloc(&w, 1, s + 7, 0x40, 0);
	usleep(100000);
	assert_int_equal(seen_now(&j), 4);
	struct htr_rec_free f = {.h = {HTR_REC_FREE, HTR_CALL_FREE, sizeof(f)}, .seq = s + 5, .ptr = 0x10};
	commit(held, &f, sizeof(f));
	wait_seen(&j, 7);
	end(&w, 1, s + 8);
	writer_end(&w, true);
	pthread_join(j.thread, NULL);
	assert_int_equal(j.rc, 0);
	struct seen finished;
	read_finished(w.path, &finished);
	assert_string_equal(j.seen.log, finished.log);
	writer_reap(&w);
}

static void test_follow_dense_seqs_settle(void **state)
{
	(void)state;
	follow_dense(0, false);
}

static void test_follow_dense_seqs_fork_child(void **state)
{
	(void)state;
	follow_dense(1000, true);
	/* Across the end of the ring of seqs seen (2^20 of them). */
	follow_dense(((uint64_t)1 << 20) - 4, true);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A seq that never gets a record (an event lost) holds back what follows
 * until the lag settles it; after that, seqs committed in a row are
 * delivered at once again, well before the lag. */
static void test_follow_lost_seq_settled_then_dense(void **state)
{
	(void)state;
	struct writer w;
	writer_start(&w);
	struct follow_job j;
	follow_start(&j, &w, 300);
	claim(&w, 0, 1, 0);
	alloc(&w, 0, 1, 0x10, 0);
	claim(&w, 1, 2, 1);
	alloc(&w, 1, 3, 0x20, 0); /* 2 is lost */
	free_(&w, 1, 4, 0x20);
	wait_seen(&j, 1);
	usleep(100000);
	assert_int_equal(seen_now(&j), 1);
	wait_seen(&j, 3);
	double t0 = now_s();
	alloc(&w, 1, 5, 0x30, 0);
	free_(&w, 1, 6, 0x30);
	wait_seen(&j, 5);
	assert_true(now_s() - t0 < 0.28);
	end(&w, 1, 7);
	writer_end(&w, true);
	pthread_join(j.thread, NULL);
	assert_int_equal(j.rc, 0);
	struct seen finished;
	read_finished(w.path, &finished);
	assert_string_equal(j.seen.log, finished.log);
	writer_reap(&w);
}

static bool same_file(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	bool same = fa != NULL && fb != NULL;
	while (same) {
		int ca = fgetc(fa), cb = fgetc(fb);
		same = ca == cb;
		if (ca == EOF)
			break;
	}
	if (fa != NULL)
		fclose(fa);
	if (fb != NULL)
		fclose(fb);
	return same;
}

struct pack_job {
	struct writer *w;
	char out[96];
	struct htr_pack_result res;
	int rc;
	char err[256];
};

static void *pack_main(void *arg)
{
	struct pack_job *j = arg;
	j->rc = htr_pack_follow(j->w->path, j->w->pid, 0, j->out, 3, &j->res, j->err, sizeof(j->err));
	return NULL;
}

/* The streamed packed file is byte for byte the one htr_pack writes once
 * the process has ended; so is the one packed again after an out-of-order
 * record. */
static void test_pack_follow_same_file(void **state)
{
	(void)state;
	for (int redo = 0; redo < 2; redo++) {
		struct writer w;
		writer_start(&w);
		struct pack_job j = {.w = &w};
		snprintf(j.out, sizeof(j.out), "%s.streamed", w.path);
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, pack_main, &j), 0);
		if (redo) {
			claim(&w, 0, 1, 0);
			claim(&w, 1, 2, 0);
			alloc(&w, 0, 2, 0x10, 0);
			uint8_t *late = reserve(&w, 1, sizeof(struct htr_rec_free));
			alloc(&w, 0, 3, 0x30, 0);
			usleep(200000);
			struct htr_rec_free f = {.h = {HTR_REC_FREE, HTR_CALL_FREE, sizeof(f)}, .seq = 1, .ptr = 0x99};
			commit(late, &f, sizeof(f));
		} else {
			write_in_order(&w, NULL);
		}
		writer_end(&w, !redo);
		pthread_join(t, NULL);
		if (j.rc != 0)
			fail_msg("htr_pack_follow: %s", j.err);
		char post[96], err[256];
		snprintf(post, sizeof(post), "%s.post", w.path);
		struct htr_pack_result res;
		if (htr_pack(w.path, post, 3, &res, err, sizeof(err)) != 0)
			fail_msg("htr_pack: %s", err);
		assert_true(same_file(j.out, post));
		assert_int_equal(j.res.records, res.records);
		struct seen a, b;
		read_finished(j.out, &a);
		read_finished(w.path, &b);
		assert_string_equal(a.log, b.log);
		unlink(post);
		unlink(j.out);
		writer_reap(&w);
	}
}

static void test_follow_errors(void **state)
{
	(void)state;
	char err[256];
	struct htr_reader *r;
	/* A pid that names no process. */
	pid_t gone = fork();
	if (gone == 0)
		_exit(0);
	waitpid(gone, NULL, 0);
	assert_int_equal(htr_reader_open_follow(&r, "/tmp/htr-follow-none.htr", gone, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no such process"));
	assert_null(strchr(err, '\n'));
	assert_int_equal(htr_reader_open_follow(&r, "/tmp/htr-follow-none.htr", 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a process id"));

	/* A process that ends without writing the file. */
	struct writer w;
	writer_start(&w);
	unlink(w.path);
	writer_end(&w, false);
	assert_int_equal(htr_reader_open_follow(&r, w.path, w.pid, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no such file, and the process has ended"));
	assert_non_null(strstr(err, w.path));
	writer_reap(&w);

	/* The trace of another process. */
	writer_start(&w);
	((struct htr_file_header *)w.map)->pid = 1;
	assert_int_equal(htr_reader_open_follow(&r, w.path, w.pid, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "the trace of pid 1, not of pid"));
	writer_end(&w, false);
	writer_reap(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_follow_in_order_same_as_finished),
		cmocka_unit_test(test_follow_out_of_order_redone),
		cmocka_unit_test(test_follow_left_chunk_filled_later_redone),
		cmocka_unit_test(test_follow_dense_seqs_settle),
		cmocka_unit_test(test_follow_dense_seqs_fork_child),
		cmocka_unit_test(test_follow_lost_seq_settled_then_dense),
		cmocka_unit_test(test_pack_follow_same_file),
		cmocka_unit_test(test_follow_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
