/* The trace file: header, per-thread chunks and the record commit protocol
 * of include/heaptrail/trace_format.h.
 *
 * The file is mapped MAP_SHARED into one reserved range of address space:
 * the header at its start and chunk i at HTR_FILE_HEADER_SIZE + i *
 * chunk_size, so whatever a thread wrote is in the file even if the process
 * dies the next instant. The range is reserved once (PROT_NONE) so that a
 * fork child can drop every inherited shared page with one mmap over it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

struct htr_hot htr_hot;
bool htr_have_cx16;

void htr_hot_init(void)
{
#if defined(__x86_64__)
	unsigned a, b, c, d;
	if (__get_cpuid(1, &a, &b, &c, &d))
		htr_have_cx16 = (c & bit_CMPXCHG16B) != 0;
#endif
}

static struct {
	uint8_t *base;          /* reserved range */
	size_t reserved;        /* its size */
	int fd;
	struct htr_file_header *hdr;
	uint32_t chunk_size;
	uint64_t max_chunks;    /* that fit in the reserved range */
	uint64_t file_size;     /* under claim_lock */
	htr_spinlock claim_lock;
	bool active;
	bool ended;
	void *end_rec;          /* the END record, until the process is gone */
	dev_t dev;              /* identity of the trace file, to notice a */
	ino_t ino;              /* program that closed our descriptor */
	char path[4200];
} tf = { .fd = -1 };

void htr_spin_lock_slow(htr_spinlock *l)
{
	unsigned spins = 0;
	for (;;) {
		if (__atomic_load_n(&l->v, __ATOMIC_RELAXED) == 0 &&
		    !__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
			return;
		if (++spins < 64)
			__builtin_ia32_pause();
		else
			sched_yield();
	}
}

uint64_t htr_now_ns(int clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- chunk level (pure memory; the unit tests drive these directly) ---- */

void htr_chunk_init(struct htr_chunk_writer *cw, void *chunk, size_t chunk_size,
		    uint32_t thread_index, uint64_t chunk_index, uint64_t first_seq)
{
	struct htr_chunk_header *ch = chunk;
	ch->thread_index = thread_index;
	ch->chunk_index = chunk_index;
	ch->first_seq = first_seq;
	ch->reserved = 0;
	__atomic_store_n(&ch->magic, HTR_CHUNK_MAGIC, __ATOMIC_RELEASE);
	cw->base = chunk;
	cw->cur = (uint8_t *)chunk + sizeof(*ch);
	cw->end = (uint8_t *)chunk + chunk_size;
}

void *htr_chunk_reserve(struct htr_chunk_writer *cw, size_t bytes)
{
	if (cw->cur == NULL || (size_t)(cw->end - cw->cur) < bytes)
		return NULL;
	void *p = cw->cur;
	cw->cur += bytes;
	return p;
}

/* ---- file level ---- */

bool htr_tracefile_active(void)
{
	return tf.active;
}

struct htr_file_header *htr_tracefile_header(void)
{
	return tf.hdr;
}

static bool reserve_range(void)
{
	if (tf.base != NULL)
		return true;
	/* Large enough for any sane run; smaller tries for RLIMIT_AS-limited
	 * programs. PROT_NONE reservations cost no memory. */
	static const size_t sizes[] = { (size_t)64 << 30, (size_t)4 << 30, (size_t)512 << 20,
					(size_t)64 << 20 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = mmap(NULL, sizes[i], PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			       -1, 0);
		if (p != MAP_FAILED) {
			tf.base = p;
			tf.reserved = sizes[i];
			return true;
		}
	}
	return false;
}

static char *trace_path(char *buf, size_t len, const char *dir, uint32_t pid, unsigned n)
{
	char *end = buf + len;
	char *p = htr_str_append(buf, end, dir);
	p = htr_str_append(p, end, "/heaptrail.");
	p = htr_str_append_u64(p, end, pid);
	p = htr_str_append(p, end, ".");
	p = htr_str_append_u64(p, end, n);
	htr_str_append(p, end, ".htr");
	return buf;
}

/* Seconds since boot at which this process started, from /proc/self/stat,
 * in CLOCK_MONOTONIC nanoseconds (close enough: no suspend in between). */
static uint64_t process_start_ns(void)
{
	char buf[1024];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* comm may hold spaces */
	if (p == NULL)
		return 0;
	/* After ')': state is field 3, starttime is field 22. */
	int field = 2;
	uint64_t v = 0;
	for (p++; *p != '\0'; p++) {
		if (*p == ' ') {
			field++;
			continue;
		}
		if (field == 22) {
			while (*p >= '0' && *p <= '9')
				v = v * 10u + (uint64_t)(*p++ - '0');
			break;
		}
	}
	long hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0)
		hz = 100;
	return v * (1000000000u / (uint64_t)hz);
}

/* Whether the existing file at path was written by an earlier image of
 * this very process (an exec), not by an older process with the same pid. */
static bool earlier_image_of_this_process(const char *path, uint32_t pid, uint64_t started)
{
	/* O_NONBLOCK: a FIFO planted under the name must not hang us. */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return false;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		close(fd);
		return false;
	}
	struct htr_file_header h;
	ssize_t n = pread(fd, &h, sizeof(h), 0);
	close(fd);
	if (n != (ssize_t)sizeof(h) || memcmp(h.magic, HTR_TRACE_MAGIC, 8) != 0 || h.pid != pid)
		return false;
	/* Tick granularity: allow 20 ms of slack. */
	return h.start_monotonic_ns + 20000000u >= started;
}

static bool grow_file(uint64_t size)
{
	if (size <= tf.file_size)
		return true;
	/* fallocate makes a full disk fail here rather than as SIGBUS later. */
	if (fallocate(tf.fd, 0, (off_t)tf.file_size, (off_t)(size - tf.file_size)) != 0) {
		if (errno != EOPNOTSUPP && errno != ENOSYS)
			return false;
		if (ftruncate(tf.fd, (off_t)size) != 0)
			return false;
	}
	tf.file_size = size;
	return true;
}

int htr_tracefile_open(const struct htr_options *opt, uint32_t flags, uint32_t parent_pid,
		       uint64_t fork_seq)
{
	char path[4200];
	uint32_t pid = (uint32_t)getpid();
	uint64_t started = (flags & HTR_FILE_FORK_CHILD) ? 0 : process_start_ns();
	int fd = -1;
	int err = 0;

	if (!reserve_range()) {
		htr_warn_stderr(NULL, "cannot reserve address space for the trace; running untraced");
		return -1;
	}
	for (unsigned n = 0; n < 10000; n++) {
		trace_path(path, sizeof(path), opt->output, pid, n);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0)
			break;
		err = errno;
		if (err != EEXIST)
			break;
		if (started != 0 && earlier_image_of_this_process(path, pid, started))
			flags |= HTR_FILE_EXEC_IMAGE;
	}
	if (fd < 0) {
		char line[4400];
		char *end = line + sizeof(line);
		char *p = htr_str_append(line, end, "cannot create a trace file in \"");
		p = htr_str_append(p, end, opt->output);
		p = htr_str_append(p, end, "\" (HEAPTRAIL_OUTPUT): ");
		p = htr_str_append(p, end, strerror(err));
		htr_str_append(p, end, "; running untraced");
		htr_warn_stderr(NULL, line);
		return -1;
	}
	(void)fchmod(fd, 0600); /* the umask must not loosen or tighten it */
	struct stat st;
	if (fstat(fd, &st) == 0) {
		tf.dev = st.st_dev;
		tf.ino = st.st_ino;
	}
	memcpy(tf.path, path, sizeof(tf.path));

	tf.fd = fd;
	tf.chunk_size = opt->chunk_kb * 1024u;
	tf.max_chunks = (tf.reserved - HTR_FILE_HEADER_SIZE) / tf.chunk_size;
	tf.file_size = 0;
	tf.ended = false;
	tf.claim_lock.v = 0;
	if (!grow_file(HTR_FILE_HEADER_SIZE + 4u * (uint64_t)tf.chunk_size) ||
	    mmap(tf.base, HTR_FILE_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
		 0) == MAP_FAILED) {
		htr_warn_stderr(NULL, "cannot size or map the trace file; running untraced");
		close(fd);
		tf.fd = -1;
		return -1;
	}
	struct htr_file_header *h = (struct htr_file_header *)tf.base;
	memcpy(h->magic, HTR_TRACE_MAGIC, 8);
	h->version_major = HTR_TRACE_VERSION_MAJOR;
	h->version_minor = HTR_TRACE_VERSION_MINOR;
	h->header_size = HTR_FILE_HEADER_SIZE;
	h->pointer_size = (uint8_t)sizeof(void *);
	h->big_endian = 0;
	h->chunk_size = tf.chunk_size;
	h->flags = flags;
	h->pid = pid;
	h->ppid = (uint32_t)getppid();
	h->parent_pid = (flags & HTR_FILE_FORK_CHILD) ? parent_pid : 0;
	h->max_depth = opt->depth;
	h->fork_seq = (flags & HTR_FILE_FORK_CHILD) ? fork_seq : 0;
	h->start_realtime_ns = htr_now_ns(CLOCK_REALTIME);
	h->start_monotonic_ns = htr_now_ns(CLOCK_MONOTONIC);
	h->chunks_claimed = 0;
	h->dropped_events = 0;
	h->last_seq = 0;
	__atomic_store_n(&h->state, HTR_STATE_RUNNING, __ATOMIC_RELEASE);
	tf.hdr = h;
	tf.active = true;
	return 0;
}

void htr_tracefile_forget(void)
{
	/* One mmap over the whole range replaces the parent's shared pages, so
	 * nothing the child does can reach the parent's file. */
	if (tf.base != NULL)
		mmap(tf.base, tf.reserved, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	struct stat st;
	if (tf.fd >= 0 && fstat(tf.fd, &st) == 0 && st.st_dev == tf.dev && st.st_ino == tf.ino)
		close(tf.fd); /* only if it still is ours, not a file the program opened */
	tf.fd = -1;
	tf.hdr = NULL;
	tf.active = false;
	tf.claim_lock.v = 0;
}

void htr_tracefile_fork_prepare(void)
{
	htr_spin_lock(&tf.claim_lock);
}

void htr_tracefile_fork_parent(void)
{
	htr_spin_unlock(&tf.claim_lock);
}

void htr_tracefile_forget_lock(void)
{
	tf.claim_lock.v = 0;
}

/* Daemons close every descriptor and may get ours back for a file of their
 * own: growing or mapping that would damage it. So before the (rare) use of
 * the descriptor, check it still is the trace, and reopen the trace by path
 * if the program took it. Called under claim_lock. */
static bool fd_is_ours(void)
{
	struct stat st;
	if (fstat(tf.fd, &st) == 0 && st.st_dev == tf.dev && st.st_ino == tf.ino)
		return true;
	int fd = open(tf.path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) != 0 || st.st_dev != tf.dev || st.st_ino != tf.ino) {
		close(fd);
		return false;
	}
	tf.fd = fd; /* the old number is the program's now: never close it */
	return true;
}

/* Puts a fresh chunk's pages into the page cache through the write path
 * (zeros, from .bss, so no memory of ours): the populate that follows then
 * only maps them. Faulting them in directly reads each page of the
 * fallocated (unwritten) range, zeroes it, then makes it writable, page by
 * page; this cut the kernel's time of a malloc/free loop by a third
 * (wl_pairs sys 0.133 -> 0.086 s). One write for a whole chunk (up to
 * 1 MiB; the zero page backs the buffer): a filesystem with large folios
 * (ext4 on Linux 6.x) then puts the chunk in a few large folios, and
 * allocating, charging, mapping and unmapping cost per folio, not per
 * page. 64 KiB writes before: sys of wl_pairs 0.041 -> 0.036 s, of
 * wl_threads 0.064 -> 0.057 s. */
static void prefill(int fd, uint64_t off)
{
	static char zeros[1 << 20];
	for (uint64_t done = 0; done < tf.chunk_size;) {
		size_t n = tf.chunk_size - done < sizeof(zeros) ? (size_t)(tf.chunk_size - done) : sizeof(zeros);
		ssize_t w = pwrite(fd, zeros, n, (off_t)(off + done));
		if (w <= 0)
			return; /* the populate (or the first write) faults the rest in */
		done += (uint64_t)w;
	}
}

/* Claims and maps the next chunk. NULL when the file cannot grow. Only the
 * claim and the file's growth are under the lock: the mmap waits for the
 * process's mmap lock, behind other threads' page faults, and 8 threads
 * that claim at the same pace spun and yielded on a holder blocked there.
 * A chunk claimed but never mapped keeps magic 0, which readers skip. */
static uint8_t *claim_chunk(uint64_t *index_out)
{
	int fd = -1;
	uint64_t idx = 0;
	htr_spin_lock(&tf.claim_lock);
	if (tf.active && !tf.ended && fd_is_ours()) {
		idx = __atomic_load_n(&tf.hdr->chunks_claimed, __ATOMIC_RELAXED);
		uint64_t need = HTR_FILE_HEADER_SIZE + (idx + 1) * (uint64_t)tf.chunk_size;
		/* When the next chunk does not fit, grow by a quarter of the
		 * file at least, so that growth costs O(log n) fallocate calls.
		 * Growing on every claim instead would compound: 1.25^claims. */
		uint64_t want = need <= tf.file_size ? need : tf.file_size + tf.file_size / 4u;
		want = (want - HTR_FILE_HEADER_SIZE + tf.chunk_size - 1) / tf.chunk_size * tf.chunk_size +
		       HTR_FILE_HEADER_SIZE;
		if (want < need)
			want = need;
		if (want > HTR_FILE_HEADER_SIZE + tf.max_chunks * (uint64_t)tf.chunk_size)
			want = need;
		if (idx < tf.max_chunks && (grow_file(want) || grow_file(need))) {
			__atomic_store_n(&tf.hdr->chunks_claimed, idx + 1, __ATOMIC_RELEASE);
			fd = tf.fd;
		}
	}
	htr_spin_unlock(&tf.claim_lock);
	if (fd < 0)
		return NULL;
	/* The descriptor is checked again, as before every use (fd_is_ours):
	 * a program that took its number meanwhile must not have its file
	 * mapped or written. The next claim reopens the trace by path. */
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_dev != tf.dev || st.st_ino != tf.ino)
		return NULL;
	uint64_t off = HTR_FILE_HEADER_SIZE + idx * (uint64_t)tf.chunk_size;
	uint8_t *chunk = tf.base + off;
	if (mmap(chunk, tf.chunk_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)off) ==
	    MAP_FAILED)
		return NULL;
	*index_out = idx;
	/* Populated in one go (cheaper than a fault per 4 KiB), and outside
	 * the lock: threads that fill their chunks at the same pace claim at
	 * the same moment, and waited for each other's page faults. Where the
	 * kernel cannot, the pages fault in as they are written. */
	prefill(fd, off);
	(void)madvise(chunk, tf.chunk_size, MADV_POPULATE_WRITE);
	return chunk;
}

static void fill_time(struct htr_rec_time *t);

/* A chunk's records live in the file (page cache, then disk), so once the
 * thread leaves it the mapping only costs resident memory: without this the
 * RSS grows with the whole trace. A PROT_NONE reservation takes its place,
 * so that nothing else is mapped inside the range. */
static void retire_chunk(uint8_t *chunk)
{
	mmap(chunk, tf.chunk_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
	     -1, 0);
}

static void leave_chunk(struct htr_writer *w)
{
	if (w->end == NULL || w->generation != htr_file_generation || !tf.active)
		return;
	uint8_t *chunk = w->end - tf.chunk_size;
	if (w->pin != NULL && (uint8_t *)w->pin >= chunk && (uint8_t *)w->pin < w->end)
		w->held = chunk;
	else
		retire_chunk(chunk);
}

void htr_writer_unpin(struct htr_writer *w)
{
	w->pin = NULL;
	if (w->held != NULL && w->generation == htr_file_generation && tf.active)
		retire_chunk(w->held);
	w->held = NULL;
}

void htr_writer_retire(struct htr_writer *w)
{
	if (w->pin != NULL)
		return;
	leave_chunk(w);
	w->cur = w->end = NULL;
}

void htr_writer_drop(struct htr_writer *w)
{
	w->pending_drops++;
	if (tf.hdr != NULL)
		__atomic_add_fetch(&tf.hdr->dropped_events, 1, __ATOMIC_RELAXED);
}

static void write_time(struct htr_writer *w)
{
	struct htr_rec_time *t = (struct htr_rec_time *)w->cur;
	w->cur += sizeof(*t);
	fill_time(t);
}

void htr_writer_time(struct htr_writer *w)
{
	struct htr_rec_time *t = htr_writer_reserve(w, sizeof(*t));
	if (t != NULL)
		fill_time(t);
}

static void fill_time(struct htr_rec_time *t)
{
	t->reserved = 0;
	t->seq = htr_next_seq();
	t->monotonic_ns = htr_now_ns(CLOCK_MONOTONIC);
	htr_rec_publish(t, HTR_REC_TIME, 0, sizeof(*t));
}

static void write_drops(struct htr_writer *w)
{
	struct htr_rec_drops *d = (struct htr_rec_drops *)w->cur;
	w->cur += sizeof(*d);
	d->reserved = 0;
	d->seq = htr_next_seq();
	d->count = w->pending_drops;
	w->pending_drops = 0;
	htr_rec_publish(d, HTR_REC_DROPS, HTR_DROP_NO_SPACE, sizeof(*d));
}

void *htr_writer_reserve_slow(struct htr_writer *w, size_t bytes)
{
	if (HTR_UNLIKELY(w->generation != htr_file_generation)) {
		/* A chunk of a file this process no longer writes (fork child). */
		w->cur = w->end = NULL;
		w->pin = NULL;
		w->held = NULL;
		w->generation = htr_file_generation;
	}
	size_t extra = w->pending_drops ? sizeof(struct htr_rec_drops) : 0;
	if (HTR_LIKELY(w->cur != NULL && (size_t)(w->end - w->cur) >= bytes + extra)) {
		if (HTR_UNLIKELY(extra))
			write_drops(w);
		void *p = w->cur;
		w->cur += bytes;
		return p;
	}
	if (!tf.active || bytes + sizeof(struct htr_chunk_header) + sizeof(struct htr_rec_time) +
				  sizeof(struct htr_rec_drops) > tf.chunk_size)
		return NULL;
	leave_chunk(w);
	uint64_t idx;
	uint8_t *chunk = claim_chunk(&idx);
	if (chunk == NULL) {
		w->cur = w->end = NULL;
		return NULL;
	}
	struct htr_chunk_writer cw;
	w->chunk_seq = __atomic_load_n(&htr_hot.seq, __ATOMIC_RELAXED);
	htr_chunk_init(&cw, chunk, tf.chunk_size, w->thread_index, idx, w->chunk_seq);
	w->cur = cw.cur;
	w->end = cw.end;
	/* Chunk 0 starts with the PROCESS record; process.c writes TIME next. */
	if (idx != 0)
		write_time(w);
	if (w->pending_drops)
		write_drops(w);
	void *p = w->cur;
	w->cur += bytes;
	return p;
}

/* An exec that failed: the END written for it becomes a TIME record (same
 * size, same seq) and the file takes chunks again. */
void htr_tracefile_resume(void)
{
	if (!tf.active || !tf.ended)
		return;
	htr_spin_lock(&tf.claim_lock);
	if (tf.end_rec != NULL) {
		struct htr_rec_time *t = tf.end_rec;
		t->monotonic_ns = htr_now_ns(CLOCK_MONOTONIC);
		htr_rec_publish(t, HTR_REC_TIME, 0, sizeof(*t));
		tf.end_rec = NULL;
	}
	tf.hdr->last_seq = 0;
	__atomic_store_n(&tf.hdr->state, HTR_STATE_RUNNING, __ATOMIC_RELEASE);
	tf.ended = false;
	htr_spin_unlock(&tf.claim_lock);
}

void htr_tracefile_finish(uint32_t end_kind, uint64_t status)
{
	if (!tf.active || tf.ended)
		return;
	struct htr_thread *t = &htr_self;
	t->busy++;
	htr_thread_attach(t);
	struct htr_rec_end *e = htr_writer_reserve(&t->w, sizeof(*e));
	uint64_t seq = htr_next_seq();
	if (e != NULL) {
		e->reserved = 0;
		e->seq = seq;
		e->status = status;
		htr_record_commit(&t->w, e, HTR_REC_END, (uint8_t)end_kind, sizeof(*e));
	}
	tf.end_rec = e;
	htr_spin_lock(&tf.claim_lock);
	tf.ended = true; /* no chunk is claimed from now on */
	uint64_t used = HTR_FILE_HEADER_SIZE +
			__atomic_load_n(&tf.hdr->chunks_claimed, __ATOMIC_ACQUIRE) * (uint64_t)tf.chunk_size;
	tf.hdr->last_seq = seq;
	__atomic_store_n(&tf.hdr->state, HTR_STATE_CLEAN_EXIT, __ATOMIC_RELEASE);
	/* Only the space past the claimed chunks goes: threads still running
	 * may write into their chunks until the process is gone. */
	if (used < tf.file_size && fd_is_ours() && ftruncate(tf.fd, (off_t)used) == 0)
		tf.file_size = used;
	htr_spin_unlock(&tf.claim_lock);
	t->busy--;
}
