/* The pointer model of packed traces (pack_model.h, which holds inline the
 * steps taken per event, the reader's whole). Every step is written once
 * and taken by both sides, which is what keeps them in step: the
 * packer looks blocks up by pointer, the reader by ordinal, and everything
 * else (predictions, references) is updated by the same code. */
#include "pack_model.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "heaptrail/trace_format.h"

/* ---- live set ---- */

int htr_live_init(struct htr_live_table *t, size_t cap, unsigned shift)
{
	t->slots = calloc(cap, sizeof(*t->slots));
	t->shift = shift;
	t->mask = cap - 1;
	t->used = 0;
	return t->slots ? 0 : -1;
}

int htr_live_grow(struct htr_live_table *t)
{
	struct htr_live_table bigger;
	if (htr_live_init(&bigger, (t->mask + 1) * 2, t->shift) != 0)
		return -1;
	for (size_t i = 0; i <= t->mask; i++)
		if (t->slots[i].key != 0)
			htr_live_put(&bigger, t->slots[i].key, t->slots[i].a, t->slots[i].b);
	free(t->slots);
	*t = bigger;
	return 0;
}

/* ---- shared steps ---- */

void *htr_pm_huge_zalloc(size_t bytes)
{
	const size_t huge = (size_t)2 << 20;
	bytes = (bytes + huge - 1) & ~(huge - 1);
	void *p = aligned_alloc(huge, bytes);
	if (p == NULL)
		return NULL;
	madvise(p, bytes, MADV_HUGEPAGE); /* a hint: 4 KiB pages work too */
	return memset(p, 0, bytes);
}

int htr_pm_init(struct htr_pack_model *m, bool reader)
{
	memset(m, 0, sizeof(*m));
	m->last_kind[HTR_PACK_ALLOC] = HTR_CALL_MALLOC;
	m->last_kind[HTR_PACK_FREE] = HTR_CALL_FREE;
	m->last_kind[HTR_PACK_REALLOC] = HTR_CALL_REALLOC;
	m->next_ord = 1; /* 0 is the empty key */
	/* The ring's 2 MiB: a huge page of its own. */
	if (reader && (m->ring = htr_pm_huge_zalloc(HTR_PM_RING * sizeof(*m->ring))) == NULL)
		return -1;
	return htr_live_init(&m->live, 1024, reader ? 0 : 4);
}

void htr_pm_fini(struct htr_pack_model *m)
{
	free(m->live.slots);
	m->live.slots = NULL;
	free(m->ring);
	m->ring = NULL;
}

static uint64_t grown(uint64_t old, unsigned policy)
{
	return policy == 0 ? old : policy == 1 ? old + old / 2 : old * 2;
}

uint64_t htr_pm_code_resize(const struct htr_pm_block *old, uint64_t size, uint64_t *extra)
{
	uint64_t best = HTR_PACK_SIZE_PLAIN, best_z = UINT64_MAX;
	for (unsigned policy = 0; old->tracked && policy < 3; policy++) {
		uint64_t z = htr_pm_zigzag(size - grown(old->size, policy));
		if (z < HTR_PACK_NEAR && z < best_z) {
			best_z = z;
			best = 4 * z + policy;
		}
	}
	if (best == HTR_PACK_SIZE_PLAIN)
		*extra = size;
	return best;
}

bool htr_pm_decode_resize(const struct htr_pm_block *old, uint64_t code, uint64_t extra, uint64_t *size)
{
	if (code == HTR_PACK_SIZE_PLAIN) {
		*size = extra;
		return true;
	}
	if (!old->tracked || (code & 3) == 3 || code >> 2 >= HTR_PACK_NEAR)
		return false;
	*size = grown(old->size, (unsigned)(code & 3)) + htr_pm_unzigzag(code >> 2);
	return true;
}

/* ---- reader ---- */

const struct htr_live_slot *htr_pm_find_old(const struct htr_pack_model *m, uint64_t ord)
{
	return htr_live_find(&m->live, ord);
}

void htr_pm_drop_old(struct htr_pack_model *m, uint64_t ord)
{
	htr_live_remove(&m->live, ord);
}

int htr_pm_keep_old(struct htr_pack_model *m, uint64_t ord, uint64_t ptr, uint64_t size)
{
	return htr_live_put(&m->live, ord, ptr, size);
}

/* ---- the tag coder ---- */

static void tc_set_dec(struct htr_tag_coder *tc, unsigned bucket)
{
	uint32_t *dec = tc->dec[bucket];
	unsigned at = 0;
	for (unsigned s = 0; s < 256; s++) {
		uint32_t f = tc->freq[bucket][s];
		for (unsigned i = 0; i < f; i++)
			dec[at + i] = s | i << HTR_TC_DEC_BIAS | f << HTR_TC_DEC_FREQ;
		at += f;
	}
	uint32_t f = HTR_TC_TOTAL - at;
	for (unsigned i = 0; at + i < HTR_TC_TOTAL; i++)
		dec[at + i] = HTR_TC_DEC_ESCAPE | i << HTR_TC_DEC_BIAS | f << HTR_TC_DEC_FREQ;
}

void htr_tc_init(struct htr_tag_coder *tc, bool reader)
{
	memset(tc, 0, offsetof(struct htr_tag_coder, dec));
	tc->reader = reader;
	for (unsigned i = 0; i <= HTR_TC_BUCKETS; i++) {
		tc->epoch[i] = tc->left[i] = HTR_TC_EPOCH_MIN;
		if (reader)
			tc_set_dec(tc, i); /* all escape */
	}
}

/* Every byte seen keeps a slot (counts halve but never to 0), so only a
 * new byte escapes; the most frequent one takes what rounding leaves. */
void htr_tc_rebuild(struct htr_tag_coder *tc, unsigned bucket)
{
	uint16_t *count = tc->count[bucket], *freq = tc->freq[bucket], *start = tc->start[bucket];
	uint32_t total = 0;
	unsigned seen = 0, best = 0;
	for (unsigned s = 0; s < 256; s++) {
		total += count[s];
		seen += count[s] != 0;
		if (count[s] > count[best])
			best = s;
	}
	uint32_t share = HTR_TC_TOTAL - HTR_TC_ESCAPE - seen, used = 0;
	for (unsigned s = 0; s < 256; s++) {
		freq[s] = count[s] == 0 ? 0 : (uint16_t)(1u + count[s] * share / total);
		used += freq[s];
	}
	freq[best] = (uint16_t)(freq[best] + HTR_TC_TOTAL - HTR_TC_ESCAPE - used);
	unsigned at = 0;
	for (unsigned s = 0; s < 256; s++) {
		start[s] = (uint16_t)at;
		at += freq[s];
		count[s] = (uint16_t)((count[s] + 1u) / 2u);
	}
	tc->esc_start[bucket] = (uint16_t)at;
	if (tc->reader)
		tc_set_dec(tc, bucket);
	if (tc->epoch[bucket] < HTR_TC_EPOCH_MAX)
		tc->epoch[bucket] = (uint16_t)(tc->epoch[bucket] * 2u);
	tc->left[bucket] = tc->epoch[bucket];
}

void htr_tc_reciprocals_init(struct htr_tc_reciprocal *r)
{
	for (unsigned f = 1; f <= HTR_TC_TOTAL; f++) {
		unsigned k = 0;
		while ((1u << k) < f)
			k++;
		r[f].m = ((1ull << (31 + k)) + f - 1) / f;
		r[f].shift = 31 + k;
	}
}

/* One step in state *x, its bytes out below *q; false when they would go
 * below limit. */
static inline bool encode_step(const struct htr_tc_reciprocal *r, struct htr_tc_op op, uint32_t *x, uint8_t **q,
                               const uint8_t *limit)
{
	uint32_t f = op.freq, v = *x;
	/* the largest state that still fits after this step */
	uint32_t v_max = ((HTR_TC_LOW >> HTR_TC_BITS) << 8) * f;
	while (v >= v_max) {
		if (*q == limit)
			return false;
		*--*q = (uint8_t)v;
		v >>= 8;
	}
	uint32_t div = (uint32_t)((v * r[f].m) >> r[f].shift);
	*x = (div << HTR_TC_BITS) + (v - div * f) + op.start;
	return true;
}

uint8_t *htr_tc_encode(const struct htr_tc_reciprocal *r, const struct htr_tc_op *ops, size_t n, uint8_t *limit,
                       uint8_t *end)
{
	/* op i goes to state i % 2 */
	uint32_t x0 = HTR_TC_LOW, x1 = HTR_TC_LOW;
	uint8_t *q = end;
	size_t i = n;
	if (i % 2 == 1 && !encode_step(r, ops[--i], &x0, &q, limit))
		return NULL;
	while (i > 0) {
		if (!encode_step(r, ops[i - 1], &x1, &q, limit) || !encode_step(r, ops[i - 2], &x0, &q, limit))
			return NULL;
		i -= 2;
	}
	if (q - limit < 8)
		return NULL;
	q -= 8;
	for (unsigned k = 0; k < 4; k++) {
		q[k] = (uint8_t)(x0 >> (8 * k));
		q[4 + k] = (uint8_t)(x1 >> (8 * k));
	}
	return q;
}
