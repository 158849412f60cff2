/* htr-board-decode: decodes a binary board capture (file or stdin) into one
 * line per event, for the end-to-end tests. Sites are resolved, so lines
 * read like the text encoding:
 *   alloc SIZE 0xPTR FILE:LINE call=C | persist | free | realloc | misuse
 *   mark NAME | init 0xBASE SIZE | check live=.. | loss N kind=K
 *   bad OFFSET WHY | truncated OFFSET
 * Each line ends with " @OFFSET" (the frame's byte offset). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire_decode.h"

#define MAX_IDS 4096u

struct names {
	char *file[MAX_IDS];
	uint32_t line[MAX_IDS];
	uint64_t stack_pc[MAX_IDS];
};

static void site(const struct names *n, uint32_t id, uint32_t stack)
{
	uint64_t pc = stack < MAX_IDS ? n->stack_pc[stack] : 0;
	if (id == 0 || id >= MAX_IDS || n->file[id] == NULL)
		printf(" ?:0 pc=0x%" PRIx64, pc);
	else
		printf(" %s:%" PRIu32 " pc=0x%" PRIx64, n->file[id], n->line[id], pc);
}

static int sink(void *ctx, const struct htr_event *ev)
{
	struct names *n = ctx;
	switch (ev->type) {
	case HTR_EV_SITE:
		if (ev->id < MAX_IDS) {
			free(n->file[ev->id]);
			n->file[ev->id] = strdup(ev->text);
			n->line[ev->id] = ev->line;
		}
		return 0;
	case HTR_EV_STACK:
		if (ev->id < MAX_IDS && ev->depth == 1)
			n->stack_pc[ev->id] = ev->frames[0];
		return 0;
	case HTR_EV_ALLOC:
		printf("alloc %" PRIu64 " 0x%" PRIx64, ev->size, ev->ptr);
		site(n, ev->site, ev->stack);
		printf(" call=%u align=%" PRIu32, ev->call, ev->alignment);
		break;
	case HTR_EV_PERSIST:
		printf("persist %" PRIu64 " 0x%" PRIx64, ev->size, ev->ptr);
		site(n, ev->site, ev->stack);
		break;
	case HTR_EV_FREE:
		printf("free 0x%" PRIx64, ev->ptr);
		site(n, ev->site, ev->stack);
		break;
	case HTR_EV_REALLOC:
		printf("realloc 0x%" PRIx64 " 0x%" PRIx64 " %" PRIu64, ev->ptr, ev->ptr2, ev->size);
		site(n, ev->site, ev->stack);
		break;
	case HTR_EV_MISUSE:
		printf("misuse %s 0x%" PRIx64, ev->kind == HTR_MISUSE_DOUBLE_FREE ? "double" : "invalid", ev->ptr);
		site(n, ev->site, ev->stack);
		break;
	case HTR_EV_MARKER:
		printf("mark %s", ev->text);
		break;
	case HTR_EV_HEAP_INIT:
		printf("init 0x%" PRIx64 " %" PRIu64, ev->ptr, ev->size);
		break;
	case HTR_EV_CHECKPOINT:
		printf("check live=%zu bytes=%zu heap=%zu free=%zu largest=%zu fblocks=%zu minfree=%zu",
		       ev->stats->live_blocks, ev->stats->used_bytes, ev->stats->heap_size, ev->stats->free_bytes,
		       ev->stats->largest_free, ev->stats->free_blocks, ev->stats->min_free_bytes);
		break;
	case HTR_EV_LOSS:
		printf("loss %" PRIu64 " kind=%u", ev->count, ev->kind);
		break;
	case HTR_EV_BAD_INPUT:
		printf("bad %s", ev->text);
		break;
	case HTR_EV_TRUNCATED:
		printf("truncated %s", ev->text);
		break;
	default:
		printf("event %u", ev->type);
		break;
	}
	if (ev->seq != 0 || ev->type == HTR_EV_HEAP_INIT)
		printf(" seq=%" PRIu64, ev->seq);
	printf(" @%" PRIu64 "\n", ev->offset);
	return 0;
}

int main(int argc, char **argv)
{
	FILE *in = stdin;
	if (argc > 2) {
		fprintf(stderr, "usage: htr-board-decode [CAPTURE]\n");
		return 2;
	}
	if (argc == 2 && strcmp(argv[1], "-") != 0) {
		in = fopen(argv[1], "rb");
		if (in == NULL) {
			perror(argv[1]);
			return 2;
		}
	}
	static struct names names;
	static struct htr_wire_decoder dec;
	htr_wire_decoder_init(&dec, sink, &names);
	uint8_t buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		htr_wire_decoder_feed(&dec, buf, n);
	htr_wire_decoder_finish(&dec);
	printf("total records=%" PRIu64 " bad=%" PRIu64 " lost=%" PRIu64 " bytes=%" PRIu64 "\n", dec.records,
	       dec.bad_frames, dec.lost, dec.offset);
	for (unsigned i = 0; i < MAX_IDS; i++)
		free(names.file[i]);
	return 0;
}
