/* .eh_frame reading for the unwinder: for one return address, the module's
 * eh_frame_hdr (from _dl_find_object: lock-free, async-signal-safe), its
 * sorted table, the FDE and CIE, and the CFA program run up to pc - 1. The
 * result is reduced to the few forms unwind.c walks; anything else is
 * HTR_CFA_NONE, which sends the backtrace to libunwind. Every byte read is
 * inside the module's eh_frame_hdr table or inside the length the CIE or
 * FDE gives itself. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "unwind.h"

#if HTR_NATIVE_UNWIND

/* DW_EH_PE_* pointer encodings */
enum {
	PE_ABSPTR = 0x00,
	PE_ULEB128 = 0x01,
	PE_UDATA2 = 0x02,
	PE_UDATA4 = 0x03,
	PE_UDATA8 = 0x04,
	PE_SLEB128 = 0x09,
	PE_SDATA2 = 0x0a,
	PE_SDATA4 = 0x0b,
	PE_SDATA8 = 0x0c,
	PE_PCREL = 0x10,
	PE_DATAREL = 0x30,
	PE_INDIRECT = 0x80,
	PE_OMIT = 0xff,
};

/* x86-64 DWARF register numbers */
enum { REG_RBP = 6, REG_RSP = 7, REG_RA = 16 };

/* DW_OP_* used by GCC's realigned-frame rules */
enum { OP_DEREF = 0x06, OP_BREG6 = 0x76 };

struct cursor {
	const uint8_t *p, *end;
	bool bad; /* ran past end or met something unsupported: the result is void */
};

static uint64_t fixed(struct cursor *c, unsigned size)
{
	uint64_t v = 0;
	if ((size_t)(c->end - c->p) < size) {
		c->bad = true;
		c->p = c->end;
		return 0;
	}
	memcpy(&v, c->p, size); /* little endian: the low bytes */
	c->p += size;
	return v;
}

static uint64_t uleb(struct cursor *c)
{
	uint64_t v = 0;
	unsigned shift = 0;
	while (c->p < c->end) {
		uint8_t b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return v;
	}
	c->bad = true;
	return 0;
}

static int64_t sleb(struct cursor *c)
{
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b;
	do {
		if (c->p >= c->end) {
			c->bad = true;
			return 0;
		}
		b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	if (shift < 64 && (b & 0x40))
		v |= ~(uint64_t)0 << shift;
	return (int64_t)v;
}

/* An encoded pointer. `apply` adds the base its application says (only
 * pc-relative exists in .eh_frame as compilers write it); without it the
 * raw value is returned, which is what a length or a skipped field needs. */
static uint64_t encoded(struct cursor *c, uint8_t enc, bool apply)
{
	const uint8_t *field = c->p;
	uint64_t v;
	switch (enc & 0x0f) {
	case PE_ABSPTR:
	case PE_UDATA8:
	case PE_SDATA8:
		v = fixed(c, 8);
		break;
	case PE_ULEB128:
		v = uleb(c);
		break;
	case PE_UDATA2:
		v = fixed(c, 2);
		break;
	case PE_SDATA2:
		v = (uint64_t)(int64_t)(int16_t)fixed(c, 2);
		break;
	case PE_UDATA4:
		v = fixed(c, 4);
		break;
	case PE_SDATA4:
		v = (uint64_t)(int64_t)(int32_t)fixed(c, 4);
		break;
	case PE_SLEB128:
		v = (uint64_t)sleb(c);
		break;
	default:
		c->bad = true;
		return 0;
	}
	if (!apply)
		return v;
	if ((enc & PE_INDIRECT) != 0)
		c->bad = true;
	else if ((enc & 0x70) == PE_PCREL)
		v += (uint64_t)(uintptr_t)field;
	else if ((enc & 0x70) != 0)
		c->bad = true;
	return v;
}

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint8_t fde_enc;
	bool has_aug_data;
	const uint8_t *insns, *end;
};

/* A 4-byte length, then that many bytes. The 64-bit form (0xffffffff) is
 * not written for code by any toolchain in use: unsupported. */
static bool entry_bounds(const uint8_t *p, const uint8_t **body, const uint8_t **end)
{
	uint32_t len;
	memcpy(&len, p, 4);
	if (len == 0 || len == 0xffffffffu)
		return false;
	*body = p + 4;
	*end = p + 4 + len;
	return true;
}

static bool parse_cie(const uint8_t *p, struct cie *cie)
{
	const uint8_t *body, *end;
	if (!entry_bounds(p, &body, &end))
		return false;
	struct cursor c = { body, end, false };
	if (fixed(&c, 4) != 0)
		return false; /* not a CIE */
	unsigned version = (unsigned)fixed(&c, 1);
	if (version != 1 && version != 3 && version != 4)
		return false;
	const char *aug = (const char *)c.p;
	size_t aug_len = strnlen(aug, (size_t)(c.end - c.p));
	if (c.p + aug_len >= c.end)
		return false;
	c.p += aug_len + 1;
	if (version == 4 && (fixed(&c, 1) != 8 || fixed(&c, 1) != 0))
		return false; /* address size, segment selector size */
	cie->code_align = uleb(&c);
	cie->data_align = sleb(&c);
	uint64_t ra = version == 1 ? fixed(&c, 1) : uleb(&c);
	if (ra != REG_RA)
		return false;
	cie->fde_enc = PE_ABSPTR;
	cie->has_aug_data = aug[0] == 'z';
	if (cie->has_aug_data) {
		uint64_t n = uleb(&c);
		if (c.bad || n > (uint64_t)(c.end - c.p))
			return false;
		struct cursor a = { c.p, c.p + n, false };
		for (const char *s = aug + 1; *s != '\0'; s++) {
			if (*s == 'R') {
				cie->fde_enc = (uint8_t)fixed(&a, 1);
			} else if (*s == 'P') {
				uint8_t enc = (uint8_t)fixed(&a, 1);
				encoded(&a, enc, false); /* the personality: skipped */
			} else if (*s == 'L') {
				fixed(&a, 1);
			} else {
				return false; /* S (signal frame) and anything unknown */
			}
		}
		if (a.bad)
			return false;
		c.p += n;
	} else if (aug[0] != '\0') {
		return false;
	}
	if (c.bad)
		return false;
	cie->insns = c.p;
	cie->end = end;
	return true;
}

/* One register's rule, for the columns the walk needs. */
enum { RULE_SAME = 0, RULE_UNDEF, RULE_OFFSET, RULE_EXPR, RULE_OTHER };

struct col {
	uint8_t how;
	int64_t off;
	const uint8_t *expr;
	uint64_t len;
};

enum { COL_RBP, COL_RSP, COL_RA, NCOLS };

struct row {
	uint64_t cfa_reg;
	int64_t cfa_off;
	bool cfa_is_expr;
	const uint8_t *cfa_expr;
	uint64_t cfa_len;
	struct col col[NCOLS];
};

static int column(uint64_t reg)
{
	switch (reg) {
	case REG_RBP:
		return COL_RBP;
	case REG_RSP:
		return COL_RSP;
	case REG_RA:
		return COL_RA;
	default:
		return -1; /* a register the walk never needs */
	}
}

#define STATE_STACK 8 /* remember_state nesting; GCC uses one level */

struct program {
	uint64_t loc, target;
	uint64_t code_align;
	int64_t data_align;
	uint8_t fde_enc;
	struct row row;
	const struct row *initial; /* for DW_CFA_restore; NULL inside the CIE */
	struct row saved[STATE_STACK];
	unsigned depth;
	bool done; /* the next row starts past target */
};

static void set_col(struct row *r, uint64_t reg, uint8_t how, int64_t off, const uint8_t *expr,
		    uint64_t len)
{
	int i = column(reg);
	if (i < 0)
		return;
	r->col[i].how = how;
	r->col[i].off = off;
	r->col[i].expr = expr;
	r->col[i].len = len;
}

static void restore_col(struct program *pg, uint64_t reg)
{
	int i = column(reg);
	if (i < 0)
		return;
	if (pg->initial != NULL)
		pg->row.col[i] = pg->initial->col[i];
	else
		memset(&pg->row.col[i], 0, sizeof(pg->row.col[i]));
}

static void advance(struct program *pg, uint64_t delta)
{
	if (delta > pg->target - pg->loc) /* loc <= target always holds here */
		pg->done = true;
	else
		pg->loc += delta;
}

/* Runs CFA instructions until the row for target is complete. Returns
 * false on anything unknown or malformed. */
static bool run(struct program *pg, struct cursor *c)
{
	while (!pg->done && c->p < c->end && !c->bad) {
		uint8_t op = *c->p++;
		uint64_t reg, len;
		int64_t off;
		switch (op >> 6) {
		case 1: /* advance_loc */
			advance(pg, (op & 0x3fu) * pg->code_align);
			continue;
		case 2: /* offset */
			off = (int64_t)uleb(c) * pg->data_align;
			set_col(&pg->row, op & 0x3fu, RULE_OFFSET, off, NULL, 0);
			continue;
		case 3: /* restore */
			restore_col(pg, op & 0x3fu);
			continue;
		default:
			break;
		}
		switch (op) {
		case 0x00: /* nop */
			break;
		case 0x01: { /* set_loc */
			uint64_t loc = encoded(c, pg->fde_enc, true);
			if (loc < pg->loc)
				return false;
			advance(pg, loc - pg->loc);
			break;
		}
		case 0x02: /* advance_loc1 */
			advance(pg, fixed(c, 1) * pg->code_align);
			break;
		case 0x03: /* advance_loc2 */
			advance(pg, fixed(c, 2) * pg->code_align);
			break;
		case 0x04: /* advance_loc4 */
			advance(pg, fixed(c, 4) * pg->code_align);
			break;
		case 0x05: /* offset_extended */
			reg = uleb(c);
			off = (int64_t)uleb(c) * pg->data_align;
			set_col(&pg->row, reg, RULE_OFFSET, off, NULL, 0);
			break;
		case 0x06: /* restore_extended */
			restore_col(pg, uleb(c));
			break;
		case 0x07: /* undefined */
			set_col(&pg->row, uleb(c), RULE_UNDEF, 0, NULL, 0);
			break;
		case 0x08: /* same_value */
			set_col(&pg->row, uleb(c), RULE_SAME, 0, NULL, 0);
			break;
		case 0x09: /* register */
			reg = uleb(c);
			uleb(c);
			set_col(&pg->row, reg, RULE_OTHER, 0, NULL, 0);
			break;
		case 0x0a: /* remember_state */
			if (pg->depth == STATE_STACK)
				return false;
			pg->saved[pg->depth++] = pg->row;
			break;
		case 0x0b: /* restore_state: the CFA rule comes back too */
			if (pg->depth == 0)
				return false;
			pg->row = pg->saved[--pg->depth];
			break;
		case 0x0c: /* def_cfa */
			pg->row.cfa_reg = uleb(c);
			pg->row.cfa_off = (int64_t)uleb(c);
			pg->row.cfa_is_expr = false;
			break;
		case 0x0d: /* def_cfa_register */
			pg->row.cfa_reg = uleb(c);
			pg->row.cfa_is_expr = false;
			break;
		case 0x0e: /* def_cfa_offset */
			pg->row.cfa_off = (int64_t)uleb(c);
			break;
		case 0x0f: /* def_cfa_expression */
			len = uleb(c);
			if (len > (uint64_t)(c->end - c->p))
				return false;
			pg->row.cfa_is_expr = true;
			pg->row.cfa_expr = c->p;
			pg->row.cfa_len = len;
			c->p += len;
			break;
		case 0x10: /* expression */
		case 0x16: /* val_expression */
			reg = uleb(c);
			len = uleb(c);
			if (len > (uint64_t)(c->end - c->p))
				return false;
			set_col(&pg->row, reg, op == 0x10 ? RULE_EXPR : RULE_OTHER, 0, c->p, len);
			c->p += len;
			break;
		case 0x11: /* offset_extended_sf */
			reg = uleb(c);
			off = sleb(c) * pg->data_align;
			set_col(&pg->row, reg, RULE_OFFSET, off, NULL, 0);
			break;
		case 0x12: /* def_cfa_sf */
			pg->row.cfa_reg = uleb(c);
			pg->row.cfa_off = sleb(c) * pg->data_align;
			pg->row.cfa_is_expr = false;
			break;
		case 0x13: /* def_cfa_offset_sf */
			pg->row.cfa_off = sleb(c) * pg->data_align;
			break;
		case 0x14: /* val_offset */
			reg = uleb(c);
			uleb(c);
			set_col(&pg->row, reg, RULE_OTHER, 0, NULL, 0);
			break;
		case 0x15: /* val_offset_sf */
			reg = uleb(c);
			sleb(c);
			set_col(&pg->row, reg, RULE_OTHER, 0, NULL, 0);
			break;
		case 0x2e: /* GNU_args_size: matters to landing pads only */
			uleb(c);
			break;
		case 0x2f: /* GNU_negative_offset_extended */
			reg = uleb(c);
			off = -(int64_t)uleb(c) * pg->data_align;
			set_col(&pg->row, reg, RULE_OFFSET, off, NULL, 0);
			break;
		default:
			return false;
		}
	}
	return !c->bad;
}

/* `DW_OP_breg6 k` alone (deref false) or followed by DW_OP_deref: the two
 * expressions GCC writes for a frame it realigns through a DRAP. */
static bool breg6_expr(const uint8_t *expr, uint64_t len, bool deref, int64_t *k)
{
	struct cursor c = { expr, expr + len, false };
	if (fixed(&c, 1) != OP_BREG6)
		return false;
	*k = sleb(&c);
	if (deref && fixed(&c, 1) != OP_DEREF)
		return false;
	return !c.bad && c.p == c.end;
}

static bool fits(int64_t v, int64_t lo, int64_t hi)
{
	return v >= lo && v <= hi;
}

static void reduce(const struct row *r, struct htr_unwind_rule *out)
{
	const struct col *ra = &r->col[COL_RA], *rbp = &r->col[COL_RBP];
	out->cfa_kind = HTR_CFA_NONE;
	if (ra->how == RULE_UNDEF) {
		out->cfa_kind = HTR_CFA_END;
		return;
	}
	/* rsp is the CFA by definition of the walk; a rule for it (signal
	 * trampolines, stack switches) is beyond it. */
	if (ra->how != RULE_OFFSET || !fits(ra->off, INT8_MIN, INT8_MAX) ||
	    r->col[COL_RSP].how != RULE_SAME)
		return;
	int64_t k;
	uint8_t kind;
	if (r->cfa_is_expr) {
		if (!breg6_expr(r->cfa_expr, r->cfa_len, true, &k))
			return;
		kind = HTR_CFA_DEREF_RBP;
	} else {
		k = r->cfa_off;
		if (r->cfa_reg == REG_RSP)
			kind = HTR_CFA_RSP;
		else if (r->cfa_reg == REG_RBP)
			kind = HTR_CFA_RBP;
		else
			return;
	}
	if (!fits(k, INT32_MIN, INT32_MAX))
		return;
	int64_t rk = 0;
	uint8_t rbp_kind;
	if (rbp->how == RULE_SAME) {
		rbp_kind = HTR_RBP_SAME;
	} else if (rbp->how == RULE_OFFSET) {
		rbp_kind = HTR_RBP_AT_CFA;
		rk = rbp->off;
	} else if (rbp->how == RULE_EXPR && breg6_expr(rbp->expr, rbp->len, false, &rk)) {
		rbp_kind = HTR_RBP_AT_RBP;
	} else {
		return;
	}
	if (!fits(rk, INT16_MIN, INT16_MAX))
		return;
	out->cfa_off = (int32_t)k;
	out->rbp_off = (int16_t)rk;
	out->ra_off = (int8_t)ra->off;
	out->rbp_kind = rbp_kind;
	out->cfa_kind = kind;
}

static void rule_from_fde(const uint8_t *fde, uint64_t target, struct htr_unwind_rule *out)
{
	const uint8_t *body, *end;
	if (!entry_bounds(fde, &body, &end))
		return;
	uint32_t cie_off;
	memcpy(&cie_off, body, 4);
	if (cie_off == 0 || cie_off > (uintptr_t)body)
		return; /* a CIE where an FDE should be */
	struct cie cie;
	if (!parse_cie(body - cie_off, &cie))
		return;
	struct cursor c = { body + 4, end, false };
	uint64_t begin = encoded(&c, cie.fde_enc, true);
	uint64_t range = encoded(&c, cie.fde_enc & 0x0f, false);
	if (c.bad || target < begin || target - begin >= range)
		return; /* the table's nearest FDE does not cover pc: no unwind info */
	if (cie.has_aug_data) {
		uint64_t n = uleb(&c);
		if (c.bad || n > (uint64_t)(c.end - c.p))
			return;
		c.p += n;
	}
	static const struct program blank; /* zeroed: every column RULE_SAME */
	struct program pg = blank;
	pg.loc = begin;
	pg.target = target;
	pg.code_align = cie.code_align;
	pg.data_align = cie.data_align;
	pg.fde_enc = cie.fde_enc;
	struct cursor ci = { cie.insns, cie.end, false };
	if (!run(&pg, &ci))
		return;
	struct row initial = pg.row;
	pg.initial = &initial;
	pg.depth = 0; /* a state remembered in the CIE is not the FDE's to restore */
	if (!run(&pg, &c))
		return;
	reduce(&pg.row, out);
}

void htr_cfi_rule(uint64_t pc, struct htr_unwind_rule *out)
{
	memset(out, 0, sizeof(*out));
	out->pc = pc;
	out->cfa_kind = HTR_CFA_NONE;
	/* pc is a return address: the call is at pc - 1, and the call may be
	 * the last instruction of its function (noreturn callees). */
	uint64_t target = pc - 1;
	struct dl_find_object fo;
	if (pc == 0 || _dl_find_object((void *)(uintptr_t)target, &fo) != 0 || fo.dlfo_eh_frame == NULL)
		return;
	const uint8_t *hdr = fo.dlfo_eh_frame;
	/* version, eh_frame_ptr encoding, fde_count encoding, table encoding,
	 * then the two encoded values (at most 8 bytes each in the fixed
	 * forms this accepts) */
	if (hdr[0] != 1 || hdr[3] != (PE_DATAREL | PE_SDATA4))
		return;
	struct cursor c = { hdr + 4, hdr + 4 + 16, false };
	uint8_t count_enc = hdr[2];
	if ((hdr[1] & 0x0f) == PE_ULEB128 || (hdr[1] & 0x0f) == PE_SLEB128 || count_enc == PE_OMIT ||
	    (count_enc & 0x0f) == PE_ULEB128 || (count_enc & 0x0f) == PE_SLEB128)
		return;
	encoded(&c, hdr[1], false);
	uint64_t count = encoded(&c, count_enc, false);
	if (c.bad || count == 0)
		return;
	const uint8_t *table = c.p;
	/* The last entry whose start is at or below target. */
	uint64_t lo = 0, hi = count;
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		int32_t start;
		memcpy(&start, table + mid * 8, 4);
		if ((uint64_t)(uintptr_t)(hdr + start) <= target)
			lo = mid;
		else
			hi = mid;
	}
	int32_t start, fde;
	memcpy(&start, table + lo * 8, 4);
	memcpy(&fde, table + lo * 8 + 4, 4);
	if ((uint64_t)(uintptr_t)(hdr + start) > target)
		return;
	rule_from_fde(hdr + fde, target, out);
}

#endif /* HTR_NATIVE_UNWIND */
