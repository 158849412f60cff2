/* Text lines: valground's ==MP lines with trailing key=value fields, plus
 * ==HT lines valground skips. Spec: docs/board-wire.md. */
#include <string.h>

#include "enc.h"
#include "heap.h"

#define LINE_MAX 256u
#define FILE_MAX 160u

struct line {
	char buf[LINE_MAX];
	size_t len;
};

static void put_str(struct line *l, const char *s)
{
	while (*s != '\0' && l->len < LINE_MAX - 1u)
		l->buf[l->len++] = *s++;
}

/* Field text must not break the line's structure. */
static void put_field(struct line *l, const char *s, size_t max)
{
	for (size_t i = 0; s[i] != '\0' && i < max && l->len < LINE_MAX - 1u; i++) {
		char c = s[i];
		l->buf[l->len++] = (c == ';' || c == '\n' || c == '\r') ? '_' : c;
	}
}

/* unsigned long is the target's word: no 64-bit division pulled from
 * libgcc on a 32-bit part. Sizes, counts and sequence numbers fit. */
static void put_dec(struct line *l, unsigned long v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + (int)(v % 10u));
		v /= 10u;
	} while (v != 0);
	while (n != 0 && l->len < LINE_MAX - 1u)
		l->buf[l->len++] = tmp[--n];
}

static void put_hex(struct line *l, unsigned long v)
{
	char tmp[16];
	size_t n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v & 15u];
		v >>= 4;
	} while (v != 0);
	put_str(l, "0x");
	while (n != 0 && l->len < LINE_MAX - 1u)
		l->buf[l->len++] = tmp[--n];
}

static void put_site(struct line *l, const struct htr_site *site)
{
	if (site->file == NULL) {
		put_str(l, "?:0");
		return;
	}
	put_field(l, site->file, FILE_MAX);
	put_str(l, ":");
	put_dec(l, site->line < 0 ? 0u : (unsigned long)site->line);
}

static void put_seq(struct line *l, struct htr_enc *e)
{
	put_str(l, ";seq=");
	put_dec(l, htr_enc_next_seq(e));
}

static void put_pc(struct line *l, const struct htr_site *site)
{
	put_str(l, ";pc=");
	put_hex(l, site->pc);
}

static int send_line(struct htr_enc *e, struct line *l, int raw)
{
	l->buf[l->len++] = '\n';
	return raw ? htr_enc_send_raw(e, (const uint8_t *)l->buf, l->len)
		   : htr_enc_send(e, (const uint8_t *)l->buf, l->len);
}

static void text_init(struct htr_enc *e, uintptr_t base, size_t size)
{
	struct line l = {.len = 0};
	put_str(&l, "==MP init;");
	put_hex(&l, base);
	put_str(&l, ";");
	put_hex(&l, size);
	put_seq(&l, e);
	send_line(e, &l, 0);
}

/* valground and the analyser know one heap per init line, and an unknown
 * ==HT verb would stop the analyser: the text encoding leaves extra regions
 * out (the init line's size and each check line's heap= count them). */
static void text_region(struct htr_enc *e, uintptr_t base, size_t size)
{
	(void)e;
	(void)base;
	(void)size;
}

/* An ==MP line: verb, the size (allocs: with_size), pointer, site,
 * number, caller and the extra fields. */
static void heap_line(struct htr_enc *e, const char *verb, int with_size, size_t size, const void *ptr,
		      const struct htr_site *site, const char *extra)
{
	struct line l = {.len = 0};
	put_str(&l, verb);
	if (with_size) {
		put_dec(&l, size);
		put_str(&l, ";");
	}
	put_hex(&l, (uintptr_t)ptr);
	put_str(&l, ";");
	put_site(&l, site);
	put_seq(&l, e);
	put_pc(&l, site);
	put_str(&l, extra);
	send_line(e, &l, 0);
}

static void alloc_line(struct htr_enc *e, const char *verb, const void *ptr, size_t size,
		       const struct htr_site *site, const char *extra)
{
	heap_line(e, verb, 1, size, ptr, site, extra);
}

static void free_line(struct htr_enc *e, const void *ptr, const struct htr_site *site, const char *extra)
{
	heap_line(e, "==MP free;", 0, 0, ptr, site, extra);
}

static void text_alloc(struct htr_enc *e, int call, int persist, const void *ptr, size_t size,
		       size_t align, const struct htr_site *site)
{
	(void)call;
	(void)align;
	alloc_line(e, persist ? "==MP persist;" : "==MP alloc;", ptr, size, site, "");
}

static void text_free(struct htr_enc *e, const void *ptr, int status, const struct htr_site *site)
{
	const char *err = status == HTR_HEAP_DOUBLE ? ";err=double"
			  : status == HTR_HEAP_INVALID ? ";err=invalid"
			  : status == HTR_HEAP_GUARD_HIT ? ";guard=broken"
			  : "";
	free_line(e, ptr, site, err);
}

/* valground has no realloc verb: a realloc is the pair free(old) +
 * alloc(new) that leaves valground's table right, tagged re=1 so our
 * analyser can count it as one realloc. See docs/board-wire.md. */
static void text_realloc(struct htr_enc *e, const void *old_ptr, const void *new_ptr, size_t size,
			 const struct htr_site *site)
{
	if (new_ptr == NULL && size != 0) {
		alloc_line(e, "==MP alloc;", NULL, size, site, ";re=1");
		return;
	}
	if (old_ptr != NULL)
		free_line(e, old_ptr, site, ";re=1");
	if (new_ptr != NULL)
		alloc_line(e, "==MP alloc;", new_ptr, size, site, ";re=1");
}

static void text_mark(struct htr_enc *e, const char *name)
{
	struct line l = {.len = 0};
	put_str(&l, "==HT mark;");
	put_field(&l, name, 48u);
	put_seq(&l, e);
	send_line(e, &l, 0);
}

static void text_check(struct htr_enc *e, const struct htr_heap_stats *s, uint32_t ticks)
{
	(void)ticks;
	struct line l = {.len = 0};
	put_str(&l, "==HT check");
	put_seq(&l, e);
	put_str(&l, ";live=");
	put_dec(&l, s->live_blocks);
	put_str(&l, ";bytes=");
	put_dec(&l, s->used_bytes);
	put_str(&l, ";heap=");
	put_dec(&l, s->heap_size);
	put_str(&l, ";free=");
	put_dec(&l, s->free_bytes);
	put_str(&l, ";largest=");
	put_dec(&l, s->largest_free);
	put_str(&l, ";fblocks=");
	put_dec(&l, s->free_blocks);
	put_str(&l, ";minfree=");
	put_dec(&l, s->min_free_bytes);
	send_line(e, &l, 0);
}

static int text_drop(struct htr_enc *e, uint32_t count)
{
	struct line l = {.len = 0};
	put_str(&l, "==HT drop;count=");
	put_dec(&l, count);
	put_seq(&l, e);
	return send_line(e, &l, 1);
}

const struct htr_enc_ops htr_enc_text_ops = {
	text_init, text_region, text_alloc, text_free, text_realloc, text_mark, text_check, text_drop,
};
