/* catalog.h: every image folder of one tree, with what change detection needs
 * to know of it (its manifest's fields, context, Dockerfile and FROM lines).
 * A catalog follows a repository from tree to tree by diffing the tree it
 * describes against the new one, so only changed manifests and Dockerfiles
 * are read again. The daemon keeps one in memory; the command line keeps one
 * in a file under the git directory (catalog_read/catalog_write). */
#ifndef KILN_CATALOG_H
#define KILN_CATALOG_H

#include <git2.h>

#include "kiln/common.h"

/* All strings live in `block`; the image owns it only when `owned`. */
struct catalog_image {
	const char *path; /* folder; "" is the root */
	git_oid manifest_id;
	bool valid;			  /* the manifest parsed without error */
	bool has_dockerfile;		  /* the Dockerfile exists in the tree as a file */
	const char *context, *dockerfile; /* for invalid manifests: the defaults */
	git_oid dockerfile_id;
	const char *name, *version, *registry; /* valid only */
	const char *tags; /* ntags strings, each NUL-terminated, back to back */
	unsigned ntags;
	const char *produced; /* "<registry>/<name>:<version>" then one per tag */
	unsigned nproduced;
	const char *froms; /* nfroms records: 4-byte line, then the ref string */
	unsigned nfroms;
	char *block;
	size_t block_len;
	bool owned;
};

struct catalog {
	char *manifest_name;
	bool has_tree;
	git_oid tree_id;
	struct catalog_image *v; /* sorted by path (strcmp) */
	size_t n, cap;
	char *file; /* contents of the cache file the unowned images point into */
	bool dirty; /* changed since read */
};

void catalog_init(struct catalog *c, const char *manifest_name);
void catalog_done(struct catalog *c);

/* Makes c describe tree. Reads only what differs from the tree it described
 * (everything the first time, or when that tree is gone). */
int catalog_sync(struct catalog *c, git_repository *repo, git_tree *tree, struct kiln_err *err);

/* The cache file. catalog_read returns -ENOENT (absent), -EBADMSG (corrupt,
 * truncated, another version or manifest name: to be rebuilt, never trusted).
 * catalog_write replaces the file atomically (temporary file and rename), so
 * concurrent writers leave one whole file. */
int catalog_read(struct catalog *c, const char *file, struct kiln_err *err);
int catalog_write(const struct catalog *c, const char *file, struct kiln_err *err);

const struct catalog_image *catalog_find(const struct catalog *c, const char *path);

/* Walking the packed lists: the string after s. */
static inline const char *catalog_next(const char *s)
{
	while (*s)
		s++;
	return s + 1;
}
/* FROM record at p: its line, its ref, and the record after it. */
unsigned catalog_from_line(const char *p);
static inline const char *catalog_from_ref(const char *p)
{
	return p + 4;
}
static inline const char *catalog_from_next(const char *p)
{
	return catalog_next(p + 4);
}

#endif
