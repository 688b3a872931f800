/* plan.c (plan): a branch's new head -> planned builds. Decides where the
 * range starts (last-seen, a push's verified `before`, a sibling branch, the
 * empty tree, or nowhere at first sight), computes its changes and lays them out as the queue's
 * rows. Owns nothing between calls; the catalog is the caller's. Worker threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/err.h"
#include "kiln/plan.h"

const char *plan_kind_str(enum plan_kind k)
{
	static const char *const names[] = {"unchanged", "first sight", "range"};
	return (unsigned)k < ARRAY_SIZE(names) ? names[k] : "unknown";
}

static int lookup_commit(git_repository *repo, const char *hex, git_commit **ret)
{
	git_oid id;

	if (git_oid_fromstr(&id, hex) < 0 || git_commit_lookup(ret, repo, &id) < 0)
		return -ENOENT;
	return 0;
}

/* Where the range starts: seen, else the hint when the mirror has it, else
 * base, else the empty tree ("") when everything is to be built at start;
 * NULL: first sight. */
static const char *range_start(git_repository *mirror, const struct plan_settings *s,
			       const struct plan_input *in)
{
	git_commit *c = NULL;

	if (in->seen)
		return in->seen;
	if (in->hint && lookup_commit(mirror, in->hint, &c) == 0) {
		git_commit_free(c);
		return in->hint; /* a push the branch's first poll would miss */
	}
	if (in->base)
		return in->base; /* a branch added later starts from the first branch */
	if (s->build_on_start == CONFIG_BUILD_ON_START_ALL)
		return "";
	return NULL;
}

/* The manifest name changed (a reload): the cache file stays where it is and
 * is rebuilt, since a snapshot names the manifest it was read with. */
static void catalog_restart(struct catalog *cat, const char *manifest)
{
	char *cache = cat->cache_file ? xstrdup(cat->cache_file) : NULL;

	catalog_done(cat);
	catalog_init(cat, manifest, cache);
	free(cache);
}

/* from..to against the catalog (changes_compute starts a damaged one over). */
static int compute(git_repository *mirror, struct catalog *cat, const char *manifest,
		   git_commit *from, git_commit *to, struct changeset *ret, struct kiln_err *err)
{
	if (strcmp(cat->manifest_name ? cat->manifest_name : "", manifest) != 0)
		catalog_restart(cat, manifest);
	return changes_compute(mirror, from, to, cat, ret, err);
}

/* At first sight nothing is planned, but the catalog of the head is built
 * now: else the first push pays for reading every manifest (1.2 s at 50,000
 * images) while its builds wait. A cache: what fails here is left to that
 * plan to find and say. */
static void warm(git_repository *mirror, struct catalog *cat, const char *manifest,
		 const char *head)
{
	struct kiln_err err = {0};
	git_commit *c = NULL;
	git_tree *tree = NULL;

	if (strcmp(cat->manifest_name ? cat->manifest_name : "", manifest) != 0)
		catalog_restart(cat, manifest);
	if (lookup_commit(mirror, head, &c) == 0 && git_commit_tree(&tree, c) == 0 &&
	    catalog_sync(cat, mirror, tree, &err) == -EBADMSG)
		catalog_reset(cat);
	git_tree_free(tree);
	git_commit_free(c);
}

/* The queue's rows for cs, pointing into it. */
static struct store_plan_item *items_of(const struct changeset *cs)
{
	struct store_plan_item *items = xcalloc(cs->n + 1, sizeof(*items));

	for (size_t k = 0; k < cs->n; k++) {
		items[k].path = cs->v[k].path;
		items[k].image = cs->v[k].image;
		items[k].change = change_kind_str(cs->v[k].kind);
		items[k].depends_on = (const char *const *)cs->v[k].depends_on.v;
		items[k].ndepends = cs->v[k].depends_on.n;
	}
	return items;
}

int plan_branch(git_repository *mirror, struct catalog *cat, const struct plan_settings *s,
		const struct plan_input *in, struct plan *ret, struct kiln_err *err)
{
	struct plan p = {.kind = PLAN_RANGE};
	const char *start = range_start(mirror, s, in);
	git_commit *from = NULL, *to = NULL;
	int r = 0;

	snprintf(p.to, sizeof(p.to), "%s", in->head);
	if (in->seen && strcmp(in->seen, in->head) == 0) {
		p.kind = PLAN_UNCHANGED;
		goto out;
	}
	if (start == NULL) {
		p.kind = PLAN_FIRST_SIGHT;
		warm(mirror, cat, s->manifest, in->head);
		goto out;
	}
	snprintf(p.from, sizeof(p.from), "%s", start);
	if (lookup_commit(mirror, in->head, &to) < 0) {
		r = kiln_err_set(err, -EIO, "branch '%s': commit %s is not in the mirror",
				 in->branch, in->head);
		goto out;
	}
	if (start[0] && lookup_commit(mirror, start, &from) < 0) {
		r = kiln_err_set(err, -EIO, "branch '%s': last-seen commit %s is not in the mirror",
				 in->branch, start);
		goto out;
	}
	r = compute(mirror, cat, s->manifest, from, to, &p.cs, err);
	if (r < 0)
		goto out;
	p.items = items_of(&p.cs);
	p.n = p.cs.n;
out:
	git_commit_free(from);
	git_commit_free(to);
	if (r == 0)
		*ret = p;
	return r;
}

void plan_done(struct plan *p)
{
	free(p->items);
	changeset_done(&p->cs);
	p->items = NULL;
	p->n = 0;
}
