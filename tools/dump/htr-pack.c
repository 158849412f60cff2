/* htr-pack: rewrites finished raw traces in the packed form, in place or
 * to another path. `heaptrail pack` and `heaptrail run` call it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"

static int usage(FILE *out, int status)
{
	fprintf(out, "usage: htr-pack [-l LEVEL] TRACE [-o OUT] | htr-pack [-l LEVEL] TRACE...\n"
		     "Rewrites raw heaptrail traces packed (merged, coded, zstd-compressed).\n"
		     "Without -o each TRACE is replaced in place. LEVEL: zstd level 1-19 (default 3;\n"
		     "the coding does most of the work: 9 saves 0-9%% of the bytes for twice the time).\n");
	return status;
}

int main(int argc, char **argv)
{
	int level = 3;
	const char *out = NULL;
	const char *inputs[argc];
	int ninputs = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return usage(stdout, 0);
		if (strcmp(argv[i], "-l") == 0 || strcmp(argv[i], "-o") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "htr-pack: %s needs a value\n", argv[i]);
				return 2;
			}
			if (argv[i][1] == 'o') {
				out = argv[++i];
				continue;
			}
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end != '\0' || v < 1 || v > 19) {
				fprintf(stderr, "htr-pack: -l %s: the level is a number from 1 to 19\n", argv[i]);
				return 2;
			}
			level = (int)v;
			continue;
		}
		inputs[ninputs++] = argv[i];
	}
	if (ninputs == 0 || (out != NULL && ninputs != 1))
		return usage(stderr, 2);
	int status = 0;
	for (int i = 0; i < ninputs; i++) {
		char err[512];
		struct htr_pack_result res;
		if (htr_pack(inputs[i], out ? out : inputs[i], level, &res, err, sizeof(err)) != 0) {
			fprintf(stderr, "htr-pack: %s\n", err);
			status = 2;
			continue;
		}
		printf("%s: %" PRIu64 " records, %" PRIu64 " -> %" PRIu64 " bytes\n", out ? out : inputs[i],
		       res.records, res.raw_bytes, res.packed_bytes);
	}
	return status;
}
