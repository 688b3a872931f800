/* repo.c: libgit2 access for reading: open, resolve revisions, read blobs. */
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"

#include "kiln/err.h"
#include "kiln/map.h"
#include "kiln/path.h"
#include "kiln/repo.h"

void repo_global_init(void)
{
	git_libgit2_init();
	/* Change detection reads each tree once in its walk; the few it reads
	 * again go through struct repo_trees. libgit2's object cache would only
	 * keep every tree of a large diff alive (and faulting memory in). */
	git_libgit2_opts(GIT_OPT_ENABLE_CACHING, 0);
	/* Objects come from our own mirrors and the user's repository; git itself
	 * does not rehash every object it reads either. */
	git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
}

int repo_open(const char *path, git_repository **ret, struct kiln_err *err)
{
	git_repository *repo = NULL;
	int r = git_repository_open_ext(&repo, path, 0, NULL);

	if (r == GIT_ENOTFOUND)
		return kiln_err_set(err, -ENOENT, "not a git repository: '%s'", path);
	if (r == GIT_EOWNER)
		return kiln_err_set(err, -EPERM,
				    "repository '%s' is owned by another user; if it is trusted, "
				    "add it to git's safe.directory",
				    path);
	if (r < 0)
		return kiln_err_git(err, -EIO, "cannot open repository '%s'", path);
	*ret = repo;
	return 0;
}

int repo_commit(git_repository *repo, const char *rev, git_commit **ret, struct kiln_err *err)
{
	git_object *obj = NULL, *peeled = NULL;
	int r;

	r = git_revparse_single(&obj, repo, rev);
	if (r == GIT_ENOTFOUND || r == GIT_EAMBIGUOUS || r == GIT_EINVALIDSPEC)
		return kiln_err_set(err, -ENOENT, "unknown revision '%s'%s", rev,
				    r == GIT_EAMBIGUOUS ? " (ambiguous)" : "");
	if (r < 0)
		return kiln_err_git(err, -EIO, "cannot resolve revision '%s'", rev);
	r = git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT);
	git_object_free(obj);
	if (r < 0)
		return kiln_err_set(err, -ENOENT, "revision '%s' does not name a commit", rev);
	*ret = (git_commit *)peeled;
	return 0;
}

int repo_blob(git_repository *repo, const git_oid *id, size_t max, git_blob **ret,
	      struct kiln_err *err)
{
	git_blob *b = NULL;
	char hex[GIT_OID_HEXSZ + 1];

	if (git_blob_lookup(&b, repo, id) < 0)
		return kiln_err_git(err, -EIO, "cannot read blob %s",
				    git_oid_tostr(hex, sizeof(hex), id));
	if (git_blob_rawsize(b) > (git_object_size_t)max) {
		git_blob_free(b);
		return kiln_err_set(err, -EFBIG, "blob %s is larger than %zu bytes",
				    git_oid_tostr(hex, sizeof(hex), id), max);
	}
	*ret = b;
	return 0;
}

int repo_entry(git_tree *tree, const char *path, git_tree_entry **ret)
{
	if (path[0] == '\0')
		return -EISDIR;
	return git_tree_entry_bypath(ret, tree, path) == 0 ? 0 : -ENOENT;
}

void repo_trees_init(struct repo_trees *t, git_repository *repo, git_tree *root)
{
	memset(t, 0, sizeof(*t));
	t->repo = repo;
	t->root = root;
}

int repo_trees_get(struct repo_trees *t, const char *dir, size_t len, git_tree **ret)
{
	size_t plen;
	git_tree *parent, *tree = NULL;
	const git_tree_entry *e;
	char *key;
	int r;

	if (len == 0) {
		*ret = t->root;
		return 0;
	}
	if ((*ret = strmap_get(&t->map, dir, len)) != NULL)
		return 0;
	plen = path_parent_len(dir, len);
	r = repo_trees_get(t, dir, plen, &parent);
	if (r < 0)
		return r;
	key = xstrndup(dir, len);
	e = git_tree_entry_byname(parent, key + (plen ? plen + 1 : 0));
	if (e == NULL || git_tree_entry_type(e) != GIT_OBJECT_TREE) {
		free(key);
		return -ENOENT;
	}
	if (git_tree_lookup(&tree, t->repo, git_tree_entry_id(e)) < 0) {
		free(key);
		return -EIO;
	}
	strv_push(&t->keys, key);
	*strmap_put(&t->map, key, len) = tree;
	*ret = tree;
	return 0;
}

int repo_trees_entry(struct repo_trees *t, const char *path, const git_tree_entry **ret)
{
	size_t len = strlen(path), plen = path_parent_len(path, len);
	git_tree *dir;
	int r = repo_trees_get(t, path, plen, &dir);

	if (r < 0)
		return r;
	*ret = git_tree_entry_byname(dir, path + (plen ? plen + 1 : 0));
	return *ret ? 0 : -ENOENT;
}

void repo_trees_done(struct repo_trees *t)
{
	for (size_t i = 0; i < t->map.cap; i++) {
		if (t->map.slots && t->map.slots[i].key)
			git_tree_free(t->map.slots[i].val);
	}
	strmap_done(&t->map);
	strv_done(&t->keys);
}
