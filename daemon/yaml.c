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

/* ---- the common subset, without libyaml's parser ----
 *
 * Reading a manifest with libyaml's parser was a quarter of a cold `kiln
 * changes` (every manifest of a tree is read). Most manifests are one block
 * mapping of one-line values, which are built here through libyaml's
 * document API into the same nodes its parser makes. Anything else (nesting,
 * block lists, escapes, multi-line scalars, spaces or ':' in plain scalars,
 * tabs, non-ASCII, directives, anchors, tags) is -ENOTSUP and goes to the
 * parser. The nodes carry no positions: whoever reports a problem in such a
 * document loads it again with ydoc_load. tests/fuzz/fuzz_manifest.c
 * checks that every document taken here is the one the parser makes. */

#define SIMPLE_LINE_MAX 512

struct simple {
	yaml_document_t *doc;
	const char *p, *end; /* the rest of the current line */
};

static bool simple_plain_start(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == '/';
}

static bool simple_plain_char(char ch)
{
	return simple_plain_start(ch) || ch == '-' || ch == '+' || ch == '=' || ch == '~';
}

static bool simple_key_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_';
}

static int simple_add(struct simple *s, const char *v, size_t n, yaml_scalar_style_t style)
{
	int id = yaml_document_add_scalar(s->doc, NULL, (const yaml_char_t *)v, (int)n, style);
	return id ? id : -ENOMEM;
}

/* A quoted scalar without escapes (no backslash, no doubled quote). */
static int simple_quoted(struct simple *s)
{
	char q = *s->p;
	const char *start = s->p + 1, *z = memchr(start, q, (size_t)(s->end - start));

	if (z == NULL || (q == '"' && memchr(start, '\\', (size_t)(z - start)) != NULL) ||
	    (z + 1 < s->end && z[1] == q))
		return -ENOTSUP;
	s->p = z + 1;
	return simple_add(s, start, (size_t)(z - start),
			  q == '"' ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
				   : YAML_SINGLE_QUOTED_SCALAR_STYLE);
}

/* A plain scalar; in a flow collection no ':' (older libyaml refuses it). */
static int simple_plain(struct simple *s, bool flow)
{
	const char *start = s->p;

	if (s->p == s->end || !simple_plain_start(*s->p))
		return -ENOTSUP;
	while (s->p < s->end &&
	       (simple_plain_char(*s->p) ||
		(!flow && *s->p == ':' && s->p + 1 < s->end && simple_plain_char(s->p[1]))))
		s->p++;
	return simple_add(s, start, (size_t)(s->p - start), YAML_PLAIN_SCALAR_STYLE);
}

static int simple_scalar(struct simple *s, bool flow)
{
	if (s->p < s->end && (*s->p == '"' || *s->p == '\''))
		return simple_quoted(s);
	return simple_plain(s, flow);
}

static void simple_spaces(struct simple *s)
{
	while (s->p < s->end && *s->p == ' ')
		s->p++;
}

/* [a, "b"] or {k: v, k2: v2}, on one line, no trailing comma. */
static int simple_flow(struct simple *s)
{
	bool map = *s->p == '{';
	char close = map ? '}' : ']';
	int id = map ? yaml_document_add_mapping(s->doc, NULL, YAML_FLOW_MAPPING_STYLE)
		     : yaml_document_add_sequence(s->doc, NULL, YAML_FLOW_SEQUENCE_STYLE);

	if (id == 0)
		return -ENOMEM;
	s->p++;
	simple_spaces(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		return id;
	}
	for (;;) {
		int k = map ? simple_plain(s, true) : simple_scalar(s, true), v = 0;

		if (k < 0)
			return k;
		if (map) {
			if (s->end - s->p < 2 || s->p[0] != ':' || s->p[1] != ' ')
				return -ENOTSUP;
			s->p += 2;
			simple_spaces(s);
			if ((v = simple_scalar(s, true)) < 0)
				return v;
		}
		if (map ? !yaml_document_append_mapping_pair(s->doc, id, k, v)
			: !yaml_document_append_sequence_item(s->doc, id, k))
			return -ENOMEM;
		simple_spaces(s);
		if (s->p < s->end && *s->p == close) {
			s->p++;
			return id;
		}
		if (s->p == s->end || *s->p != ',')
			return -ENOTSUP;
		s->p++;
		simple_spaces(s);
	}
}

/* "key: value" [ " # comment"] */
static int simple_line(struct simple *s, int root)
{
	const char *key = s->p;
	int k, v;

	while (s->p < s->end && simple_key_char(*s->p))
		s->p++;
	if (s->p == key || s->end - s->p < 3 || s->p[0] != ':' || s->p[1] != ' ')
		return -ENOTSUP;
	if ((k = simple_add(s, key, (size_t)(s->p - key), YAML_PLAIN_SCALAR_STYLE)) < 0)
		return k;
	s->p += 2;
	simple_spaces(s);
	if (s->p < s->end && (*s->p == '[' || *s->p == '{'))
		v = simple_flow(s);
	else
		v = simple_scalar(s, false);
	if (v < 0)
		return v;
	if (s->p < s->end && *s->p != ' ')
		return -ENOTSUP;
	simple_spaces(s);
	if (s->p < s->end && *s->p != '#')
		return -ENOTSUP;
	return yaml_document_append_mapping_pair(s->doc, root, k, v) ? 0 : -ENOMEM;
}

int ydoc_load_simple(struct ydoc *y, const char *data, size_t len, const char *path)
{
	struct simple s = {.doc = &y->doc};
	const char *p = data, *end = data + len;
	int root, r = 0;
	bool any = false;

	memset(y, 0, sizeof(*y));
	y->path = path;
	for (size_t i = 0; i < len; i++) {
		if ((data[i] < 0x20 || data[i] > 0x7e) && data[i] != '\n')
			return -ENOTSUP;
	}
	if (!yaml_document_initialize(&y->doc, NULL, NULL, NULL, 1, 1))
		return -ENOMEM;
	y->loaded = true;
	root = yaml_document_add_mapping(&y->doc, NULL, YAML_BLOCK_MAPPING_STYLE);
	if (root == 0)
		r = -ENOMEM;
	while (r == 0 && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *q = p;

		s.p = p;
		s.end = nl ? nl : end;
		p = nl ? nl + 1 : end;
		while (q < s.end && *q == ' ')
			q++;
		if (s.end - s.p > SIMPLE_LINE_MAX)
			r = -ENOTSUP;
		else if (q == s.end || *q == '#')
			continue; /* blank or a comment */
		else if (q != s.p)
			r = -ENOTSUP; /* indented: nesting */
		else if ((r = simple_line(&s, root)) == 0)
			any = true;
	}
	if (r == 0 && !any)
		r = -ENOTSUP; /* an empty document: the parser's message */
	if (r < 0)
		ydoc_done(y);
	return r;
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

static bool same_node(struct ydoc *a, struct ydoc *b, const yaml_node_t *x, const yaml_node_t *y,
		      int depth)
{
	if (x == NULL || y == NULL || depth > 64)
		return x == y;
	if (x->type != y->type || strcmp((const char *)x->tag, (const char *)y->tag) != 0)
		return false;
	switch (x->type) {
	case YAML_SCALAR_NODE:
		return x->data.scalar.style == y->data.scalar.style &&
		       x->data.scalar.length == y->data.scalar.length &&
		       memcmp(x->data.scalar.value, y->data.scalar.value, x->data.scalar.length) ==
			   0;
	case YAML_SEQUENCE_NODE: {
		const yaml_node_item_t *i = x->data.sequence.items.start,
				       *j = y->data.sequence.items.start;
		if (x->data.sequence.style != y->data.sequence.style ||
		    x->data.sequence.items.top - i != y->data.sequence.items.top - j)
			return false;
		for (; i < x->data.sequence.items.top; i++, j++) {
			if (!same_node(a, b, ydoc_node(a, *i), ydoc_node(b, *j), depth + 1))
				return false;
		}
		return true;
	}
	case YAML_MAPPING_NODE: {
		const yaml_node_pair_t *i = x->data.mapping.pairs.start,
				       *j = y->data.mapping.pairs.start;
		if (x->data.mapping.style != y->data.mapping.style ||
		    x->data.mapping.pairs.top - i != y->data.mapping.pairs.top - j)
			return false;
		for (; i < x->data.mapping.pairs.top; i++, j++) {
			if (!same_node(a, b, ydoc_node(a, i->key), ydoc_node(b, j->key),
				       depth + 1) ||
			    !same_node(a, b, ydoc_node(a, i->value), ydoc_node(b, j->value),
				       depth + 1))
				return false;
		}
		return true;
	}
	default:
		return false;
	}
}

bool ydoc_same(struct ydoc *a, struct ydoc *b)
{
	return same_node(a, b, ydoc_root(a), ydoc_root(b), 0);
}
