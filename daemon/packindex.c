/* packindex.c (fetch): a received pack written to disk and indexed as it
 * comes, its deltas resolved depth first, its .idx (version 2) written. Owns
 * the temporary pack and index files until they are renamed into place.
 *
 * Pack format (git's pack-format.txt): "PACK", version 2 (git also reads 3,
 * libgit2 1.5 finds no object in one), object count
 * (big-endian u32); each object a header (type in bits 4-6 of the first
 * byte, size in 4 + 7n bits, little-endian groups with a continuation bit),
 * then for an OFS_DELTA the distance back to its base (7n bits, big-endian
 * groups, each continuation adding one), for a REF_DELTA the base's id, then
 * the zlib stream; after the last object the SHA-1 of all that came before.
 * A delta: the base's size and the result's size (little-endian 7n bits),
 * then instructions: copy (bit 7 set: offset and size bytes chosen by bits
 * 0-3 and 4-6; a size of 0 is 65536) or insert (the next 1-127 bytes). */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2/sys/odb_backend.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "kiln/err.h"
#include "kiln/fsio.h"
#include "kiln/packentry.h"
#include "kiln/packindex.h"
#include "kiln/buf.h"

#define OID_LEN	 20
#define HEAD_MAX 32 /* an object's header: size (<= 10 bytes) and base (<= 20) */
#define IO_CHUNK ((size_t)64 << 10)

enum {
	T_COMMIT = PACK_COMMIT,
	T_TREE = PACK_TREE,
	T_BLOB = PACK_BLOB,
	T_TAG = PACK_TAG,
	T_OFS_DELTA = PACK_OFS_DELTA,
	T_REF_DELTA = PACK_REF_DELTA,
};

/* Where the stream is: the pack header, an object's header, its zlib data,
 * the trailing checksum, the end. */
enum pi_state { PI_HEADER, PI_OBJ_HEAD, PI_OBJ_DATA, PI_TRAILER, PI_END };

struct obj {
	uint64_t off;  /* of its header in the pack */
	uint64_t size; /* inflated (a delta's: its instructions) */
	uint64_t base; /* OFS_DELTA: the base's offset; REF_DELTA: index in refs */
	uint32_t crc;  /* of its bytes in the pack, as the .idx keeps it */
	uint8_t hlen;  /* header bytes before the zlib data */
	uint8_t type;  /* a delta's becomes its base's once resolved */
	bool delta;    /* it came as a delta: no root of the resolution */
	unsigned char oid[OID_LEN];
};

struct packindex {
	char *dir, *tmp_pack, *tmp_idx;
	int fd;
	enum pi_state state;
	uint64_t off;	    /* bytes of the pack received */
	uint64_t obj_start; /* offset of the object whose header is being read */
	uint32_t count;
	struct obj *objs;
	uint32_t nobjs, cap, ndeltas;
	unsigned char (*refs)[OID_LEN];
	uint32_t nrefs, caprefs;
	unsigned char head[HEAD_MAX];
	size_t nhead;
	unsigned char trailer[OID_LEN];
	size_t ntrailer;
	z_stream z;
	bool z_ready;
	uint64_t inflated; /* of the current object */
	EVP_MD_CTX *pack_sha, *obj_sha;
	unsigned char scratch[IO_CHUNK];
};

static void be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *type_name(unsigned type)
{
	static const char *const names[] = {"", "commit", "tree", "blob", "tag"};
	return type >= T_COMMIT && type <= T_TAG ? names[type] : "";
}

/* git's object id: SHA-1 of "<type> <size>\0" and the content */
static void sha_object_start(EVP_MD_CTX *c, unsigned type, uint64_t size)
{
	char hdr[64];
	int n = snprintf(hdr, sizeof(hdr), "%s %llu", type_name(type), (unsigned long long)size);

	EVP_DigestInit_ex(c, EVP_sha1(), NULL);
	EVP_DigestUpdate(c, hdr, (size_t)n + 1);
}

static void sha_end(EVP_MD_CTX *c, unsigned char out[OID_LEN])
{
	unsigned int n = OID_LEN;
	EVP_DigestFinal_ex(c, out, &n);
}

int packindex_new(const char *dir, struct packindex **ret, struct kiln_err *err)
{
	struct packindex *pi = xcalloc(1, sizeof(*pi));

	pi->dir = xstrdup(dir);
	pi->tmp_pack = xasprintf("%s/tmp_kiln_pack_XXXXXX", dir);
	pi->fd = mkostemp(pi->tmp_pack, O_CLOEXEC);
	if (pi->fd < 0) {
		int r = kiln_err_set(err, -errno, "cannot create a pack file in '%s': %s", dir,
				     strerror(errno));
		free(pi->tmp_pack);
		pi->tmp_pack = NULL;
		packindex_free(pi);
		return r;
	}
	fchmod(pi->fd, 0444);
	pi->pack_sha = EVP_MD_CTX_new();
	pi->obj_sha = EVP_MD_CTX_new();
	if (pi->pack_sha == NULL || pi->obj_sha == NULL)
		abort(); /* out of memory, as xmalloc */
	EVP_DigestInit_ex(pi->pack_sha, EVP_sha1(), NULL);
	*ret = pi;
	return 0;
}

void packindex_free(struct packindex *pi)
{
	if (pi == NULL)
		return;
	if (pi->fd >= 0)
		close(pi->fd);
	if (pi->tmp_pack)
		unlink(pi->tmp_pack);
	if (pi->tmp_idx)
		unlink(pi->tmp_idx);
	if (pi->z_ready)
		inflateEnd(&pi->z);
	EVP_MD_CTX_free(pi->pack_sha);
	EVP_MD_CTX_free(pi->obj_sha);
	free(pi->objs);
	free(pi->refs);
	free(pi->tmp_pack);
	free(pi->tmp_idx);
	free(pi->dir);
	free(pi);
}

/* ---- receiving ---- */

static int pack_header(struct packindex *pi, struct kiln_err *err)
{
	uint32_t version = get_be32(pi->head + 4);

	if (memcmp(pi->head, "PACK", 4) != 0)
		return kiln_err_set(err, -EBADMSG, "the remote sent no pack (no 'PACK' signature)");
	/* libgit2 reads the pack once it is in place: its packs are version 2 */
	if (version != 2)
		return kiln_err_set(err, -EBADMSG, "pack version %u is not supported", version);
	pi->count = get_be32(pi->head + 8);
	pi->state = pi->count > 0 ? PI_OBJ_HEAD : PI_TRAILER;
	pi->nhead = 0;
	return 0;
}

/* 1: the header in pi->head is whole (and recorded), 0: more bytes needed */
static int object_header(struct packindex *pi, struct kiln_err *err)
{
	const unsigned char *h = pi->head;
	unsigned long long at = (unsigned long long)pi->obj_start;
	struct pack_entry e;
	uint64_t size;
	unsigned type;
	size_t i;
	struct obj *o;
	int r = pack_entry_parse(h, pi->nhead, &e);

	if (r == 0)
		return 0;
	if (r == -EOVERFLOW)
		return kiln_err_set(err, -EBADMSG, "pack object at offset %llu: size too large",
				    at);
	if (r == -EBADMSG)
		return kiln_err_set(err, -EBADMSG, "pack object at offset %llu: bad type %u", at,
				    h[0] >> 4 & 7);
	if (r < 0)
		return kiln_err_set(err, -EBADMSG, "pack object at offset %llu: bad base offset",
				    at);
	size = e.size;
	type = e.type;
	i = e.len;
	if (size > PACKINDEX_OBJECT_MAX)
		return kiln_err_set(err, -EFBIG,
				    "pack object at offset %llu: %llu bytes, more than kiln takes",
				    at, (unsigned long long)size);
	if (type == T_OFS_DELTA && (e.dist == 0 || e.dist > pi->obj_start - 12))
		return kiln_err_set(err, -EBADMSG,
				    "pack object at offset %llu: base offset out of the pack", at);
	if (pi->nobjs == pi->cap) {
		pi->cap = pi->cap ? pi->cap * 2 : 1024;
		if (pi->cap > pi->count)
			pi->cap = pi->count;
		pi->objs = xreallocarray(pi->objs, pi->cap, sizeof(*pi->objs));
	}
	o = &pi->objs[pi->nobjs];
	memset(o, 0, sizeof(*o));
	o->off = pi->obj_start;
	o->size = size;
	o->type = (uint8_t)type;
	if (type == T_OFS_DELTA) {
		o->base = pi->obj_start - e.dist;
	} else if (type == T_REF_DELTA) {
		if (pi->nrefs == pi->caprefs) {
			pi->caprefs = pi->caprefs ? pi->caprefs * 2 : 64;
			pi->refs = xreallocarray(pi->refs, pi->caprefs, OID_LEN);
		}
		memcpy(pi->refs[pi->nrefs], e.base_id, OID_LEN);
		o->base = pi->nrefs++;
	}
	o->hlen = (uint8_t)i;
	o->crc = (uint32_t)crc32(0, h, (uInt)i);
	o->delta = type == T_OFS_DELTA || type == T_REF_DELTA;
	if (o->delta)
		pi->ndeltas++;
	else
		sha_object_start(pi->obj_sha, type, size);
	pi->inflated = 0;
	if (!pi->z_ready) {
		memset(&pi->z, 0, sizeof(pi->z));
		if (inflateInit(&pi->z) != Z_OK)
			return kiln_err_set(err, -ENOMEM, "cannot start zlib");
		pi->z_ready = true;
	} else {
		inflateReset(&pi->z);
	}
	return 1;
}

/* Feeds data to the current object's zlib stream; *used: bytes it took. */
static int object_data(struct packindex *pi, const unsigned char *p, size_t len, size_t *used,
		       struct kiln_err *err)
{
	struct obj *o = &pi->objs[pi->nobjs];
	bool delta = o->delta;
	int zr;

	pi->z.next_in = (unsigned char *)(uintptr_t)p;
	pi->z.avail_in = len > UINT_MAX ? UINT_MAX : (uInt)len;
	for (;;) {
		size_t got;
		pi->z.next_out = pi->scratch;
		pi->z.avail_out = sizeof(pi->scratch);
		zr = inflate(&pi->z, Z_NO_FLUSH);
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
			return kiln_err_set(
			    err, -EBADMSG, "pack object at offset %llu: bad zlib data (%s)",
			    (unsigned long long)o->off, pi->z.msg ? pi->z.msg : "error");
		got = sizeof(pi->scratch) - pi->z.avail_out;
		if (got > o->size - pi->inflated)
			return kiln_err_set(err, -EBADMSG,
					    "pack object at offset %llu: more data than its size",
					    (unsigned long long)o->off);
		if (!delta)
			EVP_DigestUpdate(pi->obj_sha, pi->scratch, got);
		pi->inflated += got;
		if (zr != Z_OK || (pi->z.avail_in == 0 && pi->z.avail_out > 0))
			break; /* the end, or all input taken */
	}
	*used = (size_t)(pi->z.next_in - p);
	o->crc = (uint32_t)crc32(o->crc, p, (uInt)*used);
	if (zr != Z_STREAM_END)
		return 0;
	if (pi->inflated != o->size)
		return kiln_err_set(err, -EBADMSG,
				    "pack object at offset %llu: %llu bytes, its header says %llu",
				    (unsigned long long)o->off, (unsigned long long)pi->inflated,
				    (unsigned long long)o->size);
	if (!delta)
		sha_end(pi->obj_sha, o->oid);
	pi->nobjs++;
	pi->state = pi->nobjs == pi->count ? PI_TRAILER : PI_OBJ_HEAD;
	pi->nhead = 0;
	return 1;
}

/* libgit2's figures (the transport counts the bytes itself) */
static void progress(struct packindex *pi, git_indexer_progress *stats)
{
	if (stats == NULL)
		return;
	stats->total_objects = pi->count;
	stats->received_objects = pi->nobjs;
	stats->indexed_objects = pi->nobjs - pi->ndeltas;
	stats->total_deltas = pi->ndeltas;
}

int packindex_append(struct packindex *pi, const void *data, size_t len,
		     git_indexer_progress *stats, struct kiln_err *err)
{
	const unsigned char *p = data;
	size_t left = len;
	int r = 0;

	if ((r = fsio_write_all(pi->fd, data, len, pi->tmp_pack, err)) < 0)
		return r;
	while (left > 0 && r >= 0) {
		enum pi_state was = pi->state;
		size_t used = 1;

		switch (pi->state) {
		case PI_HEADER:
			pi->head[pi->nhead++] = *p;
			if (pi->nhead == 12)
				r = pack_header(pi, err);
			break;
		case PI_OBJ_HEAD:
			if (pi->nhead == 0)
				pi->obj_start = pi->off;
			pi->head[pi->nhead++] = *p;
			r = object_header(pi, err);
			if (r == 0 && pi->nhead == HEAD_MAX)
				r = kiln_err_set(err, -EBADMSG,
						 "pack object at offset %llu: bad header",
						 (unsigned long long)pi->obj_start);
			if (r == 1)
				pi->state = PI_OBJ_DATA;
			break;
		case PI_OBJ_DATA:
			r = object_data(pi, p, left, &used, err);
			break;
		case PI_TRAILER:
			used = left < OID_LEN - pi->ntrailer ? left : OID_LEN - pi->ntrailer;
			memcpy(pi->trailer + pi->ntrailer, p, used);
			pi->ntrailer += used;
			if (pi->ntrailer == OID_LEN)
				pi->state = PI_END;
			break;
		case PI_END:
			r = kiln_err_set(err, -EBADMSG, "data after the pack's checksum");
			break;
		}
		if (r < 0)
			break;
		if (was < PI_TRAILER) /* the checksum covers all before itself */
			EVP_DigestUpdate(pi->pack_sha, p, used);
		pi->off += used;
		p += used;
		left -= used;
	}
	progress(pi, stats);
	return r < 0 ? r : 0;
}

/* ---- resolving ---- */

/* The end of object k's bytes in the pack: the next object's start, or the
 * checksum's. */
static uint64_t object_end(const struct packindex *pi, uint32_t k)
{
	return k + 1 < pi->nobjs ? pi->objs[k + 1].off : pi->off - OID_LEN;
}

/* Object k's inflated data, read back from the pack file (with the zlib
 * stream the receiving used: every object had one). */
static int inflate_at(struct packindex *pi, uint32_t k, unsigned char **ret, struct kiln_err *err)
{
	const struct obj *o = &pi->objs[k];
	uint64_t at = o->off + o->hlen, end = object_end(pi, k);
	unsigned char *out = xmalloc(o->size + 1);
	z_stream *z = &pi->z;
	int zr = Z_OK;

	if (!pi->z_ready || inflateReset(z) != Z_OK) {
		free(out);
		return kiln_err_set(err, -ENOMEM, "cannot start zlib");
	}
	z->next_out = out;
	z->avail_out = (uInt)o->size + 1; /* one more: an overlong stream shows */
	while (zr == Z_OK && at < end) {
		size_t n = end - at < IO_CHUNK ? (size_t)(end - at) : IO_CHUNK;
		ssize_t got = pread(pi->fd, pi->scratch, n, (off_t)at);
		if (got <= 0) {
			zr = Z_ERRNO;
			break;
		}
		z->next_in = pi->scratch;
		z->avail_in = (uInt)got;
		zr = inflate(z, Z_NO_FLUSH);
		at += (uint64_t)got - z->avail_in;
	}
	if (zr != Z_STREAM_END || z->total_out != o->size) {
		free(out);
		return kiln_err_set(err, -EIO, "pack object at offset %llu cannot be read back",
				    (unsigned long long)o->off);
	}
	*ret = out;
	return 0;
}

struct ofs_key {
	uint64_t base;
	uint32_t idx;
};

struct ref_key {
	unsigned char oid[OID_LEN];
	uint32_t idx;
};

static int ofs_cmp(const void *a, const void *b)
{
	const struct ofs_key *x = a, *y = b;
	if (x->base != y->base)
		return x->base < y->base ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int ref_cmp(const void *a, const void *b)
{
	const struct ref_key *x = a, *y = b;
	int c = memcmp(x->oid, y->oid, OID_LEN);
	return c ? c : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

/* The deltas of one base, found by its offset and by its id. */
struct children {
	struct ofs_key *ofs;
	size_t nofs;
	struct ref_key *ref;
	size_t nref;
};

/* The first of n sorted items (of size bytes) that is not below key. */
static size_t lower_bound(const void *v, size_t n, size_t size, const void *key,
			  int (*below)(const void *item, const void *key))
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (below((const char *)v + mid * size, key))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int ofs_below(const void *item, const void *key)
{
	return ((const struct ofs_key *)item)->base < *(const uint64_t *)key;
}

static int ref_below(const void *item, const void *key)
{
	return memcmp(((const struct ref_key *)item)->oid, key, OID_LEN) < 0;
}

static int obj_below(const void *item, const void *key)
{
	return ((const struct obj *)item)->off < *(const uint64_t *)key;
}

static void ofs_range(const struct children *ch, uint64_t base, size_t *at, size_t *end)
{
	size_t k = lower_bound(ch->ofs, ch->nofs, sizeof(*ch->ofs), &base, ofs_below);

	*at = k;
	while (k < ch->nofs && ch->ofs[k].base == base)
		k++;
	*end = k;
}

static void ref_range(const struct children *ch, const unsigned char *oid, size_t *at, size_t *end)
{
	size_t k = lower_bound(ch->ref, ch->nref, sizeof(*ch->ref), oid, ref_below);

	*at = k;
	while (k < ch->nref && memcmp(ch->ref[k].oid, oid, OID_LEN) == 0)
		k++;
	*end = k;
}

/* A base being resolved: its data and the deltas of it not yet done. */
struct frame {
	uint32_t obj;
	unsigned char *data;
	uint64_t size;
	size_t ofs_at, ofs_end, ref_at, ref_end;
};

static void frame_ranges(const struct packindex *pi, const struct children *ch, struct frame *f)
{
	ofs_range(ch, pi->objs[f->obj].off, &f->ofs_at, &f->ofs_end);
	ref_range(ch, pi->objs[f->obj].oid, &f->ref_at, &f->ref_end);
}

/* Every delta below root (depth first: only the chain above the delta at
 * hand is held), each hashed as the object it makes. */
static int resolve_from(struct packindex *pi, const struct children *ch, uint32_t root,
			uint32_t *resolved, struct kiln_err *err)
{
	struct frame *st = NULL;
	size_t n = 0, cap = 0;
	uint64_t held = 0;
	int r = 0;

	{
		struct frame f = {.obj = root};
		frame_ranges(pi, ch, &f);
		if (f.ofs_at == f.ofs_end && f.ref_at == f.ref_end)
			return 0; /* no delta of it: not read again */
		if ((r = inflate_at(pi, root, &f.data, err)) < 0)
			return r;
		f.size = pi->objs[root].size;
		cap = 16;
		st = xmalloc(cap * sizeof(*st));
		st[n++] = f;
		held = f.size;
	}
	while (n > 0 && r == 0) {
		struct frame *f = &st[n - 1], next = {0};
		struct obj *o;
		unsigned char *delta;

		if (f->ofs_at < f->ofs_end) {
			next.obj = ch->ofs[f->ofs_at++].idx;
		} else if (f->ref_at < f->ref_end) {
			next.obj = ch->ref[f->ref_at++].idx;
		} else {
			held -= f->size;
			free(f->data);
			n--;
			continue;
		}
		o = &pi->objs[next.obj];
		if (o->type != T_OFS_DELTA && o->type != T_REF_DELTA)
			continue; /* resolved: a base whose id is in the pack twice */
		if ((r = inflate_at(pi, next.obj, &delta, err)) < 0)
			break;
		next.data = pack_delta_apply(f->data, f->size, delta, o->size, PACKINDEX_OBJECT_MAX,
					     &next.size);
		free(delta);
		if (next.data == NULL) {
			r = kiln_err_set(err, -EBADMSG,
					 "pack object at offset %llu: a bad delta of the object at "
					 "offset %llu",
					 (unsigned long long)o->off,
					 (unsigned long long)pi->objs[f->obj].off);
			break;
		}
		o->type = pi->objs[f->obj].type;
		sha_object_start(pi->obj_sha, o->type, next.size);
		EVP_DigestUpdate(pi->obj_sha, next.data, next.size);
		sha_end(pi->obj_sha, o->oid);
		(*resolved)++;
		held += next.size;
		if (held > PACKINDEX_CHAIN_MAX) {
			free(next.data);
			r = kiln_err_set(err, -EFBIG,
					 "pack object at offset %llu: its chain of "
					 "deltas holds more than kiln takes",
					 (unsigned long long)o->off);
			break;
		}
		frame_ranges(pi, ch, &next);
		if (n == cap) {
			cap *= 2;
			st = xreallocarray(st, cap, sizeof(*st));
		}
		st[n++] = next;
	}
	while (n > 0)
		free(st[--n].data);
	free(st);
	return r;
}

static int resolve(struct packindex *pi, git_indexer_progress *stats, struct kiln_err *err)
{
	struct children ch = {0};
	uint32_t resolved = 0;
	int r = 0;

	ch.ofs = xmalloc((size_t)pi->ndeltas * sizeof(*ch.ofs) + 1);
	ch.ref = xmalloc((size_t)pi->ndeltas * sizeof(*ch.ref) + 1);
	for (uint32_t i = 0; i < pi->nobjs; i++) {
		const struct obj *o = &pi->objs[i];
		if (o->type == T_OFS_DELTA) {
			ch.ofs[ch.nofs].base = o->base;
			ch.ofs[ch.nofs++].idx = i;
		} else if (o->type == T_REF_DELTA) {
			memcpy(ch.ref[ch.nref].oid, pi->refs[o->base], OID_LEN);
			ch.ref[ch.nref++].idx = i;
		}
	}
	qsort(ch.ofs, ch.nofs, sizeof(*ch.ofs), ofs_cmp);
	qsort(ch.ref, ch.nref, sizeof(*ch.ref), ref_cmp);
	/* the bases of the deltas found by offset are objects, not middles */
	for (size_t k = 0; k < ch.nofs && r == 0; k++) {
		uint64_t b = ch.ofs[k].base;
		size_t at = lower_bound(pi->objs, pi->nobjs, sizeof(*pi->objs), &b, obj_below);
		if (at == pi->nobjs || pi->objs[at].off != b)
			r = kiln_err_set(
			    err, -EBADMSG,
			    "pack object at offset %llu: its base offset %llu starts no "
			    "object",
			    (unsigned long long)pi->objs[ch.ofs[k].idx].off, (unsigned long long)b);
	}
	for (uint32_t i = 0; i < pi->nobjs && r == 0; i++) {
		if (!pi->objs[i].delta) /* a resolved delta's deltas are done */
			r = resolve_from(pi, &ch, i, &resolved, err);
		if (stats) {
			stats->indexed_deltas = resolved;
			stats->indexed_objects = pi->nobjs - pi->ndeltas + resolved;
		}
	}
	if (r == 0 && resolved != pi->ndeltas)
		r = kiln_err_set(err, -EBADMSG,
				 "%u of the pack's %u deltas have no base in it (a thin pack, "
				 "which kiln does not complete)",
				 pi->ndeltas - resolved, pi->ndeltas);
	free(ch.ofs);
	free(ch.ref);
	return r;
}

/* ---- the index and the names ---- */

static int oid_cmp(const void *a, const void *b)
{
	const struct obj *x = a, *y = b;
	return memcmp(x->oid, y->oid, OID_LEN);
}

struct idx_out {
	FILE *f;
	EVP_MD_CTX *sha;
};

static void idx_put(struct idx_out *w, const void *p, size_t n)
{
	EVP_DigestUpdate(w->sha, p, n);
	fwrite(p, 1, n, w->f);
}

static void idx_be32(struct idx_out *w, uint32_t v)
{
	unsigned char b[4];
	be32(b, v);
	idx_put(w, b, 4);
}

/* Version 2 (git's pack-format.txt): magic, version, 256 cumulative counts
 * by first byte, the ids in order, their CRC32s, their offsets (31 bits, or
 * the top bit and an index into the 64-bit offsets that follow), the pack's
 * checksum, then the index's own. objs are in id order. */
static int write_idx(struct packindex *pi, const unsigned char pack_sum[OID_LEN],
		     struct kiln_err *err)
{
	struct idx_out w = {0};
	unsigned char sum[OID_LEN];
	uint32_t fan = 0, large = 0;
	int fd, r = 0;

	pi->tmp_idx = xasprintf("%s/tmp_kiln_idx_XXXXXX", pi->dir);
	fd = mkostemp(pi->tmp_idx, O_CLOEXEC);
	if (fd < 0) {
		r = kiln_err_set(err, -errno, "cannot create an index file in '%s': %s", pi->dir,
				 strerror(errno));
		free(pi->tmp_idx);
		pi->tmp_idx = NULL;
		return r;
	}
	fchmod(fd, 0444);
	w.f = fdopen(fd, "w");
	if (w.f == NULL) {
		close(fd);
		return kiln_err_set(err, -errno, "cannot write '%s': %s", pi->tmp_idx,
				    strerror(errno));
	}
	w.sha = pi->obj_sha;
	EVP_DigestInit_ex(w.sha, EVP_sha1(), NULL);
	idx_put(&w, "\377tOc\0\0\0\2", 8);
	for (unsigned b = 0; b < 256; b++) {
		while (fan < pi->nobjs && pi->objs[fan].oid[0] == b)
			fan++;
		idx_be32(&w, fan);
	}
	for (uint32_t i = 0; i < pi->nobjs; i++)
		idx_put(&w, pi->objs[i].oid, OID_LEN);
	for (uint32_t i = 0; i < pi->nobjs; i++)
		idx_be32(&w, pi->objs[i].crc);
	for (uint32_t i = 0; i < pi->nobjs; i++)
		idx_be32(&w, pi->objs[i].off < 0x80000000u ? (uint32_t)pi->objs[i].off
							   : 0x80000000u | large++);
	for (uint32_t i = 0; i < pi->nobjs; i++) {
		if (pi->objs[i].off >= 0x80000000u) {
			idx_be32(&w, (uint32_t)(pi->objs[i].off >> 32));
			idx_be32(&w, (uint32_t)pi->objs[i].off);
		}
	}
	idx_put(&w, pack_sum, OID_LEN);
	sha_end(w.sha, sum);
	fwrite(sum, 1, OID_LEN, w.f);
	if (fflush(w.f) != 0 || ferror(w.f) || fsync(fileno(w.f)) < 0)
		r = kiln_err_set(err, -errno, "cannot write '%s': %s", pi->tmp_idx,
				 strerror(errno));
	if (fclose(w.f) != 0 && r == 0)
		r = kiln_err_set(err, -errno, "cannot write '%s': %s", pi->tmp_idx,
				 strerror(errno));
	return r;
}

static int rename_into(const char *from, const char *dir, const char *name, const char *ext,
		       struct kiln_err *err)
{
	char *to = xasprintf("%s/pack-%s.%s", dir, name, ext);
	int r = 0;

	if (rename(from, to) < 0)
		r = kiln_err_set(err, -errno, "cannot rename '%s' to '%s': %s", from, to,
				 strerror(errno));
	free(to);
	return r;
}

int packindex_commit(struct packindex *pi, git_indexer_progress *stats, char name[41],
		     struct kiln_err *err)
{
	unsigned char sum[OID_LEN];
	int r;

	if (pi->state != PI_END)
		return kiln_err_set(err, -EBADMSG,
				    "the pack ended early: %u of its %u objects, %zu of the "
				    "checksum's 20 bytes",
				    pi->nobjs, pi->count, pi->ntrailer);
	sha_end(pi->pack_sha, sum);
	if (memcmp(sum, pi->trailer, OID_LEN) != 0)
		return kiln_err_set(err, -EBADMSG, "the pack's checksum does not match its data");
	if ((r = resolve(pi, stats, err)) < 0)
		return r;
	if (pi->nobjs > 0) /* a pack of no object has no array to sort */
		qsort(pi->objs, pi->nobjs, sizeof(*pi->objs), oid_cmp);
	for (uint32_t i = 1; i < pi->nobjs; i++) {
		if (memcmp(pi->objs[i - 1].oid, pi->objs[i].oid, OID_LEN) == 0) {
			char hex[41];
			git_oid_fmt(hex, (const git_oid *)pi->objs[i].oid);
			hex[40] = '\0';
			return kiln_err_set(err, -EBADMSG, "object %s is in the pack twice", hex);
		}
	}
	if (fsync(pi->fd) < 0)
		return kiln_err_set(err, -errno, "cannot write '%s': %s", pi->tmp_pack,
				    strerror(errno));
	if ((r = write_idx(pi, sum, err)) < 0)
		return r;
	git_oid_fmt(name, (const git_oid *)sum);
	name[40] = '\0';
	/* the index last: a pack is used once its index is there */
	if ((r = rename_into(pi->tmp_pack, pi->dir, name, "pack", err)) < 0)
		return r;
	free(pi->tmp_pack);
	pi->tmp_pack = NULL;
	if ((r = rename_into(pi->tmp_idx, pi->dir, name, "idx", err)) < 0)
		return r;
	free(pi->tmp_idx);
	pi->tmp_idx = NULL;
	return fsio_sync_path(pi->dir, O_DIRECTORY, err); /* and their names */
}

/* ---- as libgit2's object database backend ---- */

struct backend {
	git_odb_backend parent;
	char *dir;
	bool used; /* it took its one pack: the next are libgit2's */
};

struct writepack {
	git_odb_writepack parent;
	struct packindex *pi;
};

static int wp_append(git_odb_writepack *w, const void *data, size_t size,
		     git_indexer_progress *stats)
{
	struct writepack *wp = (struct writepack *)w;
	struct kiln_err err = {0};

	if (packindex_append(wp->pi, data, size, stats, &err) < 0) {
		git_error_set_str(GIT_ERROR_INDEXER, err.msg);
		return -1;
	}
	return 0;
}

static int wp_commit(git_odb_writepack *w, git_indexer_progress *stats)
{
	struct writepack *wp = (struct writepack *)w;
	struct kiln_err err = {0};
	char name[41];

	if (packindex_commit(wp->pi, stats, name, &err) < 0) {
		git_error_set_str(GIT_ERROR_INDEXER, err.msg);
		return -1;
	}
	return 0;
}

static void wp_free(git_odb_writepack *w)
{
	struct writepack *wp = (struct writepack *)w;

	packindex_free(wp->pi);
	free(wp);
}

/* The progress callback is the fetch's own; kilnd sets none. Only the
 * first pack is ours: the mirror's handle (and this backend with it) lives
 * on, and later fetches may be thin, which only libgit2's indexer (the next
 * backend git_odb_write_pack tries) completes. */
static int be_writepack(git_odb_writepack **out, git_odb_backend *b, git_odb *odb,
			git_indexer_progress_cb cb, void *payload)
{
	struct writepack *wp;
	struct kiln_err err = {0};

	(void)odb, (void)cb, (void)payload;
	if (((struct backend *)b)->used)
		return GIT_PASSTHROUGH;
	((struct backend *)b)->used = true;
	wp = xcalloc(1, sizeof(*wp));
	if (packindex_new(((struct backend *)b)->dir, &wp->pi, &err) < 0) {
		free(wp);
		git_error_set_str(GIT_ERROR_ODB, err.msg);
		return -1;
	}
	wp->parent.backend = b;
	wp->parent.append = wp_append;
	wp->parent.commit = wp_commit;
	wp->parent.free = wp_free;
	*out = &wp->parent;
	return 0;
}

/* libgit2 calls every backend's foreach without asking: this one holds no
 * objects (they are in the packs it writes, read by libgit2's backend). */
static int be_foreach(git_odb_backend *b, git_odb_foreach_cb cb, void *payload)
{
	(void)b, (void)cb, (void)payload;
	return 0;
}

static void be_free(git_odb_backend *b)
{
	free(((struct backend *)b)->dir);
	free(b);
}

/* A run killed while it wrote a pack left its temporary files; only one
 * fetch at a time writes into a mirror, so none is in use now. */
static void remove_leftovers(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "tmp_kiln_", 9) == 0) {
			char *path = xasprintf("%s/%s", dir, e->d_name);
			unlink(path);
			free(path);
		}
	}
	closedir(d);
}

int packindex_attach(git_repository *repo, struct kiln_err *err)
{
	git_odb *odb = NULL;
	struct backend *b;
	int r = 0;

	if (git_repository_odb(&odb, repo) < 0)
		return kiln_err_git(err, -EIO, "cannot open the object database of '%s'",
				    git_repository_path(repo));
	b = xcalloc(1, sizeof(*b));
	git_odb_init_backend(&b->parent, GIT_ODB_BACKEND_VERSION);
	b->dir = xasprintf("%sobjects/pack", git_repository_path(repo));
	remove_leftovers(b->dir);
	b->parent.writepack = be_writepack;
	b->parent.foreach = be_foreach;
	b->parent.free = be_free;
	/* ahead of libgit2's own backends (priorities 1 and 2) */
	if (git_odb_add_backend(odb, &b->parent, 100) < 0) {
		r = kiln_err_git(err, -EIO, "cannot add kiln's pack writer to '%s'",
				 git_repository_path(repo));
		be_free(&b->parent);
	}
	git_odb_free(odb);
	return r;
}
