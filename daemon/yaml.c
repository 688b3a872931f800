/* yaml.c (base): loading YAML with libyaml's document API and the shared type checks. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/yaml.h"

static bool has_alias(yaml_document_t *doc)
{
	/* libyaml resolves aliases into shared nodes; a shared node shows up as
	 * the child of more than one parent. Configuration and manifests have no
	 * use for them and they make cycles possible, so refuse them. */
	int n = (int)(doc->nodes.top - doc->nodes.start);
	unsigned char *seen = xcalloc((size_t)n + 1, 1);
	bool dup = false;

	for (yaml_node_t *nd = doc->nodes.start; nd < doc->nodes.top && !dup; nd++) {
		if (nd->type == YAML_SEQUENCE_NODE) {
			for (yaml_node_item_t *it = nd->data.sequence.items.start;
			     it < nd->data.sequence.items.top && !dup; it++)
				dup = seen[*it]++ != 0;
		} else if (nd->type == YAML_MAPPING_NODE) {
			for (yaml_node_pair_t *p = nd->data.mapping.pairs.start;
			     p < nd->data.mapping.pairs.top && !dup; p++)
				dup = seen[p->key]++ != 0 || seen[p->value]++ != 0;
		}
	}
	free(seen);
	return dup;
}

int ydoc_load(struct ydoc *y, const char *data, size_t len, const char *path,
	      struct kiln_diags *diags)
{
	yaml_parser_t parser;
	yaml_document_t extra;
	int r = 0;

	memset(y, 0, sizeof(*y));
	y->path = path;
	if (!yaml_parser_initialize(&parser)) {
		kiln_diags_add(diags, path, 0, 0, "cannot initialise the YAML parser");
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	if (!yaml_parser_load(&parser, &y->doc))
		goto syntax;
	y->loaded = true;
	if (ydoc_root(y) != NULL) {
		if (!yaml_parser_load(&parser, &extra))
			goto syntax;
		if (yaml_document_get_root_node(&extra) != NULL) {
			kiln_diags_add(diags, path, (unsigned)extra.start_mark.line + 1,
				       (unsigned)extra.start_mark.column + 1,
				       "more than one YAML document; a file holds one");
			r = -EINVAL;
		}
		yaml_document_delete(&extra);
		if (r == 0 && has_alias(&y->doc)) {
			kiln_diags_add(diags, path, 0, 0, "YAML aliases (*name) are not supported");
			r = -EINVAL;
		}
	}
	yaml_parser_delete(&parser);
	return r;
syntax:
	kiln_diags_add(diags, path, (unsigned)parser.problem_mark.line + 1,
		       (unsigned)parser.problem_mark.column + 1, "YAML syntax error: %s%s%s",
		       parser.problem ? parser.problem : "unknown problem",
		       parser.context ? " " : "", parser.context ? parser.context : "");
	yaml_parser_delete(&parser);
	return -EINVAL;
}

void ydoc_done(struct ydoc *y)
{
	if (y->loaded)
		yaml_document_delete(&y->doc);
	y->loaded = false;
}

yaml_node_t *ydoc_root(struct ydoc *y)
{
	return y->loaded ? yaml_document_get_root_node(&y->doc) : NULL;
}

yaml_node_t *ydoc_node(struct ydoc *y, int id)
{
	return yaml_document_get_node(&y->doc, id);
}

void ydoc_diag(struct ydoc *y, struct kiln_diags *d, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	kiln_diags_add(d, y->path, n ? (unsigned)n->start_mark.line + 1 : 0,
		       n ? (unsigned)n->start_mark.column + 1 : 0, "%s", msg);
	free(msg);
}

bool ydoc_is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = (const char *)n->data.scalar.value;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

const char *ydoc_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_SCALAR_NODE:
		return ydoc_is_null(n) ? "null" : "a scalar";
	default:
		return "empty";
	}
}

const char *ydoc_scalar(struct ydoc *y, struct kiln_diags *d, const yaml_node_t *n, const char *key,
			const char *what)
{
	if (n->type != YAML_SCALAR_NODE || ydoc_is_null(n)) {
		ydoc_diag(y, d, n, "'%s' must be %s, not %s", key, what, ydoc_kind(n));
		return NULL;
	}
	if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
		ydoc_diag(y, d, n, "'%s' contains a NUL character", key);
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

bool ydoc_pair_is_dup(struct ydoc *y, const yaml_node_t *map, const yaml_node_pair_t *pair)
{
	const yaml_node_t *k = ydoc_node(y, pair->key);

	for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
		const yaml_node_t *o = ydoc_node(y, p->key);
		if (o->type == YAML_SCALAR_NODE && o->data.scalar.length == k->data.scalar.length &&
		    memcmp(o->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
			return true;
	}
	return false;
}

bool ydoc_mapping(struct ydoc *y, struct kiln_diags *d, const yaml_node_t *n, const char *key)
{
	bool ok = true;

	if (n->type != YAML_MAPPING_NODE) {
		ydoc_diag(y, d, n, "'%s' must be a mapping, not %s", key, ydoc_kind(n));
		return false;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ydoc_node(y, p->key);
		if (k->type != YAML_SCALAR_NODE) {
			ydoc_diag(y, d, k, "a key in '%s' must be a scalar, not %s", key,
				  ydoc_kind(k));
			ok = false;
		} else if (ydoc_pair_is_dup(y, n, p)) {
			ydoc_diag(y, d, k, "duplicate key '%s' in '%s'",
				  (const char *)k->data.scalar.value, key);
			ok = false;
		}
	}
	return ok;
}
