/* The port contract: what the board backend needs from the platform.
 *
 * One implementation per platform. port_cortexm.c serves Cortex-M (QEMU
 * mps2-an385 and real parts), port_host.c serves the host build the unit
 * tests link. Everything else in lib/board is platform-free C. */
#ifndef HTR_BOARD_PORT_H
#define HTR_BOARD_PORT_H

#include <stddef.h>
#include <stdint.h>

/* Mutual exclusion around heap and encoder state. Must nest: the Cortex-M
 * port saves PRIMASK so a call from a critical section stays in it. */
uint32_t htr_port_lock(void);
void htr_port_unlock(uint32_t saved);

/* A free-running tick counter; only differences are meaningful. */
uint32_t htr_port_timestamp(void);

/* One byte to the UART (or whatever the blocking byte transport is). May
 * spin until the hardware takes it. */
void htr_port_putc(uint8_t byte);

/* Orders memory writes seen by a debugger or DMA reading RAM behind the
 * CPU's back (the RTT control block). */
void htr_port_barrier(void);

/* The caller of the API function that uses it. A macro because it has to be
 * expanded in the API function itself, not in a helper. On Cortex-M the raw
 * value has bit 0 set (Thumb); the symboliser uses (pc & ~1) - 1. */
#define HTR_PORT_CALLER() ((uintptr_t)__builtin_extract_return_addr(__builtin_return_address(0)))

#endif /* HTR_BOARD_PORT_H */
