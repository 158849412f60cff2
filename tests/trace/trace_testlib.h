/* What the trace tests share (test_reader.c, test_packed.c, test_follow.c):
 * the raw file header the recorder writes, and reading a whole trace into a
 * sink. Included once per test executable, after cmocka.h. */
#ifndef HEAPTRAIL_TRACE_TESTLIB_H
#define HEAPTRAIL_TRACE_TESTLIB_H

#include <string.h>

#include "heaptrail/trace_format.h"
#include "reader.h"

/* Fills in what every raw trace's header says; the caller sets the state
 * (a follower's writer publishes it last) and anything else it tests. */
static inline void trace_header_fill(struct htr_file_header *h, uint64_t chunk_size, uint32_t pid)
{
	memcpy(h->magic, HTR_TRACE_MAGIC, 8);
	h->version_major = HTR_TRACE_VERSION_MAJOR;
	h->version_minor = HTR_TRACE_VERSION_MINOR;
	h->header_size = HTR_FILE_HEADER_SIZE;
	h->pointer_size = 8;
	h->chunk_size = chunk_size;
	h->pid = pid;
}

/* Reads the trace at path, every event to sink; the test fails when it
 * cannot be opened or the run reports an error. */
static inline void trace_read_all(const char *path, htr_event_sink sink, void *ctx)
{
	char err[256];
	struct htr_reader *r;
	if (htr_reader_open(&r, path, err, sizeof(err)) != 0)
		fail_msg("open %s: %s", path, err);
	assert_int_equal(htr_reader_run(r, sink, ctx), 0);
	htr_reader_close(r);
}

#endif /* HEAPTRAIL_TRACE_TESTLIB_H */
