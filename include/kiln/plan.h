/* plan.h (plan): one branch's new head -> the builds it implies.
 *
 * A pure step between fetch and queue: it reads the mirror and the catalog
 * and decides, it writes nothing. The caller records the result with
 * store_record_plan(store, repo, branch, plan.to, plan.items, plan.n, serve_upto, err),
 * which queues the builds and moves the branch's last-seen commit to the
 * head in one transaction, so last-seen moves only with the builds it
 * implies. Blocking (libgit2): worker threads only. */
#ifndef KILN_PLAN_H
#define KILN_PLAN_H

#include <git2.h>

#include "kiln/catalog.h"
#include "kiln/changes.h"
#include "kiln/config.h"
#include "kiln/store.h"

enum plan_kind {
	PLAN_UNCHANGED,	  /* the head is the last-seen commit: nothing to record */
	PLAN_FIRST_SIGHT, /* nothing seen before: record the head, build nothing */
	PLAN_RANGE,	  /* the builds of from..to (from "" is the empty tree) */
};

const char *plan_kind_str(enum plan_kind k);

/* What the planner needs of the repository's settings. */
struct plan_settings {
	const char *manifest; /* the file name that marks an image folder */
	enum config_build_on_start build_on_start;
};

/* One branch; every sha is 40 hex digits. */
struct plan_input {
	const char *branch; /* for messages */
	const char *head;   /* its tip, in the mirror */
	const char *seen;   /* its last-seen commit; NULL: never seen */
	/* When seen is NULL: the commit a branch added to an existing
	 * repository starts from (the first branch's last-seen), or NULL. */
	const char *base;
	/* When seen is NULL: where a push the webhook reported moved the branch
	 * from (its `before`), or NULL. Only a hint: used, ahead of base, when
	 * the commit is in the mirror. */
	const char *hint;
};

struct plan {
	enum plan_kind kind;
	char from[STORE_SHA_LEN + 1]; /* PLAN_RANGE: "" for the empty tree */
	char to[STORE_SHA_LEN + 1];   /* the head */
	struct changeset cs;	      /* PLAN_RANGE: the changes; problems in cs.errors */
	/* The rows for store_record_plan, one per change in cs order
	 * (dependencies first); they point into cs. */
	struct store_plan_item *items;
	size_t n;
};

/* Plans in->head. cat is the repository's catalog, kept between calls (in
 * memory or in its cache file) so each plan reads only what changed; it is
 * re-created when s->manifest differs from its manifest name or it turns out
 * damaged. At first sight it is built for the head, though nothing is
 * planned.
 * Fails (ret untouched) when a commit is not in the mirror or git data
 * cannot be read. ret is freed with plan_done. */
int plan_branch(git_repository *mirror, struct catalog *cat, const struct plan_settings *s,
		const struct plan_input *in, struct plan *ret, struct kiln_err *err);
void plan_done(struct plan *p);

#endif
