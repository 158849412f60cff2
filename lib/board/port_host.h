/* The host port's extras, for the unit tests. */
#ifndef HTR_BOARD_PORT_HOST_H
#define HTR_BOARD_PORT_HOST_H

#include <stdint.h>

/* Where htr_port_putc's bytes go (NULL: nowhere). */
void htr_port_host_set_output(void (*put)(void *ctx, uint8_t byte), void *ctx);
/* Lock depth right now: 0 outside the backend. */
int htr_port_host_lock_depth(void);

#endif /* HTR_BOARD_PORT_HOST_H */
