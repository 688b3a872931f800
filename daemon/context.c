/* context.c (build): the build context's tar, produced by one thread per
 * build into a pipe. The thread owns its own git_repository (libgit2 objects
 * are not thread-safe) and the pipe's write end; the loop side owns the read
 * end and its poll handle. The only shared fields are atomics and the result,
 * which the thread publishes (release) before it closes its end.
 *
 * The thread is joined on a libuv worker, never on the loop: a producer in
 * the middle of reading a large blob would stall every other build. Joining
 * (rather than detaching) keeps the loop alive until the thread is gone, so
 * no producer outlives the daemon's teardown of libgit2. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <git2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/buf.h"
#include "kiln/context.h"
#include "kiln/dockerignore.h"
#include "kiln/err.h"
#include "kiln/path.h"
#include "kiln/repo.h"

struct context {
	uv_loop_t *loop;
	uv_poll_t poll;
	bool polling;
	int rfd, wfd;
	pthread_t thread;
	bool started;	/* the thread exists and must be joined */
	uv_work_t join; /* joins it on a worker; the memory goes after */
	context_ready_cb *ready;
	void *arg;
	char *repo_path, *commit, *dir, *dockerfile;
	char *df_in_tar; /* the Dockerfile's name in the tar */
	bool df_outside; /* the Dockerfile is not under dir */
	struct context_file *extra; /* name and data owned (xstrdup, xmalloc) */
	size_t nextra;
	atomic_bool stop;
	atomic_uint_fast64_t bytes;
	atomic_uint files;
	/* msg is written by the thread before it stores result (release) */
	atomic_int result;
	char msg[1024];
};

struct walker {
	struct context *cx;
	git_repository *repo;
	struct archive *a;
	struct archive_entry *e;
	struct dockerignore *di;
	size_t npat;
	const char *df_rel; /* the Dockerfile below dir, or NULL when outside */
	time_t mtime;
	struct kiln_err err;
};

/* libarchive's writer: blocking writes into the pipe are the back pressure. */
static la_ssize_t tar_write(struct archive *a, void *arg, const void *data, size_t n)
{
	struct context *cx = arg;
	const char *p = data;
	size_t left = n;

	while (left > 0) {
		ssize_t w;
		if (atomic_load(&cx->stop)) {
			archive_set_error(a, ECANCELED, "stopped");
			return -1;
		}
		w = write(cx->wfd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			archive_set_error(a, errno, "writing the context: %s", strerror(errno));
			return -1;
		}
		p += w;
		left -= (size_t)w;
	}
	atomic_fetch_add(&cx->bytes, n);
	return (la_ssize_t)n;
}

static int tar_fail(struct walker *w, const char *what)
{
	if (atomic_load(&w->cx->stop))
		return kiln_err_set(&w->err, -ECANCELED, "stopped");
	return kiln_err_set(&w->err, -EIO, "%s: %s", what, archive_error_string(w->a));
}

static int put_entry(struct walker *w, const char *name, unsigned type, unsigned mode,
		     const void *data, size_t size, const char *link)
{
	archive_entry_clear(w->e);
	archive_entry_set_pathname(w->e, name);
	archive_entry_set_filetype(w->e, type);
	archive_entry_set_perm(w->e, mode);
	archive_entry_set_uid(w->e, 0);
	archive_entry_set_gid(w->e, 0);
	archive_entry_set_mtime(w->e, w->mtime, 0);
	if (link)
		archive_entry_set_symlink(w->e, link);
	archive_entry_set_size(w->e, type == AE_IFREG ? (la_int64_t)size : 0);
	if (archive_write_header(w->a, w->e) != ARCHIVE_OK)
		return tar_fail(w, name);
	if (type == AE_IFREG && size > 0 &&
	    archive_write_data(w->a, data, size) != (la_ssize_t)size)
		return tar_fail(w, name);
	atomic_fetch_add(&w->cx->files, 1);
	return 0;
}

static int put_blob(struct walker *w, const char *name, const git_tree_entry *te)
{
	git_blob *blob = NULL;
	git_filemode_t fm = git_tree_entry_filemode(te);
	int r;

	if (git_blob_lookup(&blob, w->repo, git_tree_entry_id(te)) < 0)
		return kiln_err_git(&w->err, -EIO, "reading '%s'", name);
	if (fm == GIT_FILEMODE_LINK) {
		/* the target as git stores it; never followed */
		char *target = xstrndup(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
		r = put_entry(w, name, AE_IFLNK, 0777, NULL, 0, target);
		free(target);
	} else {
		r = put_entry(w, name, AE_IFREG, fm == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644,
			      git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob), NULL);
	}
	git_blob_free(blob);
	return r;
}

/* Whether the Dockerfile lies at or below path: its directories are entered
 * even when excluded, as the CLI's added "!Dockerfile" exception makes it. */
static bool leads_to_dockerfile(const struct walker *w, const char *path, size_t len)
{
	return w->df_rel && strncmp(w->df_rel, path, len) == 0 &&
	       (w->df_rel[len] == '/' || w->df_rel[len] == '\0');
}

static int walk(struct walker *w, git_tree *tree, struct buf *path, const bool *parent)
{
	size_t n = git_tree_entrycount(tree), base = path->len;
	bool *m = w->npat ? xcalloc(w->npat, sizeof(bool)) : NULL;
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i++) {
		const git_tree_entry *te = git_tree_entry_byindex(tree, i);
		git_filemode_t fm = git_tree_entry_filemode(te);
		bool excluded = false, always;

		if (atomic_load(&w->cx->stop)) {
			r = kiln_err_set(&w->err, -ECANCELED, "stopped");
			break;
		}
		path->len = base;
		if (base > 0)
			buf_putc(path, '/');
		buf_puts(path, git_tree_entry_name(te));
		if (w->di)
			excluded = dockerignore_match(w->di, path->p, parent, m);
		always = strcmp(path->p, ".dockerignore") == 0 ||
			 (w->df_rel && strcmp(path->p, w->df_rel) == 0);
		if (fm == GIT_FILEMODE_TREE) {
			git_tree *sub = NULL;
			if (excluded && !dockerignore_enter_dir(w->di, path->p) &&
			    !leads_to_dockerfile(w, path->p, path->len))
				continue;
			if (!excluded &&
			    (r = put_entry(w, path->p, AE_IFDIR, 0755, NULL, 0, NULL)) < 0)
				break;
			if (git_tree_lookup(&sub, w->repo, git_tree_entry_id(te)) < 0) {
				r = kiln_err_git(&w->err, -EIO, "reading directory '%s'", path->p);
				break;
			}
			{
				bool *mine = m ? xmalloc(w->npat * sizeof(bool)) : NULL;
				if (m)
					memcpy(mine, m, w->npat * sizeof(bool));
				r = walk(w, sub, path, mine);
				free(mine);
			}
			git_tree_free(sub);
			continue;
		}
		if (excluded && !always)
			continue;
		if (fm == GIT_FILEMODE_COMMIT) {
			r = kiln_err_set(
			    &w->err, -ENOTSUP,
			    "the build context holds a git submodule at '%s': a git tree "
			    "records only its commit id, so kiln cannot send its files; "
			    "exclude it in .dockerignore or vendor it",
			    path->p);
			break;
		}
		r = put_blob(w, path->p, te);
	}
	path->len = base;
	if (path->p)
		path->p[base] = '\0';
	free(m);
	return r;
}

/* The context directory and the Dockerfile's entry at the commit. */
static int find_trees(struct context *cx, git_repository *repo, git_commit *commit,
		      git_tree **ret_ctx, git_tree_entry **ret_df, struct kiln_err *err)
{
	git_tree *root = NULL, *ctx = NULL;
	git_tree_entry *te = NULL;
	int r = 0;

	if (git_commit_tree(&root, commit) < 0) {
		r = kiln_err_git(err, -EIO, "the tree of %s", cx->commit);
		goto out;
	}
	if (cx->dir[0] == '\0') {
		if (git_tree_dup(&ctx, root) < 0) {
			r = kiln_err_git(err, -EIO, "the tree of %s", cx->commit);
			goto out;
		}
	} else if ((r = repo_entry(root, cx->dir, &te)) == -EIO) {
		r = kiln_err_git(err, r, "cannot read '%s' at %.12s", cx->dir, cx->commit);
		goto out;
	} else if (r < 0 || git_tree_entry_type(te) != GIT_OBJECT_TREE ||
		   git_tree_lookup(&ctx, repo, git_tree_entry_id(te)) < 0) {
		r = kiln_err_set(err, -ENOENT, "build context '%s' is not a directory at %.12s",
				 path_display(cx->dir), cx->commit);
		goto out;
	}
	git_tree_entry_free(te);
	te = NULL;
	if ((r = repo_entry(root, cx->dockerfile, &te)) == -EIO) {
		r = kiln_err_git(err, r, "cannot read '%s' at %.12s", cx->dockerfile, cx->commit);
		goto out;
	}
	if (r < 0 || git_tree_entry_type(te) != GIT_OBJECT_BLOB) {
		r = kiln_err_set(err, -ENOENT, "Dockerfile '%s' is not a file at %.12s",
				 cx->dockerfile, cx->commit);
		goto out;
	}
	*ret_ctx = ctx;
	*ret_df = te;
	ctx = NULL;
	te = NULL;
out:
	git_tree_entry_free(te);
	git_tree_free(ctx);
	git_tree_free(root);
	return r;
}

/* The context's .dockerignore, if it has one, into w->di. */
static int load_dockerignore(struct walker *w, git_tree *ctx, struct kiln_err *err)
{
	struct context *cx = w->cx;
	git_tree_entry *ie = NULL;
	git_blob *ib = NULL;
	struct kiln_err e = {0};
	int r = 0;

	r = repo_entry(ctx, ".dockerignore", &ie);
	if (r == -EIO) /* sending what it would have excluded is worse than failing */
		r = kiln_err_git(err, r, "cannot read %s/.dockerignore", path_display(cx->dir));
	if (r < 0 || git_tree_entry_type(ie) != GIT_OBJECT_BLOB) {
		r = r == -ENOENT ? 0 : r;
		goto out;
	}
	r = repo_blob(w->repo, git_tree_entry_id(ie), DOCKERIGNORE_SIZE_MAX, &ib, err);
	if (r == 0 && (r = dockerignore_parse(git_blob_rawcontent(ib), (size_t)git_blob_rawsize(ib),
					      &w->di, &e)) < 0)
		kiln_err_set(err, r, "%s/.dockerignore: %s", path_display(cx->dir), e.msg);
	w->npat = w->di ? dockerignore_npatterns(w->di) : 0;
out:
	git_blob_free(ib);
	git_tree_entry_free(ie);
	return r;
}

/* The tar itself: the walk, the Dockerfile when it lives outside, the end. */
static int write_tar(struct walker *w, git_tree *ctx, const git_tree_entry *df)
{
	struct context *cx = w->cx;
	struct buf path = {0};
	int r;

	w->a = archive_write_new();
	w->e = archive_entry_new();
	archive_write_set_format_pax_restricted(w->a);
	archive_write_set_bytes_in_last_block(w->a, 1);
	if (archive_write_open2(w->a, cx, NULL, tar_write, NULL, NULL) != ARCHIVE_OK) {
		r = tar_fail(w, "starting the tar");
		goto out;
	}
	r = walk(w, ctx, &path, NULL);
	if (r == 0 && cx->df_outside) {
		/* the CLI's way: the Dockerfile under a name of its own */
		r = put_blob(w, cx->df_in_tar, df);
	}
	for (size_t i = 0; r == 0 && i < cx->nextra; i++)
		r = put_entry(w, cx->extra[i].name, AE_IFREG, 0400, cx->extra[i].data,
			      cx->extra[i].len, NULL);
	if (r == 0 && archive_write_close(w->a) != ARCHIVE_OK)
		r = tar_fail(w, "finishing the tar");
out:
	buf_done(&path);
	return r;
}

static int produce(struct context *cx, struct kiln_err *err)
{
	struct walker w = {.cx = cx};
	git_oid oid;
	git_commit *commit = NULL;
	git_tree *ctx = NULL;
	git_tree_entry *df = NULL;
	int r;

	if ((r = repo_open_at(cx->repo_path, &w.repo, err)) < 0)
		return r;
	if (git_oid_fromstr(&oid, cx->commit) < 0 || git_commit_lookup(&commit, w.repo, &oid) < 0) {
		r = kiln_err_git(err, -ENOENT, "commit %s", cx->commit);
		goto out;
	}
	w.mtime = (time_t)git_commit_time(commit);
	if ((r = find_trees(cx, w.repo, commit, &ctx, &df, err)) < 0)
		goto out;
	w.df_rel = cx->df_outside ? NULL : cx->df_in_tar;
	if ((r = load_dockerignore(&w, ctx, err)) < 0)
		goto out;
	r = write_tar(&w, ctx, df);
	if (r < 0 && w.err.msg[0])
		*err = w.err;
out:
	if (w.a)
		archive_write_free(w.a);
	if (w.e)
		archive_entry_free(w.e);
	dockerignore_free(w.di);
	git_tree_entry_free(df);
	git_tree_free(ctx);
	git_commit_free(commit);
	repo_close(w.repo);
	return r;
}

static void *producer(void *arg)
{
	struct context *cx = arg;
	struct kiln_err err = {0};

	int r = produce(cx, &err);

	if (r < 0)
		snprintf(cx->msg, sizeof(cx->msg), "%s", err.msg);
	atomic_store_explicit(&cx->result, r, memory_order_release);
	close(cx->wfd); /* the reader's end of file: the result is ready */
	cx->wfd = -1;
	return NULL;
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	struct context *cx = container_of(p, struct context, poll);

	(void)status;
	(void)events;
	uv_poll_stop(p);
	cx->polling = false;
	cx->ready(cx, cx->arg);
}

int context_start(uv_loop_t *loop, const struct context_spec *spec, context_ready_cb *ready,
		  void *arg, struct context **ret, char **ret_dockerfile, struct kiln_err *err)
{
	struct context *cx = xcalloc(1, sizeof(*cx));
	const char *below = path_below(spec->dockerfile, spec->dir);
	int fds[2];

	if (pipe2(fds, O_CLOEXEC) < 0) {
		int e = errno;
		free(cx);
		return kiln_err_set(err, -e, "pipe: %s", strerror(e));
	}
	cx->rfd = fds[0];
	cx->wfd = fds[1];
	fcntl(cx->rfd, F_SETFL, fcntl(cx->rfd, F_GETFL) | O_NONBLOCK);
	/* a bigger pipe means fewer wakeups per megabyte; best effort */
	fcntl(cx->wfd, F_SETPIPE_SZ, 1 << 20);
	cx->loop = loop;
	cx->ready = ready;
	cx->arg = arg;
	cx->repo_path = xstrdup(spec->repo_path);
	cx->commit = xstrdup(spec->commit);
	cx->dir = xstrdup(spec->dir);
	cx->dockerfile = xstrdup(spec->dockerfile);
	if (spec->nextra > 0) {
		cx->extra = xcalloc(spec->nextra, sizeof(*cx->extra));
		for (size_t i = 0; i < spec->nextra; i++) {
			unsigned char *d = xmalloc(spec->extra[i].len ? spec->extra[i].len : 1);
			if (spec->extra[i].len)
				memcpy(d, spec->extra[i].data, spec->extra[i].len);
			cx->extra[i] = (struct context_file){
			    .name = xstrdup(spec->extra[i].name), .data = d, .len = spec->extra[i].len};
		}
		cx->nextra = spec->nextra;
	}
	if (below && *below) {
		cx->df_in_tar = xstrdup(below);
	} else {
		cx->df_outside = true;
		cx->df_in_tar = xasprintf(".dockerfile.kiln-%.12s", spec->commit);
	}
	uv_poll_init(loop, &cx->poll, cx->rfd);
	if (pthread_create(&cx->thread, NULL, producer, cx) != 0) {
		close(cx->wfd);
		cx->wfd = -1;
		context_free(cx);
		return kiln_err_set(err, -EAGAIN, "cannot start the context thread");
	}
	cx->started = true;
	*ret_dockerfile = xstrdup(cx->df_in_tar);
	*ret = cx;
	return 0;
}

ssize_t context_read(struct context *cx, char *buf, size_t size, struct kiln_err *err)
{
	ssize_t n;

	for (;;) {
		n = read(cx->rfd, buf, size);
		if (n >= 0 || errno != EINTR)
			break;
	}
	if (n > 0)
		return n;
	if (n < 0 && errno == EAGAIN) {
		if (!cx->polling) {
			cx->polling = true;
			uv_poll_start(&cx->poll, UV_READABLE, poll_cb);
		}
		return -EAGAIN;
	}
	if (n < 0)
		return kiln_err_set(err, -errno, "reading the context: %s", strerror(errno));
	/* end of file: the thread stored its result before closing its end;
	 * it is joined in context_free */
	n = atomic_load_explicit(&cx->result, memory_order_acquire);
	if (n < 0)
		return kiln_err_set(err, (int)n, "%s", cx->msg);
	return 0;
}

static void release(struct context *cx)
{
	for (size_t i = 0; i < cx->nextra; i++) {
		/* a secret's value: gone from memory with the context */
		explicit_bzero((void *)cx->extra[i].data, cx->extra[i].len);
		free((void *)cx->extra[i].data);
		free((void *)cx->extra[i].name);
	}
	free(cx->extra);
	free(cx->repo_path);
	free(cx->commit);
	free(cx->dir);
	free(cx->dockerfile);
	free(cx->df_in_tar);
	free(cx);
}

static void join_work(uv_work_t *req)
{
	struct context *cx = container_of(req, struct context, join);

	pthread_join(cx->thread, NULL);
}

static void join_after(uv_work_t *req, int status)
{
	(void)status;
	release(container_of(req, struct context, join));
}

static void poll_closed(uv_handle_t *h)
{
	struct context *cx = container_of((uv_poll_t *)h, struct context, poll);

	/* the handle is gone, so the fd may go: the producer's next write
	 * fails with EPIPE and it ends */
	close(cx->rfd);
	cx->rfd = -1;
	if (cx->started)
		uv_queue_work(cx->loop, &cx->join, join_work, join_after);
	else
		release(cx);
}

struct context *context_free(struct context *cx)
{
	if (!cx)
		return NULL;
	atomic_store(&cx->stop, true);
	uv_close((uv_handle_t *)&cx->poll, poll_closed);
	return NULL;
}

uint64_t context_bytes(const struct context *cx)
{
	return atomic_load(&cx->bytes);
}

unsigned context_files(const struct context *cx)
{
	return atomic_load(&cx->files);
}
