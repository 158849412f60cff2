/* htr-pack: rewrites finished raw traces in the packed form, in place or
 * to another path; with --follow, a trace while its process writes it.
 * `heaptrail pack` and `heaptrail run` call it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pack.h"

/* Only a seq that stays without its record (a thread stopped between
 * taking it and committing the record, an event lost) waits this long:
 * the follower passes every seq committed in a row at once. Threads on
 * busy cores (8 on 2) were seen to hold a seq for more than 20 ms. */
#define DEFAULT_LAG_MS 200u

static int usage(FILE *out, int status)
{
	fprintf(out, "usage: htr-pack [-l LEVEL] TRACE [-o OUT] | htr-pack [-l LEVEL] TRACE...\n"
		     "       htr-pack [-l LEVEL] --follow PID [--lag MS] TRACE [-o OUT]\n"
		     "Rewrites raw heaptrail traces packed (merged, coded, zstd-compressed).\n"
		     "Without -o each TRACE is replaced in place. LEVEL: zstd level 1-19 (default 1;\n"
		     "the coding does most of the work: 9 saves at most 1%% of the bytes for twice the time).\n"
		     "--follow packs the trace of process PID while it runs (waiting for the file to\n"
		     "appear) and finishes when the process has ended: the same file as packing it\n"
		     "then. MS: how long a seq may stay without its record (a thread stopped between\n"
		     "taking the seq and committing the record; default %u) before the packer goes on\n"
		     "past it; a record committed later is caught and the trace is packed after the\n"
		     "exit instead.\n",
		DEFAULT_LAG_MS);
	return status;
}

int main(int argc, char **argv)
{
	int level = 1;
	long follow = 0;
	unsigned lag_ms = DEFAULT_LAG_MS;
	const char *out = NULL;
	const char *inputs[argc];
	int ninputs = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return usage(stdout, 0);
		if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "--lag") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "htr-pack: %s needs a value\n", argv[i]);
				return 2;
			}
			char *end;
			errno = 0;
			long v = strtol(argv[i + 1], &end, 10);
			bool lag = argv[i][2] == 'l';
			if (*end != '\0' || errno != 0 || v < (lag ? 0 : 1) || v > (lag ? 60000 : 0x7fffffff)) {
				fprintf(stderr, "htr-pack: %s %s: %s\n", argv[i], argv[i + 1],
					lag ? "the lag is a number of milliseconds from 0 to 60000" : "not a process id");
				return 2;
			}
			if (lag)
				lag_ms = (unsigned)v;
			else
				follow = v;
			i++;
			continue;
		}
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
	if (ninputs == 0 || ((out != NULL || follow != 0) && ninputs != 1))
		return usage(stderr, 2);
	if (follow != 0) {
		char err[512];
		struct htr_pack_result res;
		const char *dest = out ? out : inputs[0];
		/* Held until after the report: a raw trace packed in place is
		 * released with its last reference, and dropping a large file's
		 * page cache takes the kernel a while (15 ms for 80 MB) that
		 * whoever waits for the report need not wait for. */
		int held = open(inputs[0], O_RDONLY | O_CLOEXEC);
		if (htr_pack_follow(inputs[0], (int)follow, lag_ms, dest, level, &res, err, sizeof(err)) != 0) {
			fprintf(stderr, "htr-pack: %s\n", err);
			return 2;
		}
		if (res.redone)
			fprintf(stderr, "htr-pack: %s: a record came out of the order streamed; packed after the exit\n",
				inputs[0]);
		printf("%s: %" PRIu64 " records, %" PRIu64 " -> %" PRIu64 " bytes\n", dest, res.records, res.raw_bytes,
		       res.packed_bytes);
		if (fclose(stdout) != 0)
			return 2;
		if (held >= 0 && out == NULL) {
			/* The report is out and the packed trace in place: a child
			 * nobody waits for lets the old file go, once this process
			 * has ended (the pipe's end here closes then), so that the
			 * last reference is surely the child's. */
			fclose(stderr);
			int gone[2];
			if (pipe(gone) == 0 && fork() == 0) {
				char c;
				close(gone[1]);
				while (read(gone[0], &c, 1) < 0 && errno == EINTR)
					;
				close(held);
			}
			_exit(0);
		}
		return 0;
	}
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
