/* Unit tests for the TLSF heap (lib/board/heap*.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "heap.h"

static _Alignas(16) uint8_t arena[64 * 1024];
static _Alignas(16) uint8_t arena2[8 * 1024];

static struct htr_heap heap;

static int setup(void **state)
{
	(void)state;
	htr_heap_init(&heap);
	assert_int_equal(htr_heap_add_region(&heap, arena, sizeof(arena)), 0);
	return 0;
}

static void test_init_stats(void **state)
{
	(void)state;
	struct htr_heap_stats s;
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.heap_size, sizeof(arena));
	/* One free block: everything minus the two headers. */
	assert_int_equal(s.free_bytes, sizeof(arena) - 2 * HTR_HEAP_HDR);
	assert_int_equal(s.largest_free, s.free_bytes);
	assert_int_equal(s.free_blocks, 1);
	assert_int_equal(s.live_blocks, 0);
	assert_int_equal(s.min_free_bytes, s.free_bytes);
	assert_int_equal(htr_fragmentation_permille(&s), 0);
	assert_int_equal(htr_heap_check(&heap), 0);
}

static void test_alloc_free_alignment_and_sizes(void **state)
{
	(void)state;
	void *p[64];
	for (unsigned i = 0; i < 64; i++) {
		p[i] = htr_heap_alloc(&heap, i * 7 + 1);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 8, 0);
		assert_true((uint8_t *)p[i] >= arena && (uint8_t *)p[i] < arena + sizeof(arena));
		memset(p[i], 0xA5, i * 7 + 1);
		assert_int_equal(htr_heap_block_size(p[i]), i * 7 + 1);
	}
	assert_int_equal(htr_heap_check(&heap), 0);
	struct htr_heap_stats s;
	htr_heap_get_stats(&heap, &s);
	size_t want = 0;
	for (unsigned i = 0; i < 64; i++)
		want += i * 7 + 1;
	assert_int_equal(s.used_bytes, want);
	assert_int_equal(s.peak_used_bytes, want);
	assert_int_equal(s.live_blocks, 64);
	assert_int_equal(s.alloc_count, 64);
	/* No two blocks overlap. */
	for (unsigned i = 0; i < 64; i++)
		for (unsigned j = i + 1; j < 64; j++) {
			uint8_t *a = p[i], *b = p[j];
			assert_true(a + i * 7 + 1 <= b || b + j * 7 + 1 <= a);
		}
	for (unsigned i = 0; i < 64; i++)
		assert_int_equal(htr_heap_free(&heap, p[i], NULL), HTR_HEAP_OK);
	assert_int_equal(htr_heap_check(&heap), 0);
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.used_bytes, 0);
	assert_int_equal(s.peak_used_bytes, want);
	assert_int_equal(s.free_blocks, 1); /* everything merged back */
	assert_int_equal(s.free_bytes, sizeof(arena) - 2 * HTR_HEAP_HDR);
	assert_true(s.min_free_bytes < s.free_bytes);
}

static void test_coalescing_patterns(void **state)
{
	(void)state;
	void *p[5];
	for (int i = 0; i < 5; i++)
		p[i] = htr_heap_alloc(&heap, 100);
	struct htr_heap_stats s;
	/* Free 1 and 3: two holes plus the tail. */
	htr_heap_free(&heap, p[1], NULL);
	htr_heap_free(&heap, p[3], NULL);
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.free_blocks, 3);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* Freeing 2 merges 1, 2 and 3 into one hole. */
	htr_heap_free(&heap, p[2], NULL);
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.free_blocks, 2);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* Freeing 4 merges the hole, 4 and the tail. */
	htr_heap_free(&heap, p[4], NULL);
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.free_blocks, 1);
	htr_heap_free(&heap, p[0], NULL);
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.free_blocks, 1);
	assert_int_equal(s.largest_free, sizeof(arena) - 2 * HTR_HEAP_HDR);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* The hole left by a freed block is reused by a fitting request. */
	void *a = htr_heap_alloc(&heap, 200);
	void *b = htr_heap_alloc(&heap, 200);
	htr_heap_alloc(&heap, 200);
	htr_heap_free(&heap, b, NULL);
	assert_ptr_equal(htr_heap_alloc(&heap, 150), b);
	(void)a;
}

static void test_fragmentation(void **state)
{
	(void)state;
	void *p[200];
	unsigned n = 0;
	while (n < 200 && (p[n] = htr_heap_alloc(&heap, 256)) != NULL)
		n++;
	assert_int_equal(n, 200);
	for (unsigned i = 0; i < n; i += 2)
		htr_heap_free(&heap, p[i], NULL);
	struct htr_heap_stats s;
	htr_heap_get_stats(&heap, &s);
	/* 100 holes of 256 and the tail. */
	assert_int_equal(s.free_blocks, 101);
	unsigned frag = htr_fragmentation_permille(&s);
	size_t tail = s.largest_free;
	assert_int_equal(frag, 1000u - (unsigned)((uint64_t)tail * 1000u / s.free_bytes));
	assert_true(frag > 0);
	/* Filling the tail leaves only the holes: 100 equal pieces. */
	void *big = htr_heap_alloc(&heap, tail);
	assert_non_null(big);
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.largest_free, 256);
	assert_int_equal(s.free_blocks, 100);
	assert_int_equal(htr_fragmentation_permille(&s), 990);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* A request larger than any hole fails although the total would fit. */
	assert_null(htr_heap_alloc(&heap, 1024));
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.failed_count, 1);
	assert_true(s.free_bytes > 1024);
}

static void test_exhaustion_and_largest(void **state)
{
	(void)state;
	struct htr_heap_stats s;
	htr_heap_get_stats(&heap, &s);
	void *all = htr_heap_alloc(&heap, s.largest_free);
	assert_non_null(all);
	assert_null(htr_heap_alloc(&heap, 1));
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.free_bytes, 0);
	assert_int_equal(s.min_free_bytes, 0);
	assert_int_equal(htr_heap_free(&heap, all, NULL), HTR_HEAP_OK);
	assert_null(htr_heap_alloc(&heap, sizeof(arena)));
	assert_null(htr_heap_alloc(&heap, (size_t)-1));
	assert_int_equal(htr_heap_check(&heap), 0);
}

static void test_misuse(void **state)
{
	(void)state;
	uint8_t *p = htr_heap_alloc(&heap, 40);
	uint8_t *q = htr_heap_alloc(&heap, 40);
	assert_int_equal(htr_heap_free(&heap, p, NULL), HTR_HEAP_OK);
	struct htr_heap_stats before, after;
	htr_heap_get_stats(&heap, &before);
	assert_int_equal(htr_heap_free(&heap, p, NULL), HTR_HEAP_DOUBLE);
	assert_int_equal(htr_heap_free(&heap, q + 8, NULL), HTR_HEAP_INVALID); /* interior */
	assert_int_equal(htr_heap_free(&heap, q + 3, NULL), HTR_HEAP_INVALID); /* unaligned */
	static uint64_t not_heap[4];
	assert_int_equal(htr_heap_free(&heap, not_heap, NULL), HTR_HEAP_INVALID);
	assert_int_equal(htr_heap_free(&heap, arena2 + 64, NULL), HTR_HEAP_INVALID); /* not a region */
	htr_heap_get_stats(&heap, &after);
	/* Refused: nothing moved. */
	assert_int_equal(after.free_bytes, before.free_bytes);
	assert_int_equal(after.free_blocks, before.free_blocks);
	assert_int_equal(after.live_blocks, before.live_blocks);
	assert_int_equal(after.misuse_count, before.misuse_count + 5);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* A double free of a block merged into its free neighbour still reads
	 * as double, from the header left behind. */
	assert_int_equal(htr_heap_free(&heap, q, NULL), HTR_HEAP_OK);
	assert_int_equal(htr_heap_free(&heap, q, NULL), HTR_HEAP_DOUBLE);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* The heap still works. */
	void *r = htr_heap_alloc(&heap, 40);
	assert_ptr_equal(r, p);
}

static void test_corruption_detected_by_walk(void **state)
{
	(void)state;
	uint8_t *p = htr_heap_alloc(&heap, 32);
	htr_heap_alloc(&heap, 32);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* An overrun of p into the next header. */
	memset(p, 0x55, 32 + 8 + 4);
	assert_int_not_equal(htr_heap_check(&heap), 0);
	/* and the next block can no longer be freed as if nothing happened */
	assert_int_equal(htr_heap_classify(&heap, p + 40), HTR_HEAP_INVALID);
}

static void test_multiple_regions(void **state)
{
	(void)state;
	assert_int_equal(htr_heap_add_region(&heap, arena2 + 3, sizeof(arena2) - 3), 0);
	struct htr_heap_stats s;
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.free_blocks, 2);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* Fill the big region; the small one serves what is left. */
	void *big = htr_heap_alloc(&heap, sizeof(arena) - 2 * HTR_HEAP_HDR);
	assert_non_null(big);
	uint8_t *small = htr_heap_alloc(&heap, 1000);
	assert_non_null(small);
	assert_true(small >= arena2 && small < arena2 + sizeof(arena2));
	assert_int_equal(htr_heap_free(&heap, small, NULL), HTR_HEAP_OK);
	assert_int_equal(htr_heap_free(&heap, big, NULL), HTR_HEAP_OK);
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.free_blocks, 2); /* regions never merge */
	assert_int_equal(htr_heap_check(&heap), 0);
	/* Too small a region is refused, and so is a fifth one. */
	static uint8_t tiny[16];
	assert_int_equal(htr_heap_add_region(&heap, tiny, sizeof(tiny)), -1);
	static _Alignas(8) uint8_t extra[3][256];
	assert_int_equal(htr_heap_add_region(&heap, extra[0], 256), 0);
	assert_int_equal(htr_heap_add_region(&heap, extra[1], 256), 0);
	assert_int_equal(htr_heap_add_region(&heap, extra[2], 256), -1);
}

static void test_large_region_no_cap(void **state)
{
	(void)state;
	static _Alignas(8) uint8_t big[1024 * 1024];
	struct htr_heap h;
	htr_heap_init(&h);
	assert_int_equal(htr_heap_add_region(&h, big, sizeof(big)), 0);
	void *p = htr_heap_alloc(&h, 900 * 1024);
	assert_non_null(p);
	assert_int_equal(htr_heap_check(&h), 0);
	assert_int_equal(htr_heap_free(&h, p, NULL), HTR_HEAP_OK);
}

static void test_aligned(void **state)
{
	(void)state;
	size_t aligns[] = {16, 32, 64, 256, 1024, 4096};
	void *p[6];
	htr_heap_alloc(&heap, 24); /* so the next free block is not aligned */
	for (unsigned i = 0; i < 6; i++) {
		p[i] = htr_heap_alloc_aligned(&heap, aligns[i], 100);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % aligns[i], 0);
		assert_int_equal(htr_heap_block_size(p[i]), 100);
		assert_int_equal(htr_heap_check(&heap), 0);
	}
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(htr_heap_free(&heap, p[i], NULL), HTR_HEAP_OK);
	assert_int_equal(htr_heap_check(&heap), 0);
	assert_null(htr_heap_alloc_aligned(&heap, 24, 100)); /* not a power of two */
	assert_ptr_not_equal(htr_heap_alloc_aligned(&heap, 8, 10), NULL);
}

static void test_resize(void **state)
{
	(void)state;
	uint8_t *p = htr_heap_alloc(&heap, 64);
	memset(p, 7, 64);
	/* Grows into the free tail, in place. */
	assert_int_equal(htr_heap_resize(&heap, p, 4000), 0);
	assert_int_equal(htr_heap_block_size(p), 4000);
	assert_int_equal(p[63], 7);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* Shrinks in place, giving the tail back. */
	struct htr_heap_stats s1, s2;
	htr_heap_get_stats(&heap, &s1);
	assert_int_equal(htr_heap_resize(&heap, p, 100), 0);
	htr_heap_get_stats(&heap, &s2);
	assert_int_equal(s2.used_bytes, 100);
	assert_true(s2.free_bytes > s1.free_bytes + 3800);
	assert_int_equal(htr_heap_check(&heap), 0);
	/* Blocked by a live neighbour: cannot grow in place. */
	uint8_t *q = htr_heap_alloc(&heap, 64);
	assert_ptr_equal(q, p + 104 + HTR_HEAP_HDR);
	assert_int_equal(htr_heap_resize(&heap, p, 500), -1);
	assert_int_equal(htr_heap_block_size(p), 100);
	/* After the neighbour goes, it can. */
	htr_heap_free(&heap, q, NULL);
	assert_int_equal(htr_heap_resize(&heap, p, 500), 0);
	assert_int_equal(htr_heap_check(&heap), 0);
}

static void test_random_soak(void **state)
{
	(void)state;
	void *p[128] = {0};
	size_t sz[128] = {0};
	uint32_t x = 12345;
	size_t used = 0;
	for (int iter = 0; iter < 20000; iter++) {
		x = x * 1103515245u + 12345u;
		unsigned i = (x >> 16) % 128;
		if (p[i] != NULL) {
			for (size_t k = 0; k < sz[i]; k++)
				assert_int_equal(((uint8_t *)p[i])[k], (uint8_t)i);
			assert_int_equal(htr_heap_free(&heap, p[i], NULL), HTR_HEAP_OK);
			used -= sz[i];
			p[i] = NULL;
		} else {
			sz[i] = (x >> 8) % 700;
			p[i] = (x & 1) ? htr_heap_alloc(&heap, sz[i]) : htr_heap_alloc_aligned(&heap, 32, sz[i]);
			if (p[i] != NULL) {
				memset(p[i], (int)i, sz[i]);
				used += sz[i];
			}
		}
		if (iter % 500 == 0) {
			assert_int_equal(htr_heap_check(&heap), 0);
			struct htr_heap_stats s;
			htr_heap_get_stats(&heap, &s);
			assert_int_equal(s.used_bytes, used);
		}
	}
	assert_int_equal(htr_heap_check(&heap), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_init_stats, setup),
		cmocka_unit_test_setup(test_alloc_free_alignment_and_sizes, setup),
		cmocka_unit_test_setup(test_coalescing_patterns, setup),
		cmocka_unit_test_setup(test_fragmentation, setup),
		cmocka_unit_test_setup(test_exhaustion_and_largest, setup),
		cmocka_unit_test_setup(test_misuse, setup),
		cmocka_unit_test_setup(test_corruption_detected_by_walk, setup),
		cmocka_unit_test_setup(test_multiple_regions, setup),
		cmocka_unit_test_setup(test_large_region_no_cap, setup),
		cmocka_unit_test_setup(test_aligned, setup),
		cmocka_unit_test_setup(test_resize, setup),
		cmocka_unit_test_setup(test_random_soak, setup),
	};
	return cmocka_run_group_tests_name("board heap", tests, NULL, NULL);
}
