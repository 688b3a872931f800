/* dockerignore.h (plan): a compiled .dockerignore, matched the way the Docker CLI
 * applies it while it walks a build context (moby's patternmatcher with
 * MatchesUsingParentResults, and the rule for entering excluded directories). */
#ifndef KILN_DOCKERIGNORE_H
#define KILN_DOCKERIGNORE_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln/common.h"

struct dockerignore;

/* Compiles the file's text. A bad pattern ("!" alone, an unclosed "[", a
 * trailing "\") is -EINVAL with the line in err. *ret is owned by the caller. */
int dockerignore_parse(const char *data, size_t len, struct dockerignore **ret,
		       struct kiln_err *err);
struct dockerignore *dockerignore_free(struct dockerignore *di);
size_t dockerignore_npatterns(const struct dockerignore *di);

/* Whether the file or directory at `path` (slash-separated, relative to the
 * context, no leading "./") is left out of the context, walking from the top
 * exactly as the CLI does: a directory that is excluded hides everything
 * below it unless an exception names something inside it. */
bool dockerignore_excluded(const struct dockerignore *di, const char *path);

/* The walk's two steps, for callers that walk a tree themselves.
 * parent: the per-pattern results of the parent directory, or NULL at the top
 * level; ret_matched receives this path's results (npatterns entries). */
bool dockerignore_match(const struct dockerignore *di, const char *path, const bool *parent,
			bool *ret_matched);
/* For an excluded directory: whether the walk must still enter it. */
bool dockerignore_enter_dir(const struct dockerignore *di, const char *dir);

#endif
