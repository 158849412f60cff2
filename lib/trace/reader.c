/* Host trace reader: chunk scan, per-thread cursors, seq merge. */
#define _GNU_SOURCE
#include "reader_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
	bool done;
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
	const char *why = NULL;
	char buf[160];
	if (memcmp(h.magic, HTR_TRACE_MAGIC, sizeof(h.magic)) != 0) {
		why = "not a heaptrail trace (bad magic at offset 0)";
	} else if (h.version_major != HTR_TRACE_VERSION_MAJOR && h.version_major != 1) {
		/* 2 only added record types (the short forms) to 1 */
		snprintf(buf, sizeof(buf), "trace format version %u.%u; this reader reads version %u.x",
			 h.version_major, h.version_minor, HTR_TRACE_VERSION_MAJOR);
		why = buf;
	} else if (h.header_size != HTR_FILE_HEADER_SIZE || h.pointer_size != 8 || h.big_endian != 0) {
		why = "header at offset 0 is corrupt (size, pointer size or byte order)";
	} else if (h.chunk_size < 4096 || h.chunk_size % 8 != 0 || h.chunk_size > (1u << 30)) {
		snprintf(buf, sizeof(buf), "header at offset 0 is corrupt (chunk size %u)", h.chunk_size);
		why = buf;
	}
	if (why != NULL) {
		htr_set_err(err, errlen, "%s: %s", path, why);
		munmap((void *)map, (size_t)st.st_size);
		close(fd);
		return -1;
	}

	struct htr_reader *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->path = strdup(path)) == NULL) {
		free(r);
		munmap((void *)map, (size_t)st.st_size);
		close(fd);
		htr_set_err(err, errlen, "%s: out of memory", path);
		return -1;
	}
	r->fd = fd;
	r->map = map;
	r->size = (uint64_t)st.st_size;
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
	for (size_t i = 0; i < reader->nthreads; i++)
		free(reader->threads[i].chunks);
	free(reader->threads);
	free(reader->heap);
	if (reader->packed != NULL) {
		htr_packed_close(reader);
	} else {
		munmap((void *)reader->map, (size_t)reader->size);
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
		struct thread_stream *s = stream_for(r, ch.thread_index);
		if (s == NULL)
			return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off, "out of memory");
		if (s->nchunks == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 8;
			uint64_t *grown = realloc(s->chunks, cap * sizeof(*grown));
			if (grown == NULL)
				return htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off, "out of memory");
			s->chunks = grown;
			s->cap = cap;
		}
		s->chunks[s->nchunks++] = c;
	}
	return 0;
}

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
static uint64_t record_seq(const struct thread_stream *s, const uint8_t *rec)
{
	uint64_t seq;
	memcpy(&seq, rec + 8, sizeof(seq));
	return is_short(rec[0]) ? htr_short_seq(seq, s->chunk_seq) : seq;
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

enum cursor_result { CURSOR_RECORD, CURSOR_END, CURSOR_CORRUPT };

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
		struct htr_rec_header h;
		memcpy(&h, rec, sizeof(h));
		if (h.type == HTR_REC_END_OF_CHUNK && h.kind == 0 && h.size == 0)
			goto next_chunk;
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
	return CURSOR_END;
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

/* Delivers records from the cursor on, up to the first sequenced one whose
 * seq is above limit, which is left in s->next_seq. The merge drains the
 * stream with the smallest next seq, with limit the runner-up's: one call
 * delivers a whole run of this thread's records, and a single-threaded
 * trace is one call. limit 0 delivers only the definitions before a
 * thread's first sequenced record. */
static int drain_stream(struct htr_reader *r, struct thread_stream *s, htr_event_sink sink, void *ctx,
			uint64_t limit)
{
	for (;;) {
		const uint8_t *rec = NULL;
		uint64_t off = 0;
		enum cursor_result cr = peek(r, s, &rec, &off);
		if (cr == CURSOR_END) {
			s->done = true;
			return 0;
		}
		if (cr == CURSOR_CORRUPT) {
			int rc = htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off,
					     "corrupt record at offset %" PRIu64 " (thread %u); rest of its chunk skipped",
					     off, s->thread_index);
			if (rc != 0)
				return rc;
			skip_chunk(s);
			continue;
		}
		uint8_t type = rec[0];
		if (has_seq(type) && record_seq(s, rec) > limit) {
			s->next_seq = record_seq(s, rec);
			return 0;
		}
		struct htr_event *ev = &r->ev;
		if (fixed_sizes[type] == 0) {
			advance(s, rec); /* a record type from a newer minor version */
			continue;
		}
		if (!htr_record_decode(r, rec, s->thread_index, ev)) {
			int rc = htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off,
					     "corrupt record at offset %" PRIu64 " (thread %u); skipped", off,
					     s->thread_index);
			advance(s, rec);
			if (rc != 0)
				return rc;
			continue;
		}
		ev->offset = off;
		if (is_short(type))
			ev->seq += s->chunk_seq; /* decoded as the offset: see htr_record_decode */
		if (ev->seq != 0) {
			if (ev->seq < s->last_seq) {
				int rc = htr_emit_notice(r, sink, ctx, HTR_EV_BAD_INPUT, 0, off,
						     "record at offset %" PRIu64 " goes back in sequence", off);
				if (rc != 0)
					return rc;
			}
			s->last_seq = ev->seq;
		}
		advance(s, rec);
		int rc = r->record_hook ? r->record_hook(r->hook_ctx, ev, rec) : sink(ctx, ev);
		if (rc != 0)
			return rc;
	}
}

/* Min-heap of streams by next_seq. */
static bool heap_less(const struct htr_reader *r, size_t a, size_t b)
{
	return r->threads[r->heap[a]].next_seq < r->threads[r->heap[b]].next_seq;
}

static void heap_swap(struct htr_reader *r, size_t a, size_t b)
{
	size_t t = r->heap[a];
	r->heap[a] = r->heap[b];
	r->heap[b] = t;
}

static void heap_down(struct htr_reader *r, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < r->heap_len && heap_less(r, l, m))
			m = l;
		if (l + 1 < r->heap_len && heap_less(r, l + 1, m))
			m = l + 1;
		if (m == i)
			return;
		heap_swap(r, i, m);
		i = m;
	}
}

static void heap_up(struct htr_reader *r, size_t i)
{
	while (i > 0 && heap_less(r, i, (i - 1) / 2)) {
		heap_swap(r, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

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

	/* Definitions ahead of a thread's first sequenced record come first. */
	for (size_t i = 0; i < r->nthreads; i++) {
		rc = drain_stream(r, &r->threads[i], sink, ctx, 0);
		if (rc != 0)
			return rc;
		if (!r->threads[i].done) {
			r->heap[r->heap_len++] = i;
			heap_up(r, r->heap_len - 1);
		}
	}
	while (r->heap_len > 0) {
		struct thread_stream *s = &r->threads[r->heap[0]];
		uint64_t limit = UINT64_MAX;
		if (r->heap_len > 1)
			limit = r->threads[r->heap[1]].next_seq;
		if (r->heap_len > 2 && r->threads[r->heap[2]].next_seq < limit)
			limit = r->threads[r->heap[2]].next_seq;
		rc = drain_stream(r, s, sink, ctx, limit);
		if (rc != 0)
			return rc;
		if (s->done) {
			r->heap[0] = r->heap[--r->heap_len];
		}
		heap_down(r, 0);
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
