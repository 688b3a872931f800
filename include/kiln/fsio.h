/* fsio.h (base): the two file operations that every module making a file
 * durable needs (the state's snapshot, packs and their indexes, catalogs),
 * with the messages they fail with. */
#ifndef KILN_FSIO_H
#define KILN_FSIO_H

#include <stddef.h>

#include "kiln/common.h"

/* Writes all n bytes, going on after short writes and EINTR; on failure
 * "cannot write 'PATH': reason" (path names fd in the message only). */
int fsio_write_all(int fd, const void *p, size_t n, const char *path, struct kiln_err *err);
/* Opens path read-only (with `flags` added, e.g. O_DIRECTORY) and fsyncs it:
 * a file's data, or a directory's entries after a rename into it. */
int fsio_sync_path(const char *path, int flags, struct kiln_err *err);

#endif
