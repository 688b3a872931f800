/* repack.h (fetch): folding a mirror's packs into one with libgit2's
 * packbuilder. Blocking: a worker thread, on a mirror no other thread writes
 * to meanwhile (the watch's one work in flight). */
#ifndef KILN_REPACK_H
#define KILN_REPACK_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/common.h"

struct repack_result {
	unsigned packs_before, packs_after; /* packs without a .keep file */
	size_t loose_removed;		    /* loose objects now in the new pack */
	size_t objects;			    /* objects in the new pack */
	uint64_t ms;			    /* wall time of the whole repack */
};

/* The packs in the mirror at path (a bare repository) that a repack would
 * replace: every pack-*.pack without a .keep beside it. A missing pack
 * directory counts 0. */
int repack_count(const char *path, unsigned *ret);
/* Writes every object of the mirror's object database into one new pack,
 * makes it durable, then removes the packs and loose objects it replaces.
 * A crash at any point leaves a usable mirror. Nothing to fold (at most one
 * pack, no loose object) is no error: packs_before == packs_after. A
 * git_repository opened before still reads every object (libgit2 looks at
 * the pack directory again when an object is missing) but keeps the removed
 * packs open, their disk space in use, until it is freed. */
int repack_mirror(const char *path, struct repack_result *ret, struct kiln_err *err);

#endif
