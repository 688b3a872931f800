/* changes.c: two commits -> the affected image folders, ordered for building.
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

struct dent {
	char *path;
	unsigned old_mode, new_mode;
	git_oid old_id;
};

struct removed {
	char *dir;
	git_oid manifest_id;
};

/* Lists of catalog indexes under a string key: head in a map, links in next[]. */
struct multimap {
	struct strmap heads; /* value: index + 1 */
	size_t *next;	     /* index + 1, 0 ends */
};

struct run {
	git_repository *repo;
	git_tree *to_tree;
	struct catalog *cat;
	struct kiln_err *err;
	struct dent *d;
	size_t nd, capd;
	struct removed *rm;
	size_t nrm, caprm;
	enum change_kind *status; /* per catalog image */
	struct strmap ignores;	  /* context -> struct ignore * */
	struct changeset *out;
};

struct ignore {
	struct dockerignore *di; /* NULL: no .dockerignore, or a broken one */
};

static int collect(const struct treediff_entry *e, void *arg)
{
	struct run *rn = arg;

	if (rn->nd == rn->capd) {
		rn->capd = rn->capd ? rn->capd * 2 : 64;
		rn->d = xreallocarray(rn->d, rn->capd, sizeof(*rn->d));
	}
	rn->d[rn->nd].path = xstrndup(e->path, e->path_len);
	rn->d[rn->nd].old_mode = e->old_mode;
	rn->d[rn->nd].new_mode = e->new_mode;
	git_oid_cpy(&rn->d[rn->nd].old_id, &e->old_id);
	rn->nd++;
	return 0;
}

static void mm_add(struct multimap *mm, const char *key, size_t idx)
{
	void **head = strmap_put(&mm->heads, key, strlen(key));

	mm->next[idx] = (size_t)(uintptr_t)*head;
	*head = (void *)(uintptr_t)(idx + 1);
}

static size_t mm_first(const struct multimap *mm, const char *key, size_t len)
{
	return (size_t)(uintptr_t)strmap_get(&mm->heads, key, len);
}

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

static void mark(struct run *rn, const struct catalog_image *img, enum change_kind k)
{
	size_t i;

	if (img == NULL)
		return;
	i = (size_t)(img - rn->cat->v);
	if (rn->status[i] == CHANGE_NONE)
		rn->status[i] = k;
}

/* Pass 1: manifests that appeared, went or changed. */
static void pass_manifests(struct run *rn)
{
	const char *mname = rn->cat->manifest_name;

	for (size_t i = 0; i < rn->nd; i++) {
		struct dent *e = &rn->d[i];
		bool was = treediff_is_file(e->old_mode), is = treediff_is_file(e->new_mode);
		char *dir;

		if (strcmp(basename_of(e->path), mname) != 0 || (!was && !is))
			continue;
		dir = xstrndup(e->path, path_parent_len(e->path, strlen(e->path)));
		if (is)
			mark(rn, catalog_find(rn->cat, dir), was ? CHANGE_MODIFIED : CHANGE_ADDED);
		else
			add_removed(rn, dir, &e->old_id);
		free(dir);
	}
}

static struct dockerignore *ignore_for(struct run *rn, const char *context)
{
	void **slot = strmap_put(&rn->ignores, context, strlen(context));
	struct ignore *ig = *slot;
	git_tree_entry *e = NULL;
	git_blob *blob = NULL;
	char *file;
	struct kiln_err err = {0};

	if (ig != NULL)
		return ig->di;
	ig = *slot = xcalloc(1, sizeof(*ig));
	file = context[0] ? xasprintf("%s/.dockerignore", context) : xstrdup(".dockerignore");
	if (repo_entry(rn->to_tree, file, &e) == 0 &&
	    treediff_is_file(git_tree_entry_filemode(e))) {
		if (repo_blob(rn->repo, git_tree_entry_id(e), DOCKERIGNORE_SIZE_MAX, &blob, &err) <
			0 ||
		    dockerignore_parse(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob),
				       &ig->di, &err) < 0) {
			/* Docker refuses to build with it; count every change. */
			kiln_diags_add(&rn->out->errors, file, 0, 0, "%s", err.msg);
			ig->di = NULL;
		}
	}
	git_blob_free(blob);
	git_tree_entry_free(e);
	free(file);
	return ig->di;
}

static bool counts(struct run *rn, const struct catalog_image *img, const char *rel)
{
	struct dockerignore *di;

	if (strcmp(rel, ".dockerignore") == 0)
		return true;
	di = ignore_for(rn, img->context);
	return di == NULL || !dockerignore_excluded(di, rel);
}

/* Pass 2: paths inside a build context, and Dockerfiles wherever they live. */
static void pass_contexts(struct run *rn)
{
	struct catalog *cat = rn->cat;
	struct multimap ctx = {{0}, xcalloc(cat->n, sizeof(size_t))};
	struct multimap df = {{0}, xcalloc(cat->n, sizeof(size_t))};

	for (size_t i = cat->n; i-- > 0;) {
		mm_add(&ctx, cat->v[i].context, i);
		mm_add(&df, cat->v[i].dockerfile, i);
	}
	for (size_t i = 0; i < rn->nd; i++) {
		const char *p = rn->d[i].path;
		size_t len = strlen(p), at;

		for (size_t k = mm_first(&df, p, len); k; k = df.next[k - 1])
			mark(rn, &cat->v[k - 1], CHANGE_MODIFIED);
		at = len;
		do {
			at = path_parent_len(p, at);
			for (size_t k = mm_first(&ctx, p, at); k; k = ctx.next[k - 1]) {
				const struct catalog_image *img = &cat->v[k - 1];
				if (rn->status[k - 1] == CHANGE_NONE &&
				    counts(rn, img, at ? p + at + 1 : p))
					mark(rn, img, CHANGE_MODIFIED);
			}
		} while (at > 0);
	}
	strmap_done(&ctx.heads);
	strmap_done(&df.heads);
	free(ctx.next);
	free(df.next);
}

/* Pass 3: whatever builds FROM an affected image, transitively. */
static void pass_dependencies(struct run *rn)
{
	struct catalog *cat = rn->cat;
	size_t nfrom = 0, *queue = xmalloc((cat->n + 1) * sizeof(size_t)), qh = 0, qt = 0;
	struct strmap heads = {0};
	size_t *next, *owner, f = 0;

	for (size_t i = 0; i < cat->n; i++)
		nfrom += cat->v[i].nfroms;
	next = xcalloc(nfrom + 1, sizeof(size_t));
	owner = xcalloc(nfrom + 1, sizeof(size_t));
	for (size_t i = 0; i < cat->n; i++) {
		const char *p = cat->v[i].froms;
		for (unsigned j = 0; j < cat->v[i].nfroms; j++, p = catalog_from_next(p), f++) {
			const char *ref = catalog_from_ref(p);
			void **head = strmap_put(&heads, ref, strlen(ref));
			owner[f] = i;
			next[f] = (size_t)(uintptr_t)*head;
			*head = (void *)(uintptr_t)(f + 1);
		}
	}
	for (size_t i = 0; i < cat->n; i++) {
		if (rn->status[i] == CHANGE_ADDED || rn->status[i] == CHANGE_MODIFIED)
			queue[qt++] = i;
	}
	while (qh < qt) {
		const struct catalog_image *img = &cat->v[queue[qh++]];
		const char *p = img->produced;
		for (unsigned j = 0; j < img->nproduced; j++, p = catalog_next(p)) {
			for (size_t k = (size_t)(uintptr_t)strmap_get(&heads, p, strlen(p)); k;
			     k = next[k - 1]) {
				size_t c = owner[k - 1];
				if (rn->status[c] == CHANGE_NONE) {
					rn->status[c] = CHANGE_DEPENDENCY;
					queue[qt++] = c;
				}
			}
		}
	}
	strmap_done(&heads);
	free(next);
	free(owner);
	free(queue);
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

static void fill_from_manifest(struct run *rn, struct change *c, const git_oid *id)
{
	git_blob *blob = NULL;
	struct manifest m;
	struct kiln_diags ignored = {0};

	if (repo_blob(rn->repo, id, MANIFEST_SIZE_MAX, &blob, NULL) == 0 &&
	    manifest_parse(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob), "", c->path,
			   &m, &ignored) == 0) {
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

/* Pass 4: the listed images, their dependencies among TO's images, the order. */
static void pass_output(struct run *rn)
{
	struct catalog *cat = rn->cat;
	struct changeset *out = rn->out;
	struct strmap producer = {0};
	size_t nlisted = 0, *list, *order, *cycle, *slot_of;
	const char **keys;
	struct graph g;
	size_t nordered;

	/* Who produces each reference; a reference produced twice is an error
	 * for the affected images involved. */
	for (size_t i = 0; i < cat->n; i++) {
		const char *p = cat->v[i].produced;
		for (unsigned j = 0; j < cat->v[i].nproduced; j++, p = catalog_next(p)) {
			void **v = strmap_put(&producer, p, strlen(p));
			if (*v == NULL) {
				*v = (void *)(uintptr_t)(i + 1);
			} else if (rn->status[i] != CHANGE_NONE) {
				const struct catalog_image *o = &cat->v[(size_t)(uintptr_t)*v - 1];
				kiln_diags_add(&out->errors, path_display(cat->v[i].path), 0, 0,
					       "image '%s' is also produced by '%s'", p,
					       path_display(o->path));
			}
		}
	}
	list = xmalloc((cat->n + rn->nrm + 1) * sizeof(size_t));
	slot_of = xmalloc((cat->n + 1) * sizeof(size_t));
	for (size_t i = 0; i < cat->n; i++) {
		slot_of[i] = (size_t)-1;
		if (rn->status[i] == CHANGE_NONE)
			continue;
		if (!cat->v[i].valid) {
			manifest_errors(rn, cat->v[i].path, &cat->v[i].manifest_id);
			continue;
		}
		slot_of[i] = nlisted;
		list[nlisted++] = i;
	}
	/* Removed images follow, as slots >= nlisted_to. */
	{
		size_t nto = nlisted, total = nto + rn->nrm;
		keys = xmalloc((total + 1) * sizeof(*keys));
		for (size_t s = 0; s < nto; s++)
			keys[s] = cat->v[list[s]].path;
		for (size_t r = 0; r < rn->nrm; r++)
			keys[nto + r] = rn->rm[r].dir;
		graph_init(&g, total, keys);
		out->v = xcalloc(total + 1, sizeof(*out->v));
		for (size_t s = 0; s < nto; s++) {
			const struct catalog_image *img = &cat->v[list[s]];
			struct change *c = &out->v[s];
			const char *p;

			c->kind = rn->status[list[s]];
			c->path = xstrdup(img->path);
			c->name = xstrdup(img->name);
			c->version = xstrdup(img->version);
			c->registry = xstrdup(img->registry);
			c->image = xstrdup(img->produced);
			p = img->tags;
			for (unsigned j = 0; j < img->ntags; j++, p = catalog_next(p))
				strv_push(&c->tags, xstrdup(p));
			p = img->froms;
			for (unsigned j = 0; j < img->nfroms; j++, p = catalog_from_next(p)) {
				const char *ref = catalog_from_ref(p);
				size_t pi =
				    (size_t)(uintptr_t)strmap_get(&producer, ref, strlen(ref));
				bool dup = false;

				if (pi == 0)
					continue;
				pi--;
				for (size_t k = 0; k < c->depends_on.n && !dup; k++)
					dup = strcmp(c->depends_on.v[k], cat->v[pi].path) == 0;
				if (!dup)
					strv_push(&c->depends_on, xstrdup(cat->v[pi].path));
				if (slot_of[pi] != (size_t)-1)
					graph_edge(&g, slot_of[pi], s);
			}
		}
		for (size_t r = 0; r < rn->nrm; r++) {
			struct change *c = &out->v[nto + r];
			c->kind = CHANGE_REMOVED;
			c->path = xstrdup(rn->rm[r].dir);
			fill_from_manifest(rn, c, &rn->rm[r].manifest_id);
		}
		order = xmalloc((total + 1) * sizeof(size_t));
		cycle = xmalloc((total + 1) * sizeof(size_t));
		nordered = graph_order(&g, order);
		if (nordered < total) {
			size_t n = graph_cycle(&g, order, nordered, cycle);
			struct buf msg = {0};
			const struct catalog_image *first = &cat->v[list[cycle[n > 1 ? 1 : 0]]];

			buf_puts(&msg, "dependency cycle: ");
			for (size_t k = 0; k <= n; k++)
				buf_printf(&msg, "%s'%s'", k ? " -> " : "",
					   path_display(keys[cycle[k % n]]));
			buf_puts(&msg, " (each is built FROM the one before it)");
			kiln_diags_add(&out->errors, first->dockerfile, 0, 0, "%s", msg.p);
			buf_done(&msg);
		}
		/* Permute into build order. */
		{
			struct change *sorted = xcalloc(total + 1, sizeof(*sorted));
			for (size_t k = 0; k < total; k++)
				sorted[k] = out->v[order[k]];
			free(out->v);
			out->v = sorted;
			out->n = total;
		}
		free(order);
		free(cycle);
		graph_done(&g);
		free(keys);
	}
	free(list);
	free(slot_of);
	strmap_done(&producer);
}

int changes_compute(git_repository *repo, git_commit *from, git_commit *to, struct catalog *cat,
		    struct changeset *ret, struct kiln_err *err)
{
	struct run rn = {.repo = repo, .cat = cat, .err = err, .out = ret};
	git_tree *from_tree = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
	git_oid_cpy(&ret->from, git_commit_id(from));
	git_oid_cpy(&ret->to, git_commit_id(to));
	if (git_commit_tree(&from_tree, from) < 0 || git_commit_tree(&rn.to_tree, to) < 0) {
		r = kiln_err_git(err, -EIO, "cannot read the commits' trees");
		goto out;
	}
	r = treediff(repo, from_tree, rn.to_tree, collect, &rn, err);
	if (r < 0 || rn.nd == 0)
		goto out;
	r = catalog_sync(cat, repo, rn.to_tree, err);
	if (r < 0)
		goto out;
	rn.status = xcalloc(cat->n + 1, sizeof(*rn.status));
	pass_manifests(&rn);
	pass_contexts(&rn);
	pass_dependencies(&rn);
	pass_output(&rn);
out:
	for (size_t i = 0; i < rn.ignores.cap; i++) {
		struct ignore *ig = rn.ignores.slots ? rn.ignores.slots[i].val : NULL;
		if (ig) {
			dockerignore_free(ig->di);
			free(ig);
		}
	}
	strmap_done(&rn.ignores);
	for (size_t i = 0; i < rn.nd; i++)
		free(rn.d[i].path);
	free(rn.d);
	for (size_t i = 0; i < rn.nrm; i++)
		free(rn.rm[i].dir);
	free(rn.rm);
	free(rn.status);
	git_tree_free(from_tree);
	git_tree_free(rn.to_tree);
	if (r < 0)
		changeset_done(ret);
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
