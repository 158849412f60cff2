/* htr-dump: prints a host trace as JSON lines, one event per line, in merged
 * seq order. The debugging view of a trace, and what the recorder's
 * integration tests assert on. `heaptrail dump` wraps it. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "reader.h"

struct dump {
	FILE *out;
	uint64_t events;
	bool clean_exit;
	bool truncated;
	uint64_t bad_input;
	uint64_t lost;
};

static const char *call_name(uint8_t call)
{
	switch (call) {
	case HTR_CALL_MALLOC: return "malloc";
	case HTR_CALL_CALLOC: return "calloc";
	case HTR_CALL_REALLOC: return "realloc";
	case HTR_CALL_REALLOCARRAY: return "reallocarray";
	case HTR_CALL_POSIX_MEMALIGN: return "posix_memalign";
	case HTR_CALL_ALIGNED_ALLOC: return "aligned_alloc";
	case HTR_CALL_MEMALIGN: return "memalign";
	case HTR_CALL_VALLOC: return "valloc";
	case HTR_CALL_PVALLOC: return "pvalloc";
	case HTR_CALL_STRDUP: return "strdup";
	case HTR_CALL_FREE: return "free";
	case HTR_CALL_NEW: return "new";
	case HTR_CALL_NEW_ARRAY: return "new[]";
	case HTR_CALL_DELETE: return "delete";
	case HTR_CALL_DELETE_ARRAY: return "delete[]";
	default: return NULL;
	}
}

static const char *type_name(uint8_t type)
{
	static const char *const names[] = {
		[HTR_EV_ALLOC] = "alloc",	  [HTR_EV_FREE] = "free",	 [HTR_EV_REALLOC] = "realloc",
		[HTR_EV_MISUSE] = "misuse",	  [HTR_EV_PERSIST] = "persist",	 [HTR_EV_MARKER] = "marker",
		[HTR_EV_HEAP_INIT] = "heap_init", [HTR_EV_CHECKPOINT] = "checkpoint", [HTR_EV_LOSS] = "loss",
		[HTR_EV_STACK] = "stack",	  [HTR_EV_SITE] = "site",	 [HTR_EV_MODULE] = "module",
		[HTR_EV_THREAD] = "thread",	  [HTR_EV_PROCESS] = "process",	 [HTR_EV_FORK] = "fork",
		[HTR_EV_END] = "end",		  [HTR_EV_TIME] = "time",	 [HTR_EV_TRUNCATED] = "truncated",
		[HTR_EV_BAD_INPUT] = "bad_input",
	};
	if (type < sizeof(names) / sizeof(names[0]) && names[type] != NULL)
		return names[type];
	return "unknown";
}

static const char *kind_name(const struct htr_event *ev)
{
	switch (ev->type) {
	case HTR_EV_MISUSE:
		switch (ev->kind) {
		case HTR_MISUSE_DOUBLE_FREE: return "double_free";
		case HTR_MISUSE_INVALID_FREE: return "invalid_free";
		case HTR_MISUSE_MISMATCH: return "mismatch";
		default: return "unknown";
		}
	case HTR_EV_MODULE: return ev->kind == HTR_MODULE_UNLOAD ? "unload" : "load";
	case HTR_EV_THREAD: return ev->kind == HTR_THREAD_EXIT ? "exit" : "start";
	case HTR_EV_END: return ev->kind == HTR_END_EXEC ? "exec" : "exit";
	case HTR_EV_TRUNCATED: return ev->kind == HTR_TRUNC_FILE_SHORT ? "file_short" : "no_exit";
	case HTR_EV_LOSS:
		switch (ev->kind) {
		case HTR_DROP_NO_SPACE: return "no_space";
		case HTR_DROP_REENTRANT: return "reentrant";
		default: return "other";
		}
	default: return NULL;
	}
}

static void put_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (*p < 0x20)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

static void put_u64(FILE *out, const char *key, uint64_t value)
{
	fprintf(out, ", \"%s\": %" PRIu64, key, value);
}

static void put_hex(FILE *out, const char *key, uint64_t value)
{
	fprintf(out, ", \"%s\": \"0x%" PRIx64 "\"", key, value);
}

static void put_call(FILE *out, const char *key, uint8_t call)
{
	const char *name = call_name(call);
	if (name != NULL)
		fprintf(out, ", \"%s\": \"%s\"", key, name);
}

static int print_event(void *ctx, const struct htr_event *ev)
{
	struct dump *d = ctx;
	FILE *out = d->out;
	d->events++;
	fprintf(out, "{\"type\": \"%s\"", type_name(ev->type));
	const char *kind = kind_name(ev);
	if (kind != NULL)
		fprintf(out, ", \"kind\": \"%s\"", kind);
	if (ev->seq != 0)
		put_u64(out, "seq", ev->seq);
	switch (ev->type) {
	case HTR_EV_ALLOC:
		put_u64(out, "thread", ev->thread);
		put_call(out, "call", ev->call);
		put_hex(out, "ptr", ev->ptr);
		put_u64(out, "size", ev->size);
		put_u64(out, "stack", ev->stack);
		put_u64(out, "site", ev->site);
		put_u64(out, "alignment", ev->alignment);
		break;
	case HTR_EV_FREE:
		put_u64(out, "thread", ev->thread);
		put_call(out, "call", ev->call);
		put_hex(out, "ptr", ev->ptr);
		put_u64(out, "stack", ev->stack);
		put_u64(out, "site", ev->site);
		break;
	case HTR_EV_REALLOC:
		put_u64(out, "thread", ev->thread);
		put_call(out, "call", ev->call);
		put_hex(out, "ptr", ev->ptr);
		put_hex(out, "ptr2", ev->ptr2);
		put_u64(out, "size", ev->size);
		put_u64(out, "stack", ev->stack);
		put_u64(out, "site", ev->site);
		break;
	case HTR_EV_MISUSE:
		put_u64(out, "thread", ev->thread);
		put_call(out, "call", ev->call);
		put_call(out, "alloc_call", ev->alloc_call);
		put_hex(out, "ptr", ev->ptr);
		put_u64(out, "size", ev->size);
		put_u64(out, "stack", ev->stack);
		put_u64(out, "site", ev->site);
		put_u64(out, "alloc_stack", ev->alloc_stack);
		put_u64(out, "alloc_site", ev->alloc_site);
		put_u64(out, "free_stack", ev->free_stack);
		put_u64(out, "free_site", ev->free_site);
		break;
	case HTR_EV_PERSIST:
		put_hex(out, "ptr", ev->ptr);
		break;
	case HTR_EV_MARKER:
		put_u64(out, "thread", ev->thread);
		fputs(", \"text\": ", out);
		put_string(out, ev->text);
		break;
	case HTR_EV_STACK:
		put_u64(out, "id", ev->id);
		fputs(", \"frames\": [", out);
		for (uint32_t i = 0; i < ev->depth; i++) {
			uint64_t frame;
			memcpy(&frame, &ev->frames[i], sizeof(frame));
			fprintf(out, "%s\"0x%" PRIx64 "\"", i ? ", " : "", frame);
		}
		fputc(']', out);
		break;
	case HTR_EV_SITE:
		put_u64(out, "id", ev->id);
		fputs(", \"text\": ", out);
		put_string(out, ev->text);
		put_u64(out, "line", ev->line);
		break;
	case HTR_EV_MODULE:
		fputs(", \"text\": ", out);
		put_string(out, ev->text);
		put_hex(out, "base", ev->base);
		put_hex(out, "start", ev->start);
		put_hex(out, "end", ev->end);
		fputs(", \"build_id\": \"", out);
		for (uint32_t i = 0; i < ev->build_id_size; i++)
			fprintf(out, "%02x", ev->build_id[i]);
		fputc('"', out);
		break;
	case HTR_EV_THREAD:
		put_u64(out, "thread", ev->thread);
		put_u64(out, "tid", ev->tid);
		break;
	case HTR_EV_PROCESS: {
		put_u64(out, "pid", ev->ptr);
		put_u64(out, "ppid", ev->ptr2);
		fputs(", \"text\": ", out);
		put_string(out, ev->text);
		fputs(", \"args\": [", out);
		const char *arg = ev->args;
		for (uint32_t i = 0; i < ev->argc; i++) {
			if (i)
				fputs(", ", out);
			put_string(out, arg);
			arg += strlen(arg) + 1;
		}
		fputc(']', out);
		break;
	}
	case HTR_EV_FORK:
		put_u64(out, "tid", ev->tid);
		break;
	case HTR_EV_END:
		put_u64(out, "size", ev->size);
		d->clean_exit = true;
		break;
	case HTR_EV_TIME:
		put_u64(out, "time_ns", ev->time_ns);
		break;
	case HTR_EV_LOSS:
		put_u64(out, "count", ev->count);
		d->lost += ev->count;
		break;
	case HTR_EV_TRUNCATED:
	case HTR_EV_BAD_INPUT:
		if (ev->type == HTR_EV_TRUNCATED)
			d->truncated = true;
		else
			d->bad_input++;
		put_u64(out, "offset", ev->offset);
		fputs(", \"text\": ", out);
		put_string(out, ev->text);
		break;
	default:
		break;
	}
	fputs("}\n", out);
	return 0;
}

static void print_trace_header(FILE *out, const char *path, const struct htr_file_header *h)
{
	fputs("{\"type\": \"trace\", \"path\": ", out);
	put_string(out, path);
	fprintf(out,
		", \"version\": \"%u.%u\", \"pid\": %u, \"ppid\": %u, \"flags\": %u, \"parent_pid\": %u, "
		"\"fork_seq\": %" PRIu64 ", \"state\": \"%s\", \"chunk_size\": %u, \"max_depth\": %u}\n",
		h->version_major, h->version_minor, h->pid, h->ppid, h->flags, h->parent_pid, h->fork_seq,
		h->state == HTR_STATE_CLEAN_EXIT ? "clean_exit" : "running", h->chunk_size, h->max_depth);
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fprintf(argc < 2 ? stderr : stdout, "usage: htr-dump TRACE...\n"
						    "Prints each trace's events as JSON lines, in seq order.\n");
		return argc < 2 ? 2 : 0;
	}
	int status = 0;
	for (int i = 1; i < argc; i++) {
		char err[512];
		struct htr_reader *reader;
		if (htr_reader_open(&reader, argv[i], err, sizeof(err)) != 0) {
			fprintf(stderr, "htr-dump: %s\n", err);
			status = 2;
			continue;
		}
		struct dump d = {.out = stdout};
		print_trace_header(stdout, argv[i], htr_reader_header(reader));
		htr_reader_run(reader, print_event, &d);
		fprintf(stdout,
			"{\"type\": \"summary\", \"events\": %" PRIu64 ", \"clean_exit\": %s, \"truncated\": %s, "
			"\"bad_input\": %" PRIu64 ", \"lost\": %" PRIu64 "}\n",
			d.events, d.clean_exit ? "true" : "false", d.truncated ? "true" : "false", d.bad_input,
			d.lost);
		htr_reader_close(reader);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "htr-dump: cannot write output\n");
		return 2;
	}
	return status;
}
