/* Host build of the probe harness: the board TLSF heap (BH_TLSF) or the C
 * library's malloc (glibc, as a reference), run under callgrind by bench/run.
 * The TLSF build also takes --api (the whole board API: heap + binary
 * encoder) and --wire (the board encoders' bytes per event). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bh_probe.h"

#ifdef BH_TLSF
#include "heap.h"

int bh_wire(int quick);

static struct htr_heap heap;
static _Alignas(8) unsigned char arena[BH_ARENA_BYTES];

static void tlsf_reset(void)
{
	htr_heap_init(&heap);
	if (htr_heap_add_region(&heap, arena, sizeof arena) != 0) {
		fputs("bh_heap: htr_heap_add_region failed\n", stderr);
		exit(1);
	}
}

static void *tlsf_alloc(size_t size)
{
	return htr_heap_alloc(&heap, size);
}

static void tlsf_release(void *ptr)
{
	htr_heap_free(&heap, ptr, NULL);
}

static const struct bh_heap_ops ops = {"", tlsf_reset, tlsf_alloc, tlsf_release};
#else
static void libc_reset(void) {}

static const struct bh_heap_ops ops = {"", libc_reset, malloc, free};
#endif

void bh_puts(const char *s)
{
	fputs(s, stdout);
}

int main(int argc, char **argv)
{
	int quick = 0, wire = 0, api = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--wire") == 0)
			wire = 1;
		else if (strcmp(argv[i], "--api") == 0)
			api = 1;
		else {
			fprintf(stderr, "usage: %s [--quick] [--wire | --api]\n", argv[0]);
			return 2;
		}
	}
#ifdef BH_TLSF
	if (wire)
		return bh_wire(quick);
	bh_run(api ? &bh_api_ops : &ops, quick);
#else
	if (wire || api) {
		fputs("--wire and --api need the board heap build\n", stderr);
		return 2;
	}
	bh_run(&ops, quick);
#endif
	return 0;
}
