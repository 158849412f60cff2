/* Cortex-M3 firmware (QEMU mps2-an385) for the instruction-count comparison
 * of the board TLSF heap with newlib-nano's malloc: the same probe harness,
 * the same compiler and flags, the same 64 KiB arena, the same counter (QEMU
 * logging every executed instruction). Labels go out on UART0, the exit
 * status through semihosting. No libc start-up: nothing runs but this. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "bh_probe.h"
#include "heap.h"

#define UART0_DATA (*(volatile uint32_t *)0x40004000u)
#define UART0_STATE (*(volatile uint32_t *)0x40004004u)
#define UART0_CTRL (*(volatile uint32_t *)0x40004008u)
#define UART0_BAUDDIV (*(volatile uint32_t *)0x40004010u)

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;

void fw_reset(void);
void fw_fault(void);
void *_sbrk(ptrdiff_t incr);
int main(void);

/* SYS_EXIT_EXTENDED: QEMU exits with the firmware's code. */
__attribute__((noreturn)) static void fw_exit(int code)
{
	volatile uint32_t block[2] = {0x20026u, (uint32_t)code};
	register uint32_t r0 __asm__("r0") = 0x20u;
	register volatile uint32_t *r1 __asm__("r1") = block;
	__asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
	for (;;) {
	}
}

void bh_puts(const char *s)
{
	for (; *s != '\0'; s++) {
		while (UART0_STATE & 1u) {
		}
		UART0_DATA = (uint8_t)*s;
	}
}

/* newlib-nano's malloc grows its pool with _sbrk: give it the same 64 KiB
 * the TLSF heap gets, so both run out at the same fill. */
static _Alignas(8) uint8_t nano_arena[BH_ARENA_BYTES];
static size_t nano_brk;

void *_sbrk(ptrdiff_t incr)
{
	if (incr < 0 || (size_t)incr > sizeof nano_arena - nano_brk)
		return (void *)-1;
	void *p = &nano_arena[nano_brk];
	nano_brk += (size_t)incr;
	return p;
}

static struct htr_heap tlsf;
static _Alignas(8) uint8_t tlsf_arena[BH_ARENA_BYTES];

static void tlsf_reset(void)
{
	htr_heap_init(&tlsf);
	if (htr_heap_add_region(&tlsf, tlsf_arena, sizeof tlsf_arena) != 0)
		fw_exit(4);
}

static void *tlsf_alloc(size_t size)
{
	return htr_heap_alloc(&tlsf, size);
}

static void tlsf_release(void *ptr)
{
	htr_heap_free(&tlsf, ptr, NULL);
}

static void nano_reset(void) {}

int main(void)
{
	UART0_BAUDDIV = 16u;
	UART0_CTRL = 1u;
	const struct bh_heap_ops tlsf_ops = {"tlsf", tlsf_reset, tlsf_alloc, tlsf_release};
	const struct bh_heap_ops nano_ops = {"nano", nano_reset, malloc, free};
	bh_run(&tlsf_ops, 0);
	bh_run(&nano_ops, 0);
#ifdef BH_FW_API
	bh_run(&bh_api_ops, 0);
#endif
	return 0;
}

void fw_reset(void)
{
	uint32_t *src = &_sidata;
	for (uint32_t *dst = &_sdata; dst < &_edata;)
		*dst++ = *src++;
	for (uint32_t *dst = &_sbss; dst < &_ebss;)
		*dst++ = 0;
	fw_exit(main());
}

/* A fault ends the run with a distinct status instead of hanging QEMU. */
void fw_fault(void)
{
	fw_exit(3);
}

__attribute__((section(".vectors"), used)) static const uintptr_t fw_vectors[16] = {
	(uintptr_t)&_estack, (uintptr_t)fw_reset, (uintptr_t)fw_fault, (uintptr_t)fw_fault,
	(uintptr_t)fw_fault, (uintptr_t)fw_fault, (uintptr_t)fw_fault, 0, 0, 0, 0,
	(uintptr_t)fw_fault, (uintptr_t)fw_fault, 0, (uintptr_t)fw_fault, (uintptr_t)fw_fault,
};
