/* The table libheaptrail-api finds with dlsym (lib/api/shim_abi.h): the
 * located calls of include/heaptrail.h, recorded with their file:line. */
#include <string.h>
#include <time.h>

#include "heaptrail.h"
#include "../api/shim_abi.h"
#include "internal.h"

static void *abi_malloc_at(size_t size, const char *file, int line)
{
	htr_resolve_real();
	void *p = htr_real.malloc(size);
	htr_note_alloc(HTR_CALL_MALLOC, p, size, 0, file, line, false);
	return p;
}

static void *abi_calloc_at(size_t count, size_t size, const char *file, int line)
{
	htr_resolve_real();
	void *p = htr_real.calloc(count, size);
	size_t total;
	if (__builtin_mul_overflow(count, size, &total))
		total = SIZE_MAX;
	htr_note_alloc(HTR_CALL_CALLOC, p, total, 0, file, line, false);
	return p;
}

static void *abi_realloc_at(void *ptr, size_t size, const char *file, int line)
{
	return htr_do_realloc(HTR_CALL_REALLOC, ptr, size, file, line);
}

static void *abi_aligned_alloc_at(size_t alignment, size_t size, const char *file, int line)
{
	htr_resolve_real();
	void *p = htr_real.aligned_alloc(alignment, size);
	htr_note_alloc(HTR_CALL_ALIGNED_ALLOC, p, size, alignment, file, line, false);
	return p;
}

static char *abi_strdup_at(const char *s, const char *file, int line)
{
	htr_resolve_real();
	size_t len = strlen(s) + 1;
	char *p = htr_real.malloc(len);
	if (p != NULL)
		memcpy(p, s, len);
	htr_note_alloc(HTR_CALL_STRDUP, p, len, 0, file, line, false);
	return p;
}

static void abi_free_at(void *ptr, const char *file, int line)
{
	htr_do_free(HTR_CALL_FREE, ptr, file, line);
}

static void *abi_persistent_at(size_t size, const char *file, int line)
{
	htr_resolve_real();
	void *p = htr_real.malloc(size);
	htr_note_alloc(HTR_CALL_MALLOC, p, size, 0, file, line, true);
	return p;
}

static void abi_mark(const char *name)
{
	struct htr_thread *t = &htr_self;
	if (!htr_recording() || t->busy || name == NULL)
		return;
	t->busy++;
	htr_thread_attach(t);
	size_t len = strnlen(name, 1024);
	size_t bytes = htr_align8(sizeof(struct htr_rec_marker) + len + 1);
	struct htr_rec_marker *r = htr_writer_reserve(&t->w, bytes);
	if (r != NULL) {
		r->reserved = 0;
		r->seq = htr_next_seq();
		memcpy(r + 1, name, len);
		memset((char *)(r + 1) + len, 0, bytes - sizeof(*r) - len);
		htr_record_commit(&t->w, r, HTR_REC_MARKER, 0, bytes);
	} else {
		htr_writer_drop(&t->w);
	}
	t->busy--;
}

static int abi_heap_stats(struct htr_heap_stats *out)
{
	return htr_stats_fill(out);
}

HTR_EXPORT extern const struct htr_shim_abi htr_shim_abi_v1;
const struct htr_shim_abi htr_shim_abi_v1 = {
	.version = HTR_SHIM_ABI_VERSION,
	.size = sizeof(struct htr_shim_abi),
	.malloc_at = abi_malloc_at,
	.calloc_at = abi_calloc_at,
	.realloc_at = abi_realloc_at,
	.aligned_alloc_at = abi_aligned_alloc_at,
	.strdup_at = abi_strdup_at,
	.free_at = abi_free_at,
	.persistent_at = abi_persistent_at,
	.mark = abi_mark,
	.heap_stats = abi_heap_stats,
};
