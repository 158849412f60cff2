/* file:line interning for calls made through include/heaptrail.h. The
 * per-thread cache is keyed by the string's address (a literal, stable);
 * the global table by its contents, so that one file seen through two
 * different literals still gets one id per line. */
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define CACHE_SLOTS 64u
#define MAX_FILE 1024u

struct cache_slot {
	const char *file;
	int line;
	uint32_t id;
};
static __thread struct cache_slot cache[CACHE_SLOTS] HTR_TLS;

struct entry {
	uint64_t hash;
	const char *file;
	uint32_t line;
	uint32_t id;
};

static struct {
	htr_spinlock lock;
	uint32_t next_id;
	uint64_t capacity, count;
	struct entry *slots;
} table;

static uint64_t hash_site(const char *file, size_t len, uint32_t line)
{
	uint64_t h = 0xcbf29ce484222325ull ^ line;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)file[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static bool grow(void)
{
	uint64_t cap = table.capacity ? table.capacity * 2 : 1024;
	void *m = mmap(NULL, cap * sizeof(struct entry), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return false;
	struct entry *n = m;
	for (uint64_t i = 0; i < table.capacity; i++) {
		if (table.slots[i].id == 0)
			continue;
		uint64_t j = table.slots[i].hash & (cap - 1);
		while (n[j].id != 0)
			j = (j + 1) & (cap - 1);
		n[j] = table.slots[i];
	}
	if (table.slots != NULL)
		munmap(table.slots, table.capacity * sizeof(struct entry));
	table.slots = n;
	table.capacity = cap;
	return true;
}

static void write_site(struct htr_writer *w, uint32_t id, const char *file, size_t len,
		       uint32_t line)
{
	size_t bytes = htr_align8(sizeof(struct htr_rec_site) + len + 1);
	struct htr_rec_site *r = htr_writer_reserve(w, bytes);
	if (r == NULL)
		return;
	r->id = id;
	r->line = line;
	r->reserved = 0;
	char *text = (char *)(r + 1);
	memcpy(text, file, len);
	memset(text + len, 0, bytes - sizeof(*r) - len);
	htr_record_commit(w, r, HTR_REC_SITE, 0, bytes);
}

uint32_t htr_site_intern(struct htr_writer *w, const char *file, int line)
{
	if (file == NULL)
		return 0;
	uintptr_t k = ((uintptr_t)file >> 3) ^ (uintptr_t)line * 0x9e3779b1u;
	struct cache_slot *c = &cache[k & (CACHE_SLOTS - 1)];
	if (c->file == file && c->line == line && c->id != 0)
		return c->id;

	size_t len = strnlen(file, MAX_FILE);
	uint64_t h = hash_site(file, len, (uint32_t)line);
	uint32_t id = 0;
	bool is_new = false;
	htr_spin_lock(&table.lock);
	if ((table.count + 1) * 2 <= table.capacity || grow()) {
		uint64_t i = h & (table.capacity - 1);
		while (table.slots[i].id != 0) {
			struct entry *e = &table.slots[i];
			if (e->hash == h && e->line == (uint32_t)line && strncmp(e->file, file, len) == 0 &&
			    e->file[len] == '\0') {
				id = e->id;
				break;
			}
			i = (i + 1) & (table.capacity - 1);
		}
		if (id == 0) {
			struct entry *e = &table.slots[i];
			e->hash = h;
			e->file = file; /* the API promises the string outlives the program */
			e->line = (uint32_t)line;
			e->id = id = ++table.next_id;
			table.count++;
			is_new = true;
		}
	}
	htr_spin_unlock(&table.lock);
	if (is_new)
		write_site(w, id, file, len, (uint32_t)line);
	c->file = file;
	c->line = line;
	c->id = id;
	return id;
}

void htr_sites_fork_prepare(void)
{
	htr_spin_lock(&table.lock);
}

void htr_sites_fork_parent(void)
{
	htr_spin_unlock(&table.lock);
}

void htr_sites_fork_child(void)
{
	table.lock.v = 0;
}
