/* packentry.h (fetch): the header of one object in a pack file, as git's
 * pack-format.txt lays it out; shared by the indexer (packindex.c), which
 * reads packs as they arrive, and the front's fast path (gitref.c), which
 * reads one object of a pack already on disk. */
#ifndef KILN_PACKENTRY_H
#define KILN_PACKENTRY_H

#include <stddef.h>
#include <stdint.h>

enum pack_type {
	PACK_COMMIT = 1,
	PACK_TREE = 2,
	PACK_BLOB = 3,
	PACK_TAG = 4,
	PACK_OFS_DELTA = 6,
	PACK_REF_DELTA = 7,
};

#define PACK_OID_LEN 20

struct pack_entry {
	unsigned type; /* enum pack_type */
	uint64_t size; /* inflated (a delta's: its instructions) */
	uint64_t dist; /* OFS_DELTA: how far back its base's header starts */
	size_t len;    /* header bytes before the zlib data (a REF_DELTA's base id too) */
	const unsigned char *base_id; /* REF_DELTA: into h */
};

/* Parses the header at h (n bytes there so far). 1: *ret is whole; 0: more
 * bytes are needed; -EOVERFLOW: a size of more than 64 bits; -EBADMSG: a
 * type git does not write; -ERANGE: an OFS_DELTA distance of more than 64
 * bits. A distance of 0 is returned as it is: whether it points into the
 * pack is the caller's to check. */
int pack_entry_parse(const unsigned char *h, size_t n, struct pack_entry *ret);

/* The object delta d (n bytes) makes of base (xmalloc'ed, one byte more for
 * a NUL; the caller frees it); NULL when d is not a delta of base or makes
 * more than max bytes. */
unsigned char *pack_delta_apply(const unsigned char *base, uint64_t base_len,
				const unsigned char *d, uint64_t n, uint64_t max,
				uint64_t *ret_len);

#endif
