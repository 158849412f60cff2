/* The live-pointer table: insert/remove/lookup, growth, double-free memory,
 * and concurrent use from threads. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "unit_stubs.h"

static int reset(void **state)
{
	(void)state;
	htr_live_reset_for_tests();
	return 0;
}

static struct htr_live_entry entry(uint64_t ptr, uint64_t size, uint32_t stack, uint8_t call)
{
	struct htr_live_entry e;
	memset(&e, 0, sizeof(e));
	e.ptr = ptr;
	e.size = size;
	e.stack = stack;
	e.site = stack + 1000;
	e.call = call;
	return e;
}

static void test_insert_lookup_remove(void **state)
{
	(void)state;
	struct htr_live_entry e = entry(0x1000, 64, 7, HTR_CALL_MALLOC), out;
	struct htr_freed_entry f;
	htr_live_insert(&e);
	assert_int_equal(htr_live_count(), 1);
	assert_true(htr_live_lookup(0x1000, &out));
	assert_int_equal(out.size, 64);
	assert_int_equal(out.stack, 7);
	assert_false(htr_live_lookup(0x1010, &out));
	assert_int_equal(htr_live_remove(0x1010, &out, &f, true, 1, 2, HTR_CALL_FREE), HTR_LIVE_UNKNOWN);
	assert_int_equal(htr_live_remove(0x1000, &out, &f, true, 9, 10, HTR_CALL_FREE), HTR_LIVE_FOUND);
	assert_int_equal(out.ptr, 0x1000);
	assert_int_equal(out.call, HTR_CALL_MALLOC);
	assert_int_equal(htr_live_count(), 0);
	assert_false(htr_live_lookup(0x1000, &out));
}

static void test_double_free_memory(void **state)
{
	(void)state;
	struct htr_live_entry e = entry(0x2000, 100, 3, HTR_CALL_NEW), out;
	struct htr_freed_entry f;
	htr_live_insert(&e);
	assert_int_equal(htr_live_remove(0x2000, &out, &f, true, 44, 45, HTR_CALL_DELETE),
			 HTR_LIVE_FOUND);
	memset(&f, 0, sizeof(f));
	assert_int_equal(htr_live_remove(0x2000, &out, &f, true, 55, 56, HTR_CALL_DELETE),
			 HTR_LIVE_FREED);
	assert_int_equal(f.ptr, 0x2000);
	assert_int_equal(f.size, 100);
	assert_int_equal(f.alloc_stack, 3);
	assert_int_equal(f.alloc_site, 1003);
	assert_int_equal(f.free_stack, 44);
	assert_int_equal(f.free_site, 45);
	assert_int_equal(f.alloc_call, HTR_CALL_NEW);
	assert_int_equal(f.free_call, HTR_CALL_DELETE);

	/* The address comes back from the allocator and is freed again: the
	 * newest free is the one named. */
	e = entry(0x2000, 8, 4, HTR_CALL_MALLOC);
	htr_live_insert(&e);
	assert_int_equal(htr_live_remove(0x2000, &out, &f, true, 66, 67, HTR_CALL_FREE), HTR_LIVE_FOUND);
	assert_int_equal(htr_live_remove(0x2000, &out, &f, true, 0, 0, HTR_CALL_FREE), HTR_LIVE_FREED);
	assert_int_equal(f.free_stack, 66);
	assert_int_equal(f.size, 8);

	/* Without `remember`, nothing is kept. */
	e = entry(0x3000, 8, 4, HTR_CALL_MALLOC);
	htr_live_insert(&e);
	assert_int_equal(htr_live_remove(0x3000, &out, &f, false, 0, 0, 0), HTR_LIVE_FOUND);
	assert_int_equal(htr_live_remove(0x3000, &out, &f, true, 0, 0, 0), HTR_LIVE_UNKNOWN);
}

static void test_freed_memory_is_bounded(void **state)
{
	(void)state;
	struct htr_live_entry out;
	struct htr_freed_entry f;
	/* Far more frees than all shards remember: the oldest are forgotten. */
	const uint64_t n = 64u * HTR_FREED_RING * 4u;
	for (uint64_t i = 1; i <= n; i++) {
		struct htr_live_entry e = entry(i * 16, 1, 1, HTR_CALL_MALLOC);
		htr_live_insert(&e);
		assert_int_equal(htr_live_remove(i * 16, &out, &f, true, 2, 0, HTR_CALL_FREE),
				 HTR_LIVE_FOUND);
	}
	assert_int_equal(htr_live_remove(n * 16, &out, &f, true, 0, 0, 0), HTR_LIVE_FREED);
	assert_int_equal(htr_live_remove(16, &out, &f, true, 0, 0, 0), HTR_LIVE_UNKNOWN);
}

static void test_growth_and_collisions(void **state)
{
	(void)state;
	struct htr_live_entry out;
	struct htr_freed_entry f;
	const uint64_t n = 200000;
	for (uint64_t i = 0; i < n; i++) {
		struct htr_live_entry e = entry(0x10000000 + i * 16, i, (uint32_t)i, HTR_CALL_MALLOC);
		htr_live_insert(&e);
	}
	assert_int_equal(htr_live_count(), n);
	/* Remove every other one: backward-shift deletion must keep the rest
	 * reachable. */
	for (uint64_t i = 0; i < n; i += 2)
		assert_int_equal(htr_live_remove(0x10000000 + i * 16, &out, &f, false, 0, 0, 0),
				 HTR_LIVE_FOUND);
	for (uint64_t i = 0; i < n; i++) {
		bool live = htr_live_lookup(0x10000000 + i * 16, &out);
		assert_int_equal(live, i % 2 == 1);
		if (live)
			assert_int_equal(out.size, i);
	}
	assert_int_equal(htr_live_count(), n / 2);
}

#define THREADS 8
#define PER_THREAD 50000

static void *worker(void *arg)
{
	uint64_t base = (uint64_t)(uintptr_t)arg;
	struct htr_live_entry out;
	struct htr_freed_entry f;
	intptr_t errors = 0;
	for (uint64_t round = 0; round < 3; round++) {
		for (uint64_t i = 0; i < PER_THREAD; i++) {
			struct htr_live_entry e = entry(base + i * 16, i + round, 1, HTR_CALL_MALLOC);
			htr_live_insert(&e);
		}
		for (uint64_t i = 0; i < PER_THREAD; i++) {
			if (htr_live_remove(base + i * 16, &out, &f, true, 1, 0, HTR_CALL_FREE) !=
				    HTR_LIVE_FOUND ||
			    out.size != i + round)
				errors++;
		}
	}
	return (void *)errors;
}

static void test_threads(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker,
						(void *)(uintptr_t)((i + 1) << 32)), 0);
	for (int i = 0; i < THREADS; i++) {
		void *errors;
		pthread_join(t[i], &errors);
		assert_int_equal((intptr_t)errors, 0);
	}
	assert_int_equal(htr_live_count(), 0);
}

/* Each thread's blocks sit in a 64 MiB region of its own, as glibc's
 * per-thread arenas do (the table keeps them in that region's shards); a
 * block freed by another thread, then freed again by its owner, is still a
 * double free that names the first free, and an interior pointer is
 * unknown. */
#define REGION_BLOCKS 2000

static pthread_barrier_t region_barrier;

static void *region_worker(void *arg)
{
	uint64_t self = (uint64_t)(uintptr_t)arg;
	uint64_t mine = 0x7f0000000000ull + (self << 26);
	uint64_t next = 0x7f0000000000ull + (((self + 1) % THREADS) << 26);
	struct htr_live_entry out;
	struct htr_freed_entry f;
	intptr_t errors = 0;
	for (uint64_t i = 0; i < REGION_BLOCKS; i++) {
		struct htr_live_entry e = entry(mine + i * 32, i, (uint32_t)self, HTR_CALL_MALLOC);
		htr_live_insert(&e);
	}
	pthread_barrier_wait(&region_barrier);
	for (uint64_t i = 0; i < REGION_BLOCKS; i++)
		errors += htr_live_remove(next + i * 32, &out, &f, true, (uint32_t)self + 100, 0, HTR_CALL_FREE) !=
			  HTR_LIVE_FOUND;
	pthread_barrier_wait(&region_barrier);
	uint32_t freer = (uint32_t)((self + THREADS - 1) % THREADS) + 100;
	for (uint64_t i = 0; i < REGION_BLOCKS; i++) {
		enum htr_live_result r = htr_live_remove(mine + i * 32, &out, &f, true, 0, 0, HTR_CALL_FREE);
		errors += r != HTR_LIVE_FREED || f.free_stack != freer || f.alloc_stack != self || f.size != i;
		errors += htr_live_remove(mine + i * 32 + 16, &out, &f, true, 0, 0, HTR_CALL_FREE) !=
			  HTR_LIVE_UNKNOWN;
	}
	return (void *)errors;
}

static void test_regions_across_threads(void **state)
{
	(void)state;
	assert_false(htr_single_threaded()); /* test_threads ran: the shard locks are taken */
	pthread_t t[THREADS];
	pthread_barrier_init(&region_barrier, NULL, THREADS);
	for (uintptr_t i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, region_worker, (void *)i), 0);
	for (int i = 0; i < THREADS; i++) {
		void *errors;
		pthread_join(t[i], &errors);
		assert_int_equal((intptr_t)errors, 0);
	}
	pthread_barrier_destroy(&region_barrier);
	assert_int_equal(htr_live_count(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_insert_lookup_remove, reset),
		cmocka_unit_test_setup(test_double_free_memory, reset),
		cmocka_unit_test_setup(test_freed_memory_is_bounded, reset),
		cmocka_unit_test_setup(test_growth_and_collisions, reset),
		cmocka_unit_test_setup(test_threads, reset),
		cmocka_unit_test_setup(test_regions_across_threads, reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
