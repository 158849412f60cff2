/* CMocka tests of the engine's internals through its sink: the lazy peak
 * snapshot, the live table under collisions and deletions, realloc and
 * heap-init semantics. Events go straight to eng_event(); results are read
 * back from the JSON the engine writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"

static struct engine *eng;
static char *json;

static void start(int origin)
{
	eng = eng_new();
	eng_begin_input(eng, "unit", "unit", origin);
}

static void finish(void)
{
	eng_end_input(eng);
	size_t len;
	FILE *f = open_memstream(&json, &len);
	assert_non_null(f);
	eng_write_json(eng, f);
	fclose(f);
}

static void done(void)
{
	free(json);
	json = NULL;
	eng_free(eng);
}

static void def_stack(uint32_t id, uint64_t frame)
{
	struct htr_event ev = {.type = HTR_EV_STACK, .id = id, .depth = 1, .frames = &frame};
	eng_event(eng, &ev);
}

static void alloc(uint64_t ptr, uint64_t size, uint32_t stack)
{
	struct htr_event ev = {.type = HTR_EV_ALLOC, .ptr = ptr, .size = size, .stack = stack};
	eng_event(eng, &ev);
}

static void release(uint64_t ptr)
{
	struct htr_event ev = {.type = HTR_EV_FREE, .ptr = ptr};
	eng_event(eng, &ev);
}

/* The number after "key": in the aggregate whose frames are [frame]. */
static long long agg_field(uint64_t frame, const char *key)
{
	char needle[64];
	snprintf(needle, sizeof(needle), "\"frames\":[\"0x%llx\"]", (unsigned long long)frame);
	const char *a = strstr(json, needle);
	assert_non_null(a);
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *v = strstr(a, k);
	assert_non_null(v);
	return atoll(v + strlen(k));
}

static long long total(const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *v = strstr(json, k);
	assert_non_null(v);
	return atoll(v + strlen(k));
}

static void test_peak_snapshot(void **state)
{
	(void)state;
	start(HTR_ORIGIN_HOST);
	def_stack(1, 0xa1);
	def_stack(2, 0xb2);
	alloc(0x100, 50, 1);
	alloc(0x200, 30, 2); /* 80: a peak */
	release(0x100);      /* 30: stack 1 changes after the peak */
	alloc(0x300, 20, 1); /* 50 */
	alloc(0x400, 40, 2); /* 90: new peak: stack 1 has 20, stack 2 has 70 */
	release(0x200);
	release(0x400);
	alloc(0x500, 5, 2);
	finish();
	assert_int_equal(total("peak_bytes"), 90);
	assert_int_equal(agg_field(0xa1, "peak_bytes"), 20);
	assert_int_equal(agg_field(0xb2, "peak_bytes"), 70);
	assert_int_equal(agg_field(0xa1, "leaked_bytes"), 20);
	assert_int_equal(agg_field(0xb2, "leaked_bytes"), 5);
	done();
}

static void test_live_table_churn(void **state)
{
	(void)state;
	start(HTR_ORIGIN_HOST);
	def_stack(1, 0xc3);
	/* Pointers 1 MiB apart, grown past several table resizes, then
	 * every other one freed: probe chains must survive deletion. */
	enum { N = 20000 };
	for (uint64_t i = 1; i <= N; i++)
		alloc(i << 20, 1, 1);
	for (uint64_t i = 1; i <= N; i += 2)
		release(i << 20);
	for (uint64_t i = 2; i <= N; i += 4)
		release(i << 20);
	for (uint64_t i = 1; i <= N; i += 2)
		alloc(i << 20, 2, 1);
	finish();
	assert_int_equal(total("frees"), N / 2 + N / 4);
	assert_int_equal(agg_field(0xc3, "leaked_blocks"), N / 2 + N / 4);
	assert_int_equal(agg_field(0xc3, "leaked_bytes"), N / 4 + N);
	assert_int_equal(total("unmatched_frees"), 0);
	done();
}

/* The table keeps neighbours in neighbouring slots, so a dense heap (16-byte
 * blocks back to back, as a slab allocator or the board heap hands out)
 * fills long runs of slots, and page-aligned blocks share their low bits:
 * deletions in scattered order inside such runs must keep every probe
 * chain whole. */
static void test_live_table_dense_and_aligned(void **state)
{
	(void)state;
	start(HTR_ORIGIN_HOST);
	def_stack(1, 0xd4);
	def_stack(2, 0xe5);
	enum { N = 6000 };
	const uint64_t dense = 0x5555000000, aligned = 0x7f0000000010;
	for (uint64_t i = 0; i < N; i++) {
		alloc(dense + 16 * i, 8, 1);
		alloc(aligned + 4096 * i, 100, 2);
	}
	/* 7919 is prime: every index once, in scattered order; two in three. */
	uint64_t freed = 0;
	for (uint64_t n = 0; n < N; n++) {
		uint64_t i = n * 7919 % N;
		if (i % 3 == 0)
			continue;
		release(dense + 16 * i);
		release(aligned + 4096 * i);
		freed++;
	}
	/* Freed again: each must be found gone, not matched to a neighbour. */
	for (uint64_t i = 1; i < N; i += 3)
		release(dense + 16 * i);
	finish();
	assert_int_equal(total("frees"), 2 * freed);
	assert_int_equal(agg_field(0xd4, "leaked_blocks"), N - freed);
	assert_int_equal(agg_field(0xe5, "leaked_blocks"), N - freed);
	assert_int_equal(agg_field(0xe5, "leaked_bytes"), 100 * (N - freed));
	assert_int_equal(total("unmatched_frees"), (N + 1) / 3); /* the recorder judges host frees */
	done();
}

static void test_realloc_rules(void **state)
{
	(void)state;
	start(HTR_ORIGIN_HOST);
	def_stack(1, 0xd4);
	struct htr_event r = {.type = HTR_EV_REALLOC, .stack = 1};
	r.ptr = 0, r.ptr2 = 0x10, r.size = 8; /* realloc(NULL, 8) */
	eng_event(eng, &r);
	r.ptr = 0x10, r.ptr2 = 0x20, r.size = 16; /* moved */
	eng_event(eng, &r);
	r.ptr = 0x20, r.ptr2 = 0, r.size = 99; /* failed: 0x20 stays */
	eng_event(eng, &r);
	r.ptr = 0x20, r.ptr2 = 0x20, r.size = 4; /* in place, shrunk */
	eng_event(eng, &r);
	alloc(0x30, 1, 1);
	r.ptr = 0x30, r.ptr2 = 0, r.size = 0; /* realloc(p, 0) frees */
	eng_event(eng, &r);
	finish();
	assert_int_equal(agg_field(0xd4, "leaked_blocks"), 1);
	assert_int_equal(agg_field(0xd4, "leaked_bytes"), 4);
	assert_int_equal(total("failed_allocations"), 1);
	assert_int_equal(total("peak_bytes"), 16);
	done();
}

static void test_heap_init_accounts_and_resets(void **state)
{
	(void)state;
	start(HTR_ORIGIN_TEXT);
	struct htr_event init = {.type = HTR_EV_HEAP_INIT, .ptr = 0x1000, .size = 1000};
	eng_event(eng, &init);
	def_stack(1, 0xe5);
	alloc(0x1010, 100, 1);
	eng_event(eng, &init); /* the 100 bytes leak in segment 1 */
	alloc(0x1010, 10, 1);  /* same address, new heap: not a realloc */
	release(0x1010);
	release(0x1010); /* double free: it was freed in this heap */
	release(0x1234); /* invalid */
	finish();
	assert_int_equal(agg_field(0xe5, "leaked_bytes"), 100);
	assert_int_equal(total("free_errors"), 2);
	assert_non_null(strstr(json, "\"kind\":\"double-free\""));
	assert_non_null(strstr(json, "\"kind\":\"invalid-free\""));
	assert_non_null(strstr(json, "\"heap_size\":1000"));
	assert_int_equal(total("peak_bytes"), 100);
	done();
}

/* A live table of 2 MiB or more is mapped outside malloc's heap: the
 * engine's memory measure must still count it, also once a heap init has
 * shrunk it, and the table must work across mapped growth and the shrink. */
static void test_mapped_live_table_counted(void **state)
{
	(void)state;
	start(HTR_ORIGIN_HOST);
	def_stack(1, 0xf6);
	enum { N = 30000 }; /* 131072 slots of 32 bytes: 4 MiB */
	for (uint64_t i = 1; i <= N; i++)
		alloc(0x7f0000000000 + 48 * i, 3, 1);
	for (uint64_t i = 1; i <= N; i += 2)
		release(0x7f0000000000 + 48 * i);
	const size_t table = (size_t)131072 * 32;
	assert_true(eng_memory_high_water(eng) >= table);
	struct htr_event init = {.type = HTR_EV_HEAP_INIT, .ptr = 0x1000, .size = 1000};
	eng_event(eng, &init); /* the live blocks leak; the table shrinks */
	assert_true(eng_memory_high_water(eng) >= table);
	alloc(0x2000, 7, 1);
	release(0x2000);
	alloc(0x3000, 5, 1);
	finish();
	assert_int_equal(total("frees"), N / 2 + 1);
	assert_int_equal(agg_field(0xf6, "leaked_blocks"), N / 2 + 1);
	assert_int_equal(agg_field(0xf6, "leaked_bytes"), 3 * (N / 2) + 5);
	done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_peak_snapshot),
		cmocka_unit_test(test_live_table_churn),
		cmocka_unit_test(test_live_table_dense_and_aligned),
		cmocka_unit_test(test_realloc_rules),
		cmocka_unit_test(test_heap_init_accounts_and_resets),
		cmocka_unit_test(test_mapped_live_table_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
