/* Unit tests for the encoders, the binary decoder, the transports and the
 * API glue (lib/board), all on the host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "enc.h"
#include "heap.h"
#include "heaptrail.h"
#include "heaptrail/trace_format.h"
#include "heaptrail_board.h"
#include "port_host.h"
#include "rtt.h"
#include "transport.h"
#include "wire.h"
#include "wire_decode.h"

/* ---- capture of what the board sends ---- */

static uint8_t out[1 << 20];
static size_t out_len;
static int reject_from = -1, reject_to = -1; /* records the test transport drops */
static int record_no;

static int test_write(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	int n = record_no++;
	if (n >= reject_from && n < reject_to)
		return -1;
	assert_true(out_len + len <= sizeof(out));
	memcpy(out + out_len, buf, len);
	out_len += len;
	return 0;
}
static const struct htr_transport test_tp = {test_write, NULL};

static _Alignas(16) uint8_t arena[32 * 1024];
static _Alignas(16) uint8_t arena2[4 * 1024];

static void board(enum htr_board_encoding enc, uint32_t interval)
{
	out_len = 0;
	record_no = 0;
	reject_from = reject_to = -1;
	struct htr_board_config cfg = {enc, &test_tp, interval};
	assert_int_equal(htr_board_init(&cfg), 0);
	assert_int_equal(htr_board_add_region(arena, sizeof(arena)), 0);
}

/* ---- decoded events, flattened ---- */

struct ev {
	uint8_t type, kind, call;
	uint64_t seq, ptr, ptr2, size, count, offset;
	uint32_t alignment;
	char file[64];
	uint32_t line;
	uint64_t pc;
	char text[64];
	struct htr_heap_stats stats;
};

static struct ev evs[8192];
static size_t nev;
static struct {
	char file[64];
	uint32_t line;
} sites[1024];
static uint64_t stack_pc[1024];
static unsigned stack_defs;

static int sink(void *ctx, const struct htr_event *e)
{
	(void)ctx;
	if (e->type == HTR_EV_SITE) {
		assert_true(e->id < 1024);
		assert_int_equal(e->seq, 0);
		snprintf(sites[e->id].file, sizeof(sites[0].file), "%s", e->text);
		sites[e->id].line = e->line;
		return 0;
	}
	if (e->type == HTR_EV_STACK) {
		assert_true(e->id < 1024);
		assert_int_equal(e->depth, 1);
		/* Each stack id is defined once. */
		assert_int_equal(stack_pc[e->id], 0);
		stack_pc[e->id] = e->frames[0];
		stack_defs++;
		return 0;
	}
	assert_true(nev < 8192);
	struct ev *v = &evs[nev++];
	memset(v, 0, sizeof(*v));
	v->type = e->type;
	v->kind = e->kind;
	v->call = e->call;
	v->seq = e->seq;
	v->ptr = e->ptr;
	v->ptr2 = e->ptr2;
	v->size = e->size;
	v->count = e->count;
	v->offset = e->offset;
	v->alignment = e->alignment;
	if (e->site != 0) {
		memcpy(v->file, sites[e->site].file, sizeof(v->file));
		v->line = sites[e->site].line;
		assert_true(e->stack != 0);
		v->pc = stack_pc[e->stack];
	}
	if (e->text != NULL)
		snprintf(v->text, sizeof(v->text), "%s", e->text);
	if (e->stats != NULL)
		v->stats = *e->stats;
	return 0;
}

static void decode(const uint8_t *buf, size_t len, size_t chunk)
{
	static struct htr_wire_decoder dec;
	nev = 0;
	stack_defs = 0;
	memset(sites, 0, sizeof(sites));
	memset(stack_pc, 0, sizeof(stack_pc));
	htr_wire_decoder_init(&dec, sink, NULL);
	for (size_t i = 0; i < len; i += chunk)
		assert_int_equal(htr_wire_decoder_feed(&dec, buf + i, len - i < chunk ? len - i : chunk), 0);
	assert_int_equal(htr_wire_decoder_finish(&dec), 0);
}

static size_t count_type(uint8_t type)
{
	size_t n = 0;
	for (size_t i = 0; i < nev; i++)
		n += evs[i].type == type;
	return n;
}

static uint64_t total_loss(void)
{
	uint64_t n = 0;
	for (size_t i = 0; i < nev; i++)
		if (evs[i].type == HTR_EV_LOSS)
			n += evs[i].count;
	return n;
}

/* ---- byte-level pieces ---- */

static uint8_t crc8_reference(const uint8_t *b, size_t n)
{
	uint8_t crc = 0;
	for (size_t i = 0; i < n; i++) {
		crc ^= b[i];
		for (int k = 0; k < 8; k++)
			crc = (uint8_t)(crc & 0x80 ? (crc << 1) ^ 0x07 : crc << 1);
	}
	return crc;
}

static void test_codec_pieces(void **state)
{
	(void)state;
	/* enc.h repeats these so that target code stays C99. */
	assert_int_equal(HTR_ENC_CALL_MALLOC, HTR_CALL_MALLOC);
	assert_int_equal(HTR_ENC_CALL_CALLOC, HTR_CALL_CALLOC);
	assert_int_equal(HTR_ENC_CALL_ALIGNED_ALLOC, HTR_CALL_ALIGNED_ALLOC);
	assert_int_equal(HTR_ENC_CALL_STRDUP, HTR_CALL_STRDUP);
	uint8_t buf[600], enc[700], dec[700];
	uint32_t x = 99;
	for (size_t len = 0; len < 600; len += 7) {
		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (x >> 16) % 3 == 0 ? 0 : (uint8_t)(x >> 8);
		}
		assert_int_equal(htr_wire_crc8(buf, len), crc8_reference(buf, len));
		size_t n = htr_wire_cobs_encode(buf, len, enc);
		assert_true(n <= len + len / 254 + 1);
		assert_null(memchr(enc, 0, n));
		assert_int_equal(htr_wire_cobs_decode(enc, n, dec), (long)len);
		assert_memory_equal(dec, buf, len);
	}
	/* A code byte that points past the end is not COBS. */
	const uint8_t broken[] = {5, 1, 2};
	assert_int_equal(htr_wire_cobs_decode(broken, sizeof(broken), dec), -1);
	uint64_t vals[] = {0, 1, 127, 128, 16383, 16384, 0xFFFFFFFFu, UINT64_MAX};
	for (unsigned i = 0; i < 8; i++) {
		size_t n = htr_wire_put_varint(buf, vals[i]), pos = 0;
		uint64_t v;
		assert_int_equal(htr_wire_get_varint(buf, n, &pos, &v), 0);
		assert_int_equal(v, vals[i]);
		assert_int_equal(pos, n);
		pos = 0;
		if (n > 1)
			assert_int_equal(htr_wire_get_varint(buf, n - 1, &pos, &v), -1); /* cut */
	}
	for (int64_t d = -1000; d <= 1000; d += 37)
		assert_int_equal(htr_wire_unzigzag(htr_wire_zigzag(d)), d);
}

/* ---- the text encoding, exactly ---- */

static const char *FILE_A = "app/sensor.c";

static void text_out(char *dst, size_t cap)
{
	assert_true(out_len < cap);
	memcpy(dst, out, out_len);
	dst[out_len] = '\0';
}

static void test_text_lines_exact(void **state)
{
	(void)state;
	board(HTR_BOARD_TEXT, 0);
	htr_mark("t1;x");
	void *a = htr_malloc_at(40, FILE_A, 10);
	void *p = htr_persistent_at(16, FILE_A, 11);
	void *c = htr_calloc_at(3, 8, NULL, 0);
	htr_free_at(a, FILE_A, 12);
	htr_free_at(a, FILE_A, 13);
	htr_free_at((uint8_t *)c + 4, FILE_A, 14);
	void *big = htr_malloc_at(1u << 20, FILE_A, 15);
	assert_null(big);
	htr_board_checkpoint();
	static char got[8192], want[8192];
	text_out(got, sizeof(got));
	/* pc values are the host's return addresses: take them from the lines
	 * themselves and check the rest exactly. */
	char *line = got;
	/* Each expected line: text before the pointer, the pointer, the rest
	 * up to the pc (lines without a pointer have pre only). */
	const struct {
		const char *pre, *post;
	} expect_prefix[] = {
		{"==MP init;", ";0x8000;seq=0"},
		{"==HT mark;t1_x;seq=1", NULL},
		{"==HT check;seq=2;live=0;bytes=0;heap=32768;free=32752;largest=32752;fblocks=1;minfree=32752", NULL},
		{"==MP alloc;40;", ";app/sensor.c:10;seq=3;pc=0x"},
		{"==MP persist;16;", ";app/sensor.c:11;seq=4;pc=0x"},
		{"==MP alloc;24;", ";?:0;seq=5;pc=0x"},
		{"==MP free;", ";app/sensor.c:12;seq=6;pc=0x"},
		{"==MP free;", ";app/sensor.c:13;seq=7;pc=0x"},
		{"==MP free;", ";app/sensor.c:14;seq=8;pc=0x"},
		{"==MP alloc;1048576;", ";app/sensor.c:15;seq=9;pc=0x"},
		{"==HT check;seq=10;live=2;bytes=40;heap=32768;", NULL},
	};
	const char *suffix[] = {"", "", "", "", "", "", "", ";err=double", ";err=invalid", "", ""};
	uintptr_t ptrs[] = {(uintptr_t)arena, 0, 0, (uintptr_t)a, (uintptr_t)p, (uintptr_t)c, (uintptr_t)a,
			    (uintptr_t)a, (uintptr_t)c + 4, 0, 0};
	for (unsigned i = 0; i < sizeof(expect_prefix) / sizeof(expect_prefix[0]); i++) {
		char *nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		if (expect_prefix[i].post == NULL)
			snprintf(want, sizeof(want), "%s", expect_prefix[i].pre);
		else
			snprintf(want, sizeof(want), "%s0x%lx%s", expect_prefix[i].pre, (unsigned long)ptrs[i],
				 expect_prefix[i].post);
		assert_true(strncmp(line, want, strlen(want)) == 0 || (fprintf(stderr, "got  %s\nwant %s\n", line, want), 0));
		if (strstr(want, "pc=0x") != NULL) {
			const char *pc = line + strlen(want);
			size_t hex = strspn(pc, "0123456789abcdef");
			assert_true(hex > 0);
			assert_string_equal(pc + hex, suffix[i]);
		}
		line = nl + 1;
	}
	assert_string_equal(line, "");
}

static void test_text_realloc_pair(void **state)
{
	(void)state;
	board(HTR_BOARD_TEXT, 0);
	uint8_t *a = htr_malloc_at(32, FILE_A, 1);
	memset(a, 0x5A, 32);
	uint8_t *b = htr_realloc_at(a, 64, FILE_A, 2); /* grows in place */
	assert_ptr_equal(a, b);
	uint8_t *blocker = htr_malloc_at(8, FILE_A, 3);
	uint8_t *c = htr_realloc_at(b, 4000, FILE_A, 4); /* must move */
	assert_ptr_not_equal(c, b);
	assert_int_equal(c[31], 0x5A);
	assert_null(htr_realloc_at(c, 1u << 20, FILE_A, 5)); /* fails, c stays */
	assert_null(htr_realloc_at(c, 0, FILE_A, 6));        /* frees */
	(void)blocker;
	static char got[4096];
	text_out(got, sizeof(got));
	char want[256];
	snprintf(want, sizeof(want), "==MP free;0x%lx;app/sensor.c:2;seq=2;pc=0x", (unsigned long)(uintptr_t)a);
	assert_non_null(strstr(got, want));
	snprintf(want, sizeof(want), "==MP alloc;64;0x%lx;app/sensor.c:2;seq=3;pc=0x", (unsigned long)(uintptr_t)a);
	assert_non_null(strstr(got, want));
	snprintf(want, sizeof(want), "==MP free;0x%lx;app/sensor.c:4;seq=5;", (unsigned long)(uintptr_t)b);
	assert_non_null(strstr(got, want));
	snprintf(want, sizeof(want), "==MP alloc;4000;0x%lx;app/sensor.c:4;seq=6;", (unsigned long)(uintptr_t)c);
	assert_non_null(strstr(got, want));
	assert_non_null(strstr(got, "==MP alloc;1048576;0x0;app/sensor.c:5;seq=7;"));
	snprintf(want, sizeof(want), "==MP free;0x%lx;app/sensor.c:6;seq=8;", (unsigned long)(uintptr_t)c);
	assert_non_null(strstr(got, want));
	/* Every realloc line carries re=1; the failed one is a lone alloc. */
	size_t re = 0;
	for (const char *s = got; (s = strstr(s, ";re=1\n")) != NULL; s++)
		re++;
	assert_int_equal(re, 6);
	struct htr_heap_stats st;
	assert_int_equal(htr_get_heap_stats(&st), 0);
	assert_int_equal(st.live_blocks, 1);
	assert_int_equal(st.used_bytes, 8);
	assert_int_equal(htr_board_check(), 0);
}

static void test_text_drops(void **state)
{
	(void)state;
	board(HTR_BOARD_TEXT, 0);
	htr_mark("a");             /* records 0 (init), 1, 2 (check) */
	reject_from = 3;
	reject_to = 6;
	for (int i = 0; i < 5; i++)
		htr_free_at(htr_malloc_at(8, FILE_A, 20 + i), FILE_A, 30 + i);
	static char got[8192];
	text_out(got, sizeof(got));
	/* seq 3, 4, 5 were lost; the drop line reports them before seq 6. */
	assert_non_null(strstr(got, "==HT check;seq=2;"));
	assert_null(strstr(got, ";seq=3;"));
	assert_null(strstr(got, ";seq=5;"));
	assert_non_null(strstr(got, "\n==HT drop;count=3;seq=6\n==MP "));
	assert_non_null(strstr(got, ";seq=7;"));
	uint32_t records, lost, bytes;
	htr_board_counters(&records, &lost, &bytes);
	assert_int_equal(lost, 3);
	assert_int_equal(bytes, out_len);
}

/* ---- the binary encoding through the decoder ---- */

/* Counts the records of a type in the captured frames (ext: the extension
 * type, for HTR_WIRE_EXT), to check which forms the encoder chose. */
static size_t count_wire(unsigned type, unsigned ext)
{
	size_t n = 0, start = 0;
	for (size_t i = 0; i < out_len; i++) {
		if (out[i] != 0)
			continue;
		uint8_t rec[HTR_WIRE_FRAME_MAX];
		long len = i - start <= HTR_WIRE_FRAME_MAX ? htr_wire_cobs_decode(out + start, i - start, rec) : -1;
		if (len >= 2 && (unsigned)(rec[0] >> HTR_WIRE_SEQ_BITS) == type &&
		    (type != HTR_WIRE_EXT || rec[1] == ext))
			n++;
		start = i + 1;
	}
	return n;
}

/* One call site each, whatever the compiler does to the loops around
 * them: a site is file, line and caller PC, and an unrolled loop has one
 * PC per copy. The empty asm keeps the calls from becoming tail calls,
 * which would return (and so point) into the loop. */
static __attribute__((noinline)) void *malloc_here(size_t size)
{
	void *p = htr_malloc_at(size, "c.c", 1);
	__asm__ volatile("" ::: "memory");
	return p;
}

static __attribute__((noinline)) void free_here(void *p)
{
	htr_free_at(p, "c.c", 2);
	__asm__ volatile("" ::: "memory");
}

static void workload(void)
{
	htr_mark("t1");
	void *a = htr_malloc_at(40, FILE_A, 10);
	void *p = htr_persistent_at(16, FILE_A, 11);
	char *s = htr_strdup_at("hello", "b.c", 7);
	void *al = htr_aligned_alloc_at(128, 10, "b.c", 8);
	htr_free_at(a, FILE_A, 12);
	htr_free_at(a, FILE_A, 13);
	htr_free_at(s + 1, FILE_A, 14);
	s = htr_realloc_at(s, 100, "b.c", 9);
	htr_free_at(s, "b.c", 10);
	assert_null(htr_malloc_at(1u << 20, FILE_A, 15));
	uint8_t *z = htr_calloc_at(4, 10, FILE_A, 16);
	z = htr_realloc_at(z, 24, FILE_A, 17); /* shrinks in place */
	void *q[3];
	for (int k = 0; k < 3; k++)
		q[k] = malloc_here(24); /* the 2nd and 3rd: ALLOC_AGAIN */
	for (int k = 0; k < 3; k++)
		free_here(q[k]); /* the 2nd and 3rd: FREE_AGAIN */
	htr_free_at(z, FILE_A, 18);
	htr_mark("t2");
	(void)p;
	(void)al;
}

static void test_binary_round_trip(void **state)
{
	(void)state;
	board(HTR_BOARD_BINARY, 0);
	workload();
	decode(out, out_len, out_len);
	size_t i = 0;
	assert_int_equal(evs[i].type, HTR_EV_HEAP_INIT);
	assert_int_equal(evs[i].ptr, (uintptr_t)arena);
	assert_int_equal(evs[i++].size, sizeof(arena));
	assert_int_equal(evs[i].type, HTR_EV_MARKER);
	assert_string_equal(evs[i++].text, "t1");
	assert_int_equal(evs[i++].type, HTR_EV_CHECKPOINT);
	struct ev *e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_ALLOC);
	assert_int_equal(e->size, 40);
	assert_int_equal(e->call, HTR_CALL_MALLOC);
	assert_string_equal(e->file, FILE_A);
	assert_int_equal(e->line, 10);
	assert_true(e->pc != 0);
	uint64_t a = e->ptr;
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_ALLOC);
	assert_int_equal(e->size, 16);
	assert_int_equal(e->line, 11);
	assert_int_equal(evs[i].type, HTR_EV_PERSIST);
	assert_int_equal(evs[i++].ptr, e->ptr);
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_ALLOC);
	assert_int_equal(e->call, HTR_CALL_STRDUP);
	assert_int_equal(e->size, 6);
	assert_string_equal(e->file, "b.c");
	uint64_t s = e->ptr;
	e = &evs[i++];
	assert_int_equal(e->call, HTR_CALL_ALIGNED_ALLOC);
	assert_int_equal(e->alignment, 128);
	assert_int_equal(e->ptr % 128, 0);
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_FREE);
	assert_int_equal(e->ptr, a);
	assert_int_equal(e->line, 12);
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_MISUSE);
	assert_int_equal(e->kind, HTR_MISUSE_DOUBLE_FREE);
	assert_int_equal(e->ptr, a);
	assert_int_equal(e->line, 13);
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_MISUSE);
	assert_int_equal(e->kind, HTR_MISUSE_INVALID_FREE);
	assert_int_equal(e->ptr, s + 1);
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_REALLOC);
	assert_int_equal(e->ptr, s);
	assert_int_equal(e->size, 100);
	uint64_t s2 = e->ptr2;
	assert_true(s2 != 0);
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_FREE);
	assert_int_equal(e->ptr, s2);
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_ALLOC);
	assert_int_equal(e->ptr, 0);
	assert_int_equal(e->size, 1u << 20);
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_ALLOC);
	assert_int_equal(e->call, HTR_CALL_CALLOC);
	assert_int_equal(e->size, 40);
	assert_int_equal(e->line, 16);
	uint64_t z = e->ptr;
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_REALLOC);
	assert_int_equal(e->ptr, z);
	assert_int_equal(e->ptr2, z);
	assert_int_equal(e->size, 24);
	assert_int_equal(e->line, 17);
	uint64_t q[3];
	for (int k = 0; k < 3; k++) {
		e = &evs[i++];
		assert_int_equal(e->type, HTR_EV_ALLOC);
		assert_int_equal(e->call, HTR_CALL_MALLOC);
		assert_string_equal(e->file, "c.c");
		assert_int_equal(e->line, 1);
		q[k] = e->ptr;
	}
	for (int k = 0; k < 3; k++) {
		e = &evs[i++];
		assert_int_equal(e->type, HTR_EV_FREE);
		assert_string_equal(e->file, "c.c");
		assert_int_equal(e->line, 2);
		assert_int_equal(e->ptr, q[k]);
	}
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_FREE);
	assert_int_equal(e->ptr, z);
	assert_int_equal(e->line, 18);
	assert_int_equal(evs[i].type, HTR_EV_MARKER);
	assert_string_equal(evs[i++].text, "t2");
	e = &evs[i++];
	assert_int_equal(e->type, HTR_EV_CHECKPOINT);
	assert_int_equal(e->stats.live_blocks, 2);
	assert_int_equal(e->stats.used_bytes, 26);
	assert_int_equal(e->stats.misuse_count, 2);
	assert_int_equal(e->stats.heap_size, sizeof(arena));
	assert_int_equal(i, nev);
	assert_int_equal(count_type(HTR_EV_LOSS) + count_type(HTR_EV_BAD_INPUT), 0);
	/* Every record type went out, in the form expected. */
	assert_int_equal(count_wire(HTR_WIRE_ALLOC, 0), 3); /* 40, the failed 1 MiB, the first c.c:1 */
	assert_int_equal(count_wire(HTR_WIRE_ALLOC_AGAIN, 0), 2);
	assert_int_equal(count_wire(HTR_WIRE_FREE, 0), 4);
	assert_int_equal(count_wire(HTR_WIRE_FREE_AGAIN, 0), 2);
	assert_int_equal(count_wire(HTR_WIRE_CALLOC, 0), 1);
	assert_int_equal(count_wire(HTR_WIRE_REALLOC, 0), 2);
	assert_int_equal(count_wire(HTR_WIRE_EXT, HTR_WIRE_X_INIT), 1);
	assert_int_equal(count_wire(HTR_WIRE_EXT, HTR_WIRE_X_MARK), 2);
	assert_int_equal(count_wire(HTR_WIRE_EXT, HTR_WIRE_X_CHECK), 2);
	assert_int_equal(count_wire(HTR_WIRE_EXT, HTR_WIRE_X_MISUSE), 2);
	assert_int_equal(count_wire(HTR_WIRE_EXT, HTR_WIRE_X_ALLOC), 2);
	assert_int_equal(count_wire(HTR_WIRE_EXT, HTR_WIRE_X_PERSIST), 1);
	assert_true(count_wire(HTR_WIRE_EXT, HTR_WIRE_X_SITE) >= 4);
	/* One 1-frame stack per distinct caller PC. */
	uint64_t pcs[64];
	unsigned npcs = 0;
	for (size_t k = 0; k < nev; k++) {
		if (evs[k].pc == 0)
			continue;
		unsigned j = 0;
		while (j < npcs && pcs[j] != evs[k].pc)
			j++;
		if (j == npcs)
			pcs[npcs++] = evs[k].pc;
	}
	assert_int_equal(stack_defs, npcs);
	/* Sequence numbers rise by one per record, definitions included. */
	for (size_t k = 1; k < nev; k++)
		assert_true(evs[k].seq >= evs[k - 1].seq);
	/* Any chunking gives the same events. */
	struct ev whole[64];
	size_t n = nev;
	memcpy(whole, evs, n * sizeof(evs[0]));
	decode(out, out_len, 1);
	assert_int_equal(nev, n);
	assert_memory_equal(whole, evs, n * sizeof(evs[0]));
}

/* A site is file:line and the caller's pc: each call goes through one
 * place, or an unrolled loop (-O3) would give each copy a site of its own. */
static __attribute__((noinline)) void churn_free(void *p)
{
	htr_free_at(p, "app/churn.c", 41);
	__asm__ volatile("" ::: "memory"); /* no tail call: the pc stays here */
}

static __attribute__((noinline)) void *churn_malloc(size_t size)
{
	void *p = htr_malloc_at(size, "app/churn.c", 42);
	__asm__ volatile("" ::: "memory");
	return p;
}

static void churn(unsigned pairs)
{
	void *slot[8] = {0};
	for (unsigned i = 0; i < pairs; i++) {
		unsigned k = (i * 5u) % 8u;
		if (slot[k] != NULL)
			churn_free(slot[k]);
		slot[k] = churn_malloc(16u + (i % 4u) * 24u);
	}
	for (unsigned k = 0; k < 8; k++)
		churn_free(slot[k]);
}

static void test_binary_bytes_per_event(void **state)
{
	(void)state;
	board(HTR_BOARD_BINARY, 0);
	churn(1000);
	double plain = (double)out_len / 2001.0; /* init + 1000 allocs + 1000 frees; 2 sites */
	board(HTR_BOARD_BINARY, 64);
	churn(1000);
	uint32_t records, lost, bytes;
	htr_board_counters(&records, &lost, &bytes);
	double with_checks = (double)bytes / 2000.0;
	print_message("binary: %.2f B/event, %.2f B/event with a checkpoint every 64 records\n", plain, with_checks);
	assert_true(plain <= 8.0);
	assert_true(with_checks <= 8.5);
	decode(out, out_len, 4096);
	assert_int_equal(count_type(HTR_EV_ALLOC), 1000);
	assert_int_equal(count_type(HTR_EV_FREE), 1000);
	assert_int_equal(count_type(HTR_EV_CHECKPOINT), records / 64);
	/* The same stream as text, for comparison. */
	board(HTR_BOARD_TEXT, 0);
	churn(1000);
	print_message("text: %.2f B/event\n", (double)out_len / 2001.0);
}

/* A site used again and again is named once per HTR_WIRE_AGAIN_RUN + 1
 * records of a kind, so a decoder that lost it knows it again soon. */
static void test_binary_site_again(void **state)
{
	(void)state;
	board(HTR_BOARD_BINARY, 0);
	void *p[20];
	for (int i = 0; i < 20; i++)
		p[i] = malloc_here(16);
	for (int i = 0; i < 20; i++)
		free_here(p[i]);
	assert_int_equal(count_wire(HTR_WIRE_ALLOC, 0), 3);
	assert_int_equal(count_wire(HTR_WIRE_ALLOC_AGAIN, 0), 17);
	assert_int_equal(count_wire(HTR_WIRE_FREE, 0), 3);
	assert_int_equal(count_wire(HTR_WIRE_FREE_AGAIN, 0), 17);
	/* Cut the first free, which named its site, and the one after: the
	 * next frees have no site until it is named again. */
	size_t frame[64], nframes = 0;
	for (size_t i = 0; i < out_len; i++)
		if (out[i] == 0 && i + 1 < out_len)
			frame[nframes++] = i + 1; /* where each frame after the sync byte starts */
	/* frames: INIT, SITE a, 20 allocs, SITE b, 20 frees */
	assert_int_equal(nframes, 43);
	static uint8_t cut[4096];
	size_t n = frame[23];
	memcpy(cut, out, n);
	memcpy(cut + n, out + frame[25], out_len - frame[25]);
	decode(cut, n + out_len - frame[25], 5);
	assert_int_equal(total_loss(), 2);
	assert_int_equal(count_type(HTR_EV_BAD_INPUT), 0);
	size_t unsited = 0, frees = 0;
	for (size_t i = 0; i < nev; i++) {
		if (evs[i].type != HTR_EV_FREE)
			continue;
		frees++;
		if (evs[i].file[0] == '\0')
			unsited++;
		else
			assert_int_equal(evs[i].line, 2);
	}
	assert_int_equal(frees, 18);
	assert_int_equal(unsited, 7); /* the rest of the first run of 8 */
}

static void test_binary_drops_and_long_gaps(void **state)
{
	(void)state;
	/* 5 records dropped by the transport: a gap, then a drop record that
	 * agrees with it: 5 lost in all, not 10. */
	board(HTR_BOARD_BINARY, 0);
	htr_mark("a");
	churn(4); /* defines the sites */
	reject_from = record_no;
	reject_to = record_no + 5;
	churn(10);
	decode(out, out_len, 64);
	assert_int_equal(total_loss(), 5);
	assert_int_equal(count_type(HTR_EV_BAD_INPUT), 0);
	/* The target knew of the loss: no record after it leans on a site
	 * named in a lost one. */
	for (size_t i = 0; i < nev; i++)
		if (evs[i].type == HTR_EV_ALLOC || evs[i].type == HTR_EV_FREE)
			assert_string_equal(evs[i].file, "app/churn.c");
	/* 100 transport writes refused in a row, no checkpoint: the 5-bit gap
	 * shows the loss mod 32, the drop record the rest, once. */
	board(HTR_BOARD_BINARY, 0);
	churn(4);
	reject_from = record_no;
	reject_to = record_no + 100;
	churn(60);
	decode(out, out_len, 64);
	/* The target also skips the records whose site definition was lost in
	 * the window: its own count is the truth, and it is at least 100. */
	uint32_t records, lost, bytes;
	htr_board_counters(&records, &lost, &bytes);
	assert_true(lost >= 100);
	assert_int_equal(total_loss(), lost);
	assert_int_equal(count_type(HTR_EV_BAD_INPUT), 0);
	/* and the numbering stays right after it */
	assert_int_equal(evs[nev - 1].seq, (uint64_t)records + lost - 1);
	/* Dozens of records lost at once, more than the 5-bit number can
	 * show: the next checkpoint's full number makes the total exact. */
	board(HTR_BOARD_BINARY, 32);
	churn(2);
	size_t init_end = 1; /* out[0] is the sync delimiter */
	while (out[init_end] != 0)
		init_end++;
	init_end++;
	size_t before = out_len;
	churn(60);
	size_t from = before + (out_len - before) / 2;
	while (out[from - 1] != 0)
		from++;
	static uint8_t cut[1 << 16];
	memcpy(cut, out, init_end);
	memcpy(cut + init_end, out + from, out_len - from);
	decode(out, out_len, 512);
	uint64_t first_kept_seq = 0;
	for (size_t i = 0; i < nev; i++)
		if (evs[i].offset >= from) {
			first_kept_seq = evs[i].seq;
			break;
		}
	assert_true(first_kept_seq > 40);
	decode(cut, init_end + out_len - from, 512);
	assert_int_equal(total_loss(), first_kept_seq - 1);
	assert_int_equal(count_type(HTR_EV_BAD_INPUT), 0);
}

/* Cuts bytes out of a stream: the decoder reports the loss and keeps
 * nothing from the range. */
static void test_binary_cut_stream(void **state)
{
	(void)state;
	board(HTR_BOARD_BINARY, 0);
	churn(200);
	static uint8_t whole[1 << 16];
	size_t n = out_len;
	memcpy(whole, out, n);
	decode(whole, n, n);
	static struct ev all[8192];
	size_t nall = nev;
	memcpy(all, evs, nev * sizeof(evs[0]));
	for (size_t cut_at = n / 5; cut_at < n * 4 / 5; cut_at += n / 7) {
		size_t cut_len = 37 + cut_at % 50;
		static uint8_t cut[1 << 16];
		memcpy(cut, whole, cut_at);
		memcpy(cut + cut_at, whole + cut_at + cut_len, n - cut_at - cut_len);
		decode(cut, n - cut_len, 97);
		size_t unsited = 0;
		/* Records whose frame overlaps [cut_at, cut_at + cut_len) are gone;
		 * the frame the cut ran into may merge with the next one and fail
		 * its CRC, losing that one too. */
		size_t touched = 0, i_first = nall, i_last = 0;
		for (size_t i = 0; i < nall; i++) {
			size_t start = all[i].offset;
			size_t end = i + 1 < nall ? all[i + 1].offset : n;
			if (start < cut_at + cut_len && end > cut_at) {
				touched++;
				if (i < i_first)
					i_first = i;
				i_last = i;
			}
		}
		uint64_t lost = total_loss(), last_lost = 0;
		for (size_t i = 0; i < nev; i++)
			if (evs[i].type == HTR_EV_LOSS)
				last_lost = evs[i].seq + evs[i].count - 1u;
		/* A cut that keeps the first byte of one frame and resumes one
		 * byte into another of the same length leaves that second frame
		 * whole (COBS' first byte is the distance to the next zero): then
		 * the last touched record survives, exactly. */
		bool last_survives = lost + 1 == touched;
		assert_true(lost == touched || lost == touched + 1 || last_survives);
		assert_true(count_type(HTR_EV_BAD_INPUT) <= 1);
		/* Nothing from the lost range, everything else intact. */
		size_t j = 0;
		for (size_t i = 0; i < nev; i++) {
			if (evs[i].type == HTR_EV_LOSS || evs[i].type == HTR_EV_BAD_INPUT)
				continue;
			while (j < nall && all[j].seq != evs[i].seq)
				j++;
			assert_true(j < nall);
			assert_true(j < i_first || j > i_last || (last_survives && j == i_last));
			assert_int_equal(evs[i].type, all[j].type);
			assert_int_equal(evs[i].ptr, all[j].ptr);
			assert_int_equal(evs[i].size, all[j].size);
			/* A record that named its site by "as before" may have lost
			 * the one that named it, in the few after the cut. */
			if (evs[i].file[0] == '\0') {
				unsited++;
				assert_true(evs[i].seq <= last_lost + HTR_WIRE_RECENT * HTR_WIRE_AGAIN_RUN);
			} else {
				assert_string_equal(evs[i].file, all[j].file);
				assert_int_equal(evs[i].line, all[j].line);
			}
		}
		assert_true(unsited <= 2 * HTR_WIRE_AGAIN_RUN);
		/* Every record is either decoded or counted lost. */
		assert_int_equal(count_type(HTR_EV_ALLOC) + count_type(HTR_EV_FREE) + lost, 400);
	}
}

/* The captured stream with ins and a delimiter put in at the first frame
 * boundary from the middle on. Returns the length. */
static size_t splice_mid(uint8_t *dst, const uint8_t *ins, size_t ins_len)
{
	size_t half = out_len / 2;
	while (out[half - 1] != 0)
		half++;
	memcpy(dst, out, half);
	memcpy(dst + half, ins, ins_len);
	size_t m = half + ins_len;
	dst[m++] = 0;
	memcpy(dst + m, out + half, out_len - half);
	return m + out_len - half;
}

static void test_binary_garbage(void **state)
{
	(void)state;
	static uint8_t noise[1 << 16];
	uint32_t x = 7;
	for (size_t i = 0; i < sizeof(noise); i++) {
		x = x * 1664525u + 1013904223u;
		noise[i] = (uint8_t)(x >> 24);
	}
	/* Noise alone: bad input, never an allocation. */
	decode(noise, sizeof(noise), 333);
	assert_true(count_type(HTR_EV_BAD_INPUT) > 100);
	assert_int_equal(count_type(HTR_EV_ALLOC) + count_type(HTR_EV_FREE) + count_type(HTR_EV_REALLOC) +
				 count_type(HTR_EV_MISUSE) + count_type(HTR_EV_PERSIST),
			 0);
	/* Noise between real records (a UART at the wrong baud rate for a
	 * while): every real allocation survives, no invented one appears. */
	board(HTR_BOARD_BINARY, 16);
	churn(50);
	static uint8_t mixed[1 << 17];
	decode(mixed, splice_mid(mixed, noise, 4000), 1000);
	assert_int_equal(count_type(HTR_EV_ALLOC), 50);
	assert_int_equal(count_type(HTR_EV_FREE), 50);
	assert_int_equal(total_loss(), 0);
	assert_true(count_type(HTR_EV_BAD_INPUT) > 0);
	/* A frame that passes the CRC but not its record's shape (a cut
	 * varint) is bad input and takes no sequence number: nothing is
	 * counted lost around it. */
	board(HTR_BOARD_BINARY, 0);
	churn(10);
	uint8_t rec[3] = {HTR_WIRE_FREE << HTR_WIRE_SEQ_BITS | 7u, 0x85, 0}, frame[8];
	rec[2] = htr_wire_crc8(rec, 2);
	decode(mixed, splice_mid(mixed, frame, htr_wire_cobs_encode(rec, 3, frame)), 7);
	assert_int_equal(count_type(HTR_EV_BAD_INPUT), 1);
	assert_int_equal(count_type(HTR_EV_ALLOC), 10);
	assert_int_equal(count_type(HTR_EV_FREE), 10);
	assert_int_equal(total_loss(), 0);
	/* Text fed to the binary decoder is bad input too. */
	const char *text = "==MP alloc;16;0x20000100;a.c:1;seq=1;pc=0x10\n";
	decode((const uint8_t *)text, strlen(text), 5);
	assert_int_equal(count_type(HTR_EV_ALLOC), 0);
	assert_int_equal(count_type(HTR_EV_TRUNCATED), 1);
}

static void test_binary_truncated(void **state)
{
	(void)state;
	board(HTR_BOARD_BINARY, 0);
	htr_malloc_at(10, FILE_A, 1);
	decode(out, out_len - 3, 1);
	assert_int_equal(count_type(HTR_EV_TRUNCATED), 1);
	assert_int_equal(count_type(HTR_EV_ALLOC), 0);
	assert_int_equal(evs[nev - 1].type, HTR_EV_TRUNCATED);
}

static void test_binary_regions(void **state)
{
	(void)state;
	board(HTR_BOARD_BINARY, 0);
	assert_int_equal(htr_board_add_region(arena2, sizeof(arena2)), 0);
	void *big = htr_malloc_at(31000, FILE_A, 1);
	void *small = htr_malloc_at(2000, FILE_A, 2); /* only fits in arena2 */
	assert_true((uint8_t *)small >= arena2 && (uint8_t *)small < arena2 + sizeof(arena2));
	decode(out, out_len, out_len);
	assert_int_equal(count_type(HTR_EV_ALLOC), 2);
	assert_int_equal(evs[nev - 1].ptr, (uintptr_t)small);
	assert_int_equal(count_type(HTR_EV_BAD_INPUT), 0);
	(void)big;
}

/* ---- transports ---- */

static void test_rtt_layout_and_ring(void **state)
{
	(void)state;
	size_t w = sizeof(void *);
	/* On the 32-bit target these are 16, 20, 24, 48, 24 (rtt.c pins them
	 * with static asserts); here pointers are w bytes wide. */
	assert_int_equal(offsetof(struct htr_rtt_cb, max_up), 16);
	assert_int_equal(offsetof(struct htr_rtt_cb, max_down), 20);
	assert_int_equal(offsetof(struct htr_rtt_cb, up), 24);
	assert_int_equal(sizeof(struct htr_rtt_buffer), 2 * w + 16);
	assert_int_equal(offsetof(struct htr_rtt_cb, down), 24 + 2 * w + 16);
	assert_int_equal(offsetof(struct htr_rtt_buffer, size), 2 * w);
	assert_int_equal(offsetof(struct htr_rtt_buffer, wr_off), 2 * w + 4);
	assert_int_equal(offsetof(struct htr_rtt_buffer, rd_off), 2 * w + 8);
	assert_int_equal(htr_rtt_space(16, 0, 0), 15);
	assert_int_equal(htr_rtt_space(16, 5, 5), 15);
	assert_int_equal(htr_rtt_space(16, 15, 0), 0);
	assert_int_equal(htr_rtt_space(16, 3, 4), 0);
	assert_int_equal(htr_rtt_space(16, 4, 10), 5);
	assert_int_equal(htr_rtt_space(16, 10, 4), 9);

	htr_rtt_init();
	struct htr_rtt_cb *cb = &_SEGGER_RTT;
	assert_memory_equal(cb->id, "SEGGER RTT\0\0\0\0\0", 16);
	assert_int_equal(cb->max_up, 1);
	assert_int_equal(cb->up[0].size, HTR_RTT_UP_SIZE);
	assert_int_equal(cb->up[0].flags, HTR_RTT_MODE_SKIP);
	uint8_t chunk[700];
	for (unsigned i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)i;
	/* Fill to one byte short of full, then a write that does not fit is
	 * skipped whole. */
	unsigned writes = 0;
	while (htr_rtt_write(NULL, chunk, sizeof(chunk)) == 0)
		writes++;
	assert_int_equal(writes, (HTR_RTT_UP_SIZE - 1) / sizeof(chunk));
	assert_int_equal(htr_rtt_pending(), writes * sizeof(chunk));
	/* The host reads half; the next write wraps around the end. */
	cb->up[0].rd_off = 1400;
	uint32_t wr = cb->up[0].wr_off;
	assert_int_equal(htr_rtt_write(NULL, chunk, sizeof(chunk)), 0);
	assert_int_equal(cb->up[0].wr_off, (wr + sizeof(chunk)) % HTR_RTT_UP_SIZE);
	for (unsigned i = 0; i < sizeof(chunk); i++)
		assert_int_equal(cb->up[0].buf[(wr + i) % HTR_RTT_UP_SIZE], (uint8_t)i);
	/* A corrupt RdOff from the host is refused, not followed. */
	cb->up[0].rd_off = HTR_RTT_UP_SIZE + 5;
	assert_int_equal(htr_rtt_write(NULL, chunk, 1), -1);
	cb->up[0].rd_off = cb->up[0].wr_off;
}

static uint8_t uart_sink[4096];
static size_t uart_n;
static int uart_room;
static int kicks;
static int tx_ready(void)
{
	return uart_room > 0;
}
static void tx_put(uint8_t b)
{
	uart_room--;
	uart_sink[uart_n++] = b;
}
static void kick(void)
{
	kicks++;
}

static void test_uart_ring(void **state)
{
	(void)state;
	static uint8_t buf[64];
	struct htr_uart_ring ring;
	htr_uart_ring_init(&ring, buf, sizeof(buf), kick);
	ring.head = ring.tail = 0xFFFFFFF0u; /* counters wrap cleanly */
	uint8_t rec[40];
	for (unsigned i = 0; i < sizeof(rec); i++)
		rec[i] = (uint8_t)(i + 1);
	assert_int_equal(htr_uart_ring_write(&ring, rec, 40), 0);
	assert_int_equal(htr_uart_ring_write(&ring, rec, 40), -1); /* no room: dropped whole */
	assert_int_equal(ring.dropped_bytes, 40);
	assert_int_equal(kicks, 1);
	uart_n = 0;
	uart_room = 25; /* the UART takes part of it */
	assert_int_equal(htr_uart_ring_drain(&ring, tx_ready, tx_put), 25);
	assert_int_equal(htr_uart_ring_used(&ring), 15);
	assert_int_equal(htr_uart_ring_write(&ring, rec, 40), 0);
	uart_room = 1000;
	assert_int_equal(htr_uart_ring_drain(&ring, tx_ready, tx_put), 55);
	assert_int_equal(uart_n, 80);
	assert_memory_equal(uart_sink, rec, 40);
	assert_memory_equal(uart_sink + 40, rec, 40);
	assert_int_equal(htr_uart_ring_used(&ring), 0);
}

static void put_byte(void *ctx, uint8_t b)
{
	(void)ctx;
	out[out_len++] = b;
}

static void test_api_glue(void **state)
{
	(void)state;
	/* Through the port's byte output (the blocking UART transport). */
	htr_port_host_set_output(put_byte, NULL);
	out_len = 0;
	struct htr_board_config cfg = {HTR_BOARD_TEXT, &htr_uart_blocking, 0};
	assert_int_equal(htr_board_init(&cfg), 0);
	assert_null(htr_malloc_at(8, FILE_A, 1)); /* no region yet */
	assert_int_equal(htr_board_add_region(arena, sizeof(arena)), 0);
	uint8_t *c = htr_calloc_at(10, 10, FILE_A, 2);
	for (int i = 0; i < 100; i++)
		assert_int_equal(c[i], 0);
	assert_null(htr_calloc_at(SIZE_MAX / 2, 4, FILE_A, 3)); /* overflow */
	assert_null(htr_aligned_alloc_at(24, 8, FILE_A, 4));     /* not a power of two */
	char *s = htr_strdup_at("board", FILE_A, 5);
	assert_string_equal(s, "board");
	htr_free_at(NULL, FILE_A, 6); /* nothing, not even a line */
	struct htr_heap_stats st;
	assert_int_equal(htr_get_heap_stats(&st), 0);
	assert_int_equal(st.live_blocks, 2);
	assert_int_equal(st.used_bytes, 106);
	assert_int_equal(st.failed_count, 3);
	assert_int_equal(htr_port_host_lock_depth(), 0);
	assert_int_equal(htr_board_check(), 0);
	out[out_len] = 0;
	assert_non_null(strstr((char *)out, "==MP init;0x0;0x0;seq=0\n==MP alloc;8;0x0;app/sensor.c:1;seq=1;"));
	assert_null(strstr((char *)out, ":6;"));
	htr_port_host_set_output(NULL, NULL);
	/* A bad config is refused. */
	struct htr_board_config bad = {(enum htr_board_encoding)9, &htr_uart_blocking, 0};
	assert_int_equal(htr_board_init(&bad), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec_pieces),
		cmocka_unit_test(test_text_lines_exact),
		cmocka_unit_test(test_text_realloc_pair),
		cmocka_unit_test(test_text_drops),
		cmocka_unit_test(test_binary_round_trip),
		cmocka_unit_test(test_binary_bytes_per_event),
		cmocka_unit_test(test_binary_site_again),
		cmocka_unit_test(test_binary_drops_and_long_gaps),
		cmocka_unit_test(test_binary_cut_stream),
		cmocka_unit_test(test_binary_garbage),
		cmocka_unit_test(test_binary_truncated),
		cmocka_unit_test(test_binary_regions),
		cmocka_unit_test(test_rtt_layout_and_ring),
		cmocka_unit_test(test_uart_ring),
		cmocka_unit_test(test_api_glue),
	};
	return cmocka_run_group_tests_name("board wire", tests, NULL, NULL);
}
