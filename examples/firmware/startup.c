/* Minimal Cortex-M3 start-up for QEMU mps2-an385: vectors, .data/.bss,
 * the UART, SysTick, and exit through semihosting. */
#include <stdint.h>
#include <string.h>

#include "fw.h"

extern uint32_t fw_data_start[], fw_data_end[], fw_data_load[], fw_bss_start[], fw_bss_end[];
extern uint32_t fw_stack_top[];

#define UART0_BASE 0x40004000u
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08u))
#define UART_INTSTATUS (*(volatile uint32_t *)(UART0_BASE + 0x0Cu))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10u))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04u))
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00u))
#define UART_CTRL_TX_EN 1u
#define UART_CTRL_TX_INT_EN 4u
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define NVIC_ISPR0 (*(volatile uint32_t *)0xE000E200u)
/* mps2-an385: UART0 RX is IRQ 0, TX is IRQ 1. */
#define UART0_TX_IRQ 1u

int main(void);
void fw_reset(void);
void fw_fault(void);
void fw_uart0_tx_isr(void);

__attribute__((noreturn)) void fw_exit(int code)
{
	/* SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit: QEMU exits with
	 * `code` as its own status. */
	static volatile uint32_t block[2];
	block[0] = 0x20026u;
	block[1] = (uint32_t)code;
	register uint32_t r0 __asm("r0") = 0x20u;
	register volatile uint32_t *r1 __asm("r1") = block;
	__asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
	for (;;)
		;
}

void fw_fault(void)
{
	fw_exit(99);
}

static void (*tx_isr_hook)(void);

void fw_uart0_tx_isr(void)
{
	UART_INTSTATUS = 1u; /* write 1 to clear TX */
	if (tx_isr_hook != NULL)
		tx_isr_hook();
}

void fw_uart_tx_irq_enable(void (*hook)(void))
{
	tx_isr_hook = hook;
	UART_CTRL |= UART_CTRL_TX_INT_EN;
	NVIC_ISER0 = 1u << UART0_TX_IRQ;
}

void fw_uart_tx_irq_pend(void)
{
	NVIC_ISPR0 = 1u << UART0_TX_IRQ;
}

int fw_uart_tx_ready(void)
{
	return (UART_STATE & 1u) == 0;
}

void fw_uart_put(uint8_t byte)
{
	UART_DATA = byte;
}

void fw_reset(void)
{
	memcpy(fw_data_start, fw_data_load, (size_t)((uint8_t *)fw_data_end - (uint8_t *)fw_data_start));
	memset(fw_bss_start, 0, (size_t)((uint8_t *)fw_bss_end - (uint8_t *)fw_bss_start));
	UART_BAUDDIV = 16u;
	UART_CTRL = UART_CTRL_TX_EN;
	SYST_RVR = 0x00FFFFFFu;
	SYST_CSR = 5u; /* core clock, no interrupt, enabled */
	fw_exit(main());
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16 + 2])(void) = {
	(void (*)(void))(uintptr_t)fw_stack_top,
	fw_reset,
	fw_fault, /* NMI */
	fw_fault, /* HardFault */
	fw_fault, /* MemManage */
	fw_fault, /* BusFault */
	fw_fault, /* UsageFault */
	0, 0, 0, 0,
	fw_fault, /* SVCall */
	fw_fault, /* DebugMon */
	0,
	fw_fault, /* PendSV */
	fw_fault, /* SysTick */
	fw_fault, /* IRQ 0: UART0 RX */
	fw_uart0_tx_isr, /* IRQ 1: UART0 TX */
};
