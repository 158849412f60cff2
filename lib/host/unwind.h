/* The recorder's own x86-64 unwinder: .eh_frame rules walked from a known
 * start, cached per thread, with libunwind as the fallback for whatever it
 * does not handle (stacks.c decides; see README.md, "Decisions"). */
#ifndef HEAPTRAIL_HOST_UNWIND_H
#define HEAPTRAIL_HOST_UNWIND_H

#include <stdbool.h>
#include <stdint.h>

/* How to get from a frame to its caller, for one return address: the CFA
 * (the caller's rsp), where the return address is saved, what becomes of
 * rbp. Only what the x86-64 compilers emit at call sites has a form here;
 * anything else is HTR_CFA_NONE and the backtrace goes to libunwind. */
enum htr_cfa_kind {
	HTR_CFA_EMPTY = 0, /* cache slot never filled */
	HTR_CFA_RSP,       /* rsp + cfa_off */
	HTR_CFA_RBP,       /* rbp + cfa_off */
	HTR_CFA_DEREF_RBP, /* *(rbp + cfa_off): GCC's realigned-stack frames */
	HTR_CFA_END,       /* return address undefined: the outermost frame */
	HTR_CFA_NONE,      /* not supported here */
};

enum htr_rbp_kind {
	HTR_RBP_SAME = 0, /* the caller's rbp is this frame's */
	HTR_RBP_AT_CFA,   /* saved at CFA + rbp_off */
	HTR_RBP_AT_RBP,   /* saved at rbp + rbp_off (realigned frames) */
};

struct htr_unwind_rule {
	uint64_t pc; /* the return address it is for (the rule of pc - 1) */
	int32_t cfa_off;
	int16_t rbp_off;
	int8_t ra_off; /* return address saved at CFA + ra_off */
	uint8_t cfa_kind : 4, rbp_kind : 4;
};

/* unwind_cfi.c: the rule for the return address pc, from the .eh_frame of
 * the module that holds pc - 1. Always fills *out (HTR_CFA_NONE when there
 * is no FDE or it says something unsupported). No allocation, no lock. */
void htr_cfi_rule(uint64_t pc, struct htr_unwind_rule *out);

/* Where a walk starts: a return address, the CFA of the function it returns
 * from (the rsp the caller will have), and the caller's rbp. */
struct htr_unwind_regs {
	uint64_t pc, cfa, rbp;
};

/* The memory words a walk read, in the order it read them, and whether the
 * start rbp mattered. The same start and the same words give the same walk
 * (the chain cache in stacks.c rests on that). */
#define HTR_UNWIND_LOG_MAX 96u
struct htr_unwind_log {
	uint32_t n;
	bool overflow; /* more reads than fit: the walk cannot be replayed */
	bool uses_rbp;
	uint64_t addr[HTR_UNWIND_LOG_MAX];
	uint64_t val[HTR_UNWIND_LOG_MAX];
};

/* unwind.c: walks from *start, writing the return addresses of the frames
 * (the start's first) to ips, at most max, after dropping the leading ones
 * inside [skip_lo, skip_hi). Returns how many, or -1 when a frame needs
 * what this walker does not do (then nothing it wrote is meaningful). log
 * may be NULL. */
int htr_unwind_walk(const struct htr_unwind_regs *start, uint64_t *ips, int max, uintptr_t skip_lo,
		    uintptr_t skip_hi, struct htr_unwind_log *log);

/* Bumped by dlclose: rules and chains cached before may describe code that
 * is gone. Threads compare it with their copy before using their caches. */
extern uint32_t htr_unwind_generation;
/* Empties this thread's rule cache when the generation moved; returns the
 * current generation. */
uint32_t htr_unwind_sync(void);

/* Same contract as unw_backtrace (ips[0] is the caller's own return
 * address), by this walker alone: -1 where it would fall back. For the
 * tests. */
int htr_unwind_backtrace(uint64_t *ips, int max);

#endif /* HEAPTRAIL_HOST_UNWIND_H */
