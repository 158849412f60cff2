/* The port for Cortex-M3/M4: PRIMASK for the lock, SysTick for time, a
 * CMSDK APB UART (mps2-an385 UART0 by default) for bytes. */
#include "port.h"

#ifndef HTR_PORT_UART_BASE
#define HTR_PORT_UART_BASE 0x40004000u
#endif

#define UART_DATA (*(volatile uint32_t *)(HTR_PORT_UART_BASE + 0x0u))
#define UART_STATE (*(volatile uint32_t *)(HTR_PORT_UART_BASE + 0x4u))
#define UART_STATE_TX_FULL 1u
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

uint32_t htr_port_lock(void)
{
	uint32_t primask;
	__asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
	return primask;
}

void htr_port_unlock(uint32_t saved)
{
	/* Re-enable only if interrupts were on when the lock was taken, so the
	 * lock nests inside an application's own critical section. */
	__asm volatile("msr primask, %0" ::"r"(saved) : "memory");
}

uint32_t htr_port_timestamp(void)
{
	/* SysTick counts down; the firmware starts it. */
	return ~SYST_CVR & 0x00FFFFFFu;
}

void htr_port_putc(uint8_t byte)
{
	while (UART_STATE & UART_STATE_TX_FULL)
		;
	UART_DATA = byte;
}

void htr_port_barrier(void)
{
	__asm volatile("dmb" ::: "memory");
}
