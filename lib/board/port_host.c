/* The port for host builds (unit tests): no interrupts to mask, output to
 * a hook the test installs. Single-threaded like the tests. */
#include "port.h"
#include "port_host.h"

static void (*out_put)(void *ctx, uint8_t byte);
static void *out_ctx;
static int depth;
static uint32_t ticks;

void htr_port_host_set_output(void (*put)(void *ctx, uint8_t byte), void *ctx)
{
	out_put = put;
	out_ctx = ctx;
}

int htr_port_host_lock_depth(void)
{
	return depth;
}

uint32_t htr_port_lock(void)
{
	return (uint32_t)depth++;
}

void htr_port_unlock(uint32_t saved)
{
	depth = (int)saved;
}

uint32_t htr_port_timestamp(void)
{
	return ++ticks;
}

void htr_port_putc(uint8_t byte)
{
	if (out_put != NULL)
		out_put(out_ctx, byte);
}

void htr_port_barrier(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}
