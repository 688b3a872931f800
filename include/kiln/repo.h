/* repo.h (fetch): opening repositories and reading from them with libgit2. A
 * git_repository is not thread-safe: each thread or job opens its own. */
#ifndef KILN_REPO_H
#define KILN_REPO_H

#include <git2.h>

#include "kiln/buf.h"
#include "kiln/common.h"
#include "kiln/map.h"

/* Pack files libgit2 keeps open at once, over all repositories (it closes the
 * least recently used past this); part of kilnd's file descriptor reserve. */
#define REPO_PACK_FILES_MAX 32

/* Who reads: a process that stays up (kilnd, tests) or one that exits after
 * one change detection (the CLI); they map pack files differently. */
enum repo_role { REPO_ROLE_DAEMON, REPO_ROLE_CLI };
/* the CLI's pack windows and the most it maps at once */
#define REPO_CLI_WINDOW ((size_t)32 << 20)
#define REPO_CLI_MAPPED ((size_t)64 << 20)

/* Once per process, before any thread uses libgit2. */
void repo_global_init(enum repo_role role);

/* Opens the repository at path or the nearest one above it (bare or not).
 * -ENOENT with a message naming path when there is none. */
int repo_open(const char *path, git_repository **ret, struct kiln_err *err);
/* Opens the repository at exactly path (a mirror, a resolved git directory):
 * a missing one is -ENOENT, never a repository found further up. */
int repo_open_at(const char *path, git_repository **ret, struct kiln_err *err);
/* Any revision git accepts, peeled to a commit. -ENOENT: unknown revision. */
int repo_commit(git_repository *repo, const char *rev, git_commit **ret, struct kiln_err *err);
/* A commit's summary (its message's first paragraph on one line, as git's
 * %s shows it), cut to REPO_SUMMARY_MAX bytes on a character boundary,
 * control characters (an escape sequence meant for a terminal) made spaces,
 * each byte that is not UTF-8 (a message in another encoding) U+FFFD; NULL
 * when it has none. The caller frees it. */
#define REPO_SUMMARY_MAX 500u
char *repo_commit_summary(git_commit *c);
/* The same for the commit sha (40 hex) names in repo; NULL when it cannot
 * be read. */
char *repo_summary_of(git_repository *repo, const char *sha);
/* Reads a blob whose size must not exceed max (-EFBIG otherwise). */
int repo_blob(git_repository *repo, const git_oid *id, size_t max, git_blob **ret,
	      struct kiln_err *err);
/* The entry at path in tree: 0, -ENOENT when there is none, -EIO when git
 * cannot read a tree on the way. *ret is freed with git_tree_entry_free. */
int repo_entry(git_tree *tree, const char *path, git_tree_entry **ret);

/* Credentials for a remote; borrowed strings, any may be NULL. */
struct repo_creds {
	const char *username;
	const char *password;
	const char *ssh_key_file;
};

/* Opens the bare mirror at path, creating it when missing (no network). */
int repo_mirror_open(const char *path, git_repository **ret, struct kiln_err *err);
/* Removes the lock files a process killed in the middle of an update left in
 * the mirror at path (refs/heads/<branch>.lock after a kill -9 in a fetch:
 * every later fetch fails on it); *ret_removed counts them, also on failure.
 * Only for the mirror's one writer while nothing else uses it: kilnd at
 * start, under its instance lock. */
int repo_mirror_unlock(const char *path, unsigned *ret_removed, struct kiln_err *err);
/* Asks the remote at url for its branch tips without fetching (ls-remote).
 * For each of the n branches, ret_found[i] says whether it exists and
 * ret_oids[i] is its commit. */
int repo_remote_heads(const char *url, const struct repo_creds *cr, const char *const *branches,
		      size_t n, git_oid *ret_oids, bool *ret_found, struct kiln_err *err);
/* Fetches the n branches from url into the mirror's refs/heads (forced: a
 * force push is followed). */
int repo_fetch(git_repository *mirror, const char *url, const struct repo_creds *cr,
	       const char *const *branches, size_t n, struct kiln_err *err);
/* For a remote on this machine (a path or file:// URL): a fingerprint of
 * packed-refs and the branches' loose refs (inode, size, times). Git replaces
 * a ref file on every update, so an equal fingerprint means no branch moved
 * and the poll can skip the remote entirely. -ENOTSUP for other remotes. */
int repo_local_fingerprint(const char *url, const char *const *branches, size_t n, uint64_t *ret);
/* NULL-safe; returns NULL. */
git_repository *repo_close(git_repository *repo);
/* The mirror's commit for a branch, or -ENOENT. */
int repo_branch_tip(git_repository *mirror, const char *branch, git_oid *ret);

/* Trees of one root looked up by directory path, each read once. Entries
 * returned are borrowed: valid until repo_trees_done. */
struct repo_trees {
	git_repository *repo;
	git_tree *root;	   /* borrowed */
	struct strmap map; /* dir -> git_tree * */
	struct strv keys;
};

void repo_trees_init(struct repo_trees *t, git_repository *repo, git_tree *root);
/* The tree at dir[0..len) ("" is the root); -ENOENT when it is not a tree. */
int repo_trees_get(struct repo_trees *t, const char *dir, size_t len, git_tree **ret);
/* The entry at path; -ENOENT when absent. */
int repo_trees_entry(struct repo_trees *t, const char *path, const git_tree_entry **ret);
void repo_trees_done(struct repo_trees *t);

#endif
