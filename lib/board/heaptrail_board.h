/* Board setup: what a firmware calls before using include/heaptrail.h. Not
 * in the public header because a host program has no use for it.
 *
 *   static uint8_t heap[48 * 1024];
 *   struct htr_board_config cfg = {HTR_BOARD_TEXT, &htr_uart_blocking, 64};
 *   htr_board_init(&cfg);
 *   htr_board_add_region(heap, sizeof(heap));
 */
#ifndef HEAPTRAIL_BOARD_H
#define HEAPTRAIL_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "heaptrail.h"
#include "transport.h"

enum htr_board_encoding {
	HTR_BOARD_TEXT = 1,   /* ==MP / ==HT lines */
	HTR_BOARD_BINARY = 2, /* COBS frames, wire.h */
};

struct htr_board_config {
	enum htr_board_encoding encoding;
	const struct htr_transport *transport;
	/* A checkpoint record after this many records (0: only at marks and
	 * on request). */
	uint32_t checkpoint_interval;
};

/* Resets the heap (forgetting every region) and the encoder. 0, or -1 on a
 * bad config. */
int htr_board_init(const struct htr_board_config *config);
/* Adds a buffer to the heap; any size, several allowed (HTR_HEAP_MAX_REGIONS).
 * The heap's init record goes out with the first event, covering the regions
 * added by then; later ones get a region record. 0, or -1. */
int htr_board_add_region(void *buf, size_t size);
/* The integrity walk; 0 when the heap is consistent (heap_check.c codes). */
int htr_board_check(void);
/* Sends a checkpoint record now. */
void htr_board_checkpoint(void);
/* Records sent, records lost, bytes sent: for the firmware's own summary. */
void htr_board_counters(uint32_t *records, uint32_t *lost, uint32_t *bytes);

#endif /* HEAPTRAIL_BOARD_H */
