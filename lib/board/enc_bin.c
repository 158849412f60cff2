/* The compact binary encoding (wire.h, docs/board-wire.md): one COBS frame
 * per record. A typical alloc is 7 or 8 bytes on the wire and a free 6 or 7,
 * because file:line:pc is sent once as a SITE and referenced by a one-byte
 * id, or not at all when it is that of the latest alloc (free) a few
 * records back, and pointers travel as 8-byte units from the heap base. */
#include <string.h>

#include "enc.h"
#include "heap.h"
#include "wire.h"

/* Site ids are one byte in the recent-record memory (enc.h). */
#if HTR_ENC_SITES > 255
#error "HTR_ENC_SITES must be at most 255"
#endif

struct rec {
	uint8_t b[HTR_WIRE_RECORD_MAX];
	size_t n;
};

static void put_u8(struct rec *r, uint8_t v)
{
	if (r->n < HTR_WIRE_RECORD_MAX - 1u)
		r->b[r->n++] = v;
}

static void put_var(struct rec *r, uint64_t v)
{
	if (r->n + 10u < HTR_WIRE_RECORD_MAX)
		r->n += htr_wire_put_varint(r->b + r->n, v);
}

static void put_bytes(struct rec *r, const char *s, size_t max)
{
	for (size_t i = 0; s[i] != '\0' && i < max && r->n < HTR_WIRE_RECORD_MAX - 1u; i++)
		r->b[r->n++] = (uint8_t)s[i];
}

/* ptr as 8-byte units from ref, zigzagged, + 1; 0 is NULL. */
static void put_ptr(struct rec *r, const void *ptr, uintptr_t ref)
{
	if (ptr == NULL) {
		put_var(r, 0);
		return;
	}
	int64_t d = (int64_t)((intptr_t)ptr - (intptr_t)ref) / (int64_t)HTR_HEAP_ALIGN;
	put_var(r, htr_wire_zigzag(d) + 1u);
}

enum { KIND_OTHER, KIND_ALLOC, KIND_FREE };

/* Starts a record of kind (KIND_ALLOC: ALLOC, KIND_FREE: FREE) at site id,
 * choosing the *_AGAIN type when the latest record of the same kind among
 * the last HTR_WIRE_RECENT had the same site (and the run of them is not
 * too long), and noting this one for the next. */
static void begin_kind(struct htr_enc *e, struct rec *r, unsigned type, unsigned kind, unsigned id)
{
	uint32_t seq = htr_enc_next_seq(e);
	int again = 0;
	for (uint32_t d = 1; kind != KIND_OTHER && d <= HTR_WIRE_RECENT; d++) {
		uint32_t k = (seq - d) % HTR_WIRE_RECENT;
		if (e->recent_kind[k] == kind) {
			again = e->recent_site[k] == id && e->again_run[kind - 1u] < HTR_WIRE_AGAIN_RUN;
			break;
		}
	}
	if (kind != KIND_OTHER)
		e->again_run[kind - 1u] = again ? (uint8_t)(e->again_run[kind - 1u] + 1u) : 0u;
	if (again)
		type = kind == KIND_ALLOC ? HTR_WIRE_ALLOC_AGAIN : HTR_WIRE_FREE_AGAIN;
	e->recent_kind[seq % HTR_WIRE_RECENT] = (uint8_t)kind;
	e->recent_site[seq % HTR_WIRE_RECENT] = (uint8_t)id;
	r->n = 0;
	put_u8(r, (uint8_t)(type << HTR_WIRE_SEQ_BITS | (seq & HTR_WIRE_SEQ_MASK)));
	if (kind != KIND_OTHER && !again)
		put_var(r, id);
}

static void begin(struct htr_enc *e, struct rec *r, unsigned type)
{
	begin_kind(e, r, type, KIND_OTHER, 0);
}

static void begin_ext(struct htr_enc *e, struct rec *r, unsigned ext)
{
	begin(e, r, HTR_WIRE_EXT);
	put_u8(r, (uint8_t)ext);
}

static int finish(struct htr_enc *e, struct rec *r, int raw)
{
	uint8_t frame[HTR_WIRE_FRAME_MAX];
	r->b[r->n] = htr_wire_crc8(r->b, r->n);
	size_t n = htr_wire_cobs_encode(r->b, r->n + 1u, frame);
	frame[n++] = 0;
	return raw ? htr_enc_send_raw(e, frame, n) : htr_enc_send(e, frame, n);
}

/* The site's id, sending its definition first when the id is new or was
 * reused. 0 when the site is unknown or its definition was lost (the event
 * then goes out without a site: the decoder would not know the id). */
static unsigned site_id(struct htr_enc *e, const struct htr_site *site, int *lost)
{
	*lost = 0;
	if (site->file == NULL && site->pc == 0)
		return 0;
	uint32_t h = ((uint32_t)site->line * 31u) ^ (uint32_t)site->pc ^ (uint32_t)(uintptr_t)site->file;
	h ^= h >> 7;
	unsigned slot = h % HTR_ENC_SITES;
	struct htr_enc_site_slot *s;
	for (unsigned probe = 0; probe < 4u; probe++) {
		s = &e->sites[(slot + probe) % HTR_ENC_SITES];
		if (s->sent && s->file == site->file && s->line == site->line && s->pc == site->pc)
			return (slot + probe) % HTR_ENC_SITES + 1u;
		if (!s->sent) {
			slot = (slot + probe) % HTR_ENC_SITES;
			break;
		}
	}
	/* Full neighbourhood: the home slot is redefined, the decoder follows. */
	s = &e->sites[slot];
	s->file = site->file;
	s->line = site->line;
	s->pc = site->pc;
	s->sent = 0;
	struct rec r;
	begin_ext(e, &r, HTR_WIRE_X_SITE);
	put_var(&r, slot + 1u);
	put_var(&r, site->line < 0 ? 0u : (uint64_t)site->line);
	put_var(&r, site->pc);
	put_bytes(&r, site->file != NULL ? site->file : "?", HTR_WIRE_FILE_MAX);
	if (finish(e, &r, 0) != 0) {
		*lost = 1;
		return 0;
	}
	s->sent = 1;
	return slot + 1u;
}

static void bin_init(struct htr_enc *e, uintptr_t base, size_t size)
{
	struct rec r;
	e->base = base;
	/* A lone delimiter ends whatever noise the line carried before us. */
	static const uint8_t sync = 0;
	if (e->tp->write(e->tp->ctx, &sync, 1) == 0)
		e->bytes++;
	memset(e->recent_kind, 0, sizeof(e->recent_kind));
	begin_ext(e, &r, HTR_WIRE_X_INIT);
	put_var(&r, e->seq - 1u);
	put_var(&r, base);
	put_var(&r, size);
	put_var(&r, HTR_WIRE_VERSION);
	finish(e, &r, 0);
}

static void bin_region(struct htr_enc *e, uintptr_t base, size_t size)
{
	struct rec r;
	begin_ext(e, &r, HTR_WIRE_X_REGION);
	put_var(&r, base);
	put_var(&r, size);
	finish(e, &r, 0);
}

static void bin_alloc(struct htr_enc *e, int call, int persist, const void *ptr, size_t size,
		      size_t align, const struct htr_site *site)
{
	struct rec r;
	int lost;
	unsigned id = site_id(e, site, &lost);
	int ext = !persist && call != HTR_ENC_CALL_MALLOC && call != HTR_ENC_CALL_CALLOC;
	if (persist) {
		begin_ext(e, &r, HTR_WIRE_X_PERSIST);
		put_var(&r, id);
	} else if (call == HTR_ENC_CALL_MALLOC) {
		begin_kind(e, &r, HTR_WIRE_ALLOC, KIND_ALLOC, id);
	} else if (call == HTR_ENC_CALL_CALLOC) {
		begin(e, &r, HTR_WIRE_CALLOC);
		put_var(&r, id);
	} else {
		begin_ext(e, &r, HTR_WIRE_X_ALLOC);
		put_u8(&r, (uint8_t)call);
		put_var(&r, id);
	}
	put_var(&r, size);
	put_ptr(&r, ptr, e->base);
	if (ext)
		put_var(&r, align);
	if (lost) {
		htr_enc_lost(e);
		return;
	}
	finish(e, &r, 0);
}

static void bin_free(struct htr_enc *e, const void *ptr, int status, const struct htr_site *site)
{
	struct rec r;
	int lost;
	unsigned id = site_id(e, site, &lost);
	if (status == HTR_HEAP_DOUBLE || status == HTR_HEAP_INVALID) {
		begin_ext(e, &r, HTR_WIRE_X_MISUSE);
		put_u8(&r, status == HTR_HEAP_DOUBLE ? 1u : 2u);
		put_var(&r, id);
		put_var(&r, (uintptr_t)ptr);
	} else {
		begin_kind(e, &r, HTR_WIRE_FREE, KIND_FREE, id);
		put_ptr(&r, ptr, e->base);
	}
	if (lost) {
		htr_enc_lost(e);
		return;
	}
	finish(e, &r, 0);
	if (status == HTR_HEAP_GUARD_HIT) {
		begin_ext(e, &r, HTR_WIRE_X_GUARD);
		put_var(&r, id);
		put_var(&r, (uintptr_t)ptr);
		finish(e, &r, 0);
	}
}

static void bin_realloc(struct htr_enc *e, const void *old_ptr, const void *new_ptr, size_t size,
			const struct htr_site *site)
{
	struct rec r;
	int lost;
	unsigned id = site_id(e, site, &lost);
	begin(e, &r, HTR_WIRE_REALLOC);
	put_var(&r, id);
	put_var(&r, size);
	put_ptr(&r, old_ptr, e->base);
	/* Relative to the old block: one byte when it grew in place. */
	put_ptr(&r, new_ptr, (uintptr_t)old_ptr);
	if (lost) {
		htr_enc_lost(e);
		return;
	}
	finish(e, &r, 0);
}

static void bin_mark(struct htr_enc *e, const char *name)
{
	struct rec r;
	begin_ext(e, &r, HTR_WIRE_X_MARK);
	put_bytes(&r, name, HTR_WIRE_NAME_MAX);
	finish(e, &r, 0);
}

static void bin_check(struct htr_enc *e, const struct htr_heap_stats *s, uint32_t ticks)
{
	struct rec r;
	begin_ext(e, &r, HTR_WIRE_X_CHECK);
	put_var(&r, e->seq - 1u);
	put_var(&r, e->base);
	put_var(&r, s->heap_size);
	put_var(&r, s->live_blocks);
	put_var(&r, s->used_bytes);
	put_var(&r, s->free_bytes);
	put_var(&r, s->largest_free);
	put_var(&r, s->free_blocks);
	put_var(&r, s->min_free_bytes);
	put_var(&r, s->peak_used_bytes);
	put_var(&r, s->alloc_count);
	put_var(&r, s->free_count);
	put_var(&r, s->failed_count);
	put_var(&r, s->misuse_count);
	put_var(&r, ticks);
	finish(e, &r, 0);
}

static int bin_drop(struct htr_enc *e, uint32_t count)
{
	struct rec r;
	begin_ext(e, &r, HTR_WIRE_X_DROP);
	put_var(&r, count);
	return finish(e, &r, 1);
}

const struct htr_enc_ops htr_enc_bin_ops = {
	bin_init, bin_region, bin_alloc, bin_free, bin_realloc, bin_mark, bin_check, bin_drop,
};
