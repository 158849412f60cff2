/* What startup.c gives main.c. */
#ifndef HTR_FW_H
#define HTR_FW_H

#include <stdint.h>

__attribute__((noreturn)) void fw_exit(int code);
void fw_uart_tx_irq_enable(void (*hook)(void));
void fw_uart_tx_irq_pend(void);
int fw_uart_tx_ready(void);
void fw_uart_put(uint8_t byte);

#endif
