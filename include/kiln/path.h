/* path.h (base): repository-relative paths. Inside kiln the repository root is ""
 * and no path has a leading or trailing slash; users see the root as ".". */
#ifndef KILN_PATH_H
#define KILN_PATH_H

#include <stdbool.h>
#include <stddef.h>

/* Joins dir and rel and removes "." and ".." steps. -EINVAL when rel is
 * absolute or empty, -EXDEV when the result would leave the repository.
 * On success *ret is a new string the caller frees. */
int path_resolve(const char *dir, const char *rel, char **ret);
/* "." for the root, else p. */
const char *path_display(const char *p);
/* When p lies inside dir (dir "" holds everything), the part of p below it. */
const char *path_below(const char *p, const char *dir);
/* Length of the parent directory of p ("" for a top-level name). */
size_t path_parent_len(const char *p, size_t len);

#endif
