/* Host trace reader: chunk scan, per-thread cursors, seq merge. */
#define _GNU_SOURCE
#include "reader_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A definition (STACK, SITE) read ahead, delivered with the sequenced
 * record that follows it in its thread. */
struct pending_def {
	const uint8_t *rec;
	uint64_t off;
};

/* Per thread: its chunks in claim order, and where the cursor is. */
struct thread_stream {
	uint32_t thread_index;
	uint64_t *chunks; /* chunk numbers */
	size_t nchunks, cap;
	size_t chunk_at;   /* index into chunks */
	uint64_t pos;      /* byte offset inside the current chunk */
	uint64_t chunk_seq; /* its header's first_seq: the short forms' seq base */
	uint64_t last_seq; /* to spot a stream that goes backwards */
	uint64_t next_seq; /* seq of the record the cursor stands on */
	const uint8_t *peeked; /* that record once validated, until the cursor moves */
	uint64_t peeked_off;
	const uint8_t *peeked_seen; /* following: the last record checked against the order */
	struct pending_def *defs; /* definitions between the last record delivered and the cursor */
	size_t ndefs, defs_cap;
	bool done;
	bool waiting; /* following: the cursor stands on a record not committed yet */
	bool in_heap; /* following */
	/* Following: a second cursor, ahead of the first, that only notes the
	 * seqs of the records committed so far (see scout_stream). */
	size_t scout_at;
	uint64_t scout_pos;
	uint64_t scout_chunk_seq;
	bool scout_stuck; /* met a record it cannot size: left to the first cursor */
};


void htr_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static const char *header_problem(const struct htr_file_header *hp, char *buf, size_t buflen);
static int new_raw_reader(struct htr_reader **out, const char *path, int fd, const uint8_t *map,
			  uint64_t map_len, const struct htr_file_header *hp, char *err, size_t errlen);

int htr_reader_open(struct htr_reader **out, const char *path, char *err, size_t errlen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		htr_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		htr_set_err(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		htr_set_err(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	char magic[8] = {0};
	if (pread(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
	    memcmp(magic, HTR_PACK_MAGIC, sizeof(magic)) == 0) {
		struct htr_reader *r = calloc(1, sizeof(*r));
		if (r == NULL || (r->path = strdup(path)) == NULL) {
			free(r);
			close(fd);
			htr_set_err(err, errlen, "%s: out of memory", path);
			return -1;
		}
		if (htr_packed_open(r, fd, err, errlen) != 0) {
			free(r->path);
			free(r);
			return -1; /* htr_packed_open closed fd */
		}
		*out = r;
		return 0;
	}
	if ((uint64_t)st.st_size < sizeof(struct htr_file_header)) {
		htr_set_err(err, errlen, "%s: %lld bytes, too short for a heaptrail trace header (%zu bytes)", path,
			(long long)st.st_size, sizeof(struct htr_file_header));
		close(fd);
		return -1;
	}
	const uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		close(fd);
		htr_set_err(err, errlen, "%s: cannot map: %s", path, strerror(errno));
		return -1;
	}
	madvise((void *)map, (size_t)st.st_size, MADV_SEQUENTIAL);

	struct htr_file_header h;
	memcpy(&h, map, sizeof(h));
	char buf[160];
	const char *why = header_problem(&h, buf, sizeof(buf));
	if (why != NULL) {
		htr_set_err(err, errlen, "%s: %s", path, why);
		munmap((void *)map, (size_t)st.st_size);
		close(fd);
		return -1;
	}
	return new_raw_reader(out, path, fd, map, (uint64_t)st.st_size, &h, err, errlen);
}

/* Why a raw trace's header cannot be read, or NULL. */
static const char *header_problem(const struct htr_file_header *hp, char *buf, size_t buflen)
{
	struct htr_file_header h = *hp;
	const char *why = NULL;
	if (memcmp(h.magic, HTR_TRACE_MAGIC, sizeof(h.magic)) != 0) {
		why = "not a heaptrail trace (bad magic at offset 0)";
	} else if (h.version_major != HTR_TRACE_VERSION_MAJOR && h.version_major != 1) {
		/* 2 only added record types (the short forms) to 1 */
		snprintf(buf, buflen, "trace format version %u.%u; this reader reads version %u.x",
			 h.version_major, h.version_minor, HTR_TRACE_VERSION_MAJOR);
		why = buf;
	} else if (h.header_size != HTR_FILE_HEADER_SIZE || h.pointer_size != 8 || h.big_endian != 0) {
		why = "header at offset 0 is corrupt (size, pointer size or byte order)";
	} else if (h.chunk_size < 4096 || h.chunk_size % 8 != 0 || h.chunk_size > (1u << 30)) {
		snprintf(buf, buflen, "header at offset 0 is corrupt (chunk size %u)", h.chunk_size);
		why = buf;
	}
	return why;
}

/* Takes fd and the mapping of map_len bytes, also on failure. */
static int new_raw_reader(struct htr_reader **out, const char *path, int fd, const uint8_t *map,
			  uint64_t map_len, const struct htr_file_header *hp, char *err, size_t errlen)
{
	struct htr_file_header h = *hp;
	struct htr_reader *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->path = strdup(path)) == NULL) {
		free(r);
		munmap((void *)map, (size_t)map_len);
		close(fd);
		htr_set_err(err, errlen, "%s: out of memory", path);
		return -1;
	}
	r->fd = fd;
	r->pidfd = -1;
	r->map = map;
	r->map_len = map_len;
	r->size = map_len;
	r->header = h;
	r->chunk_size = h.chunk_size;
	uint64_t body = r->size - HTR_FILE_HEADER_SIZE;
	r->nchunks = (body + r->chunk_size - 1) / r->chunk_size;
	*out = r;
	return 0;
}

const struct htr_file_header *htr_reader_header(const struct htr_reader *reader)
{
	return &reader->header;
}

void htr_reader_close(struct htr_reader *reader)
{
	if (reader == NULL)
		return;
	for (size_t i = 0; i < reader->nthreads; i++) {
		free(reader->threads[i].chunks);
		free(reader->threads[i].defs);
	}
	free(reader->threads);
	free(reader->heap);
	free(reader->assumed);
	free(reader->pending);
	free(reader->seen);
	if (reader->follow && reader->pidfd >= 0)
		close(reader->pidfd);
	if (reader->packed != NULL) {
		htr_packed_close(reader);
	} else {
		munmap((void *)reader->map, (size_t)reader->map_len);
		close(reader->fd);
	}
	free(reader->path);
	free(reader);
}

static uint64_t chunk_offset(const struct htr_reader *r, uint64_t chunk)
{
	return HTR_FILE_HEADER_SIZE + chunk * r->chunk_size;
}

/* Bytes of a chunk that are present in the file. */
static uint64_t chunk_len(const struct htr_reader *r, uint64_t chunk)
{
	uint64_t off = chunk_offset(r, chunk);
	uint64_t left = r->size - off;
	return left < r->chunk_size ? left : r->chunk_size;
}

int htr_emit_notice(struct htr_reader *r, htr_event_sink sink, void *ctx, uint8_t type, uint8_t kind,
		    uint64_t offset, const char *fmt, ...)
{
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	struct htr_event ev = {0};
	ev.type = type;
	ev.kind = kind;
	ev.offset = offset;
	ev.time_ns = r->time_ns;
	ev.text = text;
	return sink(ctx, &ev);
}

static struct thread_stream *stream_for(struct htr_reader *r, uint32_t thread_index)
{
	for (size_t i = 0; i < r->nthreads; i++)
		if (r->threads[i].thread_index == thread_index)
			return &r->threads[i];
	struct thread_stream *grown = realloc(r->threads, (r->nthreads + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	r->threads = grown;
	struct thread_stream *s = &r->threads[r->nthreads++];
	memset(s, 0, sizeof(*s));
	s->thread_index = thread_index;
	return s;
}

/* Appends x to the growable array *v of *n entries (room for *cap),
 * doubling it from first_cap; false when out of memory. */
static bool u64_append(uint64_t **v, size_t *n, size_t *cap, size_t first_cap, uint64_t x)
{
	if (*n == *cap) {
		size_t grown_cap = *cap ? *cap * 2 : first_cap;
		uint64_t *grown = realloc(*v, grown_cap * sizeof(*grown));
		if (grown == NULL)
			return false;
		*v = grown;
		*cap = grown_cap;
	}
	(*v)[(*n)++] = x;
	return true;
}

/* Appends chunk c to its thread's list; false when out of memory. */
static bool add_chunk(struct htr_reader *r, uint32_t thread_index, uint64_t c)
{
	struct thread_stream *s = stream_for(r, thread_index);
	if (s == NULL)
		return false;
	return u64_append(&s->chunks, &s->nchunks, &s->cap, 8, c);
}

/* Sorts chunks into per-thread lists; reports chunks that are neither unused
 * nor valid. */
static int scan_chunks(struct htr_reader *r, htr_event_sink sink, void *ctx)
{
	for (uint64_t c = 0; c < r->nchunks; c++) {
		uint64_t off = chunk_offset(r, c);
		if (chunk_len(r, c) < sizeof(struct htr_chunk_header)) {
			r->saw_short = true;
			continue;
		}
		/* Read, not touched through the mapping: a touch maps the pages
		 * around it too, and the scan would make the whole trace
		 * resident before reading starts. */
		struct htr_chunk_header ch;
		if (pread(r->fd, &ch, sizeof(ch), (off_t)off) != (ssize_t)sizeof(ch))
			memset(&ch, 0, sizeof(ch));
		if (ch.magic == 0)
			continue;
		if (ch.magic != HTR_CHUNK_MAGIC || ch.chunk_index != c) {
			int rc = htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off,
					     "chunk %" PRIu64 " at offset %" PRIu64 " has a corrupt header; skipped",
					     c, off);
			if (rc != 0)
				return rc;
			continue;
		}
		if (!add_chunk(r, ch.thread_index, c))
			return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off, "out of memory");
	}
	return 0;
}

/* What the scout needs of a record type, in one load: how it carries its
 * seq (see seq_in_chunk; 0: none, a definition or an unknown type), and
 * its least valid size less 8 (fixed_sizes, at least the header's 8). */
enum { SEQ_LONG = 1, SEQ_SHORT = 2 };
struct scout_type {
	uint8_t form;
	uint8_t min_less_8;
};
static const struct scout_type scout_types[256] = {
	[HTR_REC_ALLOC] = {SEQ_LONG, sizeof(struct htr_rec_alloc) - 8},
	[HTR_REC_FREE] = {SEQ_LONG, sizeof(struct htr_rec_free) - 8},
	[HTR_REC_REALLOC] = {SEQ_LONG, sizeof(struct htr_rec_realloc) - 8},
	[HTR_REC_MISUSE] = {SEQ_LONG, sizeof(struct htr_rec_misuse) - 8},
	[HTR_REC_STACK] = {0, sizeof(struct htr_rec_stack) - 8},
	[HTR_REC_SITE] = {0, sizeof(struct htr_rec_site) - 8},
	[HTR_REC_MARKER] = {SEQ_LONG, sizeof(struct htr_rec_marker) - 8},
	[HTR_REC_MODULE] = {SEQ_LONG, sizeof(struct htr_rec_module) - 8},
	[HTR_REC_THREAD] = {SEQ_LONG, sizeof(struct htr_rec_thread) - 8},
	[HTR_REC_PROCESS] = {SEQ_LONG, sizeof(struct htr_rec_process) - 8},
	[HTR_REC_FORK] = {SEQ_LONG, sizeof(struct htr_rec_fork) - 8},
	[HTR_REC_TIME] = {SEQ_LONG, sizeof(struct htr_rec_time) - 8},
	[HTR_REC_DROPS] = {SEQ_LONG, sizeof(struct htr_rec_drops) - 8},
	[HTR_REC_END] = {SEQ_LONG, sizeof(struct htr_rec_end) - 8},
	[HTR_REC_PERSIST] = {SEQ_LONG, sizeof(struct htr_rec_persist) - 8},
	[HTR_REC_ALLOC_SHORT] = {SEQ_SHORT, sizeof(struct htr_rec_alloc_short) - 8},
	[HTR_REC_FREE_SHORT] = {SEQ_SHORT, sizeof(struct htr_rec_free_short) - 8},
	[HTR_REC_REALLOC_SHORT] = {SEQ_SHORT, sizeof(struct htr_rec_realloc_short) - 8},
};

/* The fixed sizes of the types drain_hot takes, 0 for the others: one
 * load tells both ((b): 1.691 -> 1.685 G instructions). */
static const uint8_t hot_sizes[256] = {
	[HTR_REC_ALLOC] = sizeof(struct htr_rec_alloc),
	[HTR_REC_FREE] = sizeof(struct htr_rec_free),
	[HTR_REC_REALLOC] = sizeof(struct htr_rec_realloc),
	[HTR_REC_ALLOC_SHORT] = sizeof(struct htr_rec_alloc_short),
	[HTR_REC_FREE_SHORT] = sizeof(struct htr_rec_free_short),
	[HTR_REC_REALLOC_SHORT] = sizeof(struct htr_rec_realloc_short),
};

/* Fixed part of each record type; 0 for a type this reader does not know.
 * A table, not a switch: it is consulted for every record. */
static const uint16_t fixed_sizes[256] = {
	[HTR_REC_ALLOC] = sizeof(struct htr_rec_alloc),
	[HTR_REC_FREE] = sizeof(struct htr_rec_free),
	[HTR_REC_REALLOC] = sizeof(struct htr_rec_realloc),
	[HTR_REC_MISUSE] = sizeof(struct htr_rec_misuse),
	[HTR_REC_STACK] = sizeof(struct htr_rec_stack),
	[HTR_REC_SITE] = sizeof(struct htr_rec_site),
	[HTR_REC_MARKER] = sizeof(struct htr_rec_marker),
	[HTR_REC_MODULE] = sizeof(struct htr_rec_module),
	[HTR_REC_THREAD] = sizeof(struct htr_rec_thread),
	[HTR_REC_PROCESS] = sizeof(struct htr_rec_process),
	[HTR_REC_FORK] = sizeof(struct htr_rec_fork),
	[HTR_REC_TIME] = sizeof(struct htr_rec_time),
	[HTR_REC_DROPS] = sizeof(struct htr_rec_drops),
	[HTR_REC_END] = sizeof(struct htr_rec_end),
	[HTR_REC_PERSIST] = sizeof(struct htr_rec_persist),
	[HTR_REC_ALLOC_SHORT] = sizeof(struct htr_rec_alloc_short),
	[HTR_REC_FREE_SHORT] = sizeof(struct htr_rec_free_short),
	[HTR_REC_REALLOC_SHORT] = sizeof(struct htr_rec_realloc_short),
};

size_t htr_record_fixed_size(uint8_t type)
{
	return fixed_sizes[type];
}

static bool has_seq(uint8_t type)
{
	return type != HTR_REC_STACK && type != HTR_REC_SITE && fixed_sizes[type] != 0;
}

static bool is_short(uint8_t type)
{
	return type == HTR_REC_ALLOC_SHORT || type == HTR_REC_FREE_SHORT || type == HTR_REC_REALLOC_SHORT;
}

/* All records with a seq keep it at offset 8; the short forms keep an
 * offset from their chunk's first_seq there. */
static uint64_t seq_in_chunk(const uint8_t *rec, uint64_t chunk_seq)
{
	uint64_t seq;
	memcpy(&seq, rec + 8, sizeof(seq));
	return is_short(rec[0]) ? htr_short_seq(seq, chunk_seq) : seq;
}

static uint64_t record_seq(const struct thread_stream *s, const uint8_t *rec)
{
	return seq_in_chunk(rec, s->chunk_seq);
}

/* The string payload after a fixed part must end with a NUL inside the
 * record. */
static const char *record_string(const uint8_t *rec, size_t fixed, size_t size)
{
	const char *s = (const char *)rec + fixed;
	if (fixed >= size || memchr(s, '\0', size - fixed) == NULL)
		return NULL;
	return s;
}

/* CURSOR_WAIT: following, and the cursor stands where the next record is
 * not committed yet. */
enum cursor_result { CURSOR_RECORD, CURSOR_END, CURSOR_CORRUPT, CURSOR_WAIT };

/* Following: a zero word in a chunk its thread has left is taken for the
 * chunk's end, and looked at again once the process has ended (a slot the
 * thread reserved before it moved on, the FORK record, is filled later). */
static void assume_end(struct htr_reader *r, uint64_t off)
{
	if (!u64_append(&r->assumed, &r->nassumed, &r->assumed_cap, 64, off))
		r->violated = true;
}

/* Validates the record under the cursor. */
static enum cursor_result peek(struct htr_reader *r, struct thread_stream *s, const uint8_t **rec_out,
			       uint64_t *offset_out)
{
	if (s->peeked != NULL) {
		*rec_out = s->peeked;
		*offset_out = s->peeked_off;
		return CURSOR_RECORD;
	}
	while (s->chunk_at < s->nchunks) {
		uint64_t c = s->chunks[s->chunk_at];
		uint64_t len = chunk_len(r, c);
		if (s->pos == 0) {
			struct htr_chunk_header ch;
			memcpy(&ch, r->map + chunk_offset(r, c), sizeof(ch));
			s->chunk_seq = ch.first_seq;
			s->pos = sizeof(struct htr_chunk_header);
		}
		uint64_t off = chunk_offset(r, c) + s->pos;
		*offset_out = off;
		if (s->pos + sizeof(struct htr_rec_header) > len) {
			/* At a clean exit the recorder cuts the file after the
			 * last record; anywhere else a partial chunk was cut. */
			if (len < r->chunk_size && r->header.state != HTR_STATE_CLEAN_EXIT)
				r->saw_short = true;
			goto next_chunk;
		}
		const uint8_t *rec = r->map + off;
		/* Acquire: the writer stores this word last (commit protocol). */
		uint32_t word = __atomic_load_n((const uint32_t *)(const void *)rec, __ATOMIC_ACQUIRE);
		if (word == 0) {
			if (r->follow && !r->final) {
				if (s->chunk_at + 1 == s->nchunks)
					return CURSOR_WAIT;
				assume_end(r, off);
			}
			goto next_chunk;
		}
		struct htr_rec_header h;
		memcpy(&h, &word, sizeof(h));
		if (h.size < sizeof(struct htr_rec_header) * 2 || h.size % 8 != 0)
			return CURSOR_CORRUPT;
		if (s->pos + h.size > len) {
			if (len < r->chunk_size) {
				r->saw_short = true;
				goto next_chunk;
			}
			return CURSOR_CORRUPT;
		}
		size_t fixed = fixed_sizes[h.type];
		if (fixed != 0 && h.size < fixed)
			return CURSOR_CORRUPT;
		*rec_out = rec;
		s->peeked = rec;
		s->peeked_off = off;
		return CURSOR_RECORD;
next_chunk:
		/* Read for good: its pages leave this process, so resident memory
		 * follows the threads' current chunks, not the trace's length. */
		madvise((void *)(r->map + (chunk_offset(r, c) & ~(uint64_t)4095)), (size_t)len, MADV_DONTNEED);
		s->chunk_at++;
		s->pos = 0;
	}
	return r->follow && !r->final ? CURSOR_WAIT : CURSOR_END;
}

static void advance(struct thread_stream *s, const uint8_t *rec)
{
	struct htr_rec_header h;
	memcpy(&h, rec, sizeof(h));
	s->pos += h.size;
	s->peeked = NULL;
}

static void skip_chunk(struct thread_stream *s)
{
	s->chunk_at++;
	s->pos = 0;
	s->peeked = NULL;
}

/* Fills ev from one record. Returns false when the record's payload is
 * inconsistent (a string without its NUL, a depth past the record). */
bool htr_record_decode(struct htr_reader *r, const uint8_t *rec, uint32_t thread, struct htr_event *ev)
{
	struct htr_rec_header h;
	memcpy(&h, rec, sizeof(h));
	bool hot = h.type == HTR_REC_ALLOC || h.type == HTR_REC_FREE || h.type == HTR_REC_REALLOC ||
		   is_short(h.type);
	if (!(hot && ev == &r->ev && r->ev_clean))
		*ev = (struct htr_event){0};
	if (ev == &r->ev)
		r->ev_clean = hot;
	ev->thread = thread;
	ev->time_ns = r->time_ns;
	switch (h.type) {
	case HTR_REC_ALLOC: {
		const struct htr_rec_alloc *a = (const void *)rec;
		ev->type = HTR_EV_ALLOC;
		ev->call = h.kind;
		ev->seq = a->seq;
		ev->ptr = a->ptr;
		ev->ptr2 = 0;
		ev->size = a->size;
		ev->stack = a->stack;
		ev->site = a->site;
		ev->alignment = a->alignment;
		return true;
	}
	case HTR_REC_FREE: {
		const struct htr_rec_free *f = (const void *)rec;
		ev->type = HTR_EV_FREE;
		ev->call = h.kind;
		ev->seq = f->seq;
		ev->ptr = f->ptr;
		ev->ptr2 = 0;
		ev->size = 0;
		ev->stack = f->stack;
		ev->site = f->site;
		ev->alignment = 0;
		return true;
	}
	/* The short forms' seq is left as the offset from the chunk's
	 * first_seq, which only the stream knows: drain_stream adds it. (A
	 * packed trace never holds them: they pack as ALLOC, FREE and REALLOC.) */
	case HTR_REC_ALLOC_SHORT: {
		const struct htr_rec_alloc_short *a = (const void *)rec;
		ev->type = HTR_EV_ALLOC;
		ev->call = h.kind;
		ev->seq = htr_short_seq(a->ptr_seq, 0);
		ev->ptr = htr_short_ptr(a->ptr_seq);
		ev->ptr2 = 0;
		ev->size = a->size;
		ev->stack = a->stack;
		ev->site = 0;
		ev->alignment = 0;
		return true;
	}
	case HTR_REC_FREE_SHORT: {
		const struct htr_rec_free_short *f = (const void *)rec;
		ev->type = HTR_EV_FREE;
		ev->call = h.kind;
		ev->seq = htr_short_seq(f->ptr_seq, 0);
		ev->ptr = htr_short_ptr(f->ptr_seq);
		ev->ptr2 = 0;
		ev->size = 0;
		ev->stack = f->stack;
		ev->site = 0;
		ev->alignment = 0;
		return true;
	}
	case HTR_REC_REALLOC_SHORT: {
		const struct htr_rec_realloc_short *a = (const void *)rec;
		ev->type = HTR_EV_REALLOC;
		ev->call = h.kind;
		ev->seq = htr_short_seq(a->ptr_seq, 0);
		ev->ptr = htr_short_ptr(a->ptr_seq);
		ev->ptr2 = a->new_ptr;
		ev->size = a->size;
		ev->stack = a->stack;
		ev->site = 0;
		ev->alignment = 0;
		return true;
	}
	case HTR_REC_REALLOC: {
		const struct htr_rec_realloc *a = (const void *)rec;
		ev->type = HTR_EV_REALLOC;
		ev->call = h.kind;
		ev->seq = a->seq;
		ev->ptr = a->old_ptr;
		ev->ptr2 = a->new_ptr;
		ev->size = a->size;
		ev->stack = a->stack;
		ev->site = a->site;
		ev->alignment = 0;
		return true;
	}
	case HTR_REC_MISUSE: {
		const struct htr_rec_misuse *m = (const void *)rec;
		ev->type = HTR_EV_MISUSE;
		ev->kind = h.kind;
		ev->seq = m->seq;
		ev->ptr = m->ptr;
		ev->size = m->size;
		ev->stack = m->stack;
		ev->site = m->site;
		ev->alloc_stack = m->alloc_stack;
		ev->alloc_site = m->alloc_site;
		ev->free_stack = m->free_stack;
		ev->free_site = m->free_site;
		ev->call = m->call;
		ev->alloc_call = m->alloc_call;
		return true;
	}
	case HTR_REC_STACK: {
		const struct htr_rec_stack *st = (const void *)rec;
		if (st->depth > HTR_MAX_DEPTH || sizeof(*st) + (uint64_t)st->depth * 8 > h.size)
			return false;
		ev->type = HTR_EV_STACK;
		ev->id = st->id;
		ev->depth = st->depth;
		ev->frames = (const uint64_t *)(rec + sizeof(*st));
		return true;
	}
	case HTR_REC_SITE: {
		const struct htr_rec_site *si = (const void *)rec;
		ev->type = HTR_EV_SITE;
		ev->id = si->id;
		ev->line = si->line;
		ev->text = record_string(rec, sizeof(*si), h.size);
		return ev->text != NULL;
	}
	case HTR_REC_MARKER: {
		const struct htr_rec_marker *m = (const void *)rec;
		ev->type = HTR_EV_MARKER;
		ev->seq = m->seq;
		ev->text = record_string(rec, sizeof(*m), h.size);
		return ev->text != NULL;
	}
	case HTR_REC_MODULE: {
		const struct htr_rec_module *m = (const void *)rec;
		if (m->build_id_size > HTR_BUILD_ID_MAX)
			return false;
		ev->type = HTR_EV_MODULE;
		ev->kind = h.kind;
		ev->seq = m->seq;
		ev->base = m->base;
		ev->start = m->start;
		ev->end = m->end;
		ev->build_id_size = m->build_id_size;
		ev->build_id = m->build_id;
		ev->text = record_string(rec, sizeof(*m), h.size);
		return ev->text != NULL;
	}
	case HTR_REC_THREAD: {
		const struct htr_rec_thread *t = (const void *)rec;
		ev->type = HTR_EV_THREAD;
		ev->kind = h.kind;
		ev->seq = t->seq;
		ev->thread = t->thread_index;
		ev->tid = t->tid;
		return true;
	}
	case HTR_REC_PROCESS: {
		const struct htr_rec_process *p = (const void *)rec;
		ev->type = HTR_EV_PROCESS;
		ev->kind = h.kind;
		ev->seq = p->seq;
		ev->tid = p->pid;
		ev->ptr = p->pid;
		ev->ptr2 = p->ppid;
		ev->argc = p->argc;
		ev->text = record_string(rec, sizeof(*p), h.size);
		if (ev->text == NULL)
			return false;
		/* Each argument must end inside the record too. */
		const char *cursor = ev->text + strlen(ev->text) + 1;
		const char *limit = (const char *)rec + h.size;
		ev->args = cursor;
		for (uint32_t i = 0; i < p->argc; i++) {
			const char *nul = cursor < limit ? memchr(cursor, '\0', (size_t)(limit - cursor)) : NULL;
			if (nul == NULL)
				return false;
			cursor = nul + 1;
		}
		return true;
	}
	case HTR_REC_FORK: {
		const struct htr_rec_fork *f = (const void *)rec;
		ev->type = HTR_EV_FORK;
		ev->seq = f->seq;
		ev->tid = f->child_pid;
		return true;
	}
	case HTR_REC_TIME: {
		const struct htr_rec_time *t = (const void *)rec;
		ev->type = HTR_EV_TIME;
		ev->seq = t->seq;
		if (t->monotonic_ns > r->time_ns)
			r->time_ns = t->monotonic_ns;
		ev->time_ns = t->monotonic_ns;
		return true;
	}
	case HTR_REC_DROPS: {
		const struct htr_rec_drops *d = (const void *)rec;
		ev->type = HTR_EV_LOSS;
		ev->kind = h.kind;
		ev->seq = d->seq;
		ev->count = d->count;
		r->drops_seen += d->count;
		return true;
	}
	case HTR_REC_END: {
		const struct htr_rec_end *e = (const void *)rec;
		ev->type = HTR_EV_END;
		ev->kind = h.kind;
		ev->seq = e->seq;
		ev->size = e->status;
		r->saw_end = true;
		return true;
	}
	case HTR_REC_PERSIST: {
		const struct htr_rec_persist *p = (const void *)rec;
		ev->type = HTR_EV_PERSIST;
		ev->seq = p->seq;
		ev->ptr = p->ptr;
		return true;
	}
	default:
		return false;
	}
}

/* Decodes and delivers one record the cursor has passed. */
static int deliver(struct htr_reader *r, struct thread_stream *s, const uint8_t *rec, uint64_t off,
		   htr_event_sink sink, void *ctx)
{
	struct htr_event *ev = &r->ev;
	if (!htr_record_decode(r, rec, s->thread_index, ev))
		return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off,
				       "corrupt record at offset %" PRIu64 " (thread %u); skipped", off, s->thread_index);
	ev->offset = off;
	if (is_short(rec[0]))
		ev->seq += s->chunk_seq; /* decoded as the offset: see htr_record_decode */
	if (ev->seq != 0) {
		if (ev->seq < s->last_seq) {
			int rc = htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off,
						 "record at offset %" PRIu64 " goes back in sequence", off);
			if (rc != 0)
				return rc;
		}
		s->last_seq = ev->seq;
		r->emitted_seq = ev->seq;
	}
	return r->record_hook ? r->record_hook(r->hook_ctx, ev, rec) : sink(ctx, ev);
}

/* Delivers the definitions read ahead of the stream's next record. */
static int deliver_defs(struct htr_reader *r, struct thread_stream *s, htr_event_sink sink, void *ctx)
{
	size_t n = s->ndefs;
	s->ndefs = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = deliver(r, s, s->defs[i].rec, s->defs[i].off, sink, ctx);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static bool keep_def(struct thread_stream *s, const uint8_t *rec, uint64_t off)
{
	if (s->ndefs == s->defs_cap) {
		size_t cap = s->defs_cap ? s->defs_cap * 2 : 8;
		struct pending_def *grown = realloc(s->defs, cap * sizeof(*grown));
		if (grown == NULL)
			return false;
		s->defs = grown;
		s->defs_cap = cap;
	}
	s->defs[s->ndefs++] = (struct pending_def){rec, off};
	return true;
}

/* Delivers records from the cursor on, up to the first sequenced one whose
 * seq is above limit, which is left in s->next_seq. The merge drains the
 * stream with the smallest next seq, with limit the runner-up's: one call
 * delivers a whole run of this thread's records, and a single-threaded
 * trace is one call. limit 0 only reads ahead to the thread's first
 * sequenced record.
 *
 * Definitions (no seq) are delivered right before the sequenced record
 * that follows them in their thread, and those at the end of a thread after
 * every sequenced record: a definition then never waits for a record of its
 * thread that may still be written, which is what lets a follower deliver
 * events while the threads run, in the same order as a reader of the
 * finished trace. */
/* drain_stream's loop for the records nearly every event is: ALLOC, FREE
 * and REALLOC, long or short, inside the chunk the cursor is in, with no
 * definition waiting. It takes the same steps as peek, deliver and
 * htr_record_decode in fewer instructions, the chunk's bounds read once and
 * the event filled for its type alone; anything else (a chunk's end, a zero
 * word, another type, a seq that goes back or is 0) is left where it
 * stands for the general loop. Packing: (b) 2.08 -> 1.90 G instructions,
 * (a) 1.71 -> 1.38, (d) 2.03 -> 1.69. The merge calls it first, inline,
 * and drain_stream only when it stops elsewhere than at a higher seq: a
 * thread switch then costs no call ((b) 1.685 -> 1.637 G, and the sift
 * inline 1.627). Returns true when drain_stream would return *rc. */
static inline __attribute__((always_inline)) bool drain_hot(struct htr_reader *r, struct thread_stream *s,
                                                           htr_event_sink sink, void *ctx, uint64_t limit,
                                                           int *rc)
{
	/* A record peeked is the one at the cursor, validated already: the
	 * merge leaves one so in every stream it switches away from ((b):
	 * 1.90 -> 1.82 G instructions). */
	if (s->pos == 0 || s->ndefs != 0 || s->chunk_at >= s->nchunks)
		return false;
	s->peeked = NULL; /* the record is found again at the cursor */
	/* The cursor's position and the mapping in registers across the
	 * sink's calls, the position stored for each record, never loaded
	 * ((b): 1.605 -> 1.599 G instructions; more of the stream's fields
	 * kept so spilled, 1.644). */
	uint64_t c = s->chunks[s->chunk_at];
	uint64_t len = chunk_len(r, c), base = chunk_offset(r, c), pos = s->pos;
	const uint8_t *map = r->map;
	struct htr_event *ev = &r->ev;
	if (!r->ev_clean) {
		*ev = (struct htr_event){0};
		r->ev_clean = true;
	}
	/* The same for every record here, and a sink cannot change them:
	 * stored once ((b): 1.557 -> 1.548 G instructions). */
	ev->thread = s->thread_index;
	ev->time_ns = r->time_ns;
	while (pos + sizeof(struct htr_rec_header) <= len) {
		uint64_t off = base + pos;
		const uint8_t *rec = map + off;
		uint32_t word = __atomic_load_n((const uint32_t *)(const void *)rec, __ATOMIC_ACQUIRE);
		struct htr_rec_header h;
		memcpy(&h, &word, sizeof(h));
		unsigned fixed = hot_sizes[h.type];
		if (fixed == 0 || h.size < fixed || h.size % 8 != 0 || pos + h.size > len)
			return false;
		uint64_t seq;
		memcpy(&seq, rec + 8, sizeof(seq));
		if (h.type >= HTR_REC_ALLOC_SHORT)
			seq = htr_short_seq(seq, s->chunk_seq);
		if (r->follow && s->peeked_seen != rec) {
			s->peeked_seen = rec;
			if ((seq <= r->emitted_seq && r->emitted_seq != 0) || seq < s->last_seq) {
				r->violated = true;
				*rc = 0;
				return true;
			}
			if (seq > r->max_seq)
				r->max_seq = seq;
		}
		if (seq > limit) {
			s->peeked = rec;
			s->peeked_off = off;
			s->next_seq = seq;
			*rc = 0;
			return true;
		}
		if (seq == 0 || seq < s->last_seq)
			return false;
		pos += h.size;
		s->pos = pos;
		ev->call = h.kind;
		ev->seq = seq;
		ev->offset = off;
		ev->site = 0;
		ev->alignment = 0;
		ev->ptr2 = 0;
		ev->size = 0;
		/* The short ALLOC and FREE, nearly every record, tested before
		 * the jump table ((b): 1.546 -> 1.530 G instructions, (a) and (d)
		 * -16 M). */
		if (h.type == HTR_REC_ALLOC_SHORT) {
			const struct htr_rec_alloc_short *a = (const void *)rec;
			ev->type = HTR_EV_ALLOC;
			ev->ptr = htr_short_ptr(a->ptr_seq);
			ev->size = a->size;
			ev->stack = a->stack;
		} else if (h.type == HTR_REC_FREE_SHORT) {
			const struct htr_rec_free_short *f = (const void *)rec;
			ev->type = HTR_EV_FREE;
			ev->ptr = htr_short_ptr(f->ptr_seq);
			ev->stack = f->stack;
		} else {
			switch (h.type) {
			case HTR_REC_REALLOC_SHORT: {
				const struct htr_rec_realloc_short *a = (const void *)rec;
				ev->type = HTR_EV_REALLOC;
				ev->ptr = htr_short_ptr(a->ptr_seq);
				ev->ptr2 = a->new_ptr;
				ev->size = a->size;
				ev->stack = a->stack;
				break;
			}
			case HTR_REC_ALLOC: {
				const struct htr_rec_alloc *a = (const void *)rec;
				ev->type = HTR_EV_ALLOC;
				ev->ptr = a->ptr;
				ev->size = a->size;
				ev->stack = a->stack;
				ev->site = a->site;
				ev->alignment = a->alignment;
				break;
			}
			case HTR_REC_FREE: {
				const struct htr_rec_free *f = (const void *)rec;
				ev->type = HTR_EV_FREE;
				ev->ptr = f->ptr;
				ev->stack = f->stack;
				ev->site = f->site;
				break;
			}
			default: {
				const struct htr_rec_realloc *a = (const void *)rec;
				ev->type = HTR_EV_REALLOC;
				ev->ptr = a->old_ptr;
				ev->ptr2 = a->new_ptr;
				ev->size = a->size;
				ev->stack = a->stack;
				ev->site = a->site;
				break;
			}
			}
		}
		s->last_seq = seq;
		r->emitted_seq = seq;
		int hrc = r->record_hook ? r->record_hook(r->hook_ctx, ev, rec) : sink(ctx, ev);
		if (hrc != 0) {
			*rc = hrc;
			return true;
		}
	}
	return false;
}

static int drain_stream(struct htr_reader *r, struct thread_stream *s, htr_event_sink sink, void *ctx,
			uint64_t limit)
{
	for (;;) {
		int hot_rc;
		if (drain_hot(r, s, sink, ctx, limit, &hot_rc))
			return hot_rc;
		const uint8_t *rec = NULL;
		uint64_t off = 0;
		enum cursor_result cr = peek(r, s, &rec, &off);
		if (cr == CURSOR_WAIT) {
			s->waiting = true;
			return 0;
		}
		if (cr == CURSOR_END) {
			s->done = true;
			return 0;
		}
		if (cr == CURSOR_CORRUPT) {
			if (r->follow) {
				/* Where a follower meets it is not where a reader
				 * of the finished file reports it. */
				r->violated = true;
				return 0;
			}
			int rc = deliver_defs(r, s, sink, ctx);
			if (rc == 0)
				rc = htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off,
						     "corrupt record at offset %" PRIu64 " (thread %u); rest of its chunk skipped",
						     off, s->thread_index);
			if (rc != 0)
				return rc;
			skip_chunk(s);
			continue;
		}
		uint8_t type = rec[0];
		if (fixed_sizes[type] == 0) {
			advance(s, rec); /* a record type from a newer minor version */
			continue;
		}
		if (!has_seq(type)) {
			if (!keep_def(s, rec, off))
				return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off, "out of memory");
			advance(s, rec);
			continue;
		}
		uint64_t seq = record_seq(s, rec);
		if (r->follow && s->peeked_seen != rec) {
			/* First sight of this record: it must sort after all that
			 * was delivered, and after its own thread's last. */
			s->peeked_seen = rec;
			if ((seq <= r->emitted_seq && r->emitted_seq != 0) || seq < s->last_seq) {
				r->violated = true;
				return 0;
			}
			if (seq > r->max_seq)
				r->max_seq = seq;
		}
		if (seq > limit) {
			s->next_seq = seq;
			return 0;
		}
		int rc = s->ndefs != 0 ? deliver_defs(r, s, sink, ctx) : 0;
		if (rc != 0)
			return rc;
		advance(s, rec);
		rc = deliver(r, s, rec, off, sink, ctx);
		if (rc != 0)
			return rc;
	}
}

/* Min-heap of streams by next_seq. */
static bool heap_less(const struct htr_reader *r, size_t a, size_t b)
{
	return r->heap[a].next_seq < r->heap[b].next_seq;
}

static void heap_swap(struct htr_reader *r, size_t a, size_t b)
{
	struct merge_slot t = r->heap[a];
	r->heap[a] = r->heap[b];
	r->heap[b] = t;
}

/* The entry at i moves down as a hole, each smaller child up a level, and
 * is stored once where it stops: no swaps, and the entry's key stays in a
 * register ((b): 1.82 -> 1.80 G instructions). The child taken is the one
 * a swapping sift takes, the left on a tie. */
static inline __attribute__((always_inline)) void heap_down(struct htr_reader *r, size_t i)
{
	struct merge_slot *h = r->heap, moving = h[i];
	size_t n = r->heap_len;
	for (;;) {
		size_t l = 2 * i + 1;
		if (l >= n)
			break;
		size_t m = l + (l + 1 < n && h[l + 1].next_seq < h[l].next_seq);
		if (!(h[m].next_seq < moving.next_seq))
			break;
		h[i] = h[m];
		i = m;
	}
	h[i] = moving;
}

static void heap_up(struct htr_reader *r, size_t i)
{
	while (i > 0 && heap_less(r, i, (i - 1) / 2)) {
		heap_swap(r, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static int finish_run(struct htr_reader *r, htr_event_sink sink, void *ctx);

int htr_reader_run(struct htr_reader *r, htr_event_sink sink, void *ctx)
{
	if (r->ran)
		return 0;
	r->ran = true;
	if (r->packed != NULL)
		return htr_packed_run(r, sink, ctx);
	int rc = scan_chunks(r, sink, ctx);
	if (rc != 0)
		return rc;
	r->heap = calloc(r->nthreads + 1, sizeof(*r->heap));
	if (r->heap == NULL)
		return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, 0, "out of memory");

	/* Each thread's cursor onto its first sequenced record. */
	for (size_t i = 0; i < r->nthreads; i++) {
		rc = drain_stream(r, &r->threads[i], sink, ctx, 0);
		if (rc != 0)
			return rc;
		if (!r->threads[i].done) {
			r->heap[r->heap_len++] = (struct merge_slot){r->threads[i].next_seq, i};
			heap_up(r, r->heap_len - 1);
		}
	}
	while (r->heap_len > 0) {
		struct merge_slot top = r->heap[0];
		struct thread_stream *s = &r->threads[top.stream];
		uint64_t limit = UINT64_MAX;
		size_t next = 2 < r->heap_len && r->heap[2].next_seq < r->heap[1].next_seq ? 2 : 1;
		if (r->heap_len > 1)
			limit = r->heap[next].next_seq;
		if (!drain_hot(r, s, sink, ctx, limit, &rc))
			rc = drain_stream(r, s, sink, ctx, limit);
		if (rc != 0)
			return rc;
		if (s->done) {
			r->heap[0] = r->heap[--r->heap_len];
			heap_down(r, 0);
		} else if (r->heap_len > 1) {
			/* The stream stopped above limit, its smaller child's
			 * seq: that child moves up, as the sift's first step
			 * would, and the sift goes on from there ((b): 1.579 ->
			 * 1.563 G instructions). */
			r->heap[0] = r->heap[next];
			r->heap[next] = (struct merge_slot){s->next_seq, top.stream};
			heap_down(r, next);
		} else {
			r->heap[0].next_seq = s->next_seq;
		}
	}
	return finish_run(r, sink, ctx);
}

/* What comes after the last sequenced record: the definitions at the end of
 * each thread, and what the reader has to say about the file as a whole. */
static int finish_run(struct htr_reader *r, htr_event_sink sink, void *ctx)
{
	int rc;
	for (size_t i = 0; i < r->nthreads; i++) {
		rc = deliver_defs(r, &r->threads[i], sink, ctx);
		if (rc != 0)
			return rc;
	}
	uint64_t end_offset = r->size;
	if (r->saw_short) {
		rc = htr_emit_notice(r, sink, ctx, HTR_EV_TRUNCATED, HTR_TRUNC_FILE_SHORT, end_offset,
				 "file ends at offset %" PRIu64 " inside a chunk: it was cut short; events after it are lost",
				 end_offset);
		if (rc != 0)
			return rc;
	}
	if (!r->saw_end) {
		rc = htr_emit_notice(r, sink, ctx, HTR_EV_TRUNCATED, HTR_TRUNC_NO_EXIT, end_offset,
				 "process %u did not exit in order (crash, kill or _exit); events up to its end are complete",
				 r->header.pid);
		if (rc != 0)
			return rc;
	}
	uint64_t dropped = __atomic_load_n(&((const struct htr_file_header *)r->map)->dropped_events,
					   __ATOMIC_RELAXED);
	if (dropped > r->drops_seen) {
		struct htr_event ev = {0};
		ev.type = HTR_EV_LOSS;
		ev.kind = HTR_DROP_OTHER;
		ev.count = dropped - r->drops_seen;
		ev.offset = 0;
		ev.time_ns = r->time_ns;
		rc = sink(ctx, &ev);
	}
	return rc;
}

/* ---- following a trace while it is written ---- */

static bool proc_gone(int pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* comm may hold spaces */
	return p == NULL || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X';
}

/* Whether the process has ended, waiting up to timeout_ms for it. A zombie
 * has ended: its threads write nothing any more. */
static bool follow_gone(struct htr_reader *r, int timeout_ms)
{
	if (r->pidfd >= 0) {
		struct pollfd pfd = {.fd = r->pidfd, .events = POLLIN};
		int n = poll(&pfd, 1, timeout_ms);
		return n > 0 || (n < 0 && errno != EINTR);
	}
	if (proc_gone(r->pid))
		return true;
	if (timeout_ms > 0) {
		struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	return false;
}

static int open_pidfd(int pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

int htr_reader_open_follow(struct htr_reader **out, const char *path, int pid, char *err, size_t errlen)
{
	*out = NULL;
	if (pid <= 0) {
		htr_set_err(err, errlen, "pid %d: not a process id", pid);
		return -1;
	}
	/* The pidfd first: from now on the pid cannot name another process. */
	int pidfd = open_pidfd(pid);
	if (pidfd < 0 && errno != ENOSYS) {
		htr_set_err(err, errlen, "pid %d: %s", pid, errno == ESRCH ? "no such process" : strerror(errno));
		return -1;
	}
	if (pidfd < 0 && proc_gone(pid)) {
		htr_set_err(err, errlen, "pid %d: no such process", pid);
		return -1;
	}
	struct htr_reader probe = {.pidfd = pidfd, .pid = pid};
	int fd = -1;
	struct stat st;
	struct htr_file_header h;
	for (int waited = 0;; waited++) {
		/* Looked at before the file: a process that has ended had written
		 * all it ever will. */
		bool gone = follow_gone(&probe, 0);
		if (fd < 0) {
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 && errno != ENOENT) {
				htr_set_err(err, errlen, "%s: %s", path, strerror(errno));
				goto fail;
			}
		}
		if (fd >= 0) {
			if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
				htr_set_err(err, errlen, "%s: not a regular file", path);
				goto fail;
			}
			/* The recorder stores state last, with release order. */
			if ((uint64_t)st.st_size >= HTR_FILE_HEADER_SIZE &&
			    pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) && h.state != 0)
				break;
		}
		if (gone) {
			htr_set_err(err, errlen, "%s: %s", path,
				    fd < 0 ? "no such file, and the process has ended"
					   : "no trace header, and the process has ended");
			goto fail;
		}
		/* A program that runs untraced (its recorder could not create
		 * the file) is not polled a thousand times a second for ever. */
		follow_gone(&probe, waited < 200 ? 1 : 20);
	}
	char buf[160];
	const char *why = header_problem(&h, buf, sizeof(buf));
	if (why != NULL) {
		htr_set_err(err, errlen, "%s: %s", path, why);
		goto fail;
	}
	if (h.pid != (uint32_t)pid) {
		htr_set_err(err, errlen, "%s: the trace of pid %u, not of pid %d", path, h.pid, pid);
		goto fail;
	}
	/* Mapped far past the file's end, so that it can grow under the
	 * mapping: only chunks the recorder has claimed (and so sized the file
	 * for) are touched. */
	static const uint64_t lens[] = {(uint64_t)64 << 30, (uint64_t)4 << 30, (uint64_t)512 << 20};
	const uint8_t *map = MAP_FAILED;
	uint64_t map_len = 0;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]) && map == MAP_FAILED; i++) {
		map_len = lens[i] > (uint64_t)st.st_size ? lens[i] : (uint64_t)st.st_size;
		map = mmap(NULL, (size_t)map_len, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	}
	if (map == MAP_FAILED) {
		htr_set_err(err, errlen, "%s: cannot map: %s", path, strerror(errno));
		goto fail;
	}
	struct htr_reader *r;
	if (new_raw_reader(&r, path, fd, map, map_len, &h, err, errlen) != 0) {
		if (pidfd >= 0)
			close(pidfd);
		return -1;
	}
	r->size = (uint64_t)st.st_size;
	r->follow = true;
	r->pid = pid;
	r->pidfd = pidfd;
	*out = r;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (pidfd >= 0)
		close(pidfd);
	return -1;
}

static void follow_refresh_size(struct htr_reader *r)
{
	struct stat st;
	if (fstat(r->fd, &st) == 0)
		r->size = (uint64_t)st.st_size;
}

static bool heap_room(struct htr_reader *r)
{
	if (r->heap_cap >= r->nthreads + 1)
		return true;
	size_t cap = r->nthreads + 8;
	struct merge_slot *grown = realloc(r->heap, cap * sizeof(*grown));
	if (grown == NULL)
		return false;
	r->heap = grown;
	r->heap_cap = cap;
	return true;
}

/* Puts chunk c into its thread's list in claim order. A chunk found
 * initialised late (it was claimed but still zero when later ones were
 * read) may belong to a thread whose cursor has gone past its place; the
 * order delivered may then be wrong. */
static bool insert_chunk(struct htr_reader *r, uint32_t thread_index, uint64_t c)
{
	if (!add_chunk(r, thread_index, c) || !heap_room(r))
		return false;
	struct thread_stream *s = stream_for(r, thread_index);
	size_t i = s->nchunks - 1;
	while (i > 0 && s->chunks[i - 1] > c) {
		s->chunks[i] = s->chunks[i - 1];
		i--;
	}
	s->chunks[i] = c;
	if (i + 1 == s->nchunks)
		return true;
	/* The scout's index moved with the chunks: it starts again from the
	 * delivering cursor. */
	s->scout_at = 0;
	s->scout_pos = 0;
	return !(s->chunk_at > i || (s->chunk_at == i && s->pos != 0));
}

/* Whether chunk c holds an initialised header (or, once the process has
 * ended, anything but zero); false with r->violated on a corrupt one. */
static bool take_chunk(struct htr_reader *r, uint64_t c)
{
	uint64_t off = chunk_offset(r, c);
	uint32_t magic = __atomic_load_n((const uint32_t *)(const void *)(r->map + off), __ATOMIC_ACQUIRE);
	if (magic == 0)
		return false;
	struct htr_chunk_header ch;
	memcpy(&ch, r->map + off, sizeof(ch));
	if (ch.magic != HTR_CHUNK_MAGIC || ch.chunk_index != c || !insert_chunk(r, ch.thread_index, c))
		r->violated = true; /* a reader of the finished file reports it in place */
	if (ch.first_seq > r->taken_seq)
		r->taken_seq = ch.first_seq;
	return true;
}

/* Sorts the chunks claimed since the last call into their threads. One
 * claimed but not initialised yet (its thread is mapping it) is looked at
 * again next time; it holds back nothing: its records take their seqs
 * after its header is written. Once the process has ended, every chunk in
 * the file is taken as htr_reader_run takes it. */
static void follow_scan(struct htr_reader *r)
{
	size_t kept = 0;
	for (size_t i = 0; i < r->npending; i++) {
		uint64_t c = r->pending[i];
		if (!take_chunk(r, c) && !r->final)
			r->pending[kept++] = c;
	}
	r->npending = kept;
	uint64_t claimed = r->nchunks;
	if (!r->final)
		claimed = __atomic_load_n(&((const struct htr_file_header *)(const void *)r->map)->chunks_claimed,
					  __ATOMIC_ACQUIRE);
	for (; r->scanned < claimed && !r->violated; r->scanned++) {
		uint64_t c = r->scanned;
		uint64_t off = chunk_offset(r, c);
		if (r->final) {
			if (chunk_len(r, c) < sizeof(struct htr_chunk_header)) {
				r->saw_short = true; /* as scan_chunks */
				continue;
			}
		} else if (off + r->chunk_size > r->size) {
			/* The recorder sizes the file before it claims a chunk. */
			follow_refresh_size(r);
			if (off + r->chunk_size > r->map_len)
				r->violated = true; /* grew past the mapping */
			if (off + r->chunk_size > r->size || r->violated)
				break;
		}
		if (take_chunk(r, c) || r->final)
			continue;
		if (!u64_append(&r->pending, &r->npending, &r->pending_cap, 16, c)) {
			r->violated = true;
			break;
		}
	}
}

/* The process has ended: from now on the file is what a reader of the
 * finished trace sees. */
static void follow_finalise(struct htr_reader *r)
{
	follow_refresh_size(r);
	if (r->size > r->map_len) {
		r->violated = true;
		return;
	}
	memcpy(&r->header, r->map, sizeof(r->header));
	r->nchunks = (r->size - HTR_FILE_HEADER_SIZE + r->chunk_size - 1) / r->chunk_size;
	r->final = true;
	for (size_t i = 0; i < r->nassumed; i++) {
		if (r->assumed[i] + 4 <= r->size &&
		    __atomic_load_n((const uint32_t *)(const void *)(r->map + r->assumed[i]), __ATOMIC_ACQUIRE) != 0)
			r->violated = true; /* a record we went past was committed after all */
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void heap_push(struct htr_reader *r, size_t i)
{
	r->threads[i].in_heap = true;
	r->heap[r->heap_len++] = (struct merge_slot){r->threads[i].next_seq, i};
	heap_up(r, r->heap_len - 1);
}

/* The seq up to which events are delivered: the exact part. A thread
 * whose cursor waits will next commit a seq above its last one (it takes a
 * seq after it reserves the record's room, so also above its chunk's
 * first_seq); a thread whose chunk is not seen yet, one above every seq
 * handed out before the scan. A thread blocked for a long time (a join, a
 * sleep) holds that back, so every seq seen lag ago counts as settled too
 * (the caller takes the higher of the two), which is wrong only for a thread
 * that took a seq and was then kept off the CPU for longer than the lag
 * before it committed the record. */
static uint64_t waiting_bound(const struct thread_stream *s)
{
	return s->last_seq > s->chunk_seq ? s->last_seq : s->chunk_seq;
}

static uint64_t follow_exact(const struct htr_reader *r, uint64_t taken_before_scan)
{
	uint64_t w = taken_before_scan;
	for (size_t i = 0; i < r->nthreads; i++)
		if (r->threads[i].waiting && waiting_bound(&r->threads[i]) < w)
			w = waiting_bound(&r->threads[i]);
	return w;
}

/* ---- the seqs seen: one counter hands out every seq once, so once every
 * seq up to X sits in a committed record, no record below X can still
 * appear, whatever the threads that have not written lately are doing. A
 * thread that is off the CPU then holds nothing back, unless it was
 * stopped between taking its seq and committing the record (the waiting
 * bound and the lag cover that, as before). The order this admits is
 * checked like any other: a record found below it makes a redo. */

static void seen_set(struct htr_reader *r, uint64_t seq)
{
	uint64_t i = seq % HTR_SEEN_BITS;
	r->seen[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Clears the bits of seqs [lo, hi), which the ring no longer covers. */
static void seen_clear(struct htr_reader *r, uint64_t lo, uint64_t hi)
{
	if (hi - lo >= HTR_SEEN_BITS) {
		memset(r->seen, 0, HTR_SEEN_BITS / 8);
		return;
	}
	while (lo < hi) {
		uint64_t i = lo % HTR_SEEN_BITS, bit = i % 64;
		uint64_t n = 64 - bit < hi - lo ? 64 - bit : hi - lo;
		uint64_t mask = n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1) << bit;
		r->seen[i / 64] &= ~mask;
		lo += n;
	}
}

/* Moves seen_base past the seqs seen in a row; returns the last of them. */
static uint64_t seen_prefix(struct htr_reader *r)
{
	for (;;) {
		uint64_t i = r->seen_base % HTR_SEEN_BITS, bit = i % 64;
		uint64_t run = r->seen[i / 64] >> bit;
		uint64_t n = ~run == 0 ? 64 : (uint64_t)__builtin_ctzll(~run);
		if (n > 64 - bit)
			n = 64 - bit;
		if (n == 0)
			break;
		seen_clear(r, r->seen_base, r->seen_base + n);
		r->seen_base += n;
		if (n < 64 - bit)
			break;
	}
	return r->seen_base - 1;
}

/* Everything up to w is settled by other means: the ring starts above it. */
static void seen_settle(struct htr_reader *r, uint64_t w)
{
	if (r->seen == NULL || w == UINT64_MAX || w < r->seen_base)
		return;
	seen_clear(r, r->seen_base, w + 1);
	r->seen_base = w + 1;
}

/* Notes the seqs of the stream's committed records, from where the scout
 * stopped (never behind the delivering cursor) to the first record not
 * committed yet, or to one whose seq the ring cannot hold yet. It reads
 * the records as peek does, without its side effects: a zero word in a
 * chunk the thread has left is passed over here, and what a record there
 * committed later holds stays unseen (a gap, so nothing past it is
 * admitted on this account). */
static void scout_stream(struct htr_reader *r, struct thread_stream *s)
{
	if (s->scout_stuck)
		return;
	if (s->scout_at < s->chunk_at || (s->scout_at == s->chunk_at && s->scout_pos < s->pos)) {
		s->scout_at = s->chunk_at;
		s->scout_pos = s->pos;
		s->scout_chunk_seq = s->chunk_seq;
	}
	while (s->scout_at < s->nchunks) {
		uint64_t c = s->chunks[s->scout_at];
		uint64_t len = chunk_len(r, c);
		const uint8_t *chunk = r->map + chunk_offset(r, c);
		if (s->scout_pos == 0) {
			struct htr_chunk_header ch;
			memcpy(&ch, chunk, sizeof(ch));
			s->scout_chunk_seq = ch.first_seq;
			s->scout_pos = sizeof(ch);
		}
		/* The position and what no step here changes in registers, the
		 * position stored where the scout stops, a type's checks in one
		 * load (scout_types): it passes every record of a
		 * multi-threaded trace ((b) followed: 1.896 -> 1.854 G
		 * instructions). */
		uint64_t pos = s->scout_pos, chunk_seq = s->scout_chunk_seq, base = r->seen_base;
		while (pos + sizeof(struct htr_rec_header) <= len) {
			const uint8_t *rec = chunk + pos;
			uint32_t word =
				__atomic_load_n((const uint32_t *)(const void *)rec, __ATOMIC_ACQUIRE);
			if (word == 0) {
				if (s->scout_at + 1 == s->nchunks) {
					s->scout_pos = pos;
					return; /* not committed yet */
				}
				break;
			}
			uint32_t size = word >> 16;
			struct scout_type t = scout_types[(uint8_t)word];
			if ((int)size - 8 < (int)t.min_less_8 || size % 8 != 0 || pos + size > len) {
				s->scout_pos = pos;
				s->scout_stuck = true;
				return;
			}
			if (t.form != 0) {
				uint64_t seq;
				memcpy(&seq, rec + 8, sizeof(seq));
				if (t.form == SEQ_SHORT)
					seq = htr_short_seq(seq, chunk_seq);
				if (seq - base < HTR_SEEN_BITS) {
					seen_set(r, seq);
				} else if (seq >= base) {
					s->scout_pos = pos;
					return; /* later, once the ring has moved on */
				}
			}
			pos += size;
		}
		s->scout_at++;
		s->scout_pos = 0;
	}
}

/* The highest seq up to which every seq is committed, as far as the
 * streams show now; 0 when not tracked. A single thread's own bound is
 * already exact: it is not scouted (the scout was 8% of a follower's CPU
 * on a single-threaded malloc/free loop). */
static uint64_t follow_seen(struct htr_reader *r)
{
	if (r->seen == NULL || r->nthreads < 2)
		return 0;
	for (size_t i = 0; i < r->nthreads; i++)
		if (!r->threads[i].done)
			scout_stream(r, &r->threads[i]);
	return seen_prefix(r);
}

int htr_reader_follow(struct htr_reader *r, unsigned lag_ms, htr_event_sink sink, void *ctx)
{
	if (!r->follow)
		return htr_reader_run(r, sink, ctx);
	if (r->ran)
		return 0;
	r->ran = true;
	/* Recent (time, highest seq read) samples, for the lag. */
	enum { SAMPLES = 512 };
	struct sample {
		uint64_t t, seq;
	} *ring = malloc(SAMPLES * sizeof(*ring));
	if (ring == NULL)
		r->violated = true;
	size_t ring_at = 0, ring_len = 0;
	uint64_t settled = 0; /* highest seq read lag ago */
	uint64_t lag = (uint64_t)lag_ms * 1000000u;
	int rc = 0;
	/* The first seq this process can take: a fork child's counter goes
	 * on from the parent's at the fork, which was past fork_seq. Starting
	 * lower is safe (the gap is settled by the lag), higher would not be. */
	r->seen = calloc(HTR_SEEN_BITS / 64, sizeof(uint64_t));
	r->seen_base = (r->header.flags & HTR_FILE_FORK_CHILD) ? r->header.fork_seq + 1 : 1;
	while (!r->violated) {
		if (!r->final && follow_gone(r, 0))
			follow_finalise(r);
		/* Taken before the scan (read in a record, or the counter when a
		 * chunk seen was claimed): a thread whose chunk the scan does not
		 * see takes its seqs after it. Not walking the threads' records
		 * for it keeps the follower out of the cache lines they write. */
		uint64_t before_scan = r->max_seq > r->taken_seq ? r->max_seq : r->taken_seq;
		follow_scan(r);
		/* Before the cursors move: what the scout saw committed, they
		 * see too, so a cursor never waits on a record whose seq the
		 * scout counted. */
		uint64_t seen = r->final ? 0 : follow_seen(r);
		for (size_t i = 0; i < r->nthreads && !r->violated; i++) {
			struct thread_stream *s = &r->threads[i];
			if (s->in_heap || s->done)
				continue;
			s->waiting = false;
			rc = drain_stream(r, s, sink, ctx, 0);
			if (rc != 0)
				goto out;
			if (!s->done && !s->waiting && !r->violated)
				heap_push(r, i);
		}
		if (r->violated)
			break;
		uint64_t exact = r->final ? UINT64_MAX : follow_exact(r, before_scan);
		uint64_t floor = seen > settled ? seen : settled;
		uint64_t w = exact > floor ? exact : floor;
		uint64_t emitted_before = r->emitted_seq;
		while (r->heap_len > 0 && !r->violated) {
			size_t stream = r->heap[0].stream;
			struct thread_stream *s = &r->threads[stream];
			if (s->next_seq > w)
				break;
			uint64_t limit = w;
			size_t next = 2 < r->heap_len && r->heap[2].next_seq < r->heap[1].next_seq ? 2 : 1;
			if (r->heap_len > 1 && r->heap[next].next_seq < limit)
				limit = r->heap[next].next_seq;
			if (!drain_hot(r, s, sink, ctx, limit, &rc))
				rc = drain_stream(r, s, sink, ctx, limit);
			if (rc != 0)
				goto out;
			if (s->done || s->waiting) {
				s->in_heap = false;
				r->heap[0] = r->heap[--r->heap_len];
				/* Its next record may come below w now. */
				if (s->waiting && waiting_bound(s) < exact) {
					exact = waiting_bound(s);
					w = exact > floor ? exact : floor;
				}
				heap_down(r, 0);
			} else if (r->heap_len > 1 && r->heap[next].next_seq < s->next_seq) {
				/* The sift's first step, its child known (as in
				 * htr_reader_run; (b) followed: 1.854 -> 1.824 G
				 * instructions). */
				r->heap[0] = r->heap[next];
				r->heap[next] = (struct merge_slot){s->next_seq, stream};
				heap_down(r, next);
			} else {
				r->heap[0].next_seq = s->next_seq;
			}
		}
		if (r->final || r->violated)
			break;
		seen_settle(r, w);
		uint64_t now = now_ns();
		while (ring_len > 0 && ring[ring_at].t + lag <= now) {
			settled = ring[ring_at].seq;
			ring_at = (ring_at + 1) % SAMPLES;
			ring_len--;
		}
		if (ring_len < SAMPLES)
			ring[(ring_at + ring_len++) % SAMPLES] = (struct sample){now, before_scan};
		/* Behind the writers: straight on; caught up: a pause. */
		if (follow_gone(r, r->emitted_seq - emitted_before > 16384 ? 0 : 1))
			follow_finalise(r);
	}
	if (r->violated) {
		/* The order delivered was wrong: the caller starts again from
		 * the finished file. */
		while (!follow_gone(r, 1000))
			;
		rc = HTR_FOLLOW_REDO;
		goto out;
	}
	rc = finish_run(r, sink, ctx);
out:
	free(ring);
	return rc;
}
