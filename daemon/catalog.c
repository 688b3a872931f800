/* catalog.c: the image folders of a tree, kept current by tree diffs, and
 * its cache file. Owns the images' blocks and the loaded file. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/buf.h"
#include "kiln/catalog.h"
#include "kiln/dockerfile.h"
#include "kiln/err.h"
#include "kiln/manifest.h"
#include "kiln/map.h"
#include "kiln/path.h"
#include "kiln/repo.h"
#include "kiln/treediff.h"

#define CATALOG_MAGIC	 "KILNCAT\x01"
#define CATALOG_FILE_MAX (1u << 30)
#define CATALOG_LIST_MAX 0xffffu

enum { F_VALID = 1, F_DOCKERFILE = 2 };

void catalog_init(struct catalog *c, const char *manifest_name)
{
	memset(c, 0, sizeof(*c));
	c->manifest_name = xstrdup(manifest_name);
}

static void image_done(struct catalog_image *img)
{
	if (img->owned)
		free(img->block);
	memset(img, 0, sizeof(*img));
}

void catalog_done(struct catalog *c)
{
	for (size_t i = 0; i < c->n; i++)
		image_done(&c->v[i]);
	free(c->v);
	free(c->file);
	free(c->manifest_name);
	memset(c, 0, sizeof(*c));
}

unsigned catalog_from_line(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* ---- packing an image into one block and reading it back ---- */

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

static int image_unpack(char *block, size_t len, struct catalog_image *img)
{
	struct rd r = {block, block + len, false};
	const char *oid;
	unsigned flags;

	memset(img, 0, sizeof(*img));
	img->block = block;
	img->block_len = len;
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
	return r.bad || r.p != r.end ? -EBADMSG : 0;
}

static void put_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s) + 1);
}

static void put_u16(struct buf *b, unsigned v)
{
	unsigned char x[2] = {(unsigned char)(v & 0xff), (unsigned char)(v >> 8)};
	buf_append(b, x, 2);
}

/* Reads the manifest (and Dockerfile) at dir and packs the image. */
static int image_build(git_repository *repo, git_tree *tree, const char *manifest_name,
		       const char *dir, const git_oid *manifest_id, struct catalog_image *ret,
		       struct kiln_err *err)
{
	struct buf b = {0};
	struct manifest m = {0};
	struct kiln_diags diags = {0};
	struct dockerfile_froms froms = {0};
	git_blob *blob = NULL;
	git_tree_entry *dfe = NULL;
	char *file = dir[0] ? xasprintf("%s/%s", dir, manifest_name) : xstrdup(manifest_name);
	char *def_df = NULL;
	bool valid = false, has_df = false;
	git_oid df_id = {{0}};
	const char *context, *dockerfile;
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
	context = valid ? m.context : dir;
	dockerfile = valid ? m.dockerfile : def_df;
	if (valid && repo_entry(tree, dockerfile, &dfe) == 0 &&
	    git_tree_entry_type(dfe) == GIT_OBJECT_BLOB) {
		has_df = true;
		git_oid_cpy(&df_id, git_tree_entry_id(dfe));
		if (repo_blob(repo, &df_id, DOCKERFILE_SIZE_MAX, &blob, NULL) == 0) {
			dockerfile_froms(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob),
					 m.build_args, m.nbuild_args, &froms, NULL);
			git_blob_free(blob);
		}
	}
	put_str(&b, dir);
	buf_append(&b, (manifest_id)->id, GIT_OID_RAWSZ);
	put_u16(&b, (valid ? F_VALID : 0) | (has_df ? F_DOCKERFILE : 0));
	put_str(&b, context);
	put_str(&b, dockerfile);
	buf_append(&b, (&df_id)->id, GIT_OID_RAWSZ);
	if (valid) {
		size_t ntags = m.ntags < CATALOG_LIST_MAX - 1 ? m.ntags : CATALOG_LIST_MAX - 1;
		size_t nfroms = froms.n < CATALOG_LIST_MAX ? froms.n : CATALOG_LIST_MAX;

		put_str(&b, m.name);
		put_str(&b, m.version);
		put_str(&b, m.registry);
		put_u16(&b, (unsigned)ntags);
		for (size_t i = 0; i < ntags; i++)
			put_str(&b, m.tags[i]);
		put_u16(&b, (unsigned)ntags + 1);
		buf_printf(&b, "%s/%s:%s", m.registry, m.name, m.version);
		buf_putc(&b, '\0');
		for (size_t i = 0; i < ntags; i++) {
			buf_printf(&b, "%s/%s:%s", m.registry, m.name, m.tags[i]);
			buf_putc(&b, '\0');
		}
		put_u16(&b, (unsigned)nfroms);
		for (size_t i = 0; i < nfroms; i++) {
			uint32_t line = froms.v[i].line;
			buf_append(&b, &line, 4);
			put_str(&b, froms.v[i].ref);
		}
	}
	{
		size_t len = b.len;
		char *block = buf_steal(&b);
		if (image_unpack(block, len, ret) < 0)
			abort(); /* we just packed it */
		ret->owned = true;
	}
out:
	git_tree_entry_free(dfe);
	dockerfile_froms_done(&froms);
	kiln_diags_done(&diags);
	manifest_done(&m);
	buf_done(&b);
	free(def_df);
	free(file);
	return r;
}

/* ---- following a tree ---- */

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct catalog_image *)a)->path,
		      ((const struct catalog_image *)b)->path);
}

static int cmp_key(const void *key, const void *elem)
{
	return strcmp(key, ((const struct catalog_image *)elem)->path);
}

const struct catalog_image *catalog_find(const struct catalog *c, const char *path)
{
	return c->n ? bsearch(path, c->v, c->n, sizeof(*c->v), cmp_key) : NULL;
}

static void push(struct catalog *c, struct catalog_image *img)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
	}
	c->v[c->n++] = *img;
}

/* What a diff between the described tree and the new one touched. */
struct delta {
	const char *manifest_name;
	size_t mlen;
	struct strv changed;   /* every changed path */
	struct strv manifests; /* folders whose manifest changed */
	struct strv gone;      /* subset of manifests: deleted, or no longer a file */
};

static int delta_cb(const struct treediff_entry *e, void *arg)
{
	struct delta *d = arg;
	size_t plen = path_parent_len(e->path, e->path_len);
	const char *base = e->path + (plen ? plen + 1 : 0);

	strv_push(&d->changed, xstrndup(e->path, e->path_len));
	if (strcmp(base, d->manifest_name) == 0 &&
	    (treediff_is_file(e->old_mode) || treediff_is_file(e->new_mode))) {
		strv_push(&d->manifests, xstrndup(e->path, plen));
		if (!treediff_is_file(e->new_mode))
			strv_push(&d->gone, xstrndup(e->path, plen));
	}
	return 0;
}

static int rebuild(struct catalog *c, git_repository *repo, git_tree *tree, const char *dir,
		   struct catalog_image *img, struct kiln_err *err)
{
	char *file = dir[0] ? xasprintf("%s/%s", dir, c->manifest_name) : xstrdup(c->manifest_name);
	git_tree_entry *e = NULL;
	int r = repo_entry(tree, file, &e);

	free(file);
	if (r < 0)
		return r;
	r = image_build(repo, tree, c->manifest_name, dir, git_tree_entry_id(e), img, err);
	git_tree_entry_free(e);
	return r;
}

int catalog_sync(struct catalog *c, git_repository *repo, git_tree *tree, struct kiln_err *err)
{
	struct delta d = {c->manifest_name, strlen(c->manifest_name), {0}, {0}, {0}};
	struct strmap changed = {0}, manifests = {0}, gone = {0}, known = {0};
	git_tree *old = NULL;
	struct catalog_image *keep = NULL;
	size_t nkeep = 0;
	int r;

	if (c->has_tree && git_oid_equal(&c->tree_id, git_tree_id(tree)))
		return 0;
	if (c->has_tree && git_tree_lookup(&old, repo, &c->tree_id) < 0)
		old = NULL; /* that tree is gone (gc, another clone): start over */
	if (old == NULL) {
		for (size_t i = 0; i < c->n; i++)
			image_done(&c->v[i]);
		c->n = 0;
	}
	r = treediff(repo, old, tree, delta_cb, &d, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < d.changed.n; i++)
		*strmap_put(&changed, d.changed.v[i], strlen(d.changed.v[i])) = d.changed.v[i];
	for (size_t i = 0; i < d.manifests.n; i++)
		*strmap_put(&manifests, d.manifests.v[i], strlen(d.manifests.v[i])) =
		    d.manifests.v[i];
	for (size_t i = 0; i < d.gone.n; i++)
		*strmap_put(&gone, d.gone.v[i], strlen(d.gone.v[i])) = d.gone.v[i];

	/* Existing images: drop the gone, rebuild those whose manifest or
	 * Dockerfile changed, keep the rest as they are. */
	keep = xcalloc(c->n + d.manifests.n + 1, sizeof(*keep));
	for (size_t i = 0; i < c->n; i++) {
		struct catalog_image *img = &c->v[i];
		bool mchanged = strmap_get(&manifests, img->path, strlen(img->path)) != NULL;
		bool dchanged =
		    strmap_get(&changed, img->dockerfile, strlen(img->dockerfile)) != NULL;

		if (!mchanged && !dchanged) {
			keep[nkeep++] = *img;
			continue;
		}
		if (strmap_get(&gone, img->path, strlen(img->path)) == NULL) {
			char *dir = xstrdup(img->path);
			struct catalog_image fresh;
			r = rebuild(c, repo, tree, dir, &fresh, err);
			free(dir);
			if (r < 0 && r != -ENOENT) {
				keep[nkeep++] = *img;
				for (size_t j = i + 1; j < c->n; j++)
					keep[nkeep++] = c->v[j];
				goto out;
			}
			if (r == 0)
				keep[nkeep++] = fresh;
		}
		image_done(img);
	}
	/* New folders. */
	for (size_t j = 0; j < nkeep; j++)
		*strmap_put(&known, keep[j].path, strlen(keep[j].path)) = &keep[j];
	for (size_t i = 0; i < d.manifests.n; i++) {
		const char *dir = d.manifests.v[i];
		struct catalog_image fresh;

		if (strmap_get(&gone, dir, strlen(dir)) || strmap_get(&known, dir, strlen(dir)))
			continue;
		r = rebuild(c, repo, tree, dir, &fresh, err);
		if (r == -ENOENT)
			continue;
		if (r < 0)
			goto out;
		keep[nkeep++] = fresh;
	}
	qsort(keep, nkeep, sizeof(*keep), by_path);
	r = 0;
out:
	if (keep) {
		free(c->v);
		c->v = keep;
		c->n = nkeep;
		c->cap = c->n + d.manifests.n + 1;
	}
	if (r == 0) {
		git_oid_cpy(&c->tree_id, git_tree_id(tree));
		c->has_tree = true;
		c->dirty = true;
	} else {
		c->has_tree = false; /* half-updated: never describe a tree wrongly */
	}
	git_tree_free(old);
	strmap_done(&changed);
	strmap_done(&manifests);
	strmap_done(&gone);
	strmap_done(&known);
	strv_done(&d.changed);
	strv_done(&d.manifests);
	strv_done(&d.gone);
	return r;
}

/* ---- the cache file ---- */

/* A fast 64-bit checksum (not cryptographic: it detects torn and damaged
 * files; the cache is not a trust boundary, the repository is). */
static uint64_t checksum(const char *p, size_t n)
{
	uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
	h ^= h >> 32;
	return h;
}

static const char *header_version(void)
{
	return "kiln " KILN_VERSION;
}

int catalog_read(struct catalog *c, const char *file, struct kiln_err *err)
{
	struct stat st;
	char *data = NULL;
	size_t len, off = 0;
	int fd = open(file, O_RDONLY | O_CLOEXEC), r = -EBADMSG;
	uint64_t sum;
	struct rd rd;
	const char *oid;
	uint32_t count;

	if (fd < 0)
		return kiln_err_set(err, -errno, "cannot open '%s': %s", file, strerror(errno));
	if (fstat(fd, &st) < 0 || st.st_size < 16 || (uint64_t)st.st_size > CATALOG_FILE_MAX)
		goto bad;
	len = (size_t)st.st_size;
	data = xmalloc(len + 1);
	while (off < len) {
		ssize_t n = read(fd, data + off, len - off);
		if (n <= 0)
			goto bad;
		off += (size_t)n;
	}
	if (memcmp(data, CATALOG_MAGIC, 8) != 0)
		goto bad;
	memcpy(&sum, data + 8, 8);
	if (sum != checksum(data + 16, len - 16))
		goto bad;
	rd = (struct rd){data + 16, data + len, false};
	if (strcmp(rd_str(&rd), header_version()) != 0 ||
	    strcmp(rd_str(&rd), c->manifest_name) != 0)
		goto bad;
	if ((oid = rd_bytes(&rd, GIT_OID_RAWSZ)) == NULL || rd_bytes(&rd, 4) == NULL)
		goto bad;
	memcpy(&count, rd.p - 4, 4);
	if (count > len / 8)
		goto bad;
	for (size_t i = 0; i < c->n; i++)
		image_done(&c->v[i]);
	c->n = 0;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t blen;
		const char *lp = rd_bytes(&rd, 4);
		struct catalog_image img;

		if (lp == NULL)
			goto reset;
		memcpy(&blen, lp, 4);
		if (rd_bytes(&rd, blen) == NULL ||
		    image_unpack((char *)rd.p - blen, blen, &img) < 0 ||
		    (c->n > 0 && strcmp(c->v[c->n - 1].path, img.path) >= 0))
			goto reset;
		push(c, &img);
	}
	if (rd.p != rd.end)
		goto reset;
	free(c->file);
	c->file = data;
	git_oid_fromraw(&c->tree_id, (const unsigned char *)oid);
	c->has_tree = true;
	c->dirty = false;
	close(fd);
	return 0;
reset:
	c->n = 0; /* unowned images pointed into data */
bad:
	close(fd);
	free(data);
	return kiln_err_set(err, r, "cache '%s' is damaged or from another version", file);
}

int catalog_write(const struct catalog *c, const char *file, struct kiln_err *err)
{
	struct buf b = {0};
	char *tmp = NULL;
	uint32_t count = (uint32_t)c->n;
	uint64_t sum;
	int fd = -1, r = 0;
	size_t off = 0;

	if (!c->has_tree)
		return kiln_err_set(err, -EINVAL, "catalog describes no tree");
	buf_append(&b, CATALOG_MAGIC, 8);
	buf_append(&b, "\0\0\0\0\0\0\0\0", 8);
	put_str(&b, header_version());
	put_str(&b, c->manifest_name);
	buf_append(&b, (&c->tree_id)->id, GIT_OID_RAWSZ);
	buf_append(&b, &count, 4);
	for (size_t i = 0; i < c->n; i++) {
		uint32_t blen = (uint32_t)c->v[i].block_len;
		buf_append(&b, &blen, 4);
		buf_append(&b, c->v[i].block, blen);
	}
	sum = checksum(b.p + 16, b.len - 16);
	memcpy(b.p + 8, &sum, 8);

	tmp = xasprintf("%s.tmp.%ld", file, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = kiln_err_set(err, -errno, "cannot create '%s': %s", tmp, strerror(errno));
		goto out;
	}
	while (off < b.len) {
		ssize_t n = write(fd, b.p + off, b.len - off);
		if (n < 0) {
			r = kiln_err_set(err, -errno, "cannot write '%s': %s", tmp,
					 strerror(errno));
			goto out;
		}
		off += (size_t)n;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = kiln_err_set(err, -errno, "cannot write '%s': %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, file) < 0)
		r = kiln_err_set(err, -errno, "cannot rename '%s': %s", tmp, strerror(errno));
out:
	if (fd >= 0)
		close(fd);
	if (r < 0 && tmp)
		unlink(tmp);
	free(tmp);
	buf_done(&b);
	return r;
}
