/* treediff.h (plan): the leaves that differ between two trees. Subtrees with equal
 * ids on both sides are never opened, which is what makes change detection
 * cheap: its cost follows the size of the change, not of the repository. */
#ifndef KILN_TREEDIFF_H
#define KILN_TREEDIFF_H

#include <git2.h>

#include "kiln/common.h"

struct treediff_entry {
	const char *path; /* full path from the root; valid during the callback */
	size_t path_len;
	unsigned old_mode, new_mode; /* 0: absent on that side */
	git_oid old_id, new_id;
	/* The new side's trees the walk has open, root first: new_trees[k] is
	 * the folder whose path is the first new_lens[k] bytes of path (NULL
	 * where that folder is absent on the new side); k < ndirs. Valid during
	 * the callback: callers read a folder's other files from them instead
	 * of looking the tree up again. */
	git_tree *const *new_trees;
	const size_t *new_lens;
	size_t ndirs;
};

/* The new side's tree of the folder dir (dir_len bytes, an ancestor of e's
 * path or the root, ""), while the walk has it open; NULL otherwise. */
git_tree *treediff_open_tree(const struct treediff_entry *e, const char *dir, size_t dir_len);

/* Non-zero return stops the walk and is returned. */
typedef int treediff_cb(const struct treediff_entry *e, void *arg);

/* a or b may be NULL (the empty tree). Trees, blobs, symlinks and gitlinks
 * (submodule commits) are all compared by mode and id; a tree that becomes a
 * file is reported as its leaves deleted and the file added. */
int treediff(git_repository *repo, git_tree *a, git_tree *b, treediff_cb *cb, void *arg,
	     struct kiln_err *err);

static inline bool treediff_is_file(unsigned mode)
{
	return mode == GIT_FILEMODE_BLOB || mode == GIT_FILEMODE_BLOB_EXECUTABLE;
}

#endif
