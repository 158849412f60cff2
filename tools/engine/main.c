/* htr-engine [--format F] FILE... : analyses heap event inputs and writes
 * one JSON document on stdout (docs/analyser.md). Exit status: 0 analysed
 * (findings are in the JSON, the front end judges them), 2 an input could
 * not be read or is not a format we know (one line on stderr naming it). */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HTR_HAVE_READER
#include "reader.h"
#endif
#ifdef HTR_HAVE_WIRE
#include "wire_decode.h"
#endif

static void usage(void)
{
	fputs("usage: htr-engine [--format auto|host|valground|board-text|mtrace|board] FILE...\n", stderr);
}

static const char *sniff(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	if (n >= 8 && (memcmp(buf, HTR_TRACE_MAGIC, 8) == 0 || memcmp(buf, "HTRPACK\0", 8) == 0))
		return "host";
	if (memmem(buf, n, "==MP ", 5) || memmem(buf, n, "==HT ", 5))
		return "valground";
	/* mtrace: every record line starts "@ ", "+ ", "- ", "< ", "> " or "= ". */
	if (n >= 7 && memcmp(buf, "= Start", 7) == 0)
		return "mtrace";
	if (n >= 2 && buf[0] == '@' && buf[1] == ' ' && memmem(buf, n, "0x", 2))
		return "mtrace";
	if (n == 0)
		return "valground"; /* an empty log: nothing happened */
#ifdef HTR_HAVE_WIRE
	if (memchr(buf, 0, n))
		return "board";
#endif
	bool text = true;
	for (size_t i = 0; i < n; i++)
		if (buf[i] == 0)
			text = false;
	if (text)
		return "valground"; /* text with no records: a log with no heap activity */
	snprintf(err, errlen, "%s: not a format heaptrail reads (no HTRTRACE header, ==MP lines or mtrace records)",
		 path);
	return NULL;
}

static int run_text(struct engine *e, const char *path, bool mtrace, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	eng_begin_input(e, path, mtrace ? "mtrace" : "valground", HTR_ORIGIN_TEXT);
	int rc = eng_parse_text(e, f, path, mtrace, err, errlen);
	fclose(f);
	eng_end_input(e);
	return rc;
}

static int run_host(struct engine *e, const char *path, char *err, size_t errlen)
{
#ifdef HTR_HAVE_READER
	struct htr_reader *r;
	if (htr_reader_open(&r, path, err, errlen) != 0)
		return -1;
	const struct htr_file_header *h = htr_reader_header(r);
	eng_begin_input(e, path, "host", HTR_ORIGIN_HOST);
	eng_set_process(e, h->pid, h->ppid, h->parent_pid, (h->flags & HTR_FILE_FORK_CHILD) != 0);
	htr_reader_run(r, eng_event, e);
	htr_reader_close(r);
	eng_end_input(e);
	return 0;
#else
	(void)e;
	snprintf(err, errlen, "%s: host traces are not supported by this build (no trace reader)", path);
	return -1;
#endif
}

static int run_board(struct engine *e, const char *path, char *err, size_t errlen)
{
#ifdef HTR_HAVE_WIRE
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	eng_begin_input(e, path, "board", HTR_ORIGIN_BOARD);
	struct htr_wire_decoder dec;
	htr_wire_decoder_init(&dec, eng_event, e);
	unsigned char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		htr_wire_decoder_feed(&dec, buf, n);
	htr_wire_decoder_finish(&dec);
	fclose(f);
	eng_end_input(e);
	return 0;
#else
	(void)e;
	snprintf(err, errlen, "%s: board binary logs are not supported by this build (no wire decoder)", path);
	return -1;
#endif
}

int main(int argc, char **argv)
{
	const char *format = "auto";
	bool stats = false;
	int first = 1;
	while (first < argc && argv[first][0] == '-' && argv[first][1] == '-') {
		if (strcmp(argv[first], "--") == 0) {
			first++;
			break;
		}
		if (strcmp(argv[first], "--format") == 0 && first + 1 < argc) {
			format = argv[first + 1];
			first += 2;
		} else if (strcmp(argv[first], "--stats") == 0) {
			/* Own memory and speed on stderr: the tests' proof that
			 * memory follows the live set, not the input length. */
			stats = true;
			first++;
		} else if (strncmp(argv[first], "--format=", 9) == 0) {
			format = argv[first] + 9;
			first++;
		} else {
			usage();
			return 2;
		}
	}
	if (first >= argc) {
		usage();
		return 2;
	}
	static char outbuf[1 << 16];
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct engine *e = eng_new();
	char err[1024];
	int status = 0;
	for (int i = first; i < argc && status == 0; i++) {
		const char *path = argv[i];
		const char *f = format;
		err[0] = 0;
		if (strcmp(f, "auto") == 0) {
			f = sniff(path, err, sizeof(err));
			if (f == NULL) {
				fprintf(stderr, "%s\n", err);
				status = 2;
				break;
			}
		}
		int rc;
		if (strcmp(f, "host") == 0)
			rc = run_host(e, path, err, sizeof(err));
		else if (strcmp(f, "valground") == 0 || strcmp(f, "board-text") == 0)
			rc = run_text(e, path, false, err, sizeof(err));
		else if (strcmp(f, "mtrace") == 0)
			rc = run_text(e, path, true, err, sizeof(err));
		else if (strcmp(f, "board") == 0)
			rc = run_board(e, path, err, sizeof(err));
		else {
			snprintf(err, sizeof(err), "unknown format '%s'", f);
			rc = -1;
		}
		if (rc != 0) {
			fprintf(stderr, "%s\n", err);
			status = 2;
		}
	}
	if (status != 0) {
		eng_free(e);
		return status;
	}
	eng_write_json(e, stdout);
	if (fflush(stdout) != 0) {
		eng_free(e);
		return 3;
	}
	if (stats) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		fprintf(stderr, "{\"heap_bytes\":%zu,\"events\":%llu,\"seconds\":%.6f}\n", eng_memory_high_water(e),
			(unsigned long long)eng_events(e),
			(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	eng_free(e);
	return 0;
}
