/* Per-thread state and THREAD records. A thread gets its index and writes
 * THREAD START the first time it records something; a pthread key
 * destructor writes THREAD EXIT when it ends. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

__thread struct htr_thread htr_self HTR_TLS;
uint32_t htr_file_generation = 1;

static uint32_t next_thread_index;
static pthread_key_t exit_key;
static bool have_key;

static void write_thread_record(struct htr_thread *t, uint8_t kind)
{
	struct htr_rec_thread *r = htr_writer_reserve(&t->w, sizeof(*r));
	if (r == NULL) {
		htr_writer_drop(&t->w);
		return;
	}
	r->thread_index = t->w.thread_index;
	r->seq = htr_next_seq();
	r->tid = (uint64_t)syscall(SYS_gettid);
	htr_record_commit(&t->w, r, HTR_REC_THREAD, kind, sizeof(*r));
}

static void on_thread_exit(void *arg)
{
	(void)arg;
	struct htr_thread *t = &htr_self;
	if (!htr_recording() || !t->started)
		return;
	t->busy++;
	write_thread_record(t, HTR_THREAD_EXIT);
	/* Many short-lived threads must not pin a chunk of memory each. */
	htr_writer_retire(&t->w);
	t->busy--;
}

void htr_thread_attach(struct htr_thread *t)
{
	if (HTR_LIKELY(t->started && t->w.generation == htr_file_generation))
		return;
	htr_thread_assign(t);
	write_thread_record(t, HTR_THREAD_START);
}

void htr_thread_write_start(struct htr_thread *t)
{
	write_thread_record(t, HTR_THREAD_START);
}

void htr_thread_assign(struct htr_thread *t)
{
	if (t->w.generation != htr_file_generation) {
		t->w.cur = t->w.end = NULL;
		t->w.generation = htr_file_generation;
		t->started = 0;
	}
	t->started = 1;
	t->w.thread_index = __atomic_add_fetch(&next_thread_index, 1, __ATOMIC_RELAXED);
	/* The key only triggers the destructor when the value is non-NULL. */
	if (have_key)
		pthread_setspecific(exit_key, (void *)1);
}

void htr_threads_init(void)
{
	if (!have_key && pthread_key_create(&exit_key, on_thread_exit) == 0)
		have_key = true;
}

void htr_threads_after_fork_child(void)
{
	/* The child has one thread, the one that forked: it starts again as
	 * thread 1 of the child's trace. */
	__atomic_store_n(&next_thread_index, 0, __ATOMIC_RELAXED);
	htr_file_generation++;
	htr_self.started = 0;
}
