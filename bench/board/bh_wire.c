/* Bytes on the wire per heap event for the board's encodings: the same
 * deterministic event stream through the public API (include/heaptrail.h on
 * the board backend) with a transport that only counts. */
#include <stdint.h>
#include <stdio.h>

#include "heaptrail.h"
#include "heaptrail_board.h"

int bh_wire(int quick);

#define WIRE_SLOTS 32

static uint64_t wire_bytes;
/* Binary frames by record type, to show where the bytes go. A frame is
 * COBS: byte 0 is overhead, byte 1 the record's first byte, type << 5 | seq,
 * never 0 because no type is 0. */
static int wire_by_type;
static unsigned long type_frames[8], type_bytes[8];

static int count_write(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	wire_bytes += len;
	if (wire_by_type && len > 2) {
		type_frames[buf[1] >> 5]++;
		type_bytes[buf[1] >> 5] += len;
	}
	return 0;
}

static uint32_t wire_rng;

static uint32_t wire_rand(void)
{
	wire_rng ^= wire_rng << 13;
	wire_rng ^= wire_rng >> 17;
	wire_rng ^= wire_rng << 5;
	return wire_rng;
}

/* A firmware-like mix: four malloc sites, a calloc and a realloc site, and a
 * window of live blocks so frees are spread over time. plain: malloc and
 * free only (the shape of host workload (a)). Returns the events. */
static unsigned long wire_stream(unsigned long steps, int plain)
{
	void *slot[WIRE_SLOTS] = {0};
	unsigned long events = 0;
	wire_rng = 0xC0FFEEu;
	for (unsigned long i = 0; i < steps; i++) {
		uint32_t r = wire_rand();
		unsigned s = r % WIRE_SLOTS;
		size_t size = 1u + ((r >> 8) & 255u);
		if (!plain && slot[s] != NULL && (r >> 16) % 8u == 0u) {
			void *q = HTR_REALLOC(slot[s], size * 2u);
			events++;
			if (q != NULL)
				slot[s] = q;
			continue;
		}
		if (slot[s] != NULL) {
			HTR_FREE(slot[s]);
			events++;
		}
		switch ((r >> 20) % (plain ? 4u : 5u)) {
		case 0: slot[s] = HTR_MALLOC(size); break;
		case 1: slot[s] = HTR_MALLOC(size); break;
		case 2: slot[s] = HTR_MALLOC(size); break;
		case 3: slot[s] = HTR_MALLOC(size); break;
		default: slot[s] = HTR_CALLOC(1, size); break;
		}
		events++;
	}
	for (unsigned s = 0; s < WIRE_SLOTS; s++) {
		if (slot[s] != NULL) {
			HTR_FREE(slot[s]);
			events++;
		}
	}
	return events;
}

static _Alignas(8) unsigned char wire_arena[64 * 1024];

static int wire_one(const char *name, enum htr_board_encoding enc, uint32_t interval, unsigned long steps,
		    int plain)
{
	const struct htr_transport tp = {count_write, NULL};
	const struct htr_board_config cfg = {enc, &tp, interval};
	if (htr_board_init(&cfg) != 0 || htr_board_add_region(wire_arena, sizeof wire_arena) != 0) {
		fprintf(stderr, "bh_wire: board init failed\n");
		return 1;
	}
	wire_bytes = 0;
	wire_by_type = enc == HTR_BOARD_BINARY && interval == 0 && !plain;
	unsigned long events = wire_stream(steps, plain);
	printf("wire %s %.3f\n", name, (double)wire_bytes / (double)events);
	static const char *const names[8] = {"?", "alloc", "free", "realloc", "calloc", "alloc-again", "free-again", "ext"};
	for (unsigned t = 0; wire_by_type && t < 8; t++)
		if (type_frames[t] != 0)
			printf("wiretype %s %lu %.2f\n", names[t], type_frames[t],
			       (double)type_bytes[t] / (double)type_frames[t]);
	return 0;
}

int bh_wire(int quick)
{
	unsigned long steps = quick ? 2000 : 100000;
	int rc = 0;
	rc |= wire_one("text", HTR_BOARD_TEXT, 0, steps, 0);
	rc |= wire_one("binary", HTR_BOARD_BINARY, 0, steps, 0);
	rc |= wire_one("binary+checkpoint/64", HTR_BOARD_BINARY, 64, steps, 0);
	rc |= wire_one("binary,malloc/free-only", HTR_BOARD_BINARY, 0, steps, 1);
	return rc;
}
