/* catalog.c (plan): the image folders of a tree as one indexed snapshot, kept current
 * by tree diffs, and its cache file. Owns the snapshot buffer.
 *
 * Snapshot layout (integers are little-endian u32, offsets from the start):
 *   0  magic "KILNCAT\x03"
 *   8  u64 checksum of bytes 16..80 and of the block checksum table
 *  16  len   20 version string   24 manifest name string   28 tree id (20 bytes)
 *  48  nimages   52 record table (nimages + 1 offsets, the last ends the records)
 *  56  four index offsets (enum catalog_index)
 *  72  offset of the block checksum table   76 number of blocks   80 data
 * The data (80 .. table) is checked in 4 KiB blocks, each with its own u64
 * checksum in the table at the end, so a reader verifies what it reads.
 * A record: path, manifest id, flags (u16), context, dockerfile, dockerfile id,
 * then for valid manifests name, version, registry, tags, produced refs, FROMs.
 * An index: nbuckets (a power of two), bucket heads, then nodes
 * { next, key offset, key length, count, count image indexes }. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/buf.h"
#include "kiln/catalog.h"
#include "kiln/dockerfile.h"
#include "kiln/err.h"
#include "kiln/fsio.h"
#include "kiln/manifest.h"
#include "kiln/map.h"
#include "kiln/path.h"
#include "kiln/repo.h"
#include "kiln/treediff.h"

#define CATALOG_MAGIC	 "KILNCAT\x03"
#define CATALOG_HEADER	 80
#define CATALOG_BLOCK	 4096
#define CATALOG_FILE_MAX (1u << 31)
#define CATALOG_LIST_MAX 0xffffu

enum { F_VALID = 1, F_DOCKERFILE = 2 };
enum {
	H_LEN = 16,
	H_VERSION = 20,
	H_MANIFEST = 24,
	H_TREE = 28,
	H_N = 48,
	H_TABLE = 52,
	H_INDEX = 56,
	H_SUMS = 72,
	H_NBLOCKS = 76
};

static uint32_t get_u32(const char *snap, size_t off)
{
	return catalog_u32((const unsigned char *)snap + off, 0);
}

static void set_u32(char *p, uint32_t v)
{
	p[0] = (char)(v & 0xff);
	p[1] = (char)(v >> 8 & 0xff);
	p[2] = (char)(v >> 16 & 0xff);
	p[3] = (char)(v >> 24);
}

static void put_u32(struct buf *b, uint32_t v)
{
	char x[4];
	set_u32(x, v);
	buf_append(b, x, 4);
}

static void put_u16(struct buf *b, unsigned v)
{
	char x[2] = {(char)(v & 0xff), (char)(v >> 8 & 0xff)};
	buf_append(b, x, 2);
}

static void put_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s) + 1);
}

static void align4(struct buf *b)
{
	while (b->len % 4)
		buf_putc(b, '\0');
}

/* A Dockerfile a deferring sync did not read: what its FROM lines need. */
struct catalog_deferred {
	char *path; /* the image folder */
	git_oid dockerfile_id;
	struct manifest args; /* only its build args are kept */
	const char *froms;    /* once read: its FROM count (u16), then the records */
};

/* The FROMs of the deferred Dockerfiles once read, beside the snapshot
 * (rewriting a snapshot of 10,000 images for them cost more page faults
 * than reading them): catalog_get and catalog_lookup(CATALOG_BY_FROM)
 * answer from here. */
struct group;

struct catalog_froms {
	struct catalog_deferred **by_index; /* per record: its deferred entry or NULL */
	struct buf data;		    /* FROM records as in a snapshot, back to back */
	struct strmap index;		    /* ref -> group number + 1 */
	struct group *groups;
	unsigned char *lists; /* each group's images, little-endian u32, in path order */
};

static void deferred_drop(struct catalog *c)
{
	for (size_t i = 0; i < c->ndeferred; i++) {
		manifest_done(&c->deferred[i].args);
		free(c->deferred[i].path);
	}
	free(c->deferred);
	c->deferred = NULL;
	c->ndeferred = 0;
}

static void froms_free(struct catalog *c);

void catalog_init(struct catalog *c, const char *manifest_name, const char *cache_file)
{
	memset(c, 0, sizeof(*c));
	c->manifest_name = xstrdup(manifest_name);
	c->cache_file = cache_file ? xstrdup(cache_file) : NULL;
	c->fd = -1;
}

static void snapshot_drop(struct catalog *c)
{
	if (c->fd >= 0) {
		munmap(c->snap, c->snap_len);
		close(c->fd);
	} else {
		free(c->snap);
	}
	c->fd = -1;
	free(c->loaded);
	c->loaded = NULL;
	c->snap = NULL;
	c->snap_len = c->data_end = c->nblocks = 0;
	c->n = 0;
	c->has_tree = false;
}

void catalog_done(struct catalog *c)
{
	snapshot_drop(c);
	froms_free(c);
	deferred_drop(c);
	free(c->manifest_name);
	free(c->cache_file);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

void catalog_reset(struct catalog *c)
{
	char *name = c->manifest_name, *cache = c->cache_file;

	if (cache)
		unlink(cache); /* damaged: never read again */
	c->manifest_name = c->cache_file = NULL;
	catalog_done(c);
	catalog_init(c, name, cache);
	free(name);
	free(cache);
}

/* A fast 64-bit checksum in four lanes (not cryptographic: it detects torn
 * and damaged files; the cache is no trust boundary, the repository is). */
static uint64_t checksum(const char *p, size_t n)
{
	uint64_t h[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull,
			 0x27D4EB2F165667C5ull ^ n};
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		for (int k = 0; k < 4; k++) {
			uint64_t w;
			memcpy(&w, p + i + 8 * k, 8);
			h[k] = (h[k] ^ w) * 0xff51afd7ed558ccdull;
			h[k] ^= h[k] >> 31;
		}
	}
	for (; i < n; i++)
		h[0] = (h[0] ^ (unsigned char)p[i]) * 0x100000001b3ull;
	return (h[0] ^ (h[1] << 1)) * 0xc4ceb9fe1a85ec53ull ^ (h[2] >> 3) ^ (h[3] << 7);
}

/* Verifies block k of a mapped cache file on its first use. */
static bool load_block(struct catalog *c, size_t k)
{
	size_t start = CATALOG_HEADER + k * CATALOG_BLOCK, len;
	uint64_t want;

	if (c->loaded[k])
		return true;
	len = c->data_end - start < CATALOG_BLOCK ? c->data_end - start : CATALOG_BLOCK;
	memcpy(&want, c->snap + c->data_end + 8 * k, 8);
	if (checksum(c->snap + start, len) != want) {
		c->broken = true;
		return false;
	}
	c->loaded[k] = 1;
	return true;
}

/* Makes snap[off, off+len) readable and verified; NULL when it lies outside
 * the data or a block is damaged. */
static const char *at(struct catalog *c, size_t off, size_t len)
{
	if (c->snap == NULL || off > c->data_end || len > c->data_end - off)
		return NULL;
	if (c->fd >= 0 && len > 0 && off + len > CATALOG_HEADER) {
		size_t first = off < CATALOG_HEADER ? 0 : (off - CATALOG_HEADER) / CATALOG_BLOCK;
		size_t last = (off + len - 1 - CATALOG_HEADER) / CATALOG_BLOCK;
		for (size_t k = first; k <= last; k++) {
			if (!load_block(c, k))
				return NULL;
		}
	}
	return c->snap + off;
}

static bool rd32(struct catalog *c, size_t off, uint32_t *v)
{
	const char *p = at(c, off, 4);

	if (p == NULL)
		return false;
	*v = catalog_u32((const unsigned char *)p, 0);
	return true;
}

/* ---- records ---- */

struct rd {
	const char *p, *end;
	bool bad;
};

static const char *rd_str(struct rd *r)
{
	const char *s = r->p, *z;

	if (r->bad || (z = memchr(r->p, '\0', (size_t)(r->end - r->p))) == NULL) {
		r->bad = true;
		return "";
	}
	r->p = z + 1;
	return s;
}

static const char *rd_bytes(struct rd *r, size_t n)
{
	const char *s = r->p;

	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	return s;
}

static unsigned rd_u16(struct rd *r)
{
	const unsigned char *b = (const unsigned char *)rd_bytes(r, 2);
	return b ? (unsigned)b[0] | (unsigned)b[1] << 8 : 0;
}

static const char *rd_strs(struct rd *r, unsigned n, bool with_line)
{
	const char *first = r->p;

	for (unsigned i = 0; i < n && !r->bad; i++) {
		if (with_line)
			rd_bytes(r, 4);
		rd_str(r);
	}
	return first;
}

static int unpack(const char *p, size_t len, struct catalog_image *img)
{
	struct rd r = {p, p + len, false};
	const char *oid;
	unsigned flags;

	memset(img, 0, sizeof(*img));
	img->path = rd_str(&r);
	if ((oid = rd_bytes(&r, GIT_OID_RAWSZ)) != NULL)
		git_oid_fromraw(&img->manifest_id, (const unsigned char *)oid);
	flags = rd_u16(&r);
	img->valid = flags & F_VALID;
	img->has_dockerfile = flags & F_DOCKERFILE;
	img->context = rd_str(&r);
	img->dockerfile = rd_str(&r);
	if ((oid = rd_bytes(&r, GIT_OID_RAWSZ)) != NULL)
		git_oid_fromraw(&img->dockerfile_id, (const unsigned char *)oid);
	if (img->valid) {
		img->name = rd_str(&r);
		img->version = rd_str(&r);
		img->registry = rd_str(&r);
		img->ntags = rd_u16(&r);
		img->tags = rd_strs(&r, img->ntags, false);
		img->nproduced = rd_u16(&r);
		img->produced = rd_strs(&r, img->nproduced, false);
		img->nfroms = rd_u16(&r);
		img->froms = rd_strs(&r, img->nfroms, true);
	}
	/* records are padded to 4 bytes */
	while (!r.bad && r.p < r.end && *r.p == '\0' && (size_t)(r.end - r.p) < 4)
		r.p++;
	return r.bad || r.p != r.end ? -EBADMSG : 0;
}

int catalog_get(struct catalog *c, uint32_t i, struct catalog_image *ret)
{
	uint32_t table, a, b;
	const char *p;
	int r;

	if (i >= c->n || !rd32(c, H_TABLE, &table) || !rd32(c, table + 4 * (size_t)i, &a) ||
	    !rd32(c, table + 4 * (size_t)i + 4, &b) || a > b || (p = at(c, a, b - a)) == NULL)
		return -EBADMSG;
	r = unpack(p, b - a, ret);
	ret->index = i;
	if (r == 0 && c->froms && c->froms->by_index[i] && c->froms->by_index[i]->froms) {
		const char *fp = c->froms->by_index[i]->froms;
		ret->nfroms = (unsigned)(unsigned char)fp[0] | (unsigned)(unsigned char)fp[1] << 8;
		ret->froms = fp + 2;
	}
	return r;
}

/* "<registry>/<name>:<tag>" and its NUL (a cold sync packs one per tag of
 * every image: printf's format parsing was a tenth of the record's cost). */
static void put_ref(struct buf *b, const struct manifest *m, const char *tag)
{
	buf_puts(b, m->registry);
	buf_putc(b, '/');
	buf_puts(b, m->name);
	buf_putc(b, ':');
	put_str(b, tag);
}

/* The FROM lines of the Dockerfile blob id. A Dockerfile over
 * DOCKERFILE_SIZE_MAX names no base kiln can see (Docker has the final word
 * at build time); a blob git cannot read fails the sync. */
static int read_froms(git_repository *repo, const git_oid *id, const struct kv *build_args,
		      size_t nbuild_args, struct dockerfile_froms *ret, struct kiln_err *err)
{
	struct kiln_err e = {0};
	git_blob *blob = NULL;
	int r = repo_blob(repo, id, DOCKERFILE_SIZE_MAX, &blob, &e);

	if (r == 0)
		r = dockerfile_froms(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob),
				     build_args, nbuild_args, ret, &e);
	git_blob_free(blob);
	if (r == -EFBIG)
		return 0;
	if (r < 0 && err)
		*err = e;
	return r;
}

/* The entry at path in the new tree: from a folder the walk has open at `at`
 * (the manifest's own, where the Dockerfile usually is), else looked up from
 * the root. A cold sync visits every folder once; looking each Dockerfile up
 * from the root again read every folder's tree twice and kept them all. */
static int tree_entry(struct repo_trees *trees, const struct treediff_entry *at, const char *path,
		      const git_tree_entry **ret)
{
	size_t len = strlen(path), plen = path_parent_len(path, len);
	git_tree *dir = at ? treediff_open_tree(at, path, plen) : NULL;

	if (dir == NULL)
		return repo_trees_entry(trees, path, ret);
	*ret = git_tree_entry_byname(dir, path + (plen ? plen + 1 : 0));
	return *ret ? 0 : -ENOENT;
}

/* A record's last field: its FROM lines. */
static void put_froms(struct buf *b, const struct dockerfile_froms *froms)
{
	size_t nfroms = froms->n < CATALOG_LIST_MAX ? froms->n : CATALOG_LIST_MAX;

	put_u16(b, (unsigned)nfroms);
	for (size_t i = 0; i < nfroms; i++) {
		put_u32(b, froms->v[i].line);
		put_str(b, froms->v[i].ref);
	}
}

/* Leaves the Dockerfile at id for catalog_read_froms; takes m's build args. */
static void defer(struct catalog *c, const char *dir, const git_oid *id, struct manifest *m)
{
	struct catalog_deferred *d;

	if ((c->ndeferred & (c->ndeferred - 1)) == 0) /* 0, 1, 2, 4...: double */
		c->deferred = xreallocarray(c->deferred, c->ndeferred ? c->ndeferred * 2 : 1,
					    sizeof(*c->deferred));
	d = &c->deferred[c->ndeferred++];
	d->path = xstrdup(dir);
	git_oid_cpy(&d->dockerfile_id, id);
	memset(&d->args, 0, sizeof(d->args));
	d->args.build_args = m->build_args;
	d->args.nbuild_args = m->nbuild_args;
	m->build_args = NULL;
	m->nbuild_args = 0;
}

/* Reads the manifest (and Dockerfile) at dir and packs one record; at is the
 * walk's entry of the manifest, or NULL outside a walk. With defer_to, the
 * Dockerfile is left for catalog_read_froms and the record has no FROM. */
static int record_build(git_repository *repo, struct repo_trees *tree,
			const struct treediff_entry *at, const char *manifest_name, const char *dir,
			const git_oid *manifest_id, struct catalog *defer_to, struct buf *b,
			struct kiln_err *err)
{
	struct manifest m = {0};
	struct kiln_diags diags = {0};
	struct dockerfile_froms froms = {0};
	git_blob *blob = NULL;
	const git_tree_entry *dfe = NULL;
	char *file = dir[0] ? xasprintf("%s/%s", dir, manifest_name) : xstrdup(manifest_name);
	char *def_df = NULL;
	bool valid = false, has_df = false;
	git_oid df_id = {{0}};
	const char *dockerfile;
	int r;

	r = repo_blob(repo, manifest_id, MANIFEST_SIZE_MAX, &blob, err);
	if (r == 0) {
		valid = manifest_parse(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob),
				       file, dir, &m, &diags) == 0;
		git_blob_free(blob);
		blob = NULL;
	} else if (r != -EFBIG) {
		goto out;
	}
	r = 0;
	path_resolve(dir, "Dockerfile", &def_df);
	dockerfile = valid ? m.dockerfile : def_df;
	if (valid && tree_entry(tree, at, dockerfile, &dfe) == 0 &&
	    git_tree_entry_type(dfe) == GIT_OBJECT_BLOB) {
		has_df = true;
		git_oid_cpy(&df_id, git_tree_entry_id(dfe));
		if (defer_to != NULL)
			defer(defer_to, dir, &df_id, &m);
		else if ((r = read_froms(repo, &df_id, m.build_args, m.nbuild_args, &froms, err)) <
			 0)
			goto out;
	}
	put_str(b, dir);
	buf_append(b, manifest_id->id, GIT_OID_RAWSZ);
	put_u16(b, (valid ? F_VALID : 0) | (has_df ? F_DOCKERFILE : 0));
	put_str(b, valid ? m.context : dir);
	put_str(b, dockerfile);
	buf_append(b, df_id.id, GIT_OID_RAWSZ);
	if (valid) {
		size_t ntags = m.ntags < CATALOG_LIST_MAX - 1 ? m.ntags : CATALOG_LIST_MAX - 1;

		put_str(b, m.name);
		put_str(b, m.version);
		put_str(b, m.registry);
		put_u16(b, (unsigned)ntags);
		for (size_t i = 0; i < ntags; i++)
			put_str(b, m.tags[i]);
		put_u16(b, (unsigned)ntags + 1);
		put_ref(b, &m, m.version);
		for (size_t i = 0; i < ntags; i++)
			put_ref(b, &m, m.tags[i]);
		put_froms(b, &froms);
	}
	align4(b);
out:
	dockerfile_froms_done(&froms);
	kiln_diags_done(&diags);
	manifest_done(&m);
	free(def_df);
	free(file);
	return r;
}

/* ---- the snapshot ---- */

/* A record to put into the next snapshot: in the old snapshot or in `fresh`. */
struct rec {
	const char *path; /* for sorting */
	const char *p;
	uint32_t len;
};

static int rec_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rec *)a)->path, ((const struct rec *)b)->path);
}

/* One key of an index being written. Its images are counted first and laid
 * out afterwards in one array: a key per image is the usual case, and an
 * allocation per key was most of a cold sync's index building. */
struct group {
	uint32_t key_off, key_len;
	uint64_t hash;
	uint32_t n, last, at;
};

struct index_build {
	struct strmap m;
	struct group *gs;
	size_t ng, capg;
	uint32_t *occ; /* (group, image) pairs in image order */
	size_t nocc, capocc;
};

static void group_add(struct index_build *ib, const char *key, uint32_t key_off, uint32_t image)
{
	size_t len = strlen(key);
	void **slot = strmap_put(&ib->m, key, len);
	struct group *g;
	uint32_t gi;

	if (*slot == NULL) {
		if (ib->ng == ib->capg) {
			ib->capg = ib->capg ? ib->capg * 2 : 64;
			ib->gs = xreallocarray(ib->gs, ib->capg, sizeof(*ib->gs));
		}
		g = &ib->gs[ib->ng];
		memset(g, 0, sizeof(*g));
		g->key_off = key_off;
		g->key_len = (uint32_t)len;
		g->hash = strmap_hash(key, len);
		*slot = (void *)(uintptr_t)++ib->ng;
	}
	gi = (uint32_t)((uintptr_t)*slot - 1);
	g = &ib->gs[gi];
	if (g->n > 0 && g->last == image)
		return;
	g->n++;
	g->last = image;
	if (ib->nocc == ib->capocc) {
		ib->capocc = ib->capocc ? ib->capocc * 2 : 256;
		ib->occ = xreallocarray(ib->occ, ib->capocc, 2 * sizeof(uint32_t));
	}
	ib->occ[2 * ib->nocc] = gi;
	ib->occ[2 * ib->nocc + 1] = image;
	ib->nocc++;
}

/* Each key's images side by side, still in image order, a group's from
 * its `at`. */
static uint32_t *index_flat(struct index_build *ib)
{
	uint32_t *flat = xmalloc((ib->nocc + 1) * sizeof(uint32_t));
	size_t at = 0;

	for (size_t i = 0; i < ib->ng; i++) {
		ib->gs[i].at = ib->gs[i].last = (uint32_t)at;
		at += ib->gs[i].n;
	}
	for (size_t k = 0; k < ib->nocc; k++)
		flat[ib->gs[ib->occ[2 * k]].last++] = ib->occ[2 * k + 1];
	return flat;
}

static void write_index(struct buf *b, const struct rec *recs, const uint32_t *offs, size_t n,
			enum catalog_index which)
{
	struct index_build ib = {0};
	size_t nb = 1, base;
	uint32_t *flat;

	for (size_t i = 0; i < n; i++) {
		struct catalog_image rec, *img = &rec;
		const char *p;

		unpack(recs[i].p, recs[i].len, &rec);
#define ADD(s) group_add(&ib, (s), offs[i] + (uint32_t)((s)-recs[i].p), (uint32_t)i)
		switch (which) {
		case CATALOG_BY_CONTEXT:
			ADD(img->context);
			break;
		case CATALOG_BY_DOCKERFILE:
			ADD(img->dockerfile);
			break;
		case CATALOG_BY_FROM:
			p = img->froms;
			for (unsigned j = 0; j < img->nfroms; j++, p = catalog_from_next(p))
				ADD(catalog_from_ref(p));
			break;
		case CATALOG_BY_PRODUCED:
			p = img->produced;
			for (unsigned j = 0; j < img->nproduced; j++, p = catalog_next(p))
				ADD(p);
			break;
		case CATALOG_NINDEX:
			break;
		}
#undef ADD
	}
	flat = index_flat(&ib);
	while (nb < ib.ng)
		nb *= 2;
	put_u32(b, (uint32_t)nb);
	base = b->len;
	for (size_t i = 0; i < nb; i++)
		put_u32(b, 0);
	for (size_t i = 0; i < ib.ng; i++) {
		struct group *g = &ib.gs[i];
		size_t head = base + 4 * (size_t)(g->hash & (nb - 1));
		uint32_t node = (uint32_t)b->len;

		put_u32(b, get_u32(b->p, head)); /* next: the previous head */
		put_u32(b, g->key_off);
		put_u32(b, g->key_len);
		put_u32(b, g->n);
		for (uint32_t k = 0; k < g->n; k++)
			put_u32(b, flat[g->at + k]);
		set_u32(b->p + head, node);
	}
	free(flat);
	free(ib.occ);
	free(ib.gs);
	strmap_done(&ib.m);
}

static const char *format_version(void)
{
	return "kiln " KILN_VERSION;
}

static uint64_t header_sum(const char *header, const char *sums, size_t nblocks)
{
	return checksum(header + 16, CATALOG_HEADER - 16) ^
	       (checksum(sums, 8 * nblocks) * 0x9E3779B97F4A7C15ull);
}

static void snapshot_write(struct catalog *c, const git_oid *tree, struct rec *recs, size_t n)
{
	struct buf b = {0};
	uint32_t *offs = xcalloc(n + 1, sizeof(uint32_t));
	size_t table, data_end, nblocks;
	uint64_t sum;

	{
		/* one allocation of about the final size instead of doublings */
		size_t est = CATALOG_HEADER + 256 + 4 * (n + 1);
		for (size_t i = 0; i < n; i++)
			est += recs[i].len + 4 * 40;
		buf_reserve(&b, est);
	}
	memset(b.p, 0, CATALOG_HEADER);
	memcpy(b.p, CATALOG_MAGIC, 8);
	b.len = CATALOG_HEADER;
	set_u32(b.p + H_VERSION, (uint32_t)b.len);
	put_str(&b, format_version());
	set_u32(b.p + H_MANIFEST, (uint32_t)b.len);
	put_str(&b, c->manifest_name);
	memcpy(b.p + H_TREE, tree->id, GIT_OID_RAWSZ);
	align4(&b);
	set_u32(b.p + H_N, (uint32_t)n);
	table = b.len;
	set_u32(b.p + H_TABLE, (uint32_t)table);
	for (size_t i = 0; i <= n; i++)
		put_u32(&b, 0);
	for (size_t i = 0; i < n; i++) {
		offs[i] = (uint32_t)b.len;
		buf_append(&b, recs[i].p, recs[i].len);
	}
	offs[n] = (uint32_t)b.len;
	for (size_t i = 0; i <= n; i++)
		set_u32(b.p + table + 4 * i, offs[i]);
	for (int k = 0; k < CATALOG_NINDEX; k++) {
		set_u32(b.p + H_INDEX + 4 * k, (uint32_t)b.len);
		write_index(&b, recs, offs, n, (enum catalog_index)k);
	}
	/* block checksums, then the header's over itself and them */
	data_end = b.len;
	nblocks = (data_end - CATALOG_HEADER + CATALOG_BLOCK - 1) / CATALOG_BLOCK;
	for (size_t k = 0; k < nblocks; k++) {
		size_t start = CATALOG_HEADER + k * CATALOG_BLOCK;
		size_t len = data_end - start < CATALOG_BLOCK ? data_end - start : CATALOG_BLOCK;
		sum = checksum(b.p + start, len);
		buf_append(&b, &sum, 8);
	}
	set_u32(b.p + H_SUMS, (uint32_t)data_end);
	set_u32(b.p + H_NBLOCKS, (uint32_t)nblocks);
	set_u32(b.p + H_LEN, (uint32_t)b.len);
	sum = header_sum(b.p, b.p + data_end, nblocks);
	memcpy(b.p + 8, &sum, 8);
	free(offs);
	snapshot_drop(c);
	c->snap_len = b.len;
	c->data_end = data_end;
	c->nblocks = nblocks;
	c->snap = buf_steal(&b);
	c->n = (uint32_t)n;
	git_oid_cpy(&c->tree_id, tree);
	c->has_tree = true;
	c->dirty = true;
}

/* Opens the cache file for lazy reading: reads and checks the header and
 * the block checksum table; blocks are read when first used. */
static int cache_read(struct catalog *c)
{
	struct stat st;
	char header[CATALOG_HEADER];
	uint32_t len, data_end, nblocks, n, table;
	uint64_t sum;
	char *snap = NULL;
	int fd = open(c->cache_file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_size < CATALOG_HEADER ||
	    (uint64_t)st.st_size > CATALOG_FILE_MAX ||
	    pread(fd, header, CATALOG_HEADER, 0) != CATALOG_HEADER ||
	    memcmp(header, CATALOG_MAGIC, 8) != 0)
		goto bad;
	len = get_u32(header, H_LEN);
	data_end = get_u32(header, H_SUMS);
	nblocks = get_u32(header, H_NBLOCKS);
	if (len != (uint64_t)st.st_size || data_end < CATALOG_HEADER || data_end > len ||
	    (uint64_t)nblocks * 8 != len - data_end ||
	    nblocks != (data_end - CATALOG_HEADER + CATALOG_BLOCK - 1) / CATALOG_BLOCK)
		goto bad;
	/* Writers replace the file by rename, never in place, so the mapping
	 * stays whole for the life of the run. */
	snap = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (snap == MAP_FAILED) {
		snap = NULL;
		goto bad;
	}
	memcpy(&sum, header + 8, 8);
	if (sum != header_sum(snap, snap + data_end, nblocks)) {
		munmap(snap, len);
		snap = NULL;
		goto bad;
	}
	snapshot_drop(c);
	c->snap = snap;
	c->snap_len = len;
	c->data_end = data_end;
	c->nblocks = nblocks;
	c->loaded = xcalloc(nblocks + 1, 1);
	c->fd = fd;
	c->n = UINT32_MAX; /* checked below, once the header strings are readable */
	n = get_u32(header, H_N);
	{
		uint32_t vo = get_u32(header, H_VERSION), mo = get_u32(header, H_MANIFEST);
		const char *v = at(c, vo, strlen(format_version()) + 1);
		const char *m = at(c, mo, strlen(c->manifest_name) + 1);
		if (v == NULL || m == NULL || strcmp(v, format_version()) != 0 ||
		    strcmp(m, c->manifest_name) != 0)
			goto drop;
	}
	table = get_u32(header, H_TABLE);
	if (table % 4 || table > data_end || ((size_t)n + 1) * 4 > data_end - table)
		goto drop;
	c->n = n;
	git_oid_fromraw(&c->tree_id, (const unsigned char *)header + H_TREE);
	c->has_tree = true;
	c->dirty = false;
	c->broken = false;
	return 0;
drop:
	snapshot_drop(c); /* closes fd and frees snap */
	return -EBADMSG;
bad:
	close(fd);
	return -EBADMSG;
}

/* A mapped snapshot can differ from its file only in the header (retarget):
 * it is written in place, sparing a write of the whole file, and only while
 * the path still names the mapped file (another writer may have replaced
 * it: the newer file stands). Writes of a file are not torn for one another;
 * a reader that sees a torn one fails the header's checksum and rebuilds. */
static int save_header(struct catalog *c, struct kiln_err *err)
{
	struct stat now, mapped;
	ssize_t n = CATALOG_HEADER;
	int fd = open(c->cache_file, O_WRONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return errno == ENOENT ? 0
				       : kiln_err_set(err, -errno, "cannot open '%s': %s",
						      c->cache_file, strerror(errno));
	if (fstat(fd, &now) < 0 || fstat(c->fd, &mapped) < 0)
		r = kiln_err_set(err, -errno, "cannot stat '%s': %s", c->cache_file,
				 strerror(errno));
	else if (now.st_ino == mapped.st_ino && now.st_dev == mapped.st_dev)
		n = pwrite(fd, c->snap, CATALOG_HEADER, 0);
	if (r == 0 && n != CATALOG_HEADER)
		r = kiln_err_set(err, n < 0 ? -errno : -EIO, "cannot write '%s': %s", c->cache_file,
				 n < 0 ? strerror(errno) : "short write");
	if (close(fd) < 0 && r == 0)
		r = kiln_err_set(err, -errno, "cannot write '%s': %s", c->cache_file,
				 strerror(errno));
	if (r == 0)
		c->dirty = false;
	return r;
}

int catalog_save(struct catalog *c, struct kiln_err *err)
{
	char *tmp;
	int fd, r = 0;

	if (c->cache_file == NULL || !c->dirty || !c->has_tree)
		return 0;
	if (c->fd >= 0)
		return save_header(c, err);
	/* a unique temporary name, so that concurrent writers never share one */
	tmp = xasprintf("%s.tmp.XXXXXX", c->cache_file);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd >= 0)
		fchmod(fd, 0644);
	if (fd < 0) {
		r = kiln_err_set(err, -errno, "cannot create '%s': %s", tmp, strerror(errno));
		free(tmp);
		return r;
	}
	r = fsio_write_all(fd, c->snap, c->snap_len, tmp, err);
	if (close(fd) < 0 && r == 0)
		r = kiln_err_set(err, -errno, "cannot write '%s': %s", tmp, strerror(errno));
	if (r == 0 && rename(tmp, c->cache_file) < 0)
		r = kiln_err_set(err, -errno, "cannot rename '%s': %s", tmp, strerror(errno));
	if (r < 0)
		unlink(tmp);
	else
		c->dirty = false;
	free(tmp);
	return r;
}

int catalog_release(struct catalog *c, struct kiln_err *err)
{
	int r;

	if (c->cache_file == NULL || c->ndeferred > 0 || c->froms)
		return 0; /* nothing would read it back whole */
	r = catalog_save(c, err);
	if (r == 0)
		snapshot_drop(c);
	return r;
}

static void froms_free(struct catalog *c)
{
	struct catalog_froms *f = c->froms;

	if (f == NULL)
		return;
	free(f->by_index);
	buf_done(&f->data);
	strmap_done(&f->index);
	free(f->groups);
	free(f->lists);
	free(f);
	c->froms = NULL;
}

/* Every record's FROMs, by reference, in path order as write_index has them. */
static void froms_index(struct catalog *c, struct catalog_froms *f)
{
	struct index_build ib = {0};
	uint32_t *flat;

	for (uint32_t i = 0; i < c->n; i++) {
		struct catalog_image img;
		const char *p;

		if (catalog_get(c, i, &img) < 0)
			continue; /* in memory, checked when written */
		p = img.froms;
		for (unsigned j = 0; j < img.nfroms; j++, p = catalog_from_next(p))
			group_add(&ib, catalog_from_ref(p), 0, i);
	}
	flat = index_flat(&ib);
	f->lists = xmalloc(4 * (ib.nocc + 1)); /* little-endian, as in a snapshot */
	for (size_t k = 0; k < ib.nocc; k++)
		set_u32((char *)f->lists + 4 * k, flat[k]);
	free(flat);
	f->index = ib.m;
	f->groups = ib.gs;
	free(ib.occ);
}

int catalog_read_froms(struct catalog *c, git_repository *repo, struct kiln_err *err)
{
	struct catalog_froms *f;
	size_t *off;
	int r = 0;

	if (c->ndeferred == 0 || c->froms != NULL)
		return 0;
	f = xcalloc(1, sizeof(*f));
	f->by_index = xcalloc((size_t)c->n + 1, sizeof(*f->by_index));
	off = xcalloc(c->ndeferred + 1, sizeof(*off));
	for (size_t k = 0; k < c->ndeferred && r == 0; k++) {
		struct catalog_deferred *d = &c->deferred[k];
		struct dockerfile_froms froms = {0};
		uint32_t i;

		r = read_froms(repo, &d->dockerfile_id, d->args.build_args, d->args.nbuild_args,
			       &froms, err);
		off[k] = SIZE_MAX;
		if (r == 0 && catalog_find(c, d->path, strlen(d->path), &i) == 0) {
			f->by_index[i] = d;
			off[k] = f->data.len;
			put_froms(&f->data, &froms);
		}
		dockerfile_froms_done(&froms);
	}
	if (r < 0) {
		free(off);
		c->froms = f;
		froms_free(c);
		return r;
	}
	/* the buffer is whole: point the records into it */
	for (size_t k = 0; k < c->ndeferred; k++)
		c->deferred[k].froms = off[k] != SIZE_MAX ? f->data.p + off[k] : NULL;
	free(off);
	c->froms = f;
	froms_index(c, f);
	return 0;
}

/* ---- queries ---- */

int catalog_find(struct catalog *c, const char *path, size_t len, uint32_t *ret_index)
{
	uint32_t lo = 0, hi = c->n, table;

	if (!c->has_tree || c->n == 0)
		return -ENOENT;
	if (!rd32(c, H_TABLE, &table))
		return -EBADMSG;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2, a, b;
		const char *p;
		size_t plen;
		int cmp;

		if (!rd32(c, table + 4 * (size_t)mid, &a) ||
		    !rd32(c, table + 4 * (size_t)mid + 4, &b) || a > b ||
		    (p = at(c, a, b - a)) == NULL)
			return -EBADMSG;
		plen = strnlen(p, b - a);
		cmp = memcmp(p, path, plen < len ? plen : len);
		if (cmp == 0)
			cmp = plen < len ? -1 : plen > len ? 1 : 0;
		if (cmp == 0) {
			*ret_index = mid;
			return 0;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

uint32_t catalog_lookup(struct catalog *c, enum catalog_index which, const char *key, size_t len,
			const unsigned char **ret)
{
	uint32_t ix, nb, node;
	size_t hops = 0;

	if (which == CATALOG_BY_FROM && c->froms != NULL) {
		uintptr_t g = (uintptr_t)strmap_get(&c->froms->index, key, len);
		if (g == 0)
			return 0;
		*ret = c->froms->lists + 4 * (size_t)c->froms->groups[g - 1].at;
		return c->froms->groups[g - 1].n;
	}
	if (!c->has_tree || !rd32(c, H_INDEX + 4 * (size_t)which, &ix) || !rd32(c, ix, &nb) ||
	    nb == 0 || (nb & (nb - 1)) != 0 ||
	    !rd32(c, ix + 4 + 4 * (size_t)(strmap_hash(key, len) & (nb - 1)), &node))
		return 0;
	while (node != 0 && hops++ < c->data_end / 16) {
		const char *h = at(c, node, 16), *k, *list;
		uint32_t koff, klen, count;

		if (h == NULL)
			return 0;
		koff = get_u32(h, 4);
		klen = get_u32(h, 8);
		count = get_u32(h, 12);
		if (klen == len && (k = at(c, koff, klen)) != NULL && memcmp(k, key, len) == 0) {
			if ((size_t)count > (c->data_end - node - 16) / 4 ||
			    (list = at(c, node + 16, 4 * (size_t)count)) == NULL)
				return 0;
			*ret = (const unsigned char *)list;
			return count;
		}
		node = get_u32(h, 0);
	}
	return 0;
}

/* ---- following a tree ---- */

struct delta {
	const char *manifest_name;
	bool want_changed;     /* only an update needs every changed path */
	struct strv changed;   /* every changed path */
	struct strv manifests; /* folders whose manifest changed (any way) */
	struct strmap read;    /* the same: read in the walk, or gone */
};

/* Work of one catalog_sync: what changed, and the records read again. */
struct sync {
	struct delta d;
	git_repository *repo;
	struct repo_trees *trees;
	struct kiln_err *err;
	struct strmap redo;    /* folders to read again after the walk */
	unsigned char *drop;   /* per old record: not kept */
	struct catalog *defer; /* a deferring sync from nothing: its catalog */
	struct buf fresh;      /* the records read again, back to back */
	size_t *fresh_at, nfresh, capfresh;
};

static int record_fresh(struct sync *y, const struct treediff_entry *at, const char *dir,
			const git_oid *manifest_id)
{
	size_t start = y->fresh.len;
	int r = record_build(y->repo, y->trees, at, y->d.manifest_name, dir, manifest_id, y->defer,
			     &y->fresh, y->err);

	if (r < 0)
		return r;
	if (y->nfresh == y->capfresh) {
		y->capfresh = y->capfresh ? y->capfresh * 2 : 64;
		y->fresh_at = xreallocarray(y->fresh_at, y->capfresh, sizeof(size_t));
	}
	y->fresh_at[y->nfresh++] = start;
	return 0;
}

/* A manifest that is a file in the new tree is read here, while the walk
 * has its folder open; the folders that only lost theirs are just noted. */
static int delta_cb(const struct treediff_entry *e, void *arg)
{
	struct sync *y = arg;
	struct delta *d = &y->d;
	size_t plen = path_parent_len(e->path, e->path_len);
	const char *base = e->path + (plen ? plen + 1 : 0);
	int r = 0;

	if (d->want_changed)
		strv_push(&d->changed, xstrndup(e->path, e->path_len));
	if (strcmp(base, d->manifest_name) == 0 &&
	    (treediff_is_file(e->old_mode) || treediff_is_file(e->new_mode))) {
		char *dir = xstrndup(e->path, plen);
		strv_push(&d->manifests, dir);
		*strmap_put(&d->read, dir, plen) = dir;
		if (treediff_is_file(e->new_mode))
			r = record_fresh(y, e, dir, &e->new_id);
	}
	return r;
}

static int rebuild(struct catalog *c, struct sync *y, const char *dir)
{
	char *file = dir[0] ? xasprintf("%s/%s", dir, c->manifest_name) : xstrdup(c->manifest_name);
	const git_tree_entry *e = NULL;
	int r = repo_trees_entry(y->trees, file, &e);

	free(file);
	if (r == 0 && !treediff_is_file(git_tree_entry_filemode(e)))
		r = -ENOENT;
	if (r == 0)
		r = record_fresh(y, NULL, dir, git_tree_entry_id(e));
	return r;
}

/* Which records to drop: changed or gone manifests (the changed were read
 * in the walk) and images whose Dockerfile changed, which are read again. */
static int mark_redo(struct catalog *c, struct sync *y, struct kiln_err *err)
{
	struct delta *d = &y->d;

	y->drop = xcalloc(c->n + 1, 1);
	for (size_t i = 0; i < d->manifests.n; i++) {
		const char *dir = d->manifests.v[i];
		uint32_t idx;
		int r = catalog_find(c, dir, strlen(dir), &idx);

		if (r == -EBADMSG)
			return kiln_err_set(err, r, "the catalog cache is damaged");
		if (r == 0)
			y->drop[idx] = 1;
	}
	for (size_t i = 0; i < d->changed.n; i++) {
		const unsigned char *ix;
		uint32_t n = catalog_lookup(c, CATALOG_BY_DOCKERFILE, d->changed.v[i],
					    strlen(d->changed.v[i]), &ix);
		for (uint32_t k = 0; k < n; k++) {
			struct catalog_image img;
			uint32_t idx = catalog_u32(ix, k);

			if (idx >= c->n || catalog_get(c, idx, &img) < 0)
				return kiln_err_set(err, -EBADMSG, "catalog record %u is damaged",
						    idx);
			y->drop[idx] = 1;
			if (strmap_get(&d->read, img.path, strlen(img.path)) == NULL)
				*strmap_put(&y->redo, img.path, strlen(img.path)) =
				    (void *)img.path;
		}
	}
	return 0;
}

/* Reads the redone folders into one buffer of fresh records. */
static int read_fresh(struct catalog *c, struct sync *y)
{
	for (size_t i = 0; i < y->redo.cap; i++) {
		const char *dir = y->redo.slots[i].key;
		int r;

		if (dir == NULL)
			continue;
		r = rebuild(c, y, dir);
		if (r < 0 && r != -ENOENT) /* -ENOENT: no manifest file there any more */
			return r;
	}
	return 0;
}

/* The kept old records plus the fresh ones, in path order. */
static int merge(struct catalog *c, const struct sync *y, struct rec **ret, size_t *ret_n,
		 struct kiln_err *err)
{
	struct rec *recs = xcalloc(c->n + y->nfresh + 1, sizeof(*recs));
	size_t n = 0;

	for (uint32_t i = 0; i < c->n; i++) {
		struct catalog_image img;
		uint32_t table = get_u32(c->snap, H_TABLE);
		uint32_t a = get_u32(c->snap, table + 4 * (size_t)i);

		if (y->drop[i])
			continue;
		if (catalog_get(c, i, &img) < 0) {
			free(recs);
			return kiln_err_set(err, -EBADMSG, "catalog record %u is damaged", i);
		}
		recs[n].path = img.path;
		recs[n].p = c->snap + a;
		recs[n].len = get_u32(c->snap, table + 4 * (size_t)i + 4) - a;
		n++;
	}
	for (size_t k = 0; k < y->nfresh; k++) {
		size_t end = k + 1 < y->nfresh ? y->fresh_at[k + 1] : y->fresh.len;
		recs[n].path = y->fresh.p + y->fresh_at[k];
		recs[n].p = y->fresh.p + y->fresh_at[k];
		recs[n].len = (uint32_t)(end - y->fresh_at[k]);
		n++;
	}
	qsort(recs, n, sizeof(*recs), rec_cmp);
	*ret = recs;
	*ret_n = n;
	return 0;
}

static bool any_set(const unsigned char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i])
			return true;
	}
	return false;
}

/* No record changed (the usual push: sources, not manifests or Dockerfiles):
 * the snapshot describes the new tree as it is, but for its tree id. An
 * in-memory snapshot is patched in place instead of rewritten, which costs
 * kilnd a pass over every image per plan. */
/* Only a mapped snapshot's header is not writable: the mapping is private,
 * so its page is copied on write, and the file changes at catalog_save. */
static bool header_writable(struct catalog *c)
{
	return c->fd < 0 || mprotect(c->snap, CATALOG_HEADER, PROT_READ | PROT_WRITE) == 0;
}

static void retarget(struct catalog *c, const git_oid *tree)
{
	uint64_t sum;

	memcpy(c->snap + H_TREE, tree->id, GIT_OID_RAWSZ);
	sum = header_sum(c->snap, c->snap + c->data_end, c->nblocks);
	memcpy(c->snap + 8, &sum, 8);
	git_oid_cpy(&c->tree_id, tree);
	c->dirty = true;
}

int catalog_sync(struct catalog *c, git_repository *repo, git_tree *tree, struct kiln_err *err)
{
	struct sync y = {.d = {.manifest_name = c->manifest_name}, .repo = repo, .err = err};
	struct rec *recs = NULL;
	size_t nrecs = 0;
	git_tree *old = NULL;
	struct repo_trees trees;
	int r;

	c->nread = 0;
	if (!c->has_tree && c->cache_file && c->snap == NULL)
		cache_read(c); /* absent or damaged: built from scratch below */
	if (c->has_tree && git_oid_equal(&c->tree_id, git_tree_id(tree)))
		return 0;
	/* A deferred snapshot is no whole one to diff against: start over. */
	if (c->ndeferred > 0) {
		snapshot_drop(c);
		froms_free(c);
		deferred_drop(c);
	}
	repo_trees_init(&trees, repo, tree);
	y.trees = &trees;
	if (c->has_tree && git_tree_lookup(&old, repo, &c->tree_id) < 0)
		old = NULL; /* that tree is gone (gc, another clone): start over */
	if (old == NULL)
		snapshot_drop(c); /* describe nothing until the new snapshot is written */
	y.d.want_changed = old != NULL;
	if (old == NULL && c->defer_froms && c->cache_file == NULL)
		y.defer = c;
	r = treediff(repo, old, tree, delta_cb, &y, err);
	if (r == 0)
		r = mark_redo(c, &y, err);
	if (r == 0)
		r = read_fresh(c, &y);
	c->nread = (uint32_t)y.nfresh;
	if (r == 0 && old != NULL && !c->broken && y.nfresh == 0 && !any_set(y.drop, c->n) &&
	    header_writable(c)) {
		retarget(c, git_tree_id(tree));
		goto out;
	}
	if (r == 0)
		r = merge(c, &y, &recs, &nrecs, err);
	if (r == 0 && c->broken)
		r = kiln_err_set(err, -EBADMSG, "the catalog cache is damaged");
	if (r == 0)
		snapshot_write(c, git_tree_id(tree), recs, nrecs); /* frees the old snapshot last */
	else
		snapshot_drop(c); /* never describe a tree wrongly; rebuilt next time */
	if (r < 0)
		deferred_drop(c);
out:
	free(recs);
	free(y.drop);
	free(y.fresh_at);
	buf_done(&y.fresh);
	strmap_done(&y.redo);
	git_tree_free(old);
	repo_trees_done(&trees);
	strv_done(&y.d.changed);
	strv_done(&y.d.manifests);
	strmap_done(&y.d.read);
	return r;
}
