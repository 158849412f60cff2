/* The module map: MODULE records for every loaded object at start, and for
 * every change since. dlopen/dlclose are not wrapped (a wrapper would become
 * the "caller" of dlopen and break the program's RUNPATH/$ORIGIN lookups);
 * instead glibc's dlpi_adds/dlpi_subs counters are checked whenever a new
 * stack is interned, which is before any address in a newly loaded module
 * can appear in the trace, and at the end. */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define MAX_MODULES 2048u
#define MAX_PATH 1024u

struct module {
	uint64_t base, start, end;
	uint32_t build_id_size;
	uint8_t build_id[HTR_BUILD_ID_MAX];
	char path[MAX_PATH];
	uint8_t seen; /* in the current scan */
};

static struct {
	htr_spinlock lock;
	unsigned long long adds, subs;
	bool scanned;
	uint32_t count;
	struct module *known; /* MAX_MODULES, from mmap */
} mods;

/* One scan's view, taken without holding mods.lock: another thread may hold
 * the loader's lock and be waiting for ours. */
struct snapshot {
	uint32_t count;
	struct module *m;
};

static int peek_counters(struct dl_phdr_info *info, size_t size, void *data)
{
	unsigned long long *out = data;
	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
		out[0] = info->dlpi_adds;
		out[1] = info->dlpi_subs;
	}
	return 1; /* the counters are the same in every entry: one is enough */
}

static void read_build_id(const struct dl_phdr_info *info, struct module *m)
{
	m->build_id_size = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
		const uint8_t *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)(const void *)p;
			const uint8_t *name = p + sizeof(*n);
			const uint8_t *desc = name + ((n->n_namesz + 3u) & ~3u);
			const uint8_t *next = desc + ((n->n_descsz + 3u) & ~3u);
			if (next > end)
				break;
			if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
				uint32_t sz = n->n_descsz;
				if (sz > HTR_BUILD_ID_MAX)
					sz = HTR_BUILD_ID_MAX;
				memcpy(m->build_id, desc, sz);
				m->build_id_size = sz;
				return;
			}
			p = next;
		}
	}
}

static int collect(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct snapshot *snap = data;
	if (snap->count >= MAX_MODULES)
		return 1;
	struct module *m = &snap->m[snap->count];
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t s = info->dlpi_addr + ph->p_vaddr;
		if (s < lo)
			lo = s;
		if (s + ph->p_memsz > hi)
			hi = s + ph->p_memsz;
	}
	if (hi == 0)
		return 0;
	m->base = info->dlpi_addr;
	m->start = lo;
	m->end = hi;
	const char *name = info->dlpi_name ? info->dlpi_name : "";
	size_t len = strnlen(name, MAX_PATH - 1);
	memcpy(m->path, name, len);
	m->path[len] = '\0';
	read_build_id(info, m);
	m->seen = 0;
	snap->count++;
	return 0;
}

static bool same(const struct module *a, const struct module *b)
{
	return a->base == b->base && a->start == b->start && a->end == b->end &&
	       strcmp(a->path, b->path) == 0;
}

static void write_module(struct htr_writer *w, const struct module *m, uint8_t kind)
{
	size_t len = strlen(m->path);
	size_t bytes = htr_align8(sizeof(struct htr_rec_module) + len + 1);
	struct htr_rec_module *r = htr_writer_reserve(w, bytes);
	if (r == NULL) {
		htr_writer_drop(w);
		return;
	}
	r->build_id_size = m->build_id_size;
	r->seq = htr_next_seq();
	r->base = m->base;
	r->start = m->start;
	r->end = m->end;
	memset(r->build_id, 0, sizeof(r->build_id));
	memcpy(r->build_id, m->build_id, m->build_id_size);
	char *text = (char *)(r + 1);
	memcpy(text, m->path, len);
	memset(text + len, 0, bytes - sizeof(*r) - len);
	htr_record_commit(w, r, HTR_REC_MODULE, kind, bytes);
}

void htr_modules_scan(struct htr_writer *w, bool force)
{
	unsigned long long counters[2] = { 0, 0 };
	dl_iterate_phdr(peek_counters, counters);
	if (!force && __atomic_load_n(&mods.scanned, __ATOMIC_ACQUIRE) &&
	    counters[0] == __atomic_load_n(&mods.adds, __ATOMIC_RELAXED) &&
	    counters[1] == __atomic_load_n(&mods.subs, __ATOMIC_RELAXED))
		return;

	size_t scratch_bytes = MAX_MODULES * sizeof(struct module);
	void *a = mmap(NULL, scratch_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return;
	struct snapshot snap = { 0, a };
	dl_iterate_phdr(peek_counters, counters);
	dl_iterate_phdr(collect, &snap);

	htr_spin_lock(&mods.lock);
	if (mods.known == NULL) {
		void *k = mmap(NULL, scratch_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (k == MAP_FAILED)
			goto out;
		mods.known = k;
	}
	/* An older view than the one already recorded must not undo it. */
	if (mods.scanned && counters[0] + counters[1] < mods.adds + mods.subs)
		goto out;
	for (uint32_t i = 0; i < mods.count; i++)
		mods.known[i].seen = 0;
	for (uint32_t j = 0; j < snap.count; j++) {
		struct module *m = &snap.m[j];
		for (uint32_t i = 0; i < mods.count; i++) {
			if (!mods.known[i].seen && same(&mods.known[i], m)) {
				mods.known[i].seen = 1;
				m->seen = 1;
				break;
			}
		}
	}
	/* Unloads first: a new module may sit where an old one was. */
	uint32_t kept = 0;
	for (uint32_t i = 0; i < mods.count; i++) {
		if (!mods.known[i].seen) {
			write_module(w, &mods.known[i], HTR_MODULE_UNLOAD);
			continue;
		}
		if (kept != i)
			mods.known[kept] = mods.known[i];
		kept++;
	}
	mods.count = kept;
	for (uint32_t j = 0; j < snap.count; j++) {
		struct module *m = &snap.m[j];
		if (m->seen || mods.count >= MAX_MODULES)
			continue;
		write_module(w, m, HTR_MODULE_LOAD);
		mods.known[mods.count++] = *m;
	}
	__atomic_store_n(&mods.adds, counters[0], __ATOMIC_RELAXED);
	__atomic_store_n(&mods.subs, counters[1], __ATOMIC_RELAXED);
	__atomic_store_n(&mods.scanned, true, __ATOMIC_RELEASE);
out:
	htr_spin_unlock(&mods.lock);
	munmap(a, scratch_bytes);
}

void htr_modules_reset(void)
{
	mods.count = 0;
	mods.scanned = false;
}

void htr_modules_fork_prepare(void)
{
	htr_spin_lock(&mods.lock);
}

void htr_modules_fork_parent(void)
{
	htr_spin_unlock(&mods.lock);
}

void htr_modules_fork_child(void)
{
	mods.lock.v = 0;
}
