/* Process lifetime: start (options, trace file, PROCESS record, module map),
 * orderly exit (END), fork (FORK record in the parent, a trace of its own in
 * the child). exec needs nothing: the preload is inherited and the new image
 * starts a new trace, flagged EXEC_IMAGE by tracefile.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

struct htr_options htr_opts;
int htr_state;
static uint64_t exit_status;

static size_t read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	return got;
}

void htr_write_process_record(struct htr_writer *w)
{
	static char data[HTR_PROCESS_DATA_MAX];
	uint8_t kind = 0;
	ssize_t n = readlink("/proc/self/exe", data, sizeof(data) - 1);
	size_t used = n > 0 ? (size_t)n : 0;
	data[used++] = '\0';

	/* /proc/self/cmdline is the NUL-separated argv. One byte more than
	 * fits tells a cut-off command line. */
	static char args[HTR_PROCESS_DATA_MAX + 1];
	size_t alen = read_file("/proc/self/cmdline", args, sizeof(args));
	uint32_t argc = 0;
	size_t room = sizeof(data) - used;
	if (alen > room) {
		alen = room;
		kind |= 1;
	}
	/* Only whole arguments go in. */
	size_t whole = 0;
	for (size_t i = 0; i < alen; i++) {
		if (args[i] == '\0') {
			argc++;
			whole = i + 1;
		}
	}
	if (whole < alen)
		kind |= 1;
	memcpy(data + used, args, whole);
	used += whole;

	size_t bytes = htr_align8(sizeof(struct htr_rec_process) + used);
	struct htr_rec_process *r = htr_writer_reserve(w, bytes);
	if (r == NULL) {
		htr_writer_drop(w);
		return;
	}
	r->argc = argc;
	r->seq = htr_next_seq();
	r->pid = (uint64_t)getpid();
	r->ppid = (uint64_t)getppid();
	memcpy(r + 1, data, used);
	memset((char *)(r + 1) + used, 0, bytes - sizeof(*r) - used);
	htr_record_commit(w, r, HTR_REC_PROCESS, kind, bytes);
}

/* The first records of a new trace, in the order the format asks for. */
static void begin_trace(void)
{
	struct htr_thread *t = &htr_self;
	t->busy++;
	htr_thread_assign(t);
	htr_write_process_record(&t->w);
	htr_writer_time(&t->w);
	htr_thread_write_start(t);
	htr_modules_reset();
	htr_modules_scan(&t->w, true);
	t->busy--;
}

/* ---- fork ---- */


/* The FORK record's seq must be known before the child exists (the child's
 * header carries it), but its child_pid only after. So the slot is reserved
 * here, in the last prepare handler to run, and filled after fork returns. */
/* Whether prepare took the recorder's locks. It does not when fork() runs
 * in a signal handler that interrupted the recorder on this thread: that
 * thread may hold one of them, and waiting for it would hang for ever
 * (glibc itself allows fork from a signal handler in a single-threaded
 * process). The child resets the locks either way; the interrupted code
 * finishes its update when the handler returns. */
static bool locked_for_fork;

static void atfork_prepare(void)
{
	struct htr_thread *t = &htr_self;
	t->fork_slot = NULL;
	t->fork_seq = 0;
	locked_for_fork = false;
	if (t->busy)
		return;
	if (htr_recording()) {
		t->busy++;
		htr_thread_attach(t);
		t->fork_slot = htr_writer_reserve(&t->w, sizeof(struct htr_rec_fork));
		t->w.pin = t->fork_slot;
		t->fork_seq = htr_next_seq();
		t->busy--;
	}
	locked_for_fork = true;
	htr_modules_fork_prepare();
	htr_sites_fork_prepare();
	htr_stacks_fork_prepare();
	htr_live_fork_prepare();
	htr_tracefile_fork_prepare();
	htr_threads_fork_prepare();
}

static void fill_fork(struct htr_thread *t, uint64_t child)
{
	struct htr_rec_fork *r = t->fork_slot;
	t->fork_slot = NULL;
	if (r == NULL)
		return;
	r->reserved = 0;
	r->seq = t->fork_seq;
	r->child_pid = child;
	htr_record_commit(&t->w, r, HTR_REC_FORK, 0, sizeof(*r));
	htr_writer_unpin(&t->w);
}

static void atfork_parent(void)
{
	if (locked_for_fork) {
		htr_threads_fork_parent();
		htr_tracefile_fork_parent();
		htr_live_fork_parent();
		htr_stacks_fork_parent();
		htr_sites_fork_parent();
		htr_modules_fork_parent();
	}
	struct htr_thread *t = &htr_self;
	/* Not through our fork() (daemon() calls libc's internal one): the
	 * child's pid is unknown here. */
	if (!t->in_fork)
		fill_fork(t, 0);
}

static void atfork_child(void)
{
	htr_tracefile_forget_lock();
	htr_live_fork_child();
	htr_stacks_fork_child();
	htr_sites_fork_child();
	htr_modules_fork_child();
	struct htr_thread *t = &htr_self;
	if (!locked_for_fork) {
		/* Forked from a signal handler that interrupted the recorder: the
		 * interrupted code will finish writing its record into the shared
		 * page when the handler returns (the same bytes the parent
		 * writes), so the mapping must stay. This child runs untraced. */
		if (htr_recording())
			__atomic_store_n(&htr_state, HTR_ST_OFF, __ATOMIC_RELEASE);
		return;
	}
	bool was_on = htr_recording();
	uint64_t fork_seq = t->fork_seq;
	uint32_t parent = htr_tracefile_header() ? htr_tracefile_header()->pid : (uint32_t)getppid();
	t->fork_slot = NULL;
	htr_tracefile_forget();
	htr_threads_after_fork_child();
	if (!was_on)
		return;
	__atomic_store_n(&htr_state, HTR_ST_INIT, __ATOMIC_RELEASE);
	if (htr_tracefile_open(&htr_opts, HTR_FILE_FORK_CHILD, parent, fork_seq) != 0) {
		__atomic_store_n(&htr_state, HTR_ST_OFF, __ATOMIC_RELEASE);
		return;
	}
	begin_trace();
	__atomic_store_n(&htr_state, HTR_ST_ON, __ATOMIC_RELEASE);
}

HTR_EXPORT pid_t fork(void)
{
	htr_resolve_real();
	struct htr_thread *t = &htr_self;
	t->in_fork = 1;
	pid_t pid = htr_real.fork();
	int saved_errno = errno;
	t->in_fork = 0;
	if (pid != 0 && t->fork_slot != NULL) {
		if (pid > 0) {
			fill_fork(t, (uint64_t)pid);
		} else {
			/* No child: the reserved slot becomes a harmless TIME record. */
			struct htr_rec_time *tm = t->fork_slot;
			t->fork_slot = NULL;
			tm->reserved = 0;
			tm->seq = t->fork_seq;
			tm->monotonic_ns = htr_now_ns(CLOCK_MONOTONIC);
			htr_record_commit(&t->w, tm, HTR_REC_TIME, 0, sizeof(*tm));
			htr_writer_unpin(&t->w);
		}
	}
	errno = saved_errno;
	return pid;
}

/* ---- start and end ---- */

/* A relative HEAPTRAIL_OUTPUT means relative to where the program started:
 * fork children of a program that changed directory write next to their
 * parent's trace. */
static void absolute_output(struct htr_options *o)
{
	if (o->output[0] == '/')
		return;
	char cwd[sizeof(o->output)];
	if (getcwd(cwd, sizeof(cwd) - 64) == NULL)
		return;
	size_t clen = strlen(cwd), olen = strlen(o->output);
	if (clen + 1 + olen + 1 > sizeof(o->output))
		return;
	memmove(o->output + clen + 1, o->output, olen + 1);
	memcpy(o->output, cwd, clen);
	o->output[clen] = '/';
}

static bool end_in_exit_handler;
static void finish(uint64_t status);

/* Registered from our constructor, which ld.so runs before libc registers
 * _dl_fini: so this runs after every destructor and atexit handler, the
 * latest point at which exit() still runs our code, and it knows the
 * status. */
static void on_exit_status(int status, void *arg)
{
	(void)arg;
	exit_status = (uint64_t)(unsigned)status;
	finish(exit_status);
}

__attribute__((constructor(101))) static void htr_start(void)
{
	int saved_errno = errno;
	htr_resolve_real();
	int expected = HTR_ST_NONE;
	if (!__atomic_compare_exchange_n(&htr_state, &expected, HTR_ST_INIT, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return;
	htr_options_parse(environ, &htr_opts, htr_warn_stderr, NULL);
	absolute_output(&htr_opts);
	htr_stacks_init();
	htr_threads_init();
	htr_hot_init();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	end_in_exit_handler = on_exit(on_exit_status, NULL) == 0;
	if (htr_tracefile_open(&htr_opts, 0, 0, 0) != 0) {
		__atomic_store_n(&htr_state, HTR_ST_OFF, __ATOMIC_RELEASE);
		errno = saved_errno;
		return;
	}
	begin_trace();
	__atomic_store_n(&htr_state, HTR_ST_ON, __ATOMIC_RELEASE);
	errno = saved_errno;
}

/* Whatever allocates after this still works: the hooks pass through,
 * untraced. */
static void finish(uint64_t status)
{
	int saved_errno = errno;
	int expected = HTR_ST_ON;
	if (!__atomic_compare_exchange_n(&htr_state, &expected, HTR_ST_OFF, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return;
	/* Modules unloaded since the last new stack are recorded before END. */
	struct htr_thread *t = &htr_self;
	t->busy++;
	htr_thread_attach(t);
	htr_modules_scan(&t->w, false);
	t->busy--;
	htr_tracefile_finish(HTR_END_EXIT, status);
	errno = saved_errno;
}

/* Only when on_exit could not be used: _dl_fini runs this after the
 * destructors of everything loaded after the recorder. */
__attribute__((destructor(101))) static void htr_stop(void)
{
	if (!end_in_exit_handler)
		finish(exit_status);
}
