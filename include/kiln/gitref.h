/* gitref.h (plan): the answer to "do these two revisions have one tree?"
 * read straight from a repository's files, with libc and zlib only, for
 * kiln's front (`kiln changes FROM TO` of an unchanged range answers without
 * loading kiln-changes.so and libgit2; issue #10).
 *
 * It answers only where it can tell what libgit2 would do, and says so by
 * returning 0: the repository git_repository_open_ext(dir, 0) finds (a
 * `.git` directory or a bare repository, searched upward, owned by the
 * user, a plain config), a revision in a simple form (a full id, HEAD, a
 * name by git's rules: refs/, refs/tags/, refs/heads/, refs/remotes/, loose
 * or packed, symbolic refs followed; then ~N and ^N), naming commits that are
 * loose or in a pack (deltas resolved within the pack). Anything else, and
 * any damage, is a negative errno with the reason in err: the caller asks
 * libgit2 instead, which gives its own answer or error. The objects gitref
 * reads are hostile input: fuzz_gitref. */
#ifndef KILN_GITREF_H
#define KILN_GITREF_H

#include "kiln/common.h"

#define GITREF_HEX 40

struct gitref;

/* The repository libgit2 would open from dir. The caller frees *ret. */
int gitref_open(const char *dir, struct gitref **ret, struct kiln_err *err);
void gitref_free(struct gitref *g);

/* The commit rev names, as git_revparse_single and a peel to a commit would
 * find it, in hex (a tag is not peeled here: not answered). */
int gitref_commit(struct gitref *g, const char *rev, char ret_id[GITREF_HEX + 1],
		  struct kiln_err *err);

/* The tree of the commit id, in hex; the tree is there. */
int gitref_tree(struct gitref *g, const char *id, char ret_tree[GITREF_HEX + 1],
		struct kiln_err *err);

/* 0: from and to name commits with one tree (their ids in ret_from and
 * ret_to); -ESRCH: their trees differ; else it cannot tell. */
int gitref_unchanged(const char *dir, const char *from, const char *to,
		     char ret_from[GITREF_HEX + 1], char ret_to[GITREF_HEX + 1],
		     struct kiln_err *err);

#endif
