/* A library the dlopen test loads: its allocation's stack must resolve to
 * plugin_alloc in this file. */
#include <stdlib.h>

void *plugin_alloc(void);

__attribute__((noinline)) void *plugin_alloc(void)
{
	void *p = malloc(7007);
	__asm__ volatile("" ::: "memory");
	return p;
}
