/* catalog.h (plan): every image folder of one tree, with what change detection needs
 * to know of it: its manifest's fields, its context, its Dockerfile and the
 * references its FROM lines name.
 *
 * A catalog is one immutable snapshot: image records sorted by path plus hash
 * indexes by context, Dockerfile path, FROM reference and produced
 * reference, so a query costs the size of its answer, not of the repository.
 * The snapshot is also the cache file's format. The command line and kilnd
 * read it lazily: only the 4 KiB blocks a run touches are read, each checked against
 * its checksum before use, so a small change costs a few blocks. Following a new tree
 * diffs the described tree against it, rereads only the manifests and
 * Dockerfiles that changed, and writes a new snapshot. */
#ifndef KILN_CATALOG_H
#define KILN_CATALOG_H

#include <git2.h>

#include "kiln/common.h"

/* An unpacked record; every pointer points into the snapshot. */
struct catalog_image {
	uint32_t index;	  /* position in path order */
	const char *path; /* folder; "" is the root */
	git_oid manifest_id;
	bool valid;			  /* the manifest parsed without error */
	bool has_dockerfile;		  /* the Dockerfile exists in the tree as a file */
	const char *context, *dockerfile; /* for invalid manifests: the defaults */
	git_oid dockerfile_id;
	const char *name, *version, *registry; /* valid only, else NULL */
	const char *tags; /* ntags strings, each NUL-terminated, back to back */
	unsigned ntags;
	const char *produced; /* "<registry>/<name>:<version>" then one per tag */
	unsigned nproduced;
	const char *froms; /* nfroms records: 4-byte line, then the ref string */
	unsigned nfroms;
};

enum catalog_index {
	CATALOG_BY_CONTEXT,    /* context directory -> images */
	CATALOG_BY_DOCKERFILE, /* Dockerfile path -> images */
	CATALOG_BY_FROM,       /* FROM reference -> images that build from it */
	CATALOG_BY_PRODUCED,   /* image reference -> images that produce it */
	CATALOG_NINDEX
};

struct catalog {
	char *manifest_name;
	char *cache_file; /* NULL: none */
	bool has_tree;	  /* false: describes nothing yet */
	git_oid tree_id;
	char *snap; /* the snapshot; owned. Blocks not yet read are untouched memory */
	size_t snap_len;
	uint32_t n;
	bool dirty;	/* differs from the cache file */
	uint32_t nread; /* manifests the last catalog_sync read from the tree */
	/* Lazy reading of the cache file: */
	int fd;		       /* -1: the whole snapshot is in memory */
	unsigned char *loaded; /* per block: read and verified */
	size_t nblocks, data_end;
	bool broken; /* a block failed its checksum: results are not to be trusted */
	/* Set by a one-shot user without a cache file (`kiln changes
	 * --no-cache`) before its catalog_sync: a sync from nothing then reads
	 * no Dockerfile, and every record has no FROM until catalog_read_froms.
	 * Most short ranges change no image, and then no FROM is ever needed. */
	bool defer_froms;
	struct catalog_deferred *deferred; /* the Dockerfiles not read yet */
	size_t ndeferred;
	struct catalog_froms *froms; /* what catalog_read_froms found in them */
};

/* cache_file may be NULL. With one, the first catalog_sync reads it (a
 * missing, damaged or foreign file is rebuilt, never trusted) and
 * catalog_save writes it back when something changed. */
void catalog_init(struct catalog *c, const char *manifest_name, const char *cache_file);
void catalog_done(struct catalog *c);
/* Forgets everything and removes the cache file, keeping the manifest name
 * and the cache path: the next catalog_sync reads the tree from scratch. */
void catalog_reset(struct catalog *c);

/* Makes c describe tree, reading only what differs from the tree it
 * described (everything the first time, or when that tree is gone). */
int catalog_sync(struct catalog *c, git_repository *repo, git_tree *tree, struct kiln_err *err);
/* Reads the Dockerfiles a deferring sync left unread; from then on the
 * records have their FROMs and CATALOG_BY_FROM finds them (kept beside the
 * snapshot, which stays as it is). A no-op when nothing is deferred or they
 * were read. A deferred catalog never follows a new tree: catalog_sync
 * starts it over. */
int catalog_read_froms(struct catalog *c, git_repository *repo, struct kiln_err *err);
/* Replaces the cache file atomically (temporary file and rename), so
 * concurrent writers leave one whole file. A no-op when nothing changed.
 * A snapshot mapped from the file that only followed a new tree (no record
 * changed) has just its header rewritten in place, if the file is still the
 * one mapped. */
int catalog_save(struct catalog *c, struct kiln_err *err);
/* Saves the snapshot (as catalog_save) and frees it, keeping the manifest
 * name and the cache path: the next catalog_sync maps the file again. For a
 * daemon that keeps a catalog per repository between rare plans, so that an
 * idle one costs no memory. Without a cache file, or when the file cannot be
 * written (the error is returned), the snapshot stays in memory. */
int catalog_release(struct catalog *c, struct kiln_err *err);

/* The queries read blocks of the cache file on demand. When a block is
 * damaged they answer -EBADMSG (or nothing) and set c->broken: the caller
 * must then drop the catalog and start again without the cache. */

/* Record i (< c->n). -EBADMSG if the record is damaged. */
int catalog_get(struct catalog *c, uint32_t i, struct catalog_image *ret);
/* The image whose folder is path: its index, -ENOENT, or -EBADMSG. */
int catalog_find(struct catalog *c, const char *path, size_t len, uint32_t *ret_index);
/* The images under key in an index, in path order: *ret points at count
 * unaligned-safe little-endian u32 indexes inside the snapshot. */
uint32_t catalog_lookup(struct catalog *c, enum catalog_index which, const char *key, size_t len,
			const unsigned char **ret);
static inline uint32_t catalog_u32(const unsigned char *p, uint32_t i)
{
	p += 4 * (size_t)i;
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Walking the packed lists: the string after s. */
static inline const char *catalog_next(const char *s)
{
	while (*s)
		s++;
	return s + 1;
}
/* FROM record at p: its line, its ref, and the record after it. */
static inline unsigned catalog_from_line(const char *p)
{
	return catalog_u32((const unsigned char *)p, 0);
}
static inline const char *catalog_from_ref(const char *p)
{
	return p + 4;
}
static inline const char *catalog_from_next(const char *p)
{
	return catalog_next(p + 4);
}

#endif
