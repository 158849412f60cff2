/* A small static pool that serves the allocations made while the real
 * allocator is being looked up (dlsym calls calloc for its error buffer).
 * Its blocks are never handed to the C library's free: free() recognises
 * them by address and ignores them. */
#include <string.h>

#include "internal.h"

#define POOL_SIZE (64u * 1024u)

static unsigned char pool[POOL_SIZE] __attribute__((aligned(64)));
static size_t pool_used;

/* Each block is preceded by its size so that realloc and
 * malloc_usable_size can answer for it. */
struct pool_head {
	uint64_t size;
	uint64_t pad;
};

void *htr_bootstrap_alloc(size_t size, size_t alignment)
{
	if (alignment < 16)
		alignment = 16;
	if (alignment > 4096 || (alignment & (alignment - 1)) != 0)
		return NULL;
	size_t cur = __atomic_load_n(&pool_used, __ATOMIC_RELAXED);
	for (;;) {
		size_t start = (cur + sizeof(struct pool_head) + alignment - 1) & ~(alignment - 1);
		size_t next = start + ((size + 15u) & ~(size_t)15u);
		if (next > POOL_SIZE || next < start)
			return NULL;
		if (__atomic_compare_exchange_n(&pool_used, &cur, next, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			struct pool_head *h = (struct pool_head *)(pool + start) - 1;
			h->size = size;
			memset(pool + start, 0, size); /* calloc callers rely on it */
			return pool + start;
		}
	}
}

bool htr_bootstrap_owns(const void *p)
{
	const unsigned char *c = p;
	return c >= pool && c < pool + POOL_SIZE;
}

size_t htr_bootstrap_size(const void *p)
{
	return (size_t)((const struct pool_head *)p - 1)->size;
}
