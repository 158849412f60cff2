/* Rewrites a finished raw trace as a packed one (see trace_format.h): one
 * stream in seq order, compactly coded, zstd-compressed. What the reader
 * said about the raw file (cut short, corrupt records, lost events) travels
 * along, so the packed trace reads exactly as the raw one did. */
#ifndef HEAPTRAIL_PACK_H
#define HEAPTRAIL_PACK_H

#include <stddef.h>
#include <stdint.h>

struct htr_pack_result {
	uint64_t records;
	uint64_t raw_bytes;
	uint64_t packed_bytes;
	int redone; /* htr_pack_follow: the streamed order proved wrong; packed after the exit */
};

/* Writes out_path through a temporary file in the same directory, renamed
 * into place only when complete; never follows a symlink at out_path.
 * level: zstd level (1..19). Returns 0, or -1 with a one-line reason naming
 * the file in err. */
int htr_pack(const char *raw_path, const char *out_path, int level, struct htr_pack_result *result, char *err,
	     size_t errlen);

/* The same, while process pid writes the trace (htr_reader_follow): the
 * packing is done as the program runs, and finished once it has ended, with
 * exactly the file htr_pack would write then. When the order it streamed
 * proves wrong, it packs the finished trace with htr_pack (result->redone).
 * Returns after the process has ended. */
int htr_pack_follow(const char *raw_path, int pid, unsigned lag_ms, const char *out_path, int level,
		    struct htr_pack_result *result, char *err, size_t errlen);

#endif /* HEAPTRAIL_PACK_H */
