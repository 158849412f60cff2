/* include/heaptrail.h on a board: every call goes to the TLSF heap and is
 * recorded through the configured encoder, under the port lock. */
#include <string.h>

#include "enc.h"
#include "heap.h"
#include "heaptrail.h"
#include "heaptrail_board.h"
#include "port.h"

/* Both encoders by default; a firmware that needs one defines the other's
 * macro to 0 and the linker drops its code (1.4 KB each at -Os). */
#ifndef HTR_BOARD_WITH_TEXT
#define HTR_BOARD_WITH_TEXT 1
#endif
#ifndef HTR_BOARD_WITH_BINARY
#define HTR_BOARD_WITH_BINARY 1
#endif

static const struct htr_enc_ops *encoder(enum htr_board_encoding encoding)
{
#if HTR_BOARD_WITH_TEXT
	if (encoding == HTR_BOARD_TEXT)
		return &htr_enc_text_ops;
#endif
#if HTR_BOARD_WITH_BINARY
	if (encoding == HTR_BOARD_BINARY)
		return &htr_enc_bin_ops;
#endif
	(void)encoding;
	return NULL;
}

static struct {
	struct htr_heap heap;
	struct htr_enc enc;
	uint32_t interval;
	uint32_t since_check;
	uint8_t ready;
	uint8_t announced; /* the init record went out */
} board;

int htr_board_init(const struct htr_board_config *config)
{
	const struct htr_enc_ops *ops = config != NULL ? encoder(config->encoding) : NULL;
	if (ops == NULL || config->transport == NULL)
		return -1;
	uint32_t saved = htr_port_lock();
	htr_heap_init(&board.heap);
	htr_enc_init(&board.enc, ops, config->transport);
	board.interval = config->checkpoint_interval;
	board.since_check = 0;
	board.announced = 0;
	board.ready = 1;
	htr_port_unlock(saved);
	return 0;
}

static void checkpoint_locked(void)
{
	struct htr_heap_stats s;
	htr_heap_get_stats(&board.heap, &s);
	board.enc.ops->check(&board.enc, &s, htr_port_timestamp());
	board.since_check = 0;
}

/* The init record is deferred to the first event so that it can carry all
 * the regions added right after htr_board_init. */
static void announce(void)
{
	if (board.announced)
		return;
	board.announced = 1;
	uintptr_t base = board.heap.region_count ? board.heap.regions[0].first - HTR_HEAP_HDR : 0;
	board.enc.ops->init(&board.enc, base, board.heap.heap_size);
	for (unsigned i = 1; i < board.heap.region_count; i++) {
		const struct htr_heap_region *r = &board.heap.regions[i];
		board.enc.ops->region(&board.enc, r->first - HTR_HEAP_HDR, r->end + HTR_HEAP_HDR - r->first);
	}
}

/* Periodic checkpoints let the analyser re-anchor its totals after drops. */
static void after_event(void)
{
	if (board.interval != 0 && ++board.since_check >= board.interval)
		checkpoint_locked();
}

int htr_board_add_region(void *buf, size_t size)
{
	if (!board.ready)
		return -1;
	uint32_t saved = htr_port_lock();
	int rc = htr_heap_add_region(&board.heap, buf, size);
	if (rc == 0 && board.announced) {
		const struct htr_heap_region *r = &board.heap.regions[board.heap.region_count - 1u];
		board.enc.ops->region(&board.enc, r->first - HTR_HEAP_HDR, r->end + HTR_HEAP_HDR - r->first);
	}
	htr_port_unlock(saved);
	return rc;
}

static void *alloc_common(int call, int persist, size_t align, size_t size, const char *file, int line,
			  uintptr_t pc)
{
	if (!board.ready)
		return NULL;
	struct htr_site site = {file, line, pc};
	uint32_t saved = htr_port_lock();
	announce();
	/* The aligned path also refuses alignments that are not powers of two. */
	int special = align > HTR_HEAP_ALIGN || (align & (align - 1u)) != 0;
	void *p = special ? htr_heap_alloc_aligned(&board.heap, align, size) : htr_heap_alloc(&board.heap, size);
	board.enc.ops->alloc(&board.enc, call, persist, p, size, align, &site);
	after_event();
	htr_port_unlock(saved);
	return p;
}

void *htr_malloc_at(size_t size, const char *file, int line)
{
	return alloc_common(HTR_ENC_CALL_MALLOC, 0, 0, size, file, line, HTR_PORT_CALLER());
}

void *htr_persistent_at(size_t size, const char *file, int line)
{
	return alloc_common(HTR_ENC_CALL_MALLOC, 1, 0, size, file, line, HTR_PORT_CALLER());
}

void *htr_calloc_at(size_t count, size_t size, const char *file, int line)
{
	uintptr_t pc = HTR_PORT_CALLER();
	size_t total = count * size;
	if (size != 0 && total / size != count)
		total = (size_t)-1; /* overflow: let the heap refuse it, logged */
	void *p = alloc_common(HTR_ENC_CALL_CALLOC, 0, 0, total, file, line, pc);
	if (p != NULL)
		memset(p, 0, total);
	return p;
}

void *htr_aligned_alloc_at(size_t alignment, size_t size, const char *file, int line)
{
	uintptr_t pc = HTR_PORT_CALLER();
	if (alignment == 0)
		alignment = 3; /* C11 makes 0 invalid: refused like any non-power of two, logged */
	return alloc_common(HTR_ENC_CALL_ALIGNED_ALLOC, 0, alignment, size, file, line, pc);
}

char *htr_strdup_at(const char *s, const char *file, int line)
{
	uintptr_t pc = HTR_PORT_CALLER();
	size_t n = strlen(s) + 1u;
	char *p = alloc_common(HTR_ENC_CALL_STRDUP, 0, 0, n, file, line, pc);
	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

static void free_locked(void *ptr, const struct htr_site *site)
{
	size_t size;
	enum htr_heap_status st = htr_heap_free(&board.heap, ptr, &size);
	board.enc.ops->free(&board.enc, ptr, (int)st, site);
	after_event();
}

void htr_free_at(void *ptr, const char *file, int line)
{
	uintptr_t pc = HTR_PORT_CALLER();
	if (ptr == NULL || !board.ready)
		return;
	struct htr_site site = {file, line, pc};
	uint32_t saved = htr_port_lock();
	announce();
	free_locked(ptr, &site);
	htr_port_unlock(saved);
}

void *htr_realloc_at(void *ptr, size_t size, const char *file, int line)
{
	uintptr_t pc = HTR_PORT_CALLER();
	if (ptr == NULL)
		return alloc_common(HTR_ENC_CALL_MALLOC, 0, 0, size, file, line, pc);
	if (!board.ready)
		return NULL;
	struct htr_site site = {file, line, pc};
	uint32_t saved = htr_port_lock();
	announce();
	void *result = NULL;
	enum htr_heap_status st = htr_heap_classify(&board.heap, ptr);
	if (st != HTR_HEAP_OK) {
		/* Refused like a bad free; the caller gets NULL. */
		board.heap.misuse_count++;
		board.enc.ops->free(&board.enc, ptr, (int)st, &site);
		after_event();
	} else if (size == 0) {
		size_t old;
		htr_heap_free(&board.heap, ptr, &old);
		board.enc.ops->realloc(&board.enc, ptr, NULL, 0, &site);
		after_event();
	} else {
		if (htr_heap_resize(&board.heap, ptr, size) == 0) {
			result = ptr;
		} else {
			size_t old = htr_heap_block_size(ptr);
			result = htr_heap_alloc(&board.heap, size);
			if (result != NULL) {
				memcpy(result, ptr, old < size ? old : size);
				htr_heap_free(&board.heap, ptr, &old);
				/* A realloc is one event, not an alloc and a free. */
				board.heap.alloc_count--;
				board.heap.free_count--;
			}
		}
		board.enc.ops->realloc(&board.enc, ptr, result, size, &site);
		after_event();
	}
	htr_port_unlock(saved);
	return result;
}

void htr_mark(const char *name)
{
	if (!board.ready)
		return;
	uint32_t saved = htr_port_lock();
	announce();
	board.enc.ops->mark(&board.enc, name != NULL ? name : "");
	/* Each segment starts from a known state. */
	checkpoint_locked();
	htr_port_unlock(saved);
}

int htr_get_heap_stats(struct htr_heap_stats *out)
{
	if (!board.ready) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	uint32_t saved = htr_port_lock();
	htr_heap_get_stats(&board.heap, out);
	htr_port_unlock(saved);
	return 0;
}

int htr_board_check(void)
{
	uint32_t saved = htr_port_lock();
	int rc = htr_heap_check(&board.heap);
	htr_port_unlock(saved);
	return rc;
}

void htr_board_checkpoint(void)
{
	if (!board.ready)
		return;
	uint32_t saved = htr_port_lock();
	announce();
	checkpoint_locked();
	htr_port_unlock(saved);
}

void htr_board_counters(uint32_t *records, uint32_t *lost, uint32_t *bytes)
{
	*records = board.enc.records;
	*lost = board.enc.total_drops;
	*bytes = board.enc.bytes;
}
