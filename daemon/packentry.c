/* packentry.c (fetch): a pack object's header: type in bits 4-6 of the first
 * byte, size in 4 + 7n bits (little-endian groups with a continuation bit),
 * then for an OFS_DELTA the distance back to its base (7n bits, big-endian
 * groups, each continuation adding one), for a REF_DELTA the base's id.
 * A delta: the base's size and the result's size (little-endian 7n bits),
 * then instructions: copy (bit 7 set: offset and size bytes chosen by bits
 * 0-3 and 4-6; a size of 0 is 65536) or insert (the next 1-127 bytes). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/packentry.h"

int pack_entry_parse(const unsigned char *h, size_t n, struct pack_entry *ret)
{
	struct pack_entry e = {0};
	unsigned shift = 4;
	size_t i = 0;

	if (n == 0)
		return 0;
	e.size = h[0] & 15;
	e.type = h[0] >> 4 & 7;
	while (h[i] & 0x80) {
		if (++i >= n)
			return 0;
		if (shift > 63 - 7)
			return -EOVERFLOW;
		e.size |= (uint64_t)(h[i] & 0x7f) << shift;
		shift += 7;
	}
	i++;
	if (e.type != PACK_COMMIT && e.type != PACK_TREE && e.type != PACK_BLOB &&
	    e.type != PACK_TAG && e.type != PACK_OFS_DELTA && e.type != PACK_REF_DELTA)
		return -EBADMSG;
	if (e.type == PACK_OFS_DELTA) {
		if (i >= n)
			return 0;
		e.dist = h[i] & 0x7f;
		while (h[i] & 0x80) {
			if (++i >= n)
				return 0;
			if (e.dist >= (uint64_t)1 << 56)
				return -ERANGE;
			e.dist = ((e.dist + 1) << 7) | (h[i] & 0x7f);
		}
		i++;
	} else if (e.type == PACK_REF_DELTA) {
		if (n < i + PACK_OID_LEN)
			return 0;
		e.base_id = h + i;
		i += PACK_OID_LEN;
	}
	e.len = i;
	*ret = e;
	return 1;
}

static bool delta_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
	unsigned shift = 0;
	unsigned char c;

	*v = 0;
	do {
		if (*p >= end || shift > 63 - 7)
			return false;
		c = *(*p)++;
		*v |= (uint64_t)(c & 0x7f) << shift;
		shift += 7;
	} while (c & 0x80);
	return true;
}

/* A copy instruction's offset (4 bytes) or size (3): the low `n` bits of
 * `present` say which little-endian bytes follow; absent ones are zero. */
static bool copy_field(const unsigned char **p, const unsigned char *end, unsigned present,
		       unsigned n, uint64_t *v)
{
	*v = 0;
	for (unsigned k = 0; k < n; k++) {
		if (!(present & 1u << k))
			continue;
		if (*p >= end)
			return false;
		*v |= (uint64_t) * (*p)++ << 8 * k;
	}
	return true;
}

unsigned char *pack_delta_apply(const unsigned char *base, uint64_t base_len,
				const unsigned char *d, uint64_t n, uint64_t max, uint64_t *ret_len)
{
	const unsigned char *p = d, *end = d + n;
	uint64_t want_base, len, at = 0;
	unsigned char *out;

	if (!delta_varint(&p, end, &want_base) || !delta_varint(&p, end, &len) ||
	    want_base != base_len || len > max)
		return NULL;
	out = xmalloc(len + 1);
	while (p < end) {
		unsigned op = *p++;
		if (op & 0x80) {
			uint64_t off, size;
			if (!copy_field(&p, end, op, 4, &off) ||
			    !copy_field(&p, end, op >> 4, 3, &size))
				goto bad;
			if (size == 0)
				size = 0x10000;
			if (off > base_len || size > base_len - off || size > len - at)
				goto bad;
			memcpy(out + at, base + off, size);
			at += size;
		} else if (op != 0) {
			if (op > (size_t)(end - p) || op > len - at)
				goto bad;
			memcpy(out + at, p, op);
			p += op;
			at += op;
		} else {
			goto bad; /* reserved */
		}
	}
	if (at == len) {
		*ret_len = len;
		return out;
	}
bad:
	free(out);
	return NULL;
}
