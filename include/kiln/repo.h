/* repo.h: opening repositories and reading from them with libgit2. A
 * git_repository is not thread-safe: each thread or job opens its own. */
#ifndef KILN_REPO_H
#define KILN_REPO_H

#include <git2.h>

#include "kiln/common.h"

/* Once per process, before any thread uses libgit2. */
void repo_global_init(void);

/* Opens the repository at path or the nearest one above it (bare or not).
 * -ENOENT with a message naming path when there is none. */
int repo_open(const char *path, git_repository **ret, struct kiln_err *err);
/* Any revision git accepts, peeled to a commit. -ENOENT: unknown revision. */
int repo_commit(git_repository *repo, const char *rev, git_commit **ret, struct kiln_err *err);
/* Reads a blob whose size must not exceed max (-EFBIG otherwise). */
int repo_blob(git_repository *repo, const git_oid *id, size_t max, git_blob **ret,
	      struct kiln_err *err);
/* The entry at path in tree, or -ENOENT. *ret is freed with git_tree_entry_free. */
int repo_entry(git_tree *tree, const char *path, git_tree_entry **ret);

#endif
