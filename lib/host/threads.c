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
struct htr_counters htr_counters;

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

/* The threads whose counts live in their TLS. A thread leaves the list
 * before its TLS goes away (key destructor), so walking it under the lock
 * reads live memory only. */
static htr_spinlock counted_lock;
static struct htr_thread *counted_threads;

static void count_here(struct htr_thread *t)
{
	if (t->counted || !have_key)
		return; /* without the key's destructor it could not leave the list */
	htr_spin_lock(&counted_lock);
	t->allocs = t->frees = 0;
	t->next_counted = counted_threads;
	counted_threads = t;
	__atomic_store_n(&t->counted, 1, __ATOMIC_RELAXED);
	htr_spin_unlock(&counted_lock);
}

static void fold_locked(struct htr_thread *t)
{
	__atomic_add_fetch(&htr_counters.alloc_count, t->allocs, __ATOMIC_RELAXED);
	__atomic_add_fetch(&htr_counters.free_count, t->frees, __ATOMIC_RELAXED);
	t->allocs = t->frees = 0;
	t->counted = 0;
}

static void stop_counting_here(struct htr_thread *t)
{
	if (!t->counted)
		return;
	htr_spin_lock(&counted_lock);
	for (struct htr_thread **p = &counted_threads; *p != NULL; p = &(*p)->next_counted) {
		if (*p == t) {
			*p = t->next_counted;
			break;
		}
	}
	fold_locked(t);
	htr_spin_unlock(&counted_lock);
}

void htr_counts_sum(uint64_t *allocs, uint64_t *frees)
{
	htr_spin_lock(&counted_lock);
	uint64_t a = __atomic_load_n(&htr_counters.alloc_count, __ATOMIC_RELAXED);
	uint64_t f = __atomic_load_n(&htr_counters.free_count, __ATOMIC_RELAXED);
	for (struct htr_thread *t = counted_threads; t != NULL; t = t->next_counted) {
		a += __atomic_load_n(&t->allocs, __ATOMIC_RELAXED);
		f += __atomic_load_n(&t->frees, __ATOMIC_RELAXED);
	}
	htr_spin_unlock(&counted_lock);
	*allocs = a;
	*frees = f;
}

void htr_threads_fork_prepare(void)
{
	htr_spin_lock(&counted_lock);
}

void htr_threads_fork_parent(void)
{
	htr_spin_unlock(&counted_lock);
}

static void on_thread_exit(void *arg)
{
	(void)arg;
	struct htr_thread *t = &htr_self;
	/* Its TLS is about to go: later events of this thread (other keys'
	 * destructors) count in the globals. */
	stop_counting_here(t);
	if (!htr_recording() || !t->started)
		return;
	t->busy++;
	write_thread_record(t, HTR_THREAD_EXIT);
	/* Many short-lived threads must not pin a chunk of memory each. */
	htr_writer_retire(&t->w);
	t->busy--;
}

void htr_thread_attach_slow(struct htr_thread *t)
{
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
	count_here(t);
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
	/* The other threads are gone, their TLS copied but never freed: their
	 * counts move to the globals (the counts carry over, as they did when
	 * they were only global), and this thread is counted again as it
	 * attaches. */
	counted_lock.v = 0;
	for (struct htr_thread *t = counted_threads; t != NULL;) {
		struct htr_thread *next = t->next_counted;
		fold_locked(t);
		t = next;
	}
	counted_threads = NULL;
}
