/* Stack interning: equal frames give one id, any difference a new one;
 * capture from real code is stable per call site. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "unit_stubs.h"

static void test_intern_table(void **state)
{
	(void)state;
	struct htr_stack_table *t = htr_stack_table_new();
	assert_non_null(t);
	uint64_t a[3] = { 0x401000, 0x402000, 0x403000 };
	uint64_t b[3] = { 0x401000, 0x402000, 0x403001 };
	bool is_new;
	uint32_t ia = htr_stack_table_intern(t, a, 3, &is_new);
	assert_true(is_new);
	assert_int_equal(ia, 1);
	assert_int_equal(htr_stack_table_intern(t, a, 3, &is_new), ia);
	assert_false(is_new);
	uint32_t ib = htr_stack_table_intern(t, b, 3, &is_new);
	assert_true(is_new);
	assert_int_equal(ib, 2);
	/* A prefix is another stack. */
	uint32_t ic = htr_stack_table_intern(t, a, 2, &is_new);
	assert_true(is_new);
	assert_int_equal(ic, 3);
	assert_int_equal(htr_stack_table_intern(t, b, 3, &is_new), ib);
}

static void test_many_stacks(void **state)
{
	(void)state;
	struct htr_stack_table *t = htr_stack_table_new();
	bool is_new;
	for (uint64_t i = 0; i < 50000; i++) {
		uint64_t f[4] = { 0x1000, i, i * 7, 42 };
		assert_int_equal(htr_stack_table_intern(t, f, 4, &is_new), i + 1);
		assert_true(is_new);
	}
	for (uint64_t i = 0; i < 50000; i += 997) {
		uint64_t f[4] = { 0x1000, i, i * 7, 42 };
		assert_int_equal(htr_stack_table_intern(t, f, 4, &is_new), i + 1);
		assert_false(is_new);
	}
}

static void test_hash_depends_on_every_frame(void **state)
{
	(void)state;
	uint64_t f[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	uint64_t h = htr_stack_hash(f, 8);
	for (int i = 0; i < 8; i++) {
		f[i] ^= 0x10;
		assert_true(htr_stack_hash(f, 8) != h);
		f[i] ^= 0x10;
	}
	assert_true(htr_stack_hash(f, 7) != h);
	assert_true(htr_stack_hash(f, 0) != 0);
}

static __attribute__((noinline)) uint32_t capture_here(struct htr_writer *w)
{
	uint32_t id = htr_stack_capture(w, 16);
	__asm__ volatile("" ::: "memory"); /* keep it from becoming a tail call */
	return id;
}

static __attribute__((noinline)) uint32_t capture_elsewhere(struct htr_writer *w)
{
	uint32_t id = htr_stack_capture(w, 16);
	__asm__ volatile("" ::: "memory");
	return id;
}

static void test_capture(void **state)
{
	(void)state;
	struct htr_writer w;
	memset(&w, 0, sizeof(w));
	w.generation = htr_file_generation;
	htr_stacks_set_self(0, 0); /* here the recorder is linked into the test itself */
	uint32_t ids[3];
	volatile int rounds = 3; /* keeps the loop from being unrolled into three call sites */
	for (int i = 0; i < rounds; i++)
		ids[i] = capture_here(&w); /* one call site, one id */
	assert_true(ids[0] != 0);
	assert_int_equal(ids[0], ids[1]);
	assert_int_equal(ids[1], ids[2]);
	uint32_t other = capture_elsewhere(&w);
	assert_true(other != 0);
	assert_true(other != ids[0]);
	/* Each new stack checks the module map first. */
	assert_true(htr_test_module_scans >= 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_intern_table),
		cmocka_unit_test(test_many_stacks),
		cmocka_unit_test(test_hash_depends_on_every_frame),
		cmocka_unit_test(test_capture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
