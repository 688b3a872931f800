/* map.h (base): an open-addressing hash map from byte strings to pointers. Keys are
 * borrowed: the caller keeps them alive and unchanged while they are in the map. */
#ifndef KILN_MAP_H
#define KILN_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strmap_slot {
	const char *key; /* NULL: empty */
	size_t len;
	uint64_t hash;
	void *val;
};

struct strmap {
	struct strmap_slot *slots;
	size_t cap, n;
};

uint64_t strmap_hash(const void *data, size_t len);
/* The value slot for key, created (with *val == NULL) when absent. */
void **strmap_put(struct strmap *m, const char *key, size_t len);
void *strmap_get(const struct strmap *m, const char *key, size_t len);
void strmap_done(struct strmap *m);

#endif
