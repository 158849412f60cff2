/* htr-engine: one streaming pass over heap events, memory bounded by the
 * live set. Every input parser delivers struct htr_event (lib/trace/event.h)
 * to eng_event(); the engine keeps a table of live blocks and aggregates
 * per (process, stack, site), and writes one JSON document at the end
 * (docs/analyser.md describes it). */
#ifndef HTR_ENGINE_H
#define HTR_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "event.h"

/* HTR_EV_MARKER kinds used by the text parsers (event.h leaves kind free). */
enum eng_marker_kind {
	ENG_MARK_USER = 0, /* htr_mark() or ==HT mark */
	ENG_MARK_TEST = 1, /* a pytest test-name line: names the next heap (init), as valground does */
};

struct engine;

struct engine *eng_new(void);
void eng_free(struct engine *e);

/* One input is one process section. format names the parser ("host",
 * "valground", "board-text", "mtrace", "board"); origin: enum htr_origin. */
void eng_begin_input(struct engine *e, const char *path, const char *format, int origin);
/* Renames the format once the parser knows better (board-text vs valground). */
void eng_set_format(struct engine *e, const char *format);
void eng_set_process(struct engine *e, uint64_t pid, uint64_t ppid, uint64_t parent_pid, bool fork_child);
void eng_end_input(struct engine *e);
/* Speculos lines ("seproxyhal: printf: ==MP ...") are what valground reads:
 * for them, count a failed allocation (ptr 0x0) the way valground does. */
void eng_set_valground_compat(struct engine *e, bool on);

int eng_event(void *ctx, const struct htr_event *ev);

void eng_write_json(struct engine *e, FILE *out);
uint64_t eng_events(const struct engine *e);
size_t eng_memory_high_water(const struct engine *e);

/* Text parsers (text.c). Return 0, or -1 with a message in err. */
int eng_parse_text(struct engine *e, FILE *in, const char *path, bool mtrace, char *err, size_t errlen);

#endif
