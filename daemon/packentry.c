/* packentry.c (fetch): a pack object's header: type in bits 4-6 of the first
 * byte, size in 4 + 7n bits (little-endian groups with a continuation bit),
 * then for an OFS_DELTA the distance back to its base (7n bits, big-endian
 * groups, each continuation adding one), for a REF_DELTA the base's id. */
#include <errno.h>

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
