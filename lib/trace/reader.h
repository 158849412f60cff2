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

/* Following: reads the raw trace at path while process pid writes it,
 * delivering events as soon as their order is settled, and the rest when
 * the process has ended. Waits for the file to appear (and for its header
 * to be written) while the process lives. On failure returns -1 with a
 * one-line reason in err (no such process, a trace of another pid, the
 * process ended without writing it). */
int htr_reader_open_follow(struct htr_reader **out, const char *path, int pid, char *err, size_t errlen);

/* Returned by htr_reader_follow when the events it delivered are not the
 * trace's order after all (a record turned up with a seq below one already
 * delivered, or something the follower does not handle: a corrupt record,
 * no room to map the file). It returns only once the process has ended, so
 * the caller can read the finished trace from the start with a new reader. */
#define HTR_FOLLOW_REDO (-0x4652)

/* Delivers the events of a reader opened with htr_reader_open_follow, in
 * exactly the order and form htr_reader_run gives for the finished trace.
 * An event is delivered once no record with a lower seq can still appear:
 * known exactly once every lower seq is in a committed record (one counter
 * hands out every seq once), or for the threads that are writing, and
 * assumed for a seq read more than lag_ms ago that still has no record (a
 * thread descheduled between taking it and committing it, a lost event).
 * Every record is read in the end, so a wrong assumption is always found:
 * HTR_FOLLOW_REDO. Otherwise returns as htr_reader_run, after the process
 * has ended. */
int htr_reader_follow(struct htr_reader *reader, unsigned lag_ms, htr_event_sink sink, void *ctx);

const struct htr_file_header *htr_reader_header(const struct htr_reader *reader);

void htr_reader_close(struct htr_reader *reader);

#endif /* HEAPTRAIL_READER_H */
