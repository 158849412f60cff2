/* Reads a host trace (include/heaptrail/trace_format.h) and delivers its
 * records as struct htr_event, merged across threads in seq order.
 *
 * The file is mapped, not read: memory use is the page cache's, and a trace
 * of any length costs the reader a cursor per thread. A file that is being
 * written while it is read shows the records committed so far. */
#ifndef HEAPTRAIL_READER_H
#define HEAPTRAIL_READER_H

#include <stddef.h>

#include "event.h"

struct htr_reader;

/* Opens and checks the header. On failure returns -1 and writes a one-line
 * reason naming the file into err. */
int htr_reader_open(struct htr_reader **out, const char *path, char *err, size_t errlen);

/* Delivers every event to sink. Corrupt records become HTR_EV_BAD_INPUT
 * events (with the file offset) and reading goes on with the next chunk; the
 * end of the trace brings HTR_EV_TRUNCATED when the process did not exit in
 * order or the file was cut, and HTR_EV_LOSS when the recorder counted
 * dropped events that no DROPS record accounts for. Returns 0, or the sink's
 * non-zero value. Can be called once per open reader. */
int htr_reader_run(struct htr_reader *reader, htr_event_sink sink, void *ctx);

const struct htr_file_header *htr_reader_header(const struct htr_reader *reader);

void htr_reader_close(struct htr_reader *reader);

#endif /* HEAPTRAIL_READER_H */
