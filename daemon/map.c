/* map.c (base): string-keyed open-addressing hash map (linear probing, FNV-1a). */
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/map.h"

uint64_t strmap_hash(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static struct strmap_slot *find(const struct strmap *m, const char *key, size_t len, uint64_t h)
{
	size_t mask = m->cap - 1;

	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct strmap_slot *s = &m->slots[i];
		if (s->key == NULL)
			return s;
		if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
			return s;
	}
}

static void grow(struct strmap *m)
{
	struct strmap_slot *old = m->slots;
	size_t oldcap = m->cap;

	m->cap = oldcap ? oldcap * 2 : 16;
	m->slots = xcalloc(m->cap, sizeof(*m->slots));
	for (size_t i = 0; i < oldcap; i++) {
		if (old[i].key != NULL)
			*find(m, old[i].key, old[i].len, old[i].hash) = old[i];
	}
	free(old);
}

void **strmap_put(struct strmap *m, const char *key, size_t len)
{
	uint64_t h = strmap_hash(key, len);
	struct strmap_slot *s;

	if ((m->n + 1) * 4 > m->cap * 3)
		grow(m);
	s = find(m, key, len, h);
	if (s->key == NULL) {
		s->key = key;
		s->len = len;
		s->hash = h;
		s->val = NULL;
		m->n++;
	}
	return &s->val;
}

void *strmap_get(const struct strmap *m, const char *key, size_t len)
{
	struct strmap_slot *s;

	if (m->n == 0)
		return NULL;
	s = find(m, key, len, strmap_hash(key, len));
	return s->key ? s->val : NULL;
}

void strmap_done(struct strmap *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}
