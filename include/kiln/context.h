/* context.h (build): a build context as a tar stream, made from a git tree (never a
 * working copy: builds of different commits run side by side).
 *
 * A thread of its own walks the context directory of the commit's tree,
 * leaves out what .dockerignore excludes (with the matcher change detection
 * uses, walking as the Docker CLI walks), and writes the tar into a pipe; the
 * loop reads the other end as the engine takes the data. The pipe is the
 * only buffer, so memory stays flat whatever the context's size (one file's
 * blob is the largest thing held). Symlinks go in as symlinks, modes are
 * kept, and a submodule inside the context is an error naming its path. The
 * Dockerfile and .dockerignore are always sent; a Dockerfile that lives
 * outside the context goes in under a name of its own. */
#ifndef KILN_CONTEXT_H
#define KILN_CONTEXT_H

#include <sys/types.h>
#include <uv.h>

#include "kiln/common.h"

/* A file that is not in the tree, appended to the tar (mode 0400): a build
 * secret for Podman, whose compat build takes secrets from the context. */
struct context_file {
	const char *name; /* top-level name in the tar */
	const unsigned char *data;
	size_t len;
};

struct context_spec {
	const char *repo_path;	/* a repository libgit2 can open */
	const char *commit;	/* full sha */
	const char *dir;	/* the context, repository-relative ("" is the root) */
	const char *dockerfile; /* repository-relative */
	const struct context_file *extra; /* copied; the copies are wiped when freed */
	size_t nextra;
};

struct context;
/* The tar has data to read again (after context_read said -EAGAIN). */
typedef void context_ready_cb(struct context *cx, void *arg);

/* Checks the spec (the context must be a directory of the commit's tree,
 * the Dockerfile a file in it) and starts the producer thread.
 * ret_dockerfile: the Dockerfile's name inside the tar (the caller frees it). */
int context_start(uv_loop_t *loop, const struct context_spec *spec, context_ready_cb *ready,
		  void *arg, struct context **ret, char **ret_dockerfile, struct kiln_err *err);
/* Up to size bytes of the tar: the count, 0 at its end, -EAGAIN when the
 * thread has not produced more yet (ready is called when it has), or the
 * producer's error (-ENOTSUP for a submodule...) with its text in err. */
ssize_t context_read(struct context *cx, char *buf, size_t size, struct kiln_err *err);
/* Stops the producer (if still running), joins it and frees everything.
 * The handles are closed on the loop; the memory goes in their callback. */
struct context *context_free(struct context *cx);
/* Bytes and entries written so far. */
uint64_t context_bytes(const struct context *cx);
unsigned context_files(const struct context *cx);

#endif
