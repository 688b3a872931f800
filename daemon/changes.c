/* changes.c (plan): two commits -> the affected image folders, ordered for building.
 * Reads the tree diff, the catalog of TO's images, and only those
 * .dockerignore files and old manifests the answer needs. */
#include <stdlib.h>
#include <string.h>

#include "kiln/changes.h"
#include "kiln/dockerignore.h"
#include "kiln/graph.h"
#include "kiln/manifest.h"
#include "kiln/map.h"
#include "kiln/path.h"
#include "kiln/repo.h"
#include "kiln/treediff.h"

const char *change_kind_str(enum change_kind k)
{
	switch (k) {
	case CHANGE_ADDED:
		return "added";
	case CHANGE_MODIFIED:
		return "modified";
	case CHANGE_DEPENDENCY:
		return "dependency";
	case CHANGE_REMOVED:
		return "removed";
	case CHANGE_NONE:
		break;
	}
	return "none";
}

struct removed {
	char *dir;
	git_oid manifest_id;
};

struct run {
	git_repository *repo;
	git_tree *to_tree;
	struct repo_trees trees; /* TO's directories, for .dockerignore files */
	struct catalog *cat;
	struct kiln_err *err;
	struct strmap seen; /* directories all of whose images are settled */
	struct strv seen_keys;
	int r; /* first failure inside the walk */
	struct removed *rm;
	size_t nrm, caprm;
	enum change_kind *status; /* per catalog image */
	uint32_t *affected;	  /* indexes with a status, in the order found */
	size_t naffected;
	struct strmap ignores;	    /* context -> struct ignore * */
	struct strmap ignore_blobs; /* blob id (raw) -> struct ignore_blob * */
	struct changeset *out;
};

struct ignore {
	struct dockerignore *di; /* NULL: no .dockerignore, or a broken one; not owned */
};

/* A parsed .dockerignore, shared by every folder whose file has its blob id:
 * folders made from one template read and compile it once. */
struct ignore_blob {
	git_oid id; /* the key */
	struct dockerignore *di;
};

static const char *basename_of(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static void add_removed(struct run *rn, const char *dir, const git_oid *id)
{
	if (rn->nrm == rn->caprm) {
		rn->caprm = rn->caprm ? rn->caprm * 2 : 8;
		rn->rm = xreallocarray(rn->rm, rn->caprm, sizeof(*rn->rm));
	}
	rn->rm[rn->nrm].dir = xstrdup(dir);
	git_oid_cpy(&rn->rm[rn->nrm].manifest_id, id);
	rn->nrm++;
}

/* Entries arrive in tree order, so a folder's Dockerfile may mark it
 * modified before its manifest shows it is new: added wins over modified. */
static void mark(struct run *rn, uint32_t i, enum change_kind k)
{
	if (i >= rn->cat->n)
		return;
	if (rn->status[i] == CHANGE_NONE) {
		rn->status[i] = k;
		rn->affected[rn->naffected++] = i;
	} else if (k == CHANGE_ADDED && rn->status[i] == CHANGE_MODIFIED) {
		rn->status[i] = k;
	}
}

/* The snapshot was checked when it was read or written; a record that does
 * not unpack means a bug or memory damage, never something to go on with. */
static int get(struct run *rn, uint32_t i, struct catalog_image *img)
{
	if (i >= rn->cat->n || catalog_get(rn->cat, i, img) < 0)
		return kiln_err_set(rn->err, -EBADMSG, "catalog record %u is damaged", i);
	return 0;
}

/* A manifest that appeared, went or changed. */
static void entry_manifest(struct run *rn, const struct treediff_entry *e)
{
	bool was = treediff_is_file(e->old_mode), is = treediff_is_file(e->new_mode);
	size_t dlen;
	uint32_t idx;

	if (strcmp(basename_of(e->path), rn->cat->manifest_name) != 0 || (!was && !is))
		return;
	dlen = path_parent_len(e->path, e->path_len);
	if (is) {
		if (catalog_find(rn->cat, e->path, dlen, &idx) == 0)
			mark(rn, idx, was ? CHANGE_MODIFIED : CHANGE_ADDED);
	} else {
		char *dir = xstrndup(e->path, dlen);
		add_removed(rn, dir, &e->old_id);
		free(dir);
	}
}

/* The .dockerignore of context in TO: from the folder's tree the diff walk
 * has open when it is an ancestor of the path e (the usual case: a path in
 * its own image folder), else looked up from TO's root. */
static const git_tree_entry *ignore_entry(struct run *rn, const char *context,
					  const struct treediff_entry *e, const char *file)
{
	git_tree *dir = treediff_open_tree(e, context, strlen(context));
	const git_tree_entry *ie = NULL;

	if (dir != NULL)
		ie = git_tree_entry_byname(dir, ".dockerignore");
	else if (repo_trees_entry(&rn->trees, file, &ie) < 0)
		ie = NULL;
	return ie && treediff_is_file(git_tree_entry_filemode(ie)) ? ie : NULL;
}

/* A parse that failed is not shared: each folder reports its own file. */
static int parse_ignore(struct run *rn, const git_oid *id, struct dockerignore **ret,
			struct kiln_err *err)
{
	struct ignore_blob *ib = strmap_get(&rn->ignore_blobs, (const char *)id->id, GIT_OID_RAWSZ);
	git_blob *blob = NULL;
	struct dockerignore *di = NULL;
	int r;

	if (ib != NULL) {
		*ret = ib->di;
		return 0;
	}
	r = repo_blob(rn->repo, id, DOCKERIGNORE_SIZE_MAX, &blob, err);
	if (r == 0)
		r = dockerignore_parse(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob),
				       &di, err);
	git_blob_free(blob);
	if (r < 0)
		return r;
	ib = xcalloc(1, sizeof(*ib));
	git_oid_cpy(&ib->id, id);
	ib->di = di;
	*strmap_put(&rn->ignore_blobs, (const char *)ib->id.id, GIT_OID_RAWSZ) = ib;
	*ret = di;
	return 0;
}

static struct dockerignore *ignore_for(struct run *rn, const char *context,
				       const struct treediff_entry *e)
{
	void **slot = strmap_put(&rn->ignores, context, strlen(context));
	struct ignore *ig = *slot;
	const git_tree_entry *ie;
	char *file;
	struct kiln_err err = {0};

	if (ig != NULL)
		return ig->di;
	ig = *slot = xcalloc(1, sizeof(*ig));
	file = context[0] ? xasprintf("%s/.dockerignore", context) : xstrdup(".dockerignore");
	ie = ignore_entry(rn, context, e, file);
	if (ie != NULL && parse_ignore(rn, git_tree_entry_id(ie), &ig->di, &err) < 0) {
		/* Docker refuses to build with it; count every change. */
		kiln_diags_add(&rn->out->errors, file, 0, 0, "%s", err.msg);
		ig->di = NULL;
	}
	free(file);
	return ig->di;
}

static bool counts(struct run *rn, const struct catalog_image *img, const char *rel,
		   const struct treediff_entry *e)
{
	struct dockerignore *di;

	if (strcmp(rel, ".dockerignore") == 0)
		return true;
	di = ignore_for(rn, img->context, e);
	return di == NULL || !dockerignore_excluded(di, rel);
}

/* A path inside build contexts, or a Dockerfile wherever it lives. */
static int entry_contexts(struct run *rn, const struct treediff_entry *e)
{
	const char *p = e->path;
	size_t at = e->path_len;
	const unsigned char *ix;
	uint32_t n = catalog_lookup(rn->cat, CATALOG_BY_DOCKERFILE, p, e->path_len, &ix);
	int r = 0;

	for (uint32_t k = 0; k < n; k++)
		mark(rn, catalog_u32(ix, k), CHANGE_MODIFIED);
	do {
		bool pending = false;

		at = path_parent_len(p, at);
		if (strmap_get(&rn->seen, p, at) != NULL)
			continue;
		n = catalog_lookup(rn->cat, CATALOG_BY_CONTEXT, p, at, &ix);
		for (uint32_t k = 0; k < n && r == 0; k++) {
			uint32_t idx = catalog_u32(ix, k);
			struct catalog_image img;

			if (idx < rn->cat->n && rn->status[idx] != CHANGE_NONE)
				continue;
			if ((r = get(rn, idx, &img)) < 0)
				break;
			if (counts(rn, &img, at ? p + at + 1 : p, e))
				mark(rn, idx, CHANGE_MODIFIED);
			else
				pending = true;
		}
		/* Every image with this context is marked: later paths below it
		 * need not ask again. */
		if (!pending && r == 0) {
			char *key = xstrndup(p, at);
			strv_push(&rn->seen_keys, key);
			*strmap_put(&rn->seen, key, at) = (void *)1;
		}
	} while (at > 0 && r == 0);
	return r;
}

/* Passes 1 and 2, one diff entry at a time: nothing of the diff is kept. */
static int on_entry(const struct treediff_entry *e, void *arg)
{
	struct run *rn = arg;

	entry_manifest(rn, e);
	rn->r = entry_contexts(rn, e);
	return rn->r;
}

/* Pass 3: whatever builds FROM an affected image, transitively. The affected
 * list grows while it is walked: that is the breadth-first queue. */
static int pass_dependencies(struct run *rn)
{
	for (size_t q = 0; q < rn->naffected; q++) {
		struct catalog_image img;
		const char *p;

		if (get(rn, rn->affected[q], &img) < 0)
			return -EBADMSG;
		p = img.produced;
		for (unsigned j = 0; j < img.nproduced; j++, p = catalog_next(p)) {
			const unsigned char *ix;
			uint32_t n = catalog_lookup(rn->cat, CATALOG_BY_FROM, p, strlen(p), &ix);
			for (uint32_t k = 0; k < n; k++)
				mark(rn, catalog_u32(ix, k), CHANGE_DEPENDENCY);
		}
	}
	return 0;
}

static void manifest_errors(struct run *rn, const char *dir, const git_oid *id)
{
	const char *mname = rn->cat->manifest_name;
	char *file = dir[0] ? xasprintf("%s/%s", dir, mname) : xstrdup(mname);
	struct manifest m;
	git_blob *blob = NULL;
	struct kiln_err err = {0};

	if (repo_blob(rn->repo, id, MANIFEST_SIZE_MAX, &blob, &err) == -EFBIG)
		kiln_diags_add(&rn->out->errors, file, 0, 0, "manifest is larger than %u bytes",
			       MANIFEST_SIZE_MAX);
	else if (blob == NULL)
		kiln_diags_add(&rn->out->errors, file, 0, 0, "%s", err.msg);
	else if (manifest_parse(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob), file,
				dir, &m, &rn->out->errors) == 0)
		manifest_done(&m);
	git_blob_free(blob);
	free(file);
}

/* A removed image's fields, from its manifest in FROM; left NULL when that
 * manifest is invalid or too large (its problems are FROM's, not reported).
 * One git cannot read is reported, as manifest_errors does for TO's. */
static void fill_from_manifest(struct run *rn, struct change *c, const git_oid *id)
{
	git_blob *blob = NULL;
	struct manifest m;
	struct kiln_diags ignored = {0};
	struct kiln_err err = {0};
	int r = repo_blob(rn->repo, id, MANIFEST_SIZE_MAX, &blob, &err);

	if (r < 0 && r != -EFBIG)
		kiln_diags_add(&rn->out->errors, c->path[0] ? c->path : ".", 0, 0,
			       "%s of the removed image: %s", rn->cat->manifest_name, err.msg);
	if (r == 0 && manifest_parse(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob), "",
				     c->path, &m, &ignored) == 0) {
		c->name = xstrdup(m.name);
		c->version = xstrdup(m.version);
		c->registry = xstrdup(m.registry);
		c->image = manifest_ref(&m, m.version);
		for (size_t i = 0; i < m.ntags; i++)
			strv_push(&c->tags, xstrdup(m.tags[i]));
		manifest_done(&m);
	}
	kiln_diags_done(&ignored);
	git_blob_free(blob);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The image that produces ref, the first in path order, or -1. */
static int64_t producer(struct run *rn, const char *ref, uint32_t *ret_count)
{
	const unsigned char *ix;
	uint32_t n = catalog_lookup(rn->cat, CATALOG_BY_PRODUCED, ref, strlen(ref), &ix);

	*ret_count = n;
	return n ? (int64_t)catalog_u32(ix, 0) : -1;
}

static void fill_listed(struct run *rn, struct change *c, const struct catalog_image *img,
			const uint32_t *slot_of, struct graph *g, uint32_t slot)
{
	const char *p;

	c->kind = rn->status[img->index];
	c->path = xstrdup(img->path);
	c->name = xstrdup(img->name);
	c->version = xstrdup(img->version);
	c->registry = xstrdup(img->registry);
	c->image = xstrdup(img->produced);
	p = img->tags;
	for (unsigned j = 0; j < img->ntags; j++, p = catalog_next(p))
		strv_push(&c->tags, xstrdup(p));
	/* a reference produced by two folders would be pushed twice */
	p = img->produced;
	for (unsigned j = 0; j < img->nproduced; j++, p = catalog_next(p)) {
		const unsigned char *ix;
		uint32_t n = catalog_lookup(rn->cat, CATALOG_BY_PRODUCED, p, strlen(p), &ix);
		struct catalog_image other;

		for (uint32_t k = 0; k < n && n > 1; k++) {
			if (catalog_u32(ix, k) != img->index &&
			    get(rn, catalog_u32(ix, k), &other) == 0) {
				kiln_diags_add(&rn->out->errors, path_display(img->path), 0, 0,
					       "image '%s' is also produced by '%s'", p,
					       path_display(other.path));
				break;
			}
		}
	}
	p = img->froms;
	for (unsigned j = 0; j < img->nfroms; j++, p = catalog_from_next(p)) {
		uint32_t count;
		int64_t pi = producer(rn, catalog_from_ref(p), &count);
		struct catalog_image dep;
		bool dup = false;

		if (pi < 0 || get(rn, (uint32_t)pi, &dep) < 0)
			continue;
		for (size_t k = 0; k < c->depends_on.n && !dup; k++)
			dup = strcmp(c->depends_on.v[k], dep.path) == 0;
		if (!dup)
			strv_push(&c->depends_on, xstrdup(dep.path));
		if (slot_of[pi] != UINT32_MAX)
			graph_edge(g, slot_of[pi], slot);
	}
}

static void report_cycle(struct run *rn, const struct graph *g, const size_t *order,
			 size_t nordered, const char *const *keys)
{
	size_t *cycle = xmalloc((g->n + 1) * sizeof(size_t));
	size_t n = graph_cycle(g, order, nordered, cycle);
	struct buf msg = {0};

	buf_puts(&msg, "dependency cycle: ");
	for (size_t k = 0; k <= n && n > 0; k++)
		buf_printf(&msg, "%s'%s'", k ? " -> " : "", path_display(keys[cycle[k % n]]));
	buf_puts(&msg, " (each is built FROM the one before it)");
	kiln_diags_add(&rn->out->errors, path_display(keys[cycle[n > 1 ? 1 : 0]]), 0, 0, "%s",
		       msg.p);
	buf_done(&msg);
	free(cycle);
}

/* Pass 4: the listed images, their dependencies among TO's images, the order. */
static int pass_output(struct run *rn)
{
	struct changeset *out = rn->out;
	size_t nto = 0, total, nordered;
	uint32_t *slot_of = xmalloc(((size_t)rn->cat->n + 1) * sizeof(uint32_t));
	struct catalog_image *imgs = xcalloc(rn->naffected + 1, sizeof(*imgs));
	const char **keys;
	size_t *order;
	struct change *v;
	struct graph g;
	int r = 0;

	/* Path order: the catalog is sorted, so sort the indexes. */
	qsort(rn->affected, rn->naffected, sizeof(uint32_t), cmp_u32);
	memset(slot_of, 0xff, ((size_t)rn->cat->n + 1) * sizeof(uint32_t));
	for (size_t k = 0; k < rn->naffected; k++) {
		struct catalog_image img;
		if (get(rn, rn->affected[k], &img) < 0) {
			r = -EBADMSG;
			goto out;
		}
		if (!img.valid) {
			manifest_errors(rn, img.path, &img.manifest_id);
			continue;
		}
		slot_of[img.index] = (uint32_t)nto;
		imgs[nto++] = img;
	}
	total = nto + rn->nrm;
	keys = xmalloc((total + 1) * sizeof(*keys));
	for (size_t s = 0; s < nto; s++)
		keys[s] = imgs[s].path;
	for (size_t k = 0; k < rn->nrm; k++)
		keys[nto + k] = rn->rm[k].dir;
	graph_init(&g, total, keys);
	v = xcalloc(total + 1, sizeof(*v));
	for (size_t s = 0; s < nto; s++)
		fill_listed(rn, &v[s], &imgs[s], slot_of, &g, (uint32_t)s);
	for (size_t k = 0; k < rn->nrm; k++) {
		v[nto + k].kind = CHANGE_REMOVED;
		v[nto + k].path = xstrdup(rn->rm[k].dir);
		fill_from_manifest(rn, &v[nto + k], &rn->rm[k].manifest_id);
	}
	order = xmalloc((total + 1) * sizeof(size_t));
	nordered = graph_order(&g, order);
	if (nordered < total)
		report_cycle(rn, &g, order, nordered, keys);
	out->v = xcalloc(total + 1, sizeof(*out->v));
	for (size_t k = 0; k < total; k++)
		out->v[k] = v[order[k]];
	out->n = total;
	free(v);
	free(order);
	graph_done(&g);
	free(keys);
out:
	free(imgs);
	free(slot_of);
	return r;
}

static int compute(git_repository *repo, git_commit *from, git_commit *to, struct catalog *cat,
		   struct changeset *ret, struct kiln_err *err)
{
	struct run rn = {.repo = repo, .cat = cat, .err = err, .out = ret};
	git_tree *from_tree = NULL;
	int r = 0;

	memset(ret, 0, sizeof(*ret));
	if (from)
		git_oid_cpy(&ret->from, git_commit_id(from));
	git_oid_cpy(&ret->to, git_commit_id(to));
	if ((from && git_commit_tree(&from_tree, from) < 0) ||
	    git_commit_tree(&rn.to_tree, to) < 0) {
		r = kiln_err_git(err, -EIO, "cannot read the commits' trees");
		goto out;
	}
	repo_trees_init(&rn.trees, repo, rn.to_tree);
	/* Equal root trees: nothing differs, and nothing needs reading. */
	if (from_tree && git_oid_equal(git_tree_id(from_tree), git_tree_id(rn.to_tree)))
		goto out;
	r = catalog_sync(cat, repo, rn.to_tree, err);
	if (r < 0)
		goto out;
	rn.status = xcalloc((size_t)cat->n + 1, sizeof(*rn.status));
	rn.affected = xmalloc(((size_t)cat->n + 1) * sizeof(uint32_t));
	r = treediff(repo, from_tree, rn.to_tree, on_entry, &rn, err);
	if (r < 0 && rn.r < 0)
		r = rn.r; /* a damaged catalog, not a git failure */
	/* Only an affected image can have dependents or be listed with its
	 * FROMs: with none, a deferring catalog never reads a Dockerfile. */
	if (r == 0 && rn.naffected > 0)
		r = catalog_read_froms(cat, repo, err);
	if (r == 0)
		r = pass_dependencies(&rn);
	if (r == 0)
		r = pass_output(&rn);
	if (r == 0 && cat->broken)
		r = -EBADMSG;
	if (r == -EBADMSG)
		kiln_err_set(err, r, "the catalog cache is damaged");
out:
	for (size_t i = 0; i < rn.ignores.cap; i++) {
		free(rn.ignores.slots ? rn.ignores.slots[i].val : NULL);
	}
	strmap_done(&rn.ignores);
	for (size_t i = 0; i < rn.ignore_blobs.cap; i++) {
		struct ignore_blob *ib =
		    rn.ignore_blobs.slots ? rn.ignore_blobs.slots[i].val : NULL;
		if (ib) {
			dockerignore_free(ib->di);
			free(ib);
		}
	}
	strmap_done(&rn.ignore_blobs);
	repo_trees_done(&rn.trees);
	strmap_done(&rn.seen);
	strv_done(&rn.seen_keys);
	for (size_t i = 0; i < rn.nrm; i++)
		free(rn.rm[i].dir);
	free(rn.rm);
	free(rn.status);
	free(rn.affected);
	git_tree_free(from_tree);
	git_tree_free(rn.to_tree);
	if (r < 0)
		changeset_done(ret);
	return r;
}

int changes_compute(git_repository *repo, git_commit *from, git_commit *to, struct catalog *cat,
		    struct changeset *ret, struct kiln_err *err)
{
	int r = compute(repo, from, to, cat, ret, err);

	if (r == -EBADMSG) { /* a damaged cache is never trusted: start over from the tree */
		catalog_reset(cat);
		r = compute(repo, from, to, cat, ret, err);
	}
	return r;
}

void changeset_done(struct changeset *cs)
{
	for (size_t i = 0; i < cs->n; i++) {
		struct change *c = &cs->v[i];
		free(c->path);
		free(c->name);
		free(c->version);
		free(c->registry);
		free(c->image);
		strv_done(&c->tags);
		strv_done(&c->depends_on);
	}
	free(cs->v);
	kiln_diags_done(&cs->errors);
	cs->v = NULL;
	cs->n = 0;
}
