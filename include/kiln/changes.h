/* changes.h (plan): which image folders two commits' trees differ in, and how.
 * The heart of kiln: `kiln changes` prints it and the daemon plans builds
 * from it. Only the two trees matter, not the commits between them. */
#ifndef KILN_CHANGES_H
#define KILN_CHANGES_H

#include <git2.h>

#include "kiln/buf.h"
#include "kiln/catalog.h"
#include "kiln/err.h"

enum change_kind {
	CHANGE_NONE,
	CHANGE_ADDED,	   /* manifest in TO, not in FROM */
	CHANGE_MODIFIED,   /* something that goes into its build differs */
	CHANGE_DEPENDENCY, /* builds FROM an image that is added, modified or dependency */
	CHANGE_REMOVED,	   /* manifest in FROM, not in TO: listed, never built */
};

const char *change_kind_str(enum change_kind k);

struct change {
	enum change_kind kind;
	char *path; /* image folder, "" for the root */
	/* From the manifest (FROM's for removed images); NULL when that manifest
	 * is invalid, which only a removed image can be. */
	char *name, *version, *registry, *image;
	struct strv tags;
	struct strv depends_on; /* folders of the TO images it builds FROM */
};

struct changeset {
	git_oid from, to;
	struct change *v; /* dependencies first, otherwise by path */
	size_t n;
	struct kiln_diags errors; /* invalid affected manifests, cycles, clashes */
};

/* Fills ret. from may be NULL: the empty tree (everything in TO is added).
 * cat is the catalog of the repository (synced here to TO's tree;
 * its manifest name is the one used). A catalog whose cache file turns out
 * damaged is reset (catalog_reset) and the work done once more from the
 * tree. Fails when git data cannot be read. Problems with the images
 * themselves go to ret->errors. */
int changes_compute(git_repository *repo, git_commit *from, git_commit *to, struct catalog *cat,
		    struct changeset *ret, struct kiln_err *err);
void changeset_done(struct changeset *cs);

#endif
