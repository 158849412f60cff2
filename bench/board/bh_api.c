/* The board backend as a firmware sees it: htr_malloc_at/htr_free_at, i.e.
 * the TLSF heap plus the binary encoder and the port lock, into a transport
 * that takes every record and does nothing with it. Against the bare heap
 * rows this shows what tracing adds per call; the UART's own time is the
 * transport's, not counted here. */
#include <stdint.h>

#include "bh_probe.h"
#include "heaptrail.h"
#include "heaptrail_board.h"

static int bh_null_write(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
	return 0;
}

static const struct htr_transport bh_null_transport = {bh_null_write, NULL};
static _Alignas(8) unsigned char api_arena[BH_ARENA_BYTES];

/* One call site each, as a firmware's malloc wrapper would have: the site
 * record goes out once, then every event refers to it by id. noipa: the
 * caller PC is part of a site, and an inlined or cloned copy would be a new
 * site. */
__attribute__((noipa)) static void *api_alloc(size_t size)
{
	void *p = htr_malloc_at(size, "app/main.c", 42);
	/* Not a tail call: a jump would hand htr_malloc_at our caller's PC. */
	__asm__ volatile("" ::: "memory");
	return p;
}

__attribute__((noipa)) static void api_release(void *ptr)
{
	htr_free_at(ptr, "app/main.c", 43);
	__asm__ volatile("" ::: "memory");
}

static void api_reset(void)
{
	const struct htr_board_config cfg = {HTR_BOARD_BINARY, &bh_null_transport, 0};
	htr_board_init(&cfg);
	htr_board_add_region(api_arena, sizeof api_arena);
	/* The init record and the two site records go out once per run: sent
	 * here, through the same call sites (a site is file, line and caller
	 * PC), so the probes measure the steady state. */
	api_release(api_alloc(8));
}

const struct bh_heap_ops bh_api_ops = {"api", api_reset, api_alloc, api_release};
