/* HEAPTRAIL_* parsing: defaults, every valid form, and one warning line per
 * bad variable, naming it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

struct warnings {
	int n;
	char lines[8][600];
};

static void collect(void *ctx, const char *line)
{
	struct warnings *w = ctx;
	if (w->n < 8)
		strncpy(w->lines[w->n], line, sizeof(w->lines[0]) - 1);
	w->n++;
}

static int parse(char **env, struct htr_options *o, struct warnings *w)
{
	memset(w, 0, sizeof(*w));
	memset(o, 0x5a, sizeof(*o));
	return htr_options_parse(env, o, collect, w);
}

static void test_defaults(void **state)
{
	(void)state;
	struct htr_options o;
	struct warnings w;
	char *env[] = { "PATH=/bin", "HOME=/root", "HEAPTRAILX=1", NULL };
	assert_int_equal(parse(env, &o, &w), 0);
	assert_int_equal(w.n, 0);
	assert_string_equal(o.output, ".");
	assert_int_equal(o.depth, HTR_DEFAULT_DEPTH);
	assert_int_equal(o.chunk_kb, HTR_DEFAULT_CHUNK_KB);
	assert_int_equal(o.on_error, HTR_ON_ERROR_CONTINUE);
	assert_int_equal(htr_options_parse(NULL, &o, collect, &w), 0);
}

static void test_valid(void **state)
{
	(void)state;
	struct htr_options o;
	struct warnings w;
	char *env[] = { "HEAPTRAIL_OUTPUT=/tmp/traces", "HEAPTRAIL_DEPTH=256", "HEAPTRAIL_ON_ERROR=abort",
			"HEAPTRAIL_CHUNK_KB=1024", NULL };
	assert_int_equal(parse(env, &o, &w), 0);
	assert_string_equal(o.output, "/tmp/traces");
	assert_int_equal(o.depth, 256);
	assert_int_equal(o.on_error, HTR_ON_ERROR_ABORT);
	assert_int_equal(o.chunk_kb, 1024);

	char *env2[] = { "HEAPTRAIL_DEPTH=1", "HEAPTRAIL_ON_ERROR=continue", "HEAPTRAIL_CHUNK_KB=16", NULL };
	assert_int_equal(parse(env2, &o, &w), 0);
	assert_int_equal(o.depth, 1);
	assert_int_equal(o.on_error, HTR_ON_ERROR_CONTINUE);
	assert_int_equal(o.chunk_kb, 16);
}

static void test_invalid_values(void **state)
{
	(void)state;
	struct htr_options o;
	struct warnings w;
	const char *bad_depths[] = { "0", "257", "-1", "12x", "", " 5", "99999999999" };
	for (size_t i = 0; i < sizeof(bad_depths) / sizeof(bad_depths[0]); i++) {
		char var[64];
		snprintf(var, sizeof(var), "HEAPTRAIL_DEPTH=%s", bad_depths[i]);
		char *env[] = { var, NULL };
		assert_int_equal(parse(env, &o, &w), 1);
		assert_int_equal(w.n, 1);
		assert_non_null(strstr(w.lines[0], "HEAPTRAIL_DEPTH"));
		assert_int_equal(o.depth, HTR_DEFAULT_DEPTH);
	}
	char *env[] = { "HEAPTRAIL_ON_ERROR=explode", "HEAPTRAIL_CHUNK_KB=17", "HEAPTRAIL_OUTPUT=",
			NULL };
	assert_int_equal(parse(env, &o, &w), 3);
	assert_int_equal(w.n, 3);
	assert_string_equal(w.lines[0],
			    "HEAPTRAIL_ON_ERROR=\"explode\": must be \"continue\" or \"abort\" (using continue)");
	assert_string_equal(w.lines[1], "HEAPTRAIL_CHUNK_KB=\"17\": must be a multiple of 4 from 16 to "
					"65536 (using 256)");
	assert_non_null(strstr(w.lines[2], "HEAPTRAIL_OUTPUT"));
	assert_int_equal(o.on_error, HTR_ON_ERROR_CONTINUE);
	assert_int_equal(o.chunk_kb, HTR_DEFAULT_CHUNK_KB);
	assert_string_equal(o.output, ".");
	for (int i = 0; i < 3; i++)
		assert_null(strchr(w.lines[i], '\n'));
}

static void test_free_depth(void **state)
{
	(void)state;
	struct htr_options o;
	struct warnings w;
	/* Unset, it follows HEAPTRAIL_DEPTH, before or after it. */
	char *env[] = { "HEAPTRAIL_DEPTH=12", NULL };
	assert_int_equal(parse(env, &o, &w), 0);
	assert_int_equal(o.free_depth, 12);
	char *none[] = { NULL };
	assert_int_equal(parse(none, &o, &w), 0);
	assert_int_equal(o.free_depth, HTR_DEFAULT_DEPTH);
	char *env2[] = { "HEAPTRAIL_FREE_DEPTH=0", "HEAPTRAIL_DEPTH=12", NULL };
	assert_int_equal(parse(env2, &o, &w), 0);
	assert_int_equal(o.free_depth, 0);
	assert_int_equal(o.depth, 12);
	char *env3[] = { "HEAPTRAIL_DEPTH=3", "HEAPTRAIL_FREE_DEPTH=256", NULL };
	assert_int_equal(parse(env3, &o, &w), 0);
	assert_int_equal(o.free_depth, 256);
	const char *bad[] = { "257", "-1", "x", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char var[64];
		snprintf(var, sizeof(var), "HEAPTRAIL_FREE_DEPTH=%s", bad[i]);
		char *e[] = { "HEAPTRAIL_DEPTH=7", var, NULL };
		assert_int_equal(parse(e, &o, &w), 1);
		assert_int_equal(w.n, 1);
		assert_non_null(strstr(w.lines[0], "HEAPTRAIL_FREE_DEPTH"));
		assert_int_equal(o.free_depth, 7);
	}
}

static void test_unknown(void **state)
{
	(void)state;
	struct htr_options o;
	struct warnings w;
	char *env[] = { "HEAPTRAIL_DEPHT=8", "HEAPTRAIL_DEPTH=8", NULL };
	assert_int_equal(parse(env, &o, &w), 1);
	assert_int_equal(w.n, 1);
	assert_true(strncmp(w.lines[0], "HEAPTRAIL_DEPHT: unknown variable", 33) == 0);
	assert_non_null(strstr(w.lines[0], "HEAPTRAIL_FREE_DEPTH"));
	assert_int_equal(o.depth, 8);
}

static void test_format_helpers(void **state)
{
	(void)state;
	char buf[8];
	char *p = htr_str_append(buf, buf + sizeof(buf), "ab");
	p = htr_str_append_u64(p, buf + sizeof(buf), 12345);
	assert_string_equal(buf, "ab12345");
	p = htr_str_append(p, buf + sizeof(buf), "overflow");
	assert_string_equal(buf, "ab12345");
	assert_ptr_equal(p, buf + 7);
	htr_str_append_u64(buf, buf + sizeof(buf), 0);
	assert_string_equal(buf, "0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid_values),
		cmocka_unit_test(test_free_depth),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_format_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
