/* packindex.h (fetch): a pack file received from a remote, written and indexed
 * with memory that stays small however many objects it holds.
 *
 * libgit2 1.5's indexer keeps two heap blocks and two map entries per object
 * and a 16 MiB cache of delta results (a constant in its source): for a
 * repository of 135,000 objects that was 40 MiB of heap, twice git's whole
 * peak, at a mirror's first fetch. This one keeps one flat 56-byte record per
 * object and, while resolving deltas, only the chain of bases above the
 * delta at hand (as git's index-pack does): each base is resolved once, its
 * deltas after it, depth first.
 *
 * It resolves no delta against objects outside the pack (a thin pack), which
 * a server sends only to a client that announced objects it has: kilnd uses
 * it for a mirror's first fetch, and libgit2's indexer for the others. */
#ifndef KILN_PACKINDEX_H
#define KILN_PACKINDEX_H

#include <git2.h>

#include "kiln/common.h"

/* The most one object (or a delta's result) may inflate to, and the most the
 * chain of bases held while resolving may hold at once. */
#define PACKINDEX_OBJECT_MAX ((uint64_t)1 << 31)
#define PACKINDEX_CHAIN_MAX  ((uint64_t)1 << 32)

struct packindex;

/* A new pack file under dir (a temporary name until packindex_commit). */
int packindex_new(const char *dir, struct packindex **ret, struct kiln_err *err);
/* The next bytes of the pack as they come, in pieces of any size; stats (may
 * be NULL) are libgit2's progress figures. */
int packindex_append(struct packindex *pi, const void *data, size_t len,
		     git_indexer_progress *stats, struct kiln_err *err);
/* The pack ended: checks it whole, resolves its deltas, writes its index and
 * gives both files their names (pack-<checksum>.pack and .idx), synced to
 * disk first. name (41 bytes) receives the checksum in hex. */
int packindex_commit(struct packindex *pi, git_indexer_progress *stats, char name[41],
		     struct kiln_err *err);
/* Removes the temporary files of a pack not committed. */
void packindex_free(struct packindex *pi);

/* Adds to repo's object database a backend whose git_odb_write_pack (what a
 * fetch calls) is this indexer, ahead of libgit2's. For a repository that
 * has no objects yet; the backend lives as long as this handle. Removes the
 * temporary files a killed run left in the repository's pack directory. */
int packindex_attach(git_repository *repo, struct kiln_err *err);

#endif
