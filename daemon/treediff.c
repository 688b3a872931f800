/* treediff.c (plan): a merge walk over two sorted git trees. */
#include <string.h>

#include "kiln/buf.h"
#include "kiln/err.h"
#include "kiln/treediff.h"

#define TREEDIFF_DEPTH_MAX 256

struct walk {
	git_repository *repo;
	treediff_cb *cb;
	void *arg;
	struct buf path;
	struct kiln_err *err;
	git_tree *trees[TREEDIFF_DEPTH_MAX + 1]; /* the new side's open folders */
	size_t lens[TREEDIFF_DEPTH_MAX + 1];
};

static int walk(struct walk *w, git_tree *a, git_tree *b, int depth);

/* Git's tree order: names compare bytewise, a tree as if it ended in '/'. */
static int entry_cmp(const git_tree_entry *x, const git_tree_entry *y)
{
	const char *nx = git_tree_entry_name(x), *ny = git_tree_entry_name(y);
	size_t lx = strlen(nx), ly = strlen(ny), n = lx < ly ? lx : ly;
	int c = memcmp(nx, ny, n);
	unsigned char cx, cy;

	if (c != 0)
		return c;
	cx = lx > n ? (unsigned char)nx[n] : (git_tree_entry_type(x) == GIT_OBJECT_TREE ? '/' : 0);
	cy = ly > n ? (unsigned char)ny[n] : (git_tree_entry_type(y) == GIT_OBJECT_TREE ? '/' : 0);
	return (int)cx - (int)cy;
}

static int subtree(struct walk *w, const git_tree_entry *e, git_tree **ret)
{
	if (e == NULL || git_tree_entry_type(e) != GIT_OBJECT_TREE) {
		*ret = NULL;
		return 0;
	}
	if (git_tree_lookup(ret, w->repo, git_tree_entry_id(e)) < 0)
		return kiln_err_git(w->err, -EIO, "cannot read tree '%s'", w->path.p);
	return 0;
}

/* One side's entry x (the other side y at the same name, or NULL). */
static int visit(struct walk *w, const git_tree_entry *x, const git_tree_entry *y, int depth)
{
	size_t saved = w->path.len;
	const git_tree_entry *name_of = x ? x : y;
	bool xt = x && git_tree_entry_type(x) == GIT_OBJECT_TREE;
	bool yt = y && git_tree_entry_type(y) == GIT_OBJECT_TREE;
	int r = 0;

	if (saved)
		buf_putc(&w->path, '/');
	buf_puts(&w->path, git_tree_entry_name(name_of));
	if (xt || yt) {
		git_tree *ta = NULL, *tb = NULL;
		if (depth >= TREEDIFF_DEPTH_MAX) {
			r = kiln_err_set(w->err, -ELOOP, "tree deeper than %d levels at '%s'",
					 TREEDIFF_DEPTH_MAX, w->path.p);
			goto out;
		}
		r = subtree(w, x, &ta);
		if (r == 0)
			r = subtree(w, y, &tb);
		if (r == 0)
			r = walk(w, ta, tb, depth + 1);
		git_tree_free(ta);
		git_tree_free(tb);
	} else {
		struct treediff_entry e = {.path = w->path.p,
					   .path_len = w->path.len,
					   .new_trees = w->trees,
					   .new_lens = w->lens,
					   .ndirs = (size_t)depth + 1};
		if (x) {
			e.old_mode = git_tree_entry_filemode(x);
			git_oid_cpy(&e.old_id, git_tree_entry_id(x));
		}
		if (y) {
			e.new_mode = git_tree_entry_filemode(y);
			git_oid_cpy(&e.new_id, git_tree_entry_id(y));
		}
		r = w->cb(&e, w->arg);
	}
out:
	w->path.len = saved;
	w->path.p[saved] = '\0';
	return r;
}

static int walk(struct walk *w, git_tree *a, git_tree *b, int depth)
{
	size_t na = a ? git_tree_entrycount(a) : 0, nb = b ? git_tree_entrycount(b) : 0;
	size_t i = 0, j = 0;
	int r = 0;

	w->trees[depth] = b;
	w->lens[depth] = w->path.len;
	while (r == 0 && (i < na || j < nb)) {
		const git_tree_entry *x = i < na ? git_tree_entry_byindex(a, i) : NULL;
		const git_tree_entry *y = j < nb ? git_tree_entry_byindex(b, j) : NULL;
		int c = x == NULL ? 1 : y == NULL ? -1 : entry_cmp(x, y);

		if (c < 0) {
			r = visit(w, x, NULL, depth);
			i++;
		} else if (c > 0) {
			r = visit(w, NULL, y, depth);
			j++;
		} else {
			if (git_tree_entry_filemode(x) != git_tree_entry_filemode(y) ||
			    !git_oid_equal(git_tree_entry_id(x), git_tree_entry_id(y))) {
				bool xt = git_tree_entry_type(x) == GIT_OBJECT_TREE;
				bool yt = git_tree_entry_type(y) == GIT_OBJECT_TREE;
				if (xt == yt) {
					r = visit(w, x, y, depth);
				} else { /* same name, tree on one side only */
					r = visit(w, x, NULL, depth);
					if (r == 0)
						r = visit(w, NULL, y, depth);
				}
			}
			i++;
			j++;
		}
	}
	return r;
}

git_tree *treediff_open_tree(const struct treediff_entry *e, const char *dir, size_t dir_len)
{
	size_t k = 0;

	if (dir_len > 0) { /* depth = the number of components */
		k = 1;
		for (size_t i = 0; i < dir_len; i++)
			k += dir[i] == '/';
	}
	if (k >= e->ndirs || e->new_lens[k] != dir_len || dir_len > e->path_len ||
	    memcmp(e->path, dir, dir_len) != 0 || (dir_len && e->path[dir_len] != '/'))
		return NULL;
	return e->new_trees[k];
}

int treediff(git_repository *repo, git_tree *a, git_tree *b, treediff_cb *cb, void *arg,
	     struct kiln_err *err)
{
	struct walk w = {.repo = repo, .cb = cb, .arg = arg, .err = err};
	int r;

	buf_reserve(&w.path, 256);
	w.path.p[0] = '\0';
	r = walk(&w, a, b, 0);
	buf_done(&w.path);
	return r;
}
