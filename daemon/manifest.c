/* manifest.c (input): manifest.yaml -> struct manifest, with every error located.
 * The grammars follow Docker's reference rules (distribution/reference). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/manifest.h"
#include "kiln/path.h"
#include "kiln/yaml.h"

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN  128

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* over s[0..n). */
static bool valid_component(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	while (i < n) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		if (s[i] == '.' || s[i] == '_') {
			size_t run = 1;
			if (s[i] == '_' && i + 1 < n && s[i + 1] == '_')
				run = 2;
			i += run;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return false;
		}
		if (i >= n || !is_lower_alnum(s[i]))
			return false;
	}
	return true;
}

static bool valid_path(const char *s)
{
	const char *p = s;

	if (*s == '\0')
		return false;
	for (;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (!valid_component(p, n))
			return false;
		if (e == NULL)
			return true;
		p = e + 1;
	}
}

bool manifest_valid_name(const char *s)
{
	return strlen(s) <= NAME_MAX_LEN && valid_path(s);
}

bool manifest_valid_tag(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > TAG_MAX_LEN || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++) {
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return false;
	}
	return true;
}

static bool valid_host(const char *s, size_t n)
{
	size_t i = 0;

	if (n >= 2 && s[0] == '[') { /* IPv6 literal */
		if (s[n - 1] != ']')
			return false;
		for (i = 1; i + 1 < n; i++) {
			if (!(isxdigit((unsigned char)s[i]) || s[i] == ':' || s[i] == '.'))
				return false;
		}
		return n > 2;
	}
	/* Dot-separated labels of letters, digits and inner hyphens. */
	while (i < n) {
		size_t start = i;
		while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '-'))
			i++;
		if (i == start || s[start] == '-' || s[i - 1] == '-')
			return false;
		if (i < n) {
			if (s[i] != '.' || i + 1 == n)
				return false;
			i++;
		}
	}
	return n > 0;
}

bool manifest_valid_registry(const char *s)
{
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	const char *colon = NULL;

	/* The port colon is the last one, outside an IPv6 literal's brackets. */
	for (size_t i = hlen; i > 0; i--) {
		if (s[i - 1] == ']')
			break;
		if (s[i - 1] == ':') {
			colon = s + i - 1;
			break;
		}
	}
	if (colon) {
		size_t plen = hlen - (size_t)(colon - s) - 1;
		long port = 0;
		if (plen == 0 || plen > 5)
			return false;
		for (size_t i = 0; i < plen; i++) {
			if (!isdigit((unsigned char)colon[1 + i]))
				return false;
			port = port * 10 + (colon[1 + i] - '0');
		}
		if (port < 1 || port > 65535)
			return false;
		hlen = (size_t)(colon - s);
	}
	if (!valid_host(s, hlen))
		return false;
	return slash == NULL || valid_path(slash + 1);
}

static bool valid_platform(const char *s)
{
	int parts = 1;

	if (*s == '\0' || *s == '/')
		return false;
	for (const char *p = s; *p; p++) {
		if (*p == '/') {
			if (p[1] == '\0' || p[1] == '/')
				return false;
			parts++;
		} else if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.')) {
			return false;
		}
	}
	return parts <= 3;
}

/* The names docker_builder_parse takes; not called from here, since
 * kiln-changes.so, which parses manifests, must not load the engine client. */
bool manifest_valid_builder(const char *s)
{
	return strcmp(s, "auto") == 0 || strcmp(s, "buildkit") == 0 || strcmp(s, "classic") == 0;
}

bool manifest_valid_network(const char *s)
{
	return strcmp(s, "default") == 0 || strcmp(s, "none") == 0 || strcmp(s, "host") == 0;
}

static bool valid_stage(const char *s)
{
	if (!isalpha((unsigned char)s[0]))
		return false;
	for (const char *p = s; *p; p++) {
		if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.'))
			return false;
	}
	return true;
}

struct mctx {
	struct ydoc *y;
	struct kiln_diags *d;
	const char *dir;
	struct manifest *m;
	int nerr; /* diags added by this parse */
};

static void bad(struct mctx *c, const yaml_node_t *n, const char *fmt, const char *a, const char *b)
{
	ydoc_diag(c->y, c->d, n, fmt, a, b);
	c->nerr++;
}

static char *get_string(struct mctx *c, const yaml_node_t *n, const char *key, const char *what)
{
	size_t before = c->d->n;
	const char *s = ydoc_scalar(c->y, c->d, n, key, what);

	if (s == NULL) {
		c->nerr += (int)(c->d->n - before);
		return NULL;
	}
	return xstrdup(s);
}

static void take_checked(struct mctx *c, const yaml_node_t *n, const char *key, char **dst,
			 bool (*valid)(const char *), const char *what)
{
	char *s = get_string(c, n, key, "a string");

	if (s == NULL)
		return;
	if (valid && !valid(s)) {
		bad(c, n, "'%s' is not %s", key, what);
		free(s);
		return;
	}
	*dst = s;
}

static void take_path(struct mctx *c, const yaml_node_t *n, const char *key, char **dst)
{
	char *s = get_string(c, n, key, "a relative path"), *out = NULL;
	int r;

	if (s == NULL)
		return;
	r = path_resolve(c->dir, s, &out);
	if (r == -EXDEV)
		bad(c, n, "'%s' (%s) leaves the repository", key, s);
	else if (r < 0)
		bad(c, n, "'%s' (%s) must be a relative path", key, s);
	else
		*dst = out;
	free(s);
}

/* A list of strings each checked by valid: "tag 'x' is not a valid tag (rule)". */
static void take_list(struct mctx *c, const yaml_node_t *n, const char *key, const char *what,
		      bool (*valid)(const char *), const char *rule, char ***ret, size_t *ret_n)
{
	if (n->type != YAML_SEQUENCE_NODE) {
		bad(c, n, "'%s' must be a list, not %s", key, ydoc_kind(n));
		return;
	}
	*ret = xcalloc((size_t)(n->data.sequence.items.top - n->data.sequence.items.start) + 1,
		       sizeof(char *));
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		yaml_node_t *t = ydoc_node(c->y, *it);
		char *s = get_string(c, t, key, "a string");
		if (s == NULL)
			continue;
		if (!valid(s)) {
			char *why = xasprintf("%s '%s' is not a valid %s", what, s, what);
			bad(c, t, "%s (%s)", why, rule);
			free(why);
			free(s);
			continue;
		}
		(*ret)[(*ret_n)++] = s;
	}
}

bool manifest_valid_secret_id(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");

	return n > 0 && n <= 128 && s[n] == '\0';
}

static void take_kvs(struct mctx *c, const yaml_node_t *n, const char *key, struct kv **ret,
		     size_t *ret_n)
{
	size_t cap;

	if (!ydoc_mapping(c->y, c->d, n, key)) {
		c->nerr++;
		return;
	}
	cap = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	*ret = xcalloc(cap, sizeof(struct kv));
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ydoc_node(c->y, p->key), *v = ydoc_node(c->y, p->value);
		const char *ks = (const char *)k->data.scalar.value;
		char *vs;

		if (ydoc_pair_is_dup(c->y, n, p))
			continue;
		if (ks[0] == '\0' || strchr(ks, '=') != NULL) {
			bad(c, k, "'%s' has an invalid key '%s'", key, ks);
			continue;
		}
		vs = get_string(c, v, ks, "a string");
		if (vs == NULL)
			continue;
		(*ret)[*ret_n].key = xstrdup(ks);
		(*ret)[*ret_n].value = vs;
		(*ret_n)++;
	}
}

static void take_test(struct mctx *c, const yaml_node_t *n)
{
	struct manifest *m = c->m;
	const yaml_node_t *cmd = NULL;

	if (!ydoc_mapping(c->y, c->d, n, "test")) {
		c->nerr++;
		return;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ydoc_node(c->y, p->key);
		if (strcmp((const char *)k->data.scalar.value, "command") == 0)
			cmd = ydoc_node(c->y, p->value);
		else
			bad(c, k, "unknown key '%s' in '%s' (known: command)",
			    (const char *)k->data.scalar.value, "test");
	}
	if (cmd == NULL) {
		bad(c, n, "'%s' needs '%s', a list of strings", "test", "command");
		return;
	}
	if (cmd->type != YAML_SEQUENCE_NODE ||
	    cmd->data.sequence.items.top == cmd->data.sequence.items.start) {
		bad(c, cmd, "'%s' must be a non-empty list of strings, not %s", "test.command",
		    cmd->type == YAML_SEQUENCE_NODE ? "an empty list" : ydoc_kind(cmd));
		return;
	}
	m->test_command =
	    xcalloc((size_t)(cmd->data.sequence.items.top - cmd->data.sequence.items.start),
		    sizeof(char *));
	for (yaml_node_item_t *it = cmd->data.sequence.items.start;
	     it < cmd->data.sequence.items.top; it++) {
		char *s = get_string(c, ydoc_node(c->y, *it), "test.command", "a string");
		if (s)
			m->test_command[m->ntest_command++] = s;
	}
}

enum mkey {
	K_NAME,
	K_VERSION,
	K_REGISTRY,
	K_TAGS,
	K_DOCKERFILE,
	K_CONTEXT,
	K_BUILD_ARGS,
	K_TARGET,
	K_PLATFORM,
	K_LABELS,
	K_TEST,
	K_BUILDER,
	K_NETWORK,
	K_SECRETS,
	K_COUNT
};

static const char *const mkeys[K_COUNT] = {
    "name",   "version",  "registry", "tags", "dockerfile", "context", "build_args",
    "target", "platform", "labels",   "test", "builder",    "network", "secrets",
};

static void take(struct mctx *c, enum mkey k, const yaml_node_t *v)
{
	struct manifest *m = c->m;

	switch (k) {
	case K_NAME:
		take_checked(c, v, "name", &m->name, manifest_valid_name,
			     "a valid image name (lowercase path components like 'tools/jq')");
		break;
	case K_VERSION: {
		char *s = get_string(c, v, "version", "a scalar");
		if (s && !manifest_valid_tag(s)) {
			bad(c, v, "'version' ('%s') is not a valid tag (%s)", s,
			    "[A-Za-z0-9_][A-Za-z0-9_.-]*, at most 128 characters");
			free(s);
			s = NULL;
		}
		m->version = s;
		break;
	}
	case K_REGISTRY:
		take_checked(c, v, "registry", &m->registry, manifest_valid_registry,
			     "host[:port][/namespace]");
		break;
	case K_TAGS:
		take_list(c, v, "tags", "tag", manifest_valid_tag,
			  "[A-Za-z0-9_][A-Za-z0-9_.-]*, at most 128 characters", &m->tags,
			  &m->ntags);
		break;
	case K_DOCKERFILE:
		take_path(c, v, "dockerfile", &m->dockerfile);
		break;
	case K_CONTEXT:
		take_path(c, v, "context", &m->context);
		break;
	case K_BUILD_ARGS:
		take_kvs(c, v, "build_args", &m->build_args, &m->nbuild_args);
		break;
	case K_TARGET:
		take_checked(c, v, "target", &m->target, valid_stage, "a build stage name");
		break;
	case K_PLATFORM:
		take_checked(c, v, "platform", &m->platform, valid_platform,
			     "a platform like linux/amd64");
		break;
	case K_LABELS:
		take_kvs(c, v, "labels", &m->labels, &m->nlabels);
		break;
	case K_TEST:
		take_test(c, v);
		break;
	case K_BUILDER:
		take_checked(c, v, "builder", &m->builder, manifest_valid_builder,
			     "auto, buildkit or classic");
		break;
	case K_NETWORK:
		take_checked(c, v, "network", &m->network, manifest_valid_network,
			     "default, none or host");
		break;
	case K_SECRETS:
		take_list(c, v, "secrets", "secret id", manifest_valid_secret_id,
			  "[A-Za-z0-9._-]+, at most 128 characters", &m->secrets, &m->nsecrets);
		break;
	case K_COUNT:
		break;
	}
}

/* The manifest in a loaded document; every problem goes to diags. */
static int from_doc(struct ydoc *y, const char *file, const char *dir, struct manifest *ret,
		    struct kiln_diags *diags)
{
	struct manifest m = {0};
	struct mctx c = {y, diags, dir, &m, 0};
	const yaml_node_t *seen[K_COUNT] = {0};
	yaml_node_t *root = ydoc_root(y);
	size_t before = diags->n;

	if (root == NULL) {
		kiln_diags_add(diags, file, 1, 1, "manifest is empty; it needs %s",
			       "name, version and registry");
		return -EINVAL;
	}
	if (!ydoc_mapping(y, diags, root, "manifest"))
		return -EINVAL;
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ydoc_node(y, p->key);
		const char *ks = (const char *)k->data.scalar.value;
		int i;

		if (ydoc_pair_is_dup(y, root, p))
			continue;
		for (i = 0; i < K_COUNT && strcmp(mkeys[i], ks) != 0; i++)
			;
		if (i == K_COUNT) {
			bad(&c, k, "unknown key '%s'%s", ks,
			    " (known: name, version, registry, tags, dockerfile, context, "
			    "build_args, target, platform, labels, test, builder, network, "
			    "secrets)");
			continue;
		}
		seen[i] = k;
		take(&c, (enum mkey)i, ydoc_node(y, p->value));
	}
	for (int i = K_NAME; i <= K_REGISTRY; i++) {
		if (seen[i] == NULL)
			bad(&c, root, "missing required key '%s'%s", mkeys[i], "");
	}
	if (m.dockerfile == NULL && seen[K_DOCKERFILE] == NULL)
		path_resolve(dir, "Dockerfile", &m.dockerfile);
	if (m.context == NULL && seen[K_CONTEXT] == NULL)
		m.context = xstrdup(dir);
	if (diags->n != before || c.nerr) {
		manifest_done(&m);
		return -EINVAL;
	}
	*ret = m;
	return 0;
}

int manifest_parse(const char *data, size_t len, const char *file, const char *dir,
		   struct manifest *ret, struct kiln_diags *diags)
{
	struct ydoc y;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (len > MANIFEST_SIZE_MAX) {
		kiln_diags_add(diags, file, 0, 0, "manifest is larger than %u bytes",
			       MANIFEST_SIZE_MAX);
		return -EINVAL;
	}
	if (memchr(data, '\0', len) != NULL) {
		kiln_diags_add(diags, file, 0, 0, "manifest contains a NUL byte");
		return -EINVAL;
	}
	/* Most manifests: no parser. A problem found there is reported from
	 * the parser's document, which knows where it is. */
	if (ydoc_load_simple(&y, data, len, file) == 0) {
		struct kiln_diags scratch = {0};
		r = from_doc(&y, file, dir, ret, &scratch);
		kiln_diags_done(&scratch);
		ydoc_done(&y);
		if (r == 0)
			return 0;
	}
	if (ydoc_load(&y, data, len, file, diags) < 0) {
		ydoc_done(&y);
		return -EINVAL;
	}
	r = from_doc(&y, file, dir, ret, diags);
	ydoc_done(&y);
	return r;
}

static void kvs_free(struct kv *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
}

void manifest_done(struct manifest *m)
{
	free(m->name);
	free(m->version);
	free(m->registry);
	for (size_t i = 0; i < m->ntags; i++)
		free(m->tags[i]);
	free(m->tags);
	free(m->dockerfile);
	free(m->context);
	kvs_free(m->build_args, m->nbuild_args);
	free(m->target);
	free(m->platform);
	free(m->builder);
	free(m->network);
	for (size_t i = 0; i < m->nsecrets; i++)
		free(m->secrets[i]);
	free(m->secrets);
	kvs_free(m->labels, m->nlabels);
	for (size_t i = 0; i < m->ntest_command; i++)
		free(m->test_command[i]);
	free(m->test_command);
	memset(m, 0, sizeof(*m));
}

char *manifest_ref(const struct manifest *m, const char *tag)
{
	return xasprintf("%s/%s:%s", m->registry, m->name, tag);
}
