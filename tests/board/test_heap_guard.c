/* The heap built with HTR_HEAP_GUARD=1: a guard word after every block's
 * requested bytes, checked at free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "heap.h"

#if !HTR_HEAP_GUARD
#error "build with -DHTR_HEAP_GUARD=1"
#endif

static _Alignas(16) uint8_t arena[16 * 1024];
static struct htr_heap heap;

static int setup(void **state)
{
	(void)state;
	htr_heap_init(&heap);
	assert_int_equal(htr_heap_add_region(&heap, arena, sizeof(arena)), 0);
	return 0;
}

static void test_intact_blocks_free_cleanly(void **state)
{
	(void)state;
	for (size_t size = 0; size < 70; size++) {
		uint8_t *p = htr_heap_alloc(&heap, size);
		assert_non_null(p);
		memset(p, 0xEE, size); /* all of it, not one byte more */
		assert_int_equal(htr_heap_block_size(p), size);
		assert_int_equal(htr_heap_free(&heap, p, NULL), HTR_HEAP_OK);
	}
	assert_int_equal(htr_heap_check(&heap), 0);
}

static void test_overrun_by_one_byte_is_caught(void **state)
{
	(void)state;
	for (size_t size = 1; size < 40; size += 3) {
		uint8_t *p = htr_heap_alloc(&heap, size);
		uint8_t *q = htr_heap_alloc(&heap, 16);
		memset(p, 0xEE, size + 1);
		size_t got = 0;
		assert_int_equal(htr_heap_free(&heap, p, &got), HTR_HEAP_GUARD_HIT);
		assert_int_equal(got, size);
		/* Reported, and still freed: the heap stays consistent. */
		assert_int_equal(htr_heap_check(&heap), 0);
		assert_int_equal(htr_heap_free(&heap, p, NULL), HTR_HEAP_DOUBLE);
		assert_int_equal(htr_heap_free(&heap, q, NULL), HTR_HEAP_OK);
	}
	struct htr_heap_stats s;
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.live_blocks, 0);
	assert_int_equal(s.used_bytes, 0);
}

static void test_largest_free_leaves_room_for_the_guard(void **state)
{
	(void)state;
	struct htr_heap_stats s;
	htr_heap_get_stats(&heap, &s);
	assert_int_equal(s.largest_free, s.free_bytes - 4);
	void *p = htr_heap_alloc(&heap, s.largest_free);
	assert_non_null(p);
	assert_int_equal(htr_heap_free(&heap, p, NULL), HTR_HEAP_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_intact_blocks_free_cleanly, setup),
		cmocka_unit_test_setup(test_overrun_by_one_byte_is_caught, setup),
		cmocka_unit_test_setup(test_largest_free_leaves_room_for_the_guard, setup),
	};
	return cmocka_run_group_tests_name("board heap with guard words", tests, NULL, NULL);
}
