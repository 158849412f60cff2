/* Misuse: double free, invalid free, mismatched family. The record names
 * the bad call, the allocation and (double free) the first free; the bad
 * call itself never reaches libc, except a mismatch, which the caller frees
 * correctly. HEAPTRAIL_ON_ERROR=abort stops the program instead, after the
 * record is in the trace. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *call_name(uint8_t call)
{
	switch (call) {
	case HTR_CALL_FREE: return "free";
	case HTR_CALL_REALLOC: return "realloc";
	case HTR_CALL_REALLOCARRAY: return "reallocarray";
	case HTR_CALL_DELETE: return "operator delete";
	case HTR_CALL_DELETE_ARRAY: return "operator delete[]";
	default: return "a deallocation";
	}
}

static const char *kind_name(uint8_t kind)
{
	switch (kind) {
	case HTR_MISUSE_DOUBLE_FREE: return "double free";
	case HTR_MISUSE_INVALID_FREE: return "invalid free";
	default: return "mismatched deallocation";
	}
}

static char *append_hex(char *p, char *end, uint64_t v)
{
	char buf[19];
	buf[0] = '0';
	buf[1] = 'x';
	int n = 0;
	char digits[16];
	do {
		digits[n++] = "0123456789abcdef"[v & 15u];
		v >>= 4;
	} while (v != 0);
	for (int i = 0; i < n; i++)
		buf[2 + i] = digits[n - 1 - i];
	buf[2 + n] = '\0';
	return htr_str_append(p, end, buf);
}

void htr_misuse_report(struct htr_writer *w, uint8_t kind, uint64_t ptr, uint8_t call,
		       uint32_t stack, uint32_t site, const struct htr_live_entry *alloc,
		       const struct htr_freed_entry *freed)
{
	__atomic_add_fetch(&htr_counters.misuse_count, 1, __ATOMIC_RELAXED);
	struct htr_rec_misuse *r = htr_writer_reserve(w, sizeof(*r));
	uint64_t seq = htr_next_seq();
	if (r != NULL) {
		memset((char *)r + 4, 0, sizeof(*r) - 4);
		r->stack = stack;
		r->seq = seq;
		r->ptr = ptr;
		r->site = site;
		r->call = call;
		if (alloc != NULL) {
			r->size = alloc->size;
			r->alloc_stack = alloc->stack;
			r->alloc_site = alloc->site;
			r->alloc_call = alloc->call;
		} else if (freed != NULL) {
			r->size = freed->size;
			r->alloc_stack = freed->alloc_stack;
			r->alloc_site = freed->alloc_site;
			r->alloc_call = freed->alloc_call;
			r->free_stack = freed->free_stack;
			r->free_site = freed->free_site;
		}
		htr_record_commit(w, r, HTR_REC_MISUSE, kind, sizeof(*r));
	} else {
		htr_writer_drop(w);
	}
	if (htr_opts.on_error == HTR_ON_ERROR_ABORT) {
		char line[160];
		char *end = line + sizeof(line);
		char *p = htr_str_append(line, end, kind_name(kind));
		p = htr_str_append(p, end, " of ");
		p = append_hex(p, end, ptr);
		p = htr_str_append(p, end, " by ");
		p = htr_str_append(p, end, call_name(call));
		htr_str_append(p, end, "; aborting (HEAPTRAIL_ON_ERROR=abort)");
		htr_warn_stderr(NULL, line);
		abort();
	}
}
