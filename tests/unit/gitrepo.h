/* gitrepo.h (tests): real repositories for unit tests, built with libgit2 in
 * a temporary directory: a commit is its parent's tree plus a list of
 * path -> content edits. Header-only so each test stays one file. */
#ifndef KILN_TEST_GITREPO_H
#define KILN_TEST_GITREPO_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <git2.h>

struct gitrepo_file {
	const char *path;
	const char *content; /* NULL: delete the path */
	unsigned mode;	     /* 0: a regular file; else GIT_FILEMODE_* */
};

#define GITREPO_DIE(what)                                                                          \
	do {                                                                                       \
		const git_error *e_ = git_error_last();                                            \
		fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, what,                       \
			e_ ? e_->message : "?");                                                   \
		abort();                                                                           \
	} while (0)

/* A new bare repository in a fresh directory under /tmp; its path is written
 * to dir (at least 64 bytes). */
static inline git_repository *gitrepo_new(char *dir)
{
	git_repository *repo;

	snprintf(dir, 64, "/tmp/kiln-test-repo.XXXXXX");
	if (mkdtemp(dir) == NULL)
		abort();
	if (git_repository_init(&repo, dir, 1) < 0)
		GITREPO_DIE("init");
	return repo;
}

static inline void gitrepo_remove(git_repository *repo, const char *dir)
{
	char cmd[128];

	git_repository_free(repo);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		abort();
}

/* parent's tree (none: empty) with files applied, committed with parent as
 * its only parent (none: a root commit). The caller frees the commit. */
static inline git_commit *gitrepo_commit(git_repository *repo, git_commit *parent,
					 const struct gitrepo_file *files, size_t n)
{
	git_index *ix;
	git_tree *tree = NULL;
	git_signature *sig;
	git_oid tree_id, id;
	git_commit *ret;
	const git_commit *parents[1] = {parent};

	if (git_index_new(&ix) < 0)
		GITREPO_DIE("index");
	if (parent && (git_commit_tree(&tree, parent) < 0 || git_index_read_tree(ix, tree) < 0))
		GITREPO_DIE("parent tree");
	git_tree_free(tree);
	for (size_t i = 0; i < n; i++) {
		git_index_entry e = {0};

		if (files[i].content == NULL) {
			if (git_index_remove_bypath(ix, files[i].path) < 0)
				GITREPO_DIE("remove");
			continue;
		}
		e.path = files[i].path;
		e.mode = files[i].mode ? files[i].mode : GIT_FILEMODE_BLOB;
		if (git_blob_create_from_buffer(&e.id, repo, files[i].content,
						strlen(files[i].content)) < 0 ||
		    git_index_add(ix, &e) < 0)
			GITREPO_DIE("add");
	}
	if (git_index_write_tree_to(&tree_id, ix, repo) < 0 ||
	    git_tree_lookup(&tree, repo, &tree_id) < 0)
		GITREPO_DIE("write tree");
	if (git_signature_new(&sig, "kiln", "kiln@example.invalid", 1700000000, 0) < 0 ||
	    git_commit_create(&id, repo, NULL, sig, sig, NULL, "test", tree, parent ? 1 : 0,
			      parents) < 0 ||
	    git_commit_lookup(&ret, repo, &id) < 0)
		GITREPO_DIE("commit");
	git_signature_free(sig);
	git_tree_free(tree);
	git_index_free(ix);
	return ret;
}

/* The commit's id in hex (a static buffer per call site is the caller's). */
static inline void gitrepo_hex(const git_commit *c, char out[GIT_OID_HEXSZ + 1])
{
	git_oid_tostr(out, GIT_OID_HEXSZ + 1, git_commit_id(c));
}

#endif
