/* Runs one fixed workload on the board backend (host port) and writes what
 * the board sends, text or binary, to a file: the same events in both
 * encodings, so the tests can check the engine reads them alike. */
#include <stdio.h>
#include <string.h>

#include "heaptrail.h"
#include "heaptrail_board.h"

static FILE *out;

static int to_file(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	return fwrite(buf, 1, len, out) == len ? 0 : -1;
}

static const struct htr_transport file_tp = {to_file, NULL};
static _Alignas(16) uint8_t arena[16 * 1024];

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "text") != 0 && strcmp(argv[1], "binary") != 0)) {
		fputs("usage: board_emit text|binary FILE\n", stderr);
		return 2;
	}
	out = fopen(argv[2], "wb");
	if (out == NULL)
		return 2;
	struct htr_board_config cfg = {strcmp(argv[1], "text") == 0 ? HTR_BOARD_TEXT : HTR_BOARD_BINARY, &file_tp, 0};
	if (htr_board_init(&cfg) != 0 || htr_board_add_region(arena, sizeof(arena)) != 0)
		return 1;
	htr_mark("setup");
	void *pool = HTR_PERSISTENT(256);
	char *a = HTR_MALLOC(100);
	char *b = HTR_MALLOC(200);
	htr_mark("work");
	HTR_FREE(a);
	HTR_FREE(a); /* refused: double free */
	HTR_FREE(b + 8); /* refused: invalid free */
	char *c = HTR_REALLOC(b, 300);
	void *big = HTR_MALLOC(1u << 20); /* fails */
	void *leak = HTR_MALLOC(48);
	htr_board_checkpoint();
	HTR_FREE(c);
	(void)pool;
	(void)big;
	(void)leak;
	return fclose(out) == 0 ? 0 : 1;
}
