/* yaml.h (base): a loaded YAML document (libyaml's node graph, which keeps each
 * node's position) and the type checks that config and manifest share. Every
 * check reports into a kiln_diags as "path:line:col: message" and goes on, so
 * one run names every error in a file. */
#ifndef KILN_YAML_H
#define KILN_YAML_H

#include <stdbool.h>
#include <yaml.h>

#include "kiln/err.h"

struct ydoc {
	yaml_document_t doc;
	bool loaded;
	const char *path; /* borrowed, for messages */
};

/* Parses data. A syntax error, a second document or an alias is a diag and
 * -EINVAL. An empty document loads with a NULL root. */
int ydoc_load(struct ydoc *y, const char *data, size_t len, const char *path,
	      struct kiln_diags *diags);
/* The same document as ydoc_load makes, without libyaml's parser, for a
 * mapping of one-line values (see yaml.c for the subset); -ENOTSUP for
 * anything else, which ydoc_load must read. Its nodes have no positions:
 * report problems from a ydoc_load of the same text. */
int ydoc_load_simple(struct ydoc *y, const char *data, size_t len, const char *path);
void ydoc_done(struct ydoc *y);
/* The same nodes (kinds, tags, styles, values), positions aside: tests
 * compare ydoc_load_simple with ydoc_load by it. */
bool ydoc_same(struct ydoc *a, struct ydoc *b);
yaml_node_t *ydoc_root(struct ydoc *y);
yaml_node_t *ydoc_node(struct ydoc *y, int id);

void ydoc_diag(struct ydoc *y, struct kiln_diags *d, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "a mapping", "a list", "null", "a string". */
const char *ydoc_kind(const yaml_node_t *n);
bool ydoc_is_null(const yaml_node_t *n);
/* The scalar's text (NUL-terminated in libyaml's buffer) or NULL when n is not a
 * non-null scalar, in which case a diag "KEY must be WHAT, not KIND" is added. */
const char *ydoc_scalar(struct ydoc *y, struct kiln_diags *d, const yaml_node_t *n, const char *key,
			const char *what);
/* Checks n is a mapping whose keys are scalars and unique; adds diags and
 * returns false otherwise (duplicates are reported, the first wins). */
bool ydoc_mapping(struct ydoc *y, struct kiln_diags *d, const yaml_node_t *n, const char *key);
/* For a checked mapping: true when pair i's key repeats an earlier key. */
bool ydoc_pair_is_dup(struct ydoc *y, const yaml_node_t *map, const yaml_node_pair_t *pair);

#define YDOC_PAIRS(n) (n)->data.mapping.pairs.start, (n)->data.mapping.pairs.top
#define YDOC_ITEMS(n) (n)->data.sequence.items.start, (n)->data.sequence.items.top

#endif
