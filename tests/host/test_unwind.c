/* The recorder's unwinder against libunwind: from the same function, both
 * must report the same return addresses (their first frames are two call
 * sites in that function), in every kind of frame the walker handles; where
 * it does not (a signal frame), the recorder's capture must fall back and
 * still give libunwind's frames. And the chain cache: a replay only when
 * the stack words are the same, a new walk when one deeper down changed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "unit_stubs.h"
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include "unwind.h"

#if !HTR_NATIVE_UNWIND
int htr_test_probe(void); /* programs/unwind_cxx.cc links to it */
int htr_test_probe(void)
{
	return 0;
}

int main(void)
{
	return 77; /* libunwind alone on this platform: nothing to compare */
}
#else

#define BARRIER() __asm__ volatile("" ::: "memory")
#define MAXF 300

enum { PROBE_OK = 0, PROBE_FELL_BACK = 1, PROBE_MISMATCH = 2, PROBE_SHORT = 3 };

/* The last probe's frames (libunwind's), for the checks that look at them. */
static __thread uint64_t last_frames[MAXF];
static __thread int last_n;

/* libunwind's step-by-step unwind with its caches flushed first: the
 * reference where unw_backtrace's is stale. Its per-thread trace cache
 * keeps frame rules by address and nothing empties it (unw_flush_cache
 * does not reach it), so after a dlclose and a dlopen onto the same
 * addresses it reports garbage (libunwind 1.6); unw_step without the
 * flush does too. Same contract as unw_backtrace. */
static __attribute__((noinline)) int unw_step_backtrace(uint64_t *ips, int max)
{
	unw_flush_cache(unw_local_addr_space, 0, 0);
	unw_context_t uc;
	unw_cursor_t cur;
	unw_getcontext(&uc);
	if (unw_init_local(&cur, &uc) < 0)
		return -1;
	int n = 0;
	while (n < max && unw_step(&cur) > 0) {
		unw_word_t ip;
		unw_get_reg(&cur, UNW_REG_IP, &ip);
		ips[n++] = ip;
	}
	BARRIER();
	return n;
}

static bool stepwise; /* the reference is unw_step_backtrace */

int htr_test_probe(void); /* also called from programs/unwind_cxx.cc */

/* Both unwinders from here. Returns a PROBE_* (no cmocka asserts: it runs
 * in signal handlers, threads and under operator new too). */
__attribute__((noinline)) int htr_test_probe(void)
{
	uint64_t mine[MAXF], theirs[MAXF];
	int n = htr_unwind_backtrace(mine, MAXF);
	BARRIER();
	int m = stepwise ? unw_step_backtrace(theirs, MAXF) : unw_backtrace((void **)theirs, MAXF);
	BARRIER();
	memcpy(last_frames, theirs, sizeof(theirs));
	last_n = m;
	if (n < 0)
		return PROBE_FELL_BACK;
	if (n != m || n < 3)
		return n < 3 && n == m ? PROBE_SHORT : PROBE_MISMATCH;
	for (int i = 1; i < n; i++)
		if (mine[i] != theirs[i])
			return PROBE_MISMATCH;
	return PROBE_OK;
}

/* ---- frames of every kind ---- */

static volatile int sink;

__attribute__((noinline)) static int plain_o2(int x)
{
	int r = htr_test_probe();
	sink = x;
	BARRIER();
	return r;
}

__attribute__((noinline)) static int with_vla(int n)
{
	char vla[n];
	memset(vla, n, (size_t)n);
	sink = vla[n - 1];
	int r = htr_test_probe();
	sink = vla[0];
	BARRIER();
	return r;
}

__attribute__((noinline)) static int with_alloca(int n)
{
	char *p = __builtin_alloca((size_t)n);
	memset(p, 1, (size_t)n);
	sink = p[n - 1];
	int r = htr_test_probe();
	sink = p[0];
	BARRIER();
	return r;
}

/* An over-aligned local and a VLA: GCC realigns through a DRAP register,
 * and the CFA becomes *(rbp - 8). */
__attribute__((noinline)) static int realigned(int n)
{
	_Alignas(64) volatile char buf[64];
	char vla[n];
	buf[0] = (char)n;
	vla[0] = 1;
	sink = vla[0];
	int r = htr_test_probe();
	return r + buf[0] - (char)n;
}

/* The likely early return comes first, its epilogue between
 * remember_state and restore_state; the calls after it need the restored
 * row. */
__attribute__((noinline)) static int after_early_return(int x, int y)
{
	int a = x * 3, b = y * 5;
	sink = a;
	if (__builtin_expect(x != 7, 1))
		return a + b;
	int r = htr_test_probe();
	sink = a + b;
	r |= htr_test_probe();
	return r;
}

__attribute__((noinline)) static int recurse(int left)
{
	if (left == 0)
		return htr_test_probe();
	int r = recurse(left - 1);
	BARRIER();
	return r;
}

static void test_plain_frames(void **state)
{
	(void)state;
	assert_int_equal(plain_o2(1), PROBE_OK);
	assert_int_equal(with_vla(100), PROBE_OK);
	assert_int_equal(with_alloca(3000), PROBE_OK);
	assert_int_equal(realigned(10), PROBE_OK);
	volatile int seven = 7, one = 1; /* no constant to fold the branch away */
	assert_int_equal(after_early_return(seven, one), PROBE_OK);
}

static void test_deep_recursion(void **state)
{
	(void)state;
	assert_int_equal(recurse(100), PROBE_OK);
	assert_true(last_n > 100);
}

int htr_test_cxx_frames(int which); /* programs/unwind_cxx.cc */

static bool in_libstdcxx(uint64_t pc)
{
	Dl_info info;
	return dladdr((void *)(uintptr_t)pc, &info) != 0 && info.dli_fname != NULL &&
	       strstr(info.dli_fname, "libstdc++") != NULL;
}

static void test_cxx_frames(void **state)
{
	(void)state;
	assert_int_equal(htr_test_cxx_frames(0), PROBE_OK);
	bool seen = false; /* that probe ran under libstdc++'s own code */
	for (int i = 0; i < last_n; i++)
		seen = seen || in_libstdcxx(last_frames[i]);
	assert_true(seen);
	assert_int_equal(htr_test_cxx_frames(1), PROBE_OK);
}

/* ---- libraries loaded and unloaded ---- */

static int call_in(const char *path, uintptr_t *where, int *status)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		return -1;
	int (*call)(int (*)(void));
	void *sym = dlsym(h, "unwind_lib_call");
	memcpy(&call, &sym, sizeof(call));
	*where = (uintptr_t)sym;
	*status = call(htr_test_probe);
	/* twice: the second walk uses the rules the first cached */
	int again = call(htr_test_probe);
	if (*status == PROBE_OK)
		*status = again;
	return dlclose(h);
}

static void test_dlclose_forgets_rules(void **state)
{
	(void)state;
	uintptr_t a = 0, b = 0;
	int sa = -1, sb = -1;
	uint32_t gen = htr_unwind_generation;
	stepwise = true;
	assert_int_equal(call_in(HTR_TEST_LIB_A, &a, &sa), 0);
	uint32_t gen_a = htr_unwind_generation;
	assert_int_equal(call_in(HTR_TEST_LIB_B, &b, &sb), 0);
	stepwise = false;
	assert_int_equal(sa, PROBE_OK);
	assert_int_equal(sb, PROBE_OK);
	assert_true(gen_a != gen);
	/* Same address, same return address, another frame size: only a
	 * forgotten rule gives B's frames right. When the loader put B
	 * elsewhere the check above is weaker, not wrong. */
	if (a != b)
		print_message("note: the second library was loaded elsewhere (%#lx, %#lx)\n",
			      (unsigned long)a, (unsigned long)b);
}

/* ---- threads ---- */

static void *thread_body(void *arg)
{
	int *bad = arg;
	for (int i = 0; i < 200; i++) {
		if (plain_o2(i) != PROBE_OK || recurse(i % 70) != PROBE_OK || with_vla(1 + i) != PROBE_OK)
			__atomic_add_fetch(bad, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	pthread_t t[4];
	int bad = 0;
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, thread_body, &bad), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(bad, 0);
}

/* ---- the recorder's capture: fallback and chain cache ---- */

static struct htr_writer writer;

static void setup_writer(void)
{
	memset(&writer, 0, sizeof(writer));
	writer.generation = htr_file_generation;
	htr_stacks_set_self(0, 0); /* the recorder is linked into the test */
}

/* The capture's frames (from its call site on) and libunwind's from the
 * same function must agree past the first. Returns PROBE_*. */
__attribute__((noinline)) static int capture_and_compare(unsigned depth, uint32_t *id_out)
{
	uint32_t id = htr_stack_capture(&writer, depth);
	BARRIER();
	uint64_t theirs[MAXF], mine[MAXF];
	int m = unw_backtrace((void **)theirs, MAXF);
	BARRIER();
	*id_out = id;
	uint32_t d = htr_stack_frames(id, mine, MAXF);
	if (m > (int)depth)
		m = (int)depth;
	if ((int)d != m || d < 3)
		return PROBE_MISMATCH;
	for (uint32_t i = 1; i < d; i++)
		if (mine[i] != theirs[i])
			return PROBE_MISMATCH;
	return PROBE_OK;
}

static volatile int signal_status = -1, signal_probe = -1;

static void on_signal(int sig)
{
	(void)sig;
	uint32_t id;
	signal_probe = htr_test_probe();
	signal_status = capture_and_compare(64, &id);
}

static void test_signal_frame_falls_back(void **state)
{
	(void)state;
	setup_writer();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	struct htr_stack_counts before, after;
	htr_stack_counts_get(&before);
	raise(SIGUSR1);
	htr_stack_counts_get(&after);
	signal(SIGUSR1, SIG_DFL);
	assert_int_equal(signal_probe, PROBE_FELL_BACK);
	assert_int_equal(signal_status, PROBE_OK);
	assert_true(after.fallbacks > before.fallbacks);
}

__attribute__((noinline)) static int capture_deep(int left, unsigned depth, uint32_t *id)
{
	if (left == 0)
		return capture_and_compare(depth, id);
	int r = capture_deep(left - 1, depth, id);
	BARRIER();
	return r;
}

static void test_capture_matches(void **state)
{
	(void)state;
	setup_writer();
	uint32_t id;
	assert_int_equal(capture_deep(3, 64, &id), PROBE_OK);
	assert_int_equal(capture_deep(100, 64, &id), PROBE_OK); /* cut at depth */
	assert_int_equal(capture_deep(10, 5, &id), PROBE_OK);
}

/* Two callers with the same frame size, called from the same place: the
 * capture below them starts from the same return address and CFA, and
 * only the return-address slot of `below` tells them apart. */
__attribute__((noinline)) static uint32_t below(void)
{
	uint32_t id = htr_stack_capture(&writer, 16);
	BARRIER();
	return id;
}

__attribute__((noinline)) static uint32_t caller_a(void)
{
	uint32_t id = below();
	BARRIER();
	return id;
}

__attribute__((noinline)) static uint32_t caller_b(void)
{
	uint32_t id = below();
	BARRIER();
	return id;
}

__attribute__((noinline)) static uint32_t from(uint32_t (*fn)(void))
{
	uint32_t id = fn();
	BARRIER();
	return id;
}

/* Every capture of a test below comes from one call site in it (a loop):
 * the frames above `from` are then the same each time. */
static void test_chain_cache(void **state)
{
	(void)state;
	setup_writer();
	uint32_t (*const seq[5])(void) = { caller_a, caller_a, caller_b, caller_a, caller_b };
	uint32_t ids[5];
	struct htr_stack_counts c[6];
	htr_stack_counts_get(&c[0]);
	for (volatile int i = 0; i < 5; i++) {
		ids[i] = from(seq[i]);
		htr_stack_counts_get(&c[i + 1]);
	}
	/* the same chain again: replayed, not walked */
	assert_int_equal(ids[1], ids[0]);
	assert_int_equal(c[2].chain_hits, c[1].chain_hits + 1);
	assert_int_equal(c[2].walks, c[1].walks);
	/* the same start, another caller deeper down: walked, another stack */
	assert_true(ids[2] != ids[0]);
	assert_int_equal(c[3].chain_hits, c[2].chain_hits);
	assert_int_equal(c[3].walks, c[2].walks + 1);
	uint64_t fa[16], fb[16];
	uint32_t da = htr_stack_frames(ids[0], fa, 16), db = htr_stack_frames(ids[2], fb, 16);
	assert_int_equal(da, db);
	assert_true(da > 3);
	assert_int_equal(fa[0], fb[0]); /* the capture's call site in below() */
	assert_true(fa[1] != fb[1]);    /* below()'s return into caller_a, caller_b */
	assert_memory_equal(&fa[2], &fb[2], (da - 2) * sizeof(uint64_t));
	/* both stay cached */
	assert_int_equal(ids[3], ids[0]);
	assert_int_equal(ids[4], ids[2]);
	assert_int_equal(c[5].chain_hits, c[3].chain_hits + 2);
	assert_int_equal(c[5].walks, c[3].walks);
}

static void test_chain_cache_dlclose(void **state)
{
	(void)state;
	setup_writer();
	uint32_t ids[3];
	struct htr_stack_counts c[4];
	htr_stack_counts_get(&c[0]);
	for (volatile int i = 0; i < 3; i++) {
		ids[i] = from(caller_a);
		htr_stack_counts_get(&c[i + 1]);
		if (i == 0) {
			void *h = dlopen(HTR_TEST_LIB_A, RTLD_NOW | RTLD_LOCAL);
			assert_non_null(h);
			assert_int_equal(dlclose(h), 0);
		}
	}
	/* the same stack, but walked again after the dlclose, then replayed */
	assert_int_equal(ids[1], ids[0]);
	assert_int_equal(ids[2], ids[0]);
	assert_int_equal(c[2].chain_hits, c[1].chain_hits);
	assert_int_equal(c[2].walks, c[1].walks + 1);
	assert_int_equal(c[3].chain_hits, c[2].chain_hits + 1);
}

/* Optimised code keeps anything in rbp. Here two frames hold a value that
 * changes on every call in it (the asm clobber makes GCC save the caller's
 * rbp with CFI, then the value is put there): rbp0 of the capture and the
 * rbp G restores for H are different each time, and no rule uses them, so
 * the backtrace is the same and must be replayed. F keeps a frame pointer:
 * its CFA is rbp-based, from the rbp H restores. */
__attribute__((noinline)) static uint32_t rbp_g(uint64_t v)
{
	__asm__ volatile("mov %0, %%rbp" : : "r"(v) : "rbp");
	uint32_t id = below();
	BARRIER();
	return id;
}

__attribute__((noinline)) static uint32_t rbp_h(uint64_t v, uint64_t w)
{
	__asm__ volatile("mov %0, %%rbp" : : "r"(v) : "rbp");
	uint32_t id = rbp_g(w);
	BARRIER();
	return id;
}

__attribute__((noinline, optimize("no-omit-frame-pointer"))) static uint32_t rbp_f(uint64_t v,
										 uint64_t w)
{
	uint32_t id = rbp_h(v, w);
	BARRIER();
	return id;
}

static void test_chain_cache_ignores_unused_rbp(void **state)
{
	(void)state;
	setup_writer();
	uint32_t ids[5];
	struct htr_stack_counts c[6];
	htr_stack_counts_get(&c[0]);
	for (volatile int i = 0; i < 5; i++) {
		ids[i] = rbp_f(0x1000u + (uint64_t)i * 8u, 0x5000u + (uint64_t)i * 24u);
		htr_stack_counts_get(&c[i + 1]);
	}
	for (int i = 1; i < 5; i++)
		assert_int_equal(ids[i], ids[0]);
	assert_int_equal(c[5].chain_hits, c[1].chain_hits + 4);
	assert_int_equal(c[5].fallbacks, c[0].fallbacks);
	uint64_t f[16];
	assert_true(htr_stack_frames(ids[0], f, 16) > 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_frames),
		cmocka_unit_test(test_deep_recursion),
		cmocka_unit_test(test_cxx_frames),
		cmocka_unit_test(test_dlclose_forgets_rules),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_signal_frame_falls_back),
		cmocka_unit_test(test_capture_matches),
		cmocka_unit_test(test_chain_cache),
		cmocka_unit_test(test_chain_cache_dlclose),
		cmocka_unit_test(test_chain_cache_ignores_unused_rbp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif /* HTR_NATIVE_UNWIND */
