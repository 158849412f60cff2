/* The walk: from a start (return address, CFA, rbp) to the callers, one
 * cached rule per return address. Only rsp (the CFA), rbp and the return
 * address are followed; a rule that needs another register, or a step that
 * does not look like a stack frame, ends the walk with -1 and the caller
 * asks libunwind instead, so a backtrace is either this walk's or
 * libunwind's, never a mix.
 *
 * Memory it reads: the return-address slot and the saved-rbp slot (or the
 * realigned frame's CFA slot) of the frame being left, each 8-aligned, at
 * or above that frame's rsp and less than MAX_FRAME above it, where each
 * CFA is strictly above the last. The start is the recorder's own frame,
 * so the first frame's slots lie in memory the thread is running on; each
 * next frame's come from the rule of a return address some module's
 * .eh_frame describes, which is as far as libunwind goes too. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

#include "internal.h"
#include "unwind.h"

#if HTR_NATIVE_UNWIND

/* A frame bigger than this (a huge alloca) is left to libunwind. */
#define MAX_FRAME (1ull << 20)
/* libunwind stops at a return address below this; we let it decide. */
#define MIN_PC 0x4000u

#define RULE_BITS 10u
#define RULE_SLOTS (1u << RULE_BITS)
static __thread struct htr_unwind_rule rules[RULE_SLOTS] HTR_TLS;
static __thread uint32_t rules_gen HTR_TLS;

uint32_t htr_unwind_generation = 1;

uint32_t htr_unwind_sync(void)
{
	uint32_t g = __atomic_load_n(&htr_unwind_generation, __ATOMIC_ACQUIRE);
	if (HTR_UNLIKELY(g != rules_gen)) {
		memset(rules, 0, sizeof(rules));
		rules_gen = g;
	}
	return g;
}

static inline const struct htr_unwind_rule *rule_for(uint64_t pc)
{
	struct htr_unwind_rule *r = &rules[(pc * 0x9e3779b97f4a7c15ull) >> (64u - RULE_BITS)];
	if (HTR_LIKELY(r->pc == pc && r->cfa_kind != HTR_CFA_EMPTY))
		return r;
	/* Unsupported return addresses are cached too: they cost a parse
	 * each time otherwise, and a stale one only means libunwind. */
	htr_cfi_rule(pc, r);
	return r;
}

static inline bool in_frame(uint64_t addr, uint64_t sp)
{
	return (addr & 7u) == 0 && addr >= sp && addr - sp < MAX_FRAME;
}

static inline uint64_t peek(uint64_t addr)
{
	uint64_t v;
	memcpy(&v, (const void *)(uintptr_t)addr, sizeof(v));
	return v;
}

static inline void note(struct htr_unwind_log *log, uint64_t addr, uint64_t v)
{
	if (log == NULL)
		return;
	if (HTR_LIKELY(log->n < HTR_UNWIND_LOG_MAX)) {
		log->addr[log->n] = addr;
		log->val[log->n] = v;
		log->n++;
	} else {
		log->overflow = true;
	}
}

/* rbp as the walk knows it. Optimised code keeps anything in rbp, so a
 * restored rbp is often a loop counter of some caller: logging it would
 * make every replay of an unchanged backtrace fail. It is logged only when
 * a rule uses it (which is when it decides anything), at that point; it
 * still was read where the walk restored it, from the same address. */
struct rbp_state {
	uint64_t value;
	uint64_t slot; /* where it was restored from; 0: not logged yet or start */
	bool from_start;
};

static inline uint64_t use_rbp(struct rbp_state *r, struct htr_unwind_log *log)
{
	if (r->slot != 0) {
		note(log, r->slot, r->value);
		r->slot = 0;
	} else if (r->from_start && log != NULL) {
		log->uses_rbp = true;
	}
	return r->value;
}

int htr_unwind_walk(const struct htr_unwind_regs *start, uint64_t *ips, int max, uintptr_t skip_lo,
		    uintptr_t skip_hi, struct htr_unwind_log *log)
{
	uint64_t pc = start->pc, sp = start->cfa;
	struct rbp_state rbp = { .value = start->rbp, .slot = 0, .from_start = true };
	bool skipping = true;
	int n = 0;
	if (log != NULL) {
		log->n = 0;
		log->overflow = false;
		log->uses_rbp = false;
	}
	if (max <= 0)
		return 0;
	for (;;) {
		if (pc < MIN_PC)
			return -1;
		if (!skipping || pc < skip_lo || pc >= skip_hi) {
			skipping = false;
			ips[n++] = pc;
			if (n == max)
				return n;
		}
		const struct htr_unwind_rule *r = rule_for(pc);
		uint64_t cfa, slot;
		switch (r->cfa_kind) {
		case HTR_CFA_RSP:
			cfa = sp + (uint64_t)(int64_t)r->cfa_off;
			break;
		case HTR_CFA_RBP:
			cfa = use_rbp(&rbp, log) + (uint64_t)(int64_t)r->cfa_off;
			break;
		case HTR_CFA_DEREF_RBP:
			slot = use_rbp(&rbp, log) + (uint64_t)(int64_t)r->cfa_off;
			if (!in_frame(slot, sp))
				return -1;
			cfa = peek(slot);
			note(log, slot, cfa);
			break;
		case HTR_CFA_END:
			return n;
		default:
			return -1;
		}
		/* cfa > sp and 8-aligned, so the return address slot at CFA - 8
		 * is in the frame being left. */
		if (cfa <= sp || cfa - sp > MAX_FRAME || (cfa & 7u) != 0)
			return -1;
		slot = cfa + (uint64_t)(int64_t)r->ra_off;
		if (!in_frame(slot, sp))
			return -1;
		uint64_t ra = peek(slot);
		note(log, slot, ra);
		if (r->rbp_kind != HTR_RBP_SAME) {
			if (r->rbp_kind == HTR_RBP_AT_CFA)
				slot = cfa + (uint64_t)(int64_t)r->rbp_off;
			else
				slot = use_rbp(&rbp, log) + (uint64_t)(int64_t)r->rbp_off;
			if (!in_frame(slot, sp))
				return -1;
			rbp.value = peek(slot);
			rbp.slot = slot;
			rbp.from_start = false;
		}
		sp = cfa;
		pc = ra;
	}
}

/* Built with a frame pointer (__builtin_frame_address forces one): the
 * caller's rbp is the word it points at, the return address the next, and
 * the CFA just above. */
__attribute__((noinline)) int htr_unwind_backtrace(uint64_t *ips, int max)
{
	uint64_t *fp = __builtin_frame_address(0);
	struct htr_unwind_regs s = {
		.pc = (uint64_t)(uintptr_t)__builtin_return_address(0),
		.cfa = (uint64_t)(uintptr_t)(fp + 2),
		.rbp = fp[0],
	};
	htr_unwind_sync();
	int n = htr_unwind_walk(&s, ips, max, 0, 0, NULL);
	__asm__ volatile("" ::: "memory"); /* no tail call: the frame must stay */
	return n;
}

/* A dlclose may unmap code whose rules some thread has cached, and another
 * library may then be loaded at the same addresses. Wrapping dlclose (not
 * dlopen) leaves the program's library search alone: dlclose has no
 * caller-dependent behaviour. libunwind's own caches go stale the same way
 * (its per-thread trace cache keeps rules by address until told otherwise:
 * test_unwind saw it report garbage frames), and it is the fallback, so it
 * is told too. The bump comes after the unload; a thread that ran code of a
 * library mapped into the freed range between the unload and the bump
 * could still use a stale rule: that needs a dlopen racing this dlclose
 * onto the same addresses. */
HTR_EXPORT int dlclose(void *handle)
{
	static int (*real_dlclose)(void *);
	int (*fn)(void *) = __atomic_load_n(&real_dlclose, __ATOMIC_RELAXED);
	if (fn == NULL) {
		void *sym = dlsym(RTLD_NEXT, "dlclose");
		memcpy(&fn, &sym, sizeof(fn)); /* ISO C has no object-to-function cast */
		if (fn == NULL)
			return -1;
		__atomic_store_n(&real_dlclose, fn, __ATOMIC_RELAXED);
	}
	int rc = fn(handle);
	__atomic_add_fetch(&htr_unwind_generation, 1, __ATOMIC_RELEASE);
	return rc;
}

#endif /* HTR_NATIVE_UNWIND */
