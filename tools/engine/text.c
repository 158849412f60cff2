/* Text inputs: valground ==MP lines (as Speculos prints them, among pytest
 * output), the board's ==MP/==HT superset, and glibc mtrace logs. Each line
 * becomes struct htr_event; file:line strings and caller PCs are interned
 * here and defined to the engine as SITE and STACK events, the same way the
 * binary readers do. */
#include "engine.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct intern {
	uint64_t *keys; /* hash of the string or the pc */
	uint32_t *ids;
	size_t mask, count;
	uint32_t next;
};

struct text_state {
	struct engine *e;
	struct intern sites, pcs;
	uint64_t line_no;
	bool board; /* saw a board-only field or record */
	bool vg;    /* the current line is a Speculos line, as valground reads them */
	bool have_seq;
	uint64_t expect_seq;
	uint64_t pending_gap;
	char test[512];
	/* mtrace: a "<" waiting for its ">" */
	bool have_old;
	uint64_t old_ptr;
	uint32_t old_site;
	char *err;
	size_t errlen;
	const char *path;
};

static uint64_t fnv(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h | 1; /* 0 marks an empty slot */
}

/* Returns the id for key, or 0 with *id_out set to a new id to define. */
static uint32_t intern(struct intern *t, uint64_t key, bool *fresh)
{
	if ((t->count + 1) * 2 > t->mask + 1) {
		size_t cap = t->mask ? (t->mask + 1) * 2 : 1024;
		uint64_t *ok = t->keys;
		uint32_t *oi = t->ids;
		size_t ocap = t->mask ? t->mask + 1 : 0;
		t->keys = calloc(cap, sizeof(uint64_t));
		t->ids = calloc(cap, sizeof(uint32_t));
		if (!t->keys || !t->ids) {
			fputs("htr-engine: out of memory\n", stderr);
			exit(3);
		}
		t->mask = cap - 1;
		for (size_t i = 0; i < ocap; i++) {
			if (!ok[i])
				continue;
			size_t j = (size_t)(ok[i] * 0x9e3779b97f4a7c15ULL >> 20) & t->mask;
			while (t->keys[j])
				j = (j + 1) & t->mask;
			t->keys[j] = ok[i];
			t->ids[j] = oi[i];
		}
		free(ok);
		free(oi);
	}
	size_t j = (size_t)(key * 0x9e3779b97f4a7c15ULL >> 20) & t->mask;
	while (t->keys[j]) {
		if (t->keys[j] == key) {
			*fresh = false;
			return t->ids[j];
		}
		j = (j + 1) & t->mask;
	}
	t->keys[j] = key;
	t->ids[j] = ++t->next;
	t->count++;
	*fresh = true;
	return t->next;
}

/* "file:line" (the last colon splits) or, with no line, the text itself. */
static uint32_t site_id(struct text_state *st, const char *s, size_t n)
{
	if (n == 0)
		return 0;
	bool fresh;
	/* A 64-bit hash stands for the string: a collision would merge two
	 * sites, at odds of 2^-64 per pair. */
	uint32_t id = intern(&st->sites, fnv(s, n), &fresh);
	if (fresh) {
		char buf[1024];
		if (n >= sizeof(buf))
			n = sizeof(buf) - 1;
		memcpy(buf, s, n);
		buf[n] = 0;
		uint32_t line = 0;
		char *colon = strrchr(buf, ':');
		if (colon && colon[1]) {
			char *end;
			unsigned long v = strtoul(colon + 1, &end, 10);
			if (*end == 0) {
				line = (uint32_t)v;
				*colon = 0;
			}
		}
		struct htr_event ev = {.type = HTR_EV_SITE, .id = id, .line = line, .text = buf};
		eng_event(st->e, &ev);
	}
	return id;
}

static uint32_t pc_stack(struct text_state *st, uint64_t pc)
{
	bool fresh;
	uint32_t id = intern(&st->pcs, pc * 2 + 1, &fresh);
	if (fresh) {
		struct htr_event ev = {.type = HTR_EV_STACK, .id = id, .depth = 1, .frames = &pc};
		eng_event(st->e, &ev);
	}
	return id;
}

static bool parse_hex(const char *s, size_t n, uint64_t *out)
{
	size_t i = 0;
	/* Speculos prints "0x%p", which some printf builds turn into 0x0x... */
	while (n - i >= 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X'))
		i += 2;
	if (i == n)
		return false;
	if (n - i == 5 && memcmp(s + i, "(nil)", 5) == 0) {
		*out = 0;
		return true;
	}
	uint64_t v = 0;
	for (; i < n; i++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return false;
		v = v << 4 | d;
	}
	*out = v;
	return true;
}

static bool parse_dec(const char *s, size_t n, uint64_t *out)
{
	if (n == 0)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

static bool parse_num(const char *s, size_t n, uint64_t *out)
{
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		return parse_hex(s, n, out);
	return parse_dec(s, n, out);
}

#define MAX_FIELDS 16
struct fields {
	const char *p[MAX_FIELDS];
	size_t n[MAX_FIELDS];
	int count;
	/* key=value extras */
	bool has_seq, has_pc;
	uint64_t seq, pc;
	const char *err;
	size_t errn;
};

static void split(const char *s, size_t len, struct fields *f)
{
	memset(f, 0, sizeof(*f));
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == ';') {
			if (f->count < MAX_FIELDS) {
				f->p[f->count] = s + start;
				f->n[f->count] = i - start;
				f->count++;
			}
			start = i + 1;
		}
	}
}

static const char *field_value(const struct fields *f, int i, const char *key)
{
	size_t k = strlen(key);
	if (f->n[i] > k && memcmp(f->p[i], key, k) == 0 && f->p[i][k] == '=')
		return f->p[i] + k + 1;
	return NULL;
}

/* Peels trailing key=value fields (seq, pc, err, ...) off the positional
 * ones; returns false on a malformed value. */
static bool take_extras(struct text_state *st, struct fields *f, int positional)
{
	for (int i = positional; i < f->count; i++) {
		const char *v;
		size_t vn;
		if ((v = field_value(f, i, "seq"))) {
			vn = f->n[i] - 4;
			if (!parse_dec(v, vn, &f->seq))
				return false;
			f->has_seq = true;
		} else if ((v = field_value(f, i, "pc"))) {
			vn = f->n[i] - 3;
			if (!parse_hex(v, vn, &f->pc))
				return false;
			f->has_pc = true;
		} else if ((v = field_value(f, i, "err"))) {
			f->err = v;
			f->errn = f->n[i] - 4;
		}
		st->board = true;
	}
	f->count = positional < f->count ? positional : f->count;
	return true;
}

static void note_seq(struct text_state *st, const struct fields *f, struct htr_event *ev)
{
	if (!f->has_seq)
		return;
	ev->seq = f->seq;
	if (st->have_seq && f->seq > st->expect_seq) {
		uint64_t gap = f->seq - st->expect_seq;
		struct htr_event loss = {.type = HTR_EV_LOSS, .count = gap, .offset = st->line_no};
		eng_event(st->e, &loss);
		st->pending_gap += gap;
	}
	st->have_seq = true;
	st->expect_seq = f->seq + 1;
}

static int bad(struct text_state *st, const char *what)
{
	snprintf(st->err, st->errlen, "%s: line %" PRIu64 ": %s", st->path, st->line_no, what);
	return -1;
}

static int on_mp(struct text_state *st, const char *s, size_t len)
{
	struct fields f;
	split(s, len, &f);
	struct htr_event ev = {0};
	ev.offset = st->line_no;
	const char *kw = f.p[0];
	size_t kn = f.n[0];
	uint64_t v1 = 0, v2 = 0;
	if ((kn == 5 && memcmp(kw, "alloc", 5) == 0) || (kn == 7 && memcmp(kw, "persist", 7) == 0)) {
		if (f.count < 4 || !take_extras(st, &f, 4) || !parse_num(f.p[1], f.n[1], &v1) ||
		    !parse_hex(f.p[2], f.n[2], &v2))
			return bad(st, "malformed ==MP alloc line");
		ev.type = HTR_EV_ALLOC;
		ev.call = HTR_CALL_MALLOC;
		ev.size = v1;
		ev.ptr = v2;
		ev.site = site_id(st, f.p[3], f.n[3]);
		ev.stack = f.has_pc ? pc_stack(st, f.pc) : 0;
		note_seq(st, &f, &ev);
		eng_event(st->e, &ev);
		if (kn == 7 && ev.ptr != 0) {
			struct htr_event pe = {.type = HTR_EV_PERSIST, .ptr = v2, .offset = st->line_no};
			eng_event(st->e, &pe);
		}
		return 0;
	}
	if (kn == 4 && memcmp(kw, "free", 4) == 0) {
		int positional = f.count >= 3 && memchr(f.p[2], '=', f.n[2]) == NULL ? 3 : 2;
		if (f.count < 2 || !take_extras(st, &f, positional) || !parse_hex(f.p[1], f.n[1], &v1))
			return bad(st, "malformed ==MP free line");
		ev.call = HTR_CALL_FREE;
		ev.ptr = v1;
		ev.site = f.count >= 3 ? site_id(st, f.p[2], f.n[2]) : 0;
		ev.stack = f.has_pc ? pc_stack(st, f.pc) : 0;
		note_seq(st, &f, &ev);
		if (f.err) {
			/* The board refused this free: the heap is unchanged. */
			ev.type = HTR_EV_MISUSE;
			if (f.errn == 6 && memcmp(f.err, "double", 6) == 0)
				ev.kind = HTR_MISUSE_DOUBLE_FREE;
			else if (f.errn == 7 && memcmp(f.err, "invalid", 7) == 0)
				ev.kind = HTR_MISUSE_INVALID_FREE;
			else
				return bad(st, "unknown err= value in ==MP free line");
		} else {
			ev.type = HTR_EV_FREE;
		}
		eng_event(st->e, &ev);
		return 0;
	}
	if (kn == 4 && memcmp(kw, "init", 4) == 0) {
		if (f.count < 3 || !take_extras(st, &f, 3) || !parse_hex(f.p[1], f.n[1], &v1) ||
		    !parse_num(f.p[2], f.n[2], &v2))
			return bad(st, "malformed ==MP init line");
		ev.type = HTR_EV_HEAP_INIT;
		ev.ptr = v1;
		ev.size = v2;
		/* A new heap restarts the target's sequence numbering too. */
		st->have_seq = false;
		note_seq(st, &f, &ev);
		eng_event(st->e, &ev);
		return 0;
	}
	return bad(st, "unknown ==MP record");
}

static bool kv(const struct fields *f, const char *key, uint64_t *out)
{
	for (int i = 1; i < f->count; i++) {
		const char *v = field_value(f, i, key);
		if (v)
			return parse_num(v, f->n[i] - strlen(key) - 1, out);
	}
	return false;
}

static int on_ht(struct text_state *st, const char *s, size_t len)
{
	struct fields f;
	split(s, len, &f);
	struct htr_event ev = {0};
	ev.offset = st->line_no;
	const char *kw = f.p[0];
	size_t kn = f.n[0];
	st->board = true;
	if (kn == 4 && memcmp(kw, "mark", 4) == 0) {
		if (f.count < 2 || !take_extras(st, &f, 2))
			return bad(st, "malformed ==HT mark line");
		char name[512];
		size_t n = f.n[1] < sizeof(name) - 1 ? f.n[1] : sizeof(name) - 1;
		memcpy(name, f.p[1], n);
		name[n] = 0;
		note_seq(st, &f, &ev);
		ev.type = HTR_EV_MARKER;
		ev.kind = ENG_MARK_USER;
		ev.text = name;
		eng_event(st->e, &ev);
		return 0;
	}
	if (kn == 4 && memcmp(kw, "drop", 4) == 0) {
		uint64_t count;
		if (!kv(&f, "count", &count))
			return bad(st, "malformed ==HT drop line");
		take_extras(st, &f, 1);
		note_seq(st, &f, &ev);
		/* A sequence gap just before already counted these events. */
		uint64_t extra = count > st->pending_gap ? count - st->pending_gap : 0;
		st->pending_gap = 0;
		if (extra) {
			ev.type = HTR_EV_LOSS;
			ev.count = extra;
			eng_event(st->e, &ev);
		}
		return 0;
	}
	if (kn == 5 && memcmp(kw, "check", 5) == 0) {
		struct htr_heap_stats hs;
		memset(&hs, 0, sizeof(hs));
		uint64_t v;
		if (kv(&f, "live", &v))
			hs.live_blocks = (size_t)v;
		if (kv(&f, "bytes", &v))
			hs.used_bytes = (size_t)v;
		if (kv(&f, "heap", &v))
			hs.heap_size = (size_t)v;
		if (kv(&f, "free", &v))
			hs.free_bytes = (size_t)v;
		if (kv(&f, "largest", &v))
			hs.largest_free = (size_t)v;
		if (kv(&f, "fblocks", &v))
			hs.free_blocks = (size_t)v;
		if (kv(&f, "minfree", &v))
			hs.min_free_bytes = (size_t)v;
		take_extras(st, &f, 1);
		note_seq(st, &f, &ev);
		ev.type = HTR_EV_CHECKPOINT;
		ev.stats = &hs;
		eng_event(st->e, &ev);
		return 0;
	}
	if (kn == 7 && memcmp(kw, "realloc", 7) == 0) {
		uint64_t o, n, sz;
		if (f.count < 5 || !take_extras(st, &f, 5) || !parse_hex(f.p[1], f.n[1], &o) ||
		    !parse_hex(f.p[2], f.n[2], &n) || !parse_num(f.p[3], f.n[3], &sz))
			return bad(st, "malformed ==HT realloc line");
		ev.type = HTR_EV_REALLOC;
		ev.call = HTR_CALL_REALLOC;
		ev.ptr = o;
		ev.ptr2 = n;
		ev.size = sz;
		ev.site = site_id(st, f.p[4], f.n[4]);
		ev.stack = f.has_pc ? pc_stack(st, f.pc) : 0;
		note_seq(st, &f, &ev);
		eng_event(st->e, &ev);
		return 0;
	}
	return bad(st, "unknown ==HT record");
}

/* A pytest test id, as valground recognises it: a line holding "test_",
 * "::" and "[" (pytest -v prints "tests/test_x.py::test_y[nanos]" when a
 * test starts); the id is the first word. Summary lines such as "FAILED
 * x.py::y[..]" start with another word and are not test starts. */
static void maybe_test(struct text_state *st, const char *s, size_t len)
{
	if (s == NULL || len < 8 || memmem(s, len, "::", 2) == NULL || memmem(s, len, "test_", 5) == NULL ||
	    memchr(s, '[', len) == NULL)
		return;
	size_t n = 0;
	while (n < len && s[n] != ' ' && s[n] != '\t')
		n++;
	if (n == 0 || memmem(s, n, "::", 2) == NULL)
		return;
	if (n >= sizeof(st->test))
		n = sizeof(st->test) - 1;
	if (strlen(st->test) == n && memcmp(st->test, s, n) == 0)
		return;
	memcpy(st->test, s, n);
	st->test[n] = 0;
	struct htr_event ev = {.type = HTR_EV_MARKER, .kind = ENG_MARK_TEST, .text = st->test, .offset = st->line_no};
	eng_event(st->e, &ev);
}

static size_t word(const char *s, size_t len, size_t *pos)
{
	while (*pos < len && s[*pos] == ' ')
		(*pos)++;
	size_t start = *pos;
	while (*pos < len && s[*pos] != ' ')
		(*pos)++;
	return start;
}

/* glibc mtrace: "@ CALLER + 0xPTR 0xSIZE", "@ CALLER - 0xPTR",
 * "< 0xOLD" then "> 0xNEW 0xSIZE" for a realloc, "! 0xOLD 0xSIZE" for a
 * failed one, "= Start" / "= End". The caller is "prog:(fn+0x1d)[0xADDR]"
 * or "[0xADDR]": kept as the site text, its address as a one-frame stack. */
static int on_mtrace(struct text_state *st, const char *s, size_t len)
{
	size_t pos = 0;
	uint32_t site = 0, stack = 0;
	if (len >= 2 && s[0] == '@' && s[1] == ' ') {
		pos = 2;
		size_t cs = word(s, len, &pos);
		site = site_id(st, s + cs, pos - cs);
		const char *lb = memchr(s + cs, '[', pos - cs);
		uint64_t addr;
		if (lb) {
			const char *rb = memchr(lb, ']', (size_t)(s + pos - lb));
			if (rb && parse_hex(lb + 1, (size_t)(rb - lb - 1), &addr))
				stack = pc_stack(st, addr);
		}
	}
	size_t op = word(s, len, &pos);
	if (pos - op != 1) {
		if (pos == op)
			return 0;
		return bad(st, "malformed mtrace line");
	}
	char c = s[op];
	size_t a = word(s, len, &pos);
	size_t an = pos - a;
	size_t b = word(s, len, &pos);
	size_t bn = pos - b;
	uint64_t p1 = 0, p2 = 0;
	struct htr_event ev = {.offset = st->line_no, .site = site, .stack = stack};
	if (c == '=')
		return 0;
	if (!parse_hex(s + a, an, &p1))
		return bad(st, "malformed mtrace line");
	if (st->have_old && c != '>') {
		struct htr_event fe = {.type = HTR_EV_FREE, .ptr = st->old_ptr, .site = st->old_site,
				       .offset = st->line_no};
		st->have_old = false;
		eng_event(st->e, &fe);
	}
	switch (c) {
	case '+':
		if (!parse_hex(s + b, bn, &p2))
			return bad(st, "malformed mtrace allocation");
		ev.type = HTR_EV_ALLOC;
		ev.call = HTR_CALL_MALLOC;
		ev.ptr = p1;
		ev.size = p2;
		break;
	case '-':
		ev.type = HTR_EV_FREE;
		ev.call = HTR_CALL_FREE;
		ev.ptr = p1;
		break;
	case '<':
		st->have_old = true;
		st->old_ptr = p1;
		st->old_site = site;
		return 0;
	case '>':
		if (!parse_hex(s + b, bn, &p2))
			return bad(st, "malformed mtrace realloc");
		ev.type = HTR_EV_REALLOC;
		ev.call = HTR_CALL_REALLOC;
		ev.ptr = st->have_old ? st->old_ptr : 0;
		ev.ptr2 = p1;
		ev.size = p2;
		st->have_old = false;
		break;
	case '!':
		if (!parse_hex(s + b, bn, &p2))
			return bad(st, "malformed mtrace realloc failure");
		ev.type = HTR_EV_REALLOC;
		ev.call = HTR_CALL_REALLOC;
		ev.ptr = p1;
		ev.ptr2 = 0;
		ev.size = p2 ? p2 : 1;
		break;
	default:
		return bad(st, "unknown mtrace record");
	}
	eng_event(st->e, &ev);
	return 0;
}

static int on_line(struct text_state *st, const char *s, size_t len, bool mtrace)
{
	if (len && s[len - 1] == '\r')
		len--;
	if (mtrace)
		return on_mtrace(st, s, len);
	/* pytest -v -s prints the test id and then, on the same line, the
	 * test's first output: the test starts before that line's record. */
	maybe_test(st, s, len);
	const char *m = len >= 5 ? memmem(s, len, "==", 2) : NULL;
	while (m) {
		size_t rest = len - (size_t)(m - s);
		if (rest >= 5 && m[4] == ' ' && (memcmp(m, "==MP", 4) == 0 || memcmp(m, "==HT", 4) == 0)) {
			if (m[2] == 'H')
				return on_ht(st, m + 5, rest - 5);
			/* Exactly the lines valground reads get its counting. */
			static const char speculos[] = "seproxyhal: printf: ";
			bool vg = m - s == (ptrdiff_t)(sizeof(speculos) - 1) && memcmp(s, speculos, sizeof(speculos) - 1) == 0;
			if (vg != st->vg) {
				st->vg = vg;
				eng_set_valground_compat(st->e, vg);
			}
			return on_mp(st, m + 5, rest - 5);
		}
		m = rest > 2 ? memmem(m + 2, rest - 2, "==", 2) : NULL;
	}
	return 0;
}

int eng_parse_text(struct engine *e, FILE *in, const char *path, bool mtrace, char *err, size_t errlen)
{
	struct text_state *st = calloc(1, sizeof(*st));
	if (st == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	st->e = e;
	st->err = err;
	st->errlen = errlen;
	st->path = path;
	size_t cap = 1u << 20, have = 0;
	char *buf = malloc(cap);
	if (buf == NULL) {
		free(st);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = 0;
	uint64_t offset = 0; /* of buf[0] in the file */
	bool eof = false;
	while (rc == 0 && !eof) {
		size_t got = fread(buf + have, 1, cap - have, in);
		if (got == 0) {
			if (ferror(in)) {
				snprintf(err, errlen, "%s: read error", path);
				rc = -1;
				break;
			}
			eof = true;
		}
		have += got;
		size_t start = 0;
		for (;;) {
			char *nl = memchr(buf + start, '\n', have - start);
			if (nl == NULL)
				break;
			st->line_no++;
			rc = on_line(st, buf + start, (size_t)(nl - (buf + start)), mtrace);
			if (rc)
				break;
			start = (size_t)(nl - buf) + 1;
		}
		if (rc)
			break;
		if (eof && start < have) {
			/* A last line without its newline: the log was cut
			 * while being written. Use it if it parses. */
			st->line_no++;
			rc = on_line(st, buf + start, have - start, mtrace);
			if (rc) {
				struct htr_event tr = {.type = HTR_EV_TRUNCATED, .kind = HTR_TRUNC_FILE_SHORT,
						       .offset = offset + start, .text = "the last line is cut short"};
				rc = 0;
				eng_event(e, &tr);
			}
			start = have;
		}
		memmove(buf, buf + start, have - start);
		offset += start;
		have -= start;
		if (have == cap) {
			cap *= 2;
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				snprintf(err, errlen, "out of memory");
				rc = -1;
				break;
			}
			buf = nb;
		}
	}
	if (rc == 0 && st->have_old) {
		struct htr_event fe = {.type = HTR_EV_FREE, .ptr = st->old_ptr, .site = st->old_site};
		eng_event(e, &fe);
	}
	if (!mtrace)
		eng_set_format(e, st->board ? "board-text" : "valground");
	free(buf);
	free(st->sites.keys);
	free(st->sites.ids);
	free(st->pcs.keys);
	free(st->pcs.ids);
	free(st);
	return rc;
}
