/* config.c (input): parse and check kilnd.yaml with the shared YAML helpers.
 * Every key is a row of config_keys[] (section, key, parser, offset, range,
 * secret, default, help), as in systemd's conf-parser tables: the dispatcher,
 * the defaults, the unknown-key errors and README.md's table all read it.
 * Owns nothing after config_parse returns but the struct config it fills. */
#include <ctype.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/config.h"
#include "kiln/forge.h"
#include "kiln/manifest.h"
#include "kiln/yaml.h"

#define POLL_MIN_MS	100
#define DURATION_MAX_MS (7ull * 24 * 3600 * 1000)
#define CONCURRENCY_MAX 64
#define SIZE_MAX_UNITS	(1ull << 40) /* before the K, M or G multiplier */
#define SECTION_MAX	64	     /* "repositories[].credentials" and a NUL fit */
#define PACKS_MAX	100000

struct config_ctx {
	struct ydoc *y;
	struct kiln_diags *d;
	const char *dir; /* of the config file, for relative secret files */
};

int config_parse_duration(const char *s, uint64_t *ret_ms)
{
	uint64_t v = 0, mul;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > DURATION_MAX_MS)
			return -ERANGE;
	}
	if (strcmp(p, "ms") == 0)
		mul = 1;
	else if (strcmp(p, "s") == 0)
		mul = 1000;
	else if (strcmp(p, "m") == 0)
		mul = 60 * 1000;
	else if (strcmp(p, "h") == 0)
		mul = 3600 * 1000;
	else
		return -EINVAL;
	if (v * mul > DURATION_MAX_MS)
		return -ERANGE;
	*ret_ms = v * mul;
	return 0;
}

int config_parse_size(const char *s, uint64_t *ret)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > SIZE_MAX_UNITS)
			return -ERANGE;
	}
	if (*p == 'K' || *p == 'k')
		mul = 1ull << 10;
	else if (*p == 'M')
		mul = 1ull << 20;
	else if (*p == 'G')
		mul = 1ull << 30;
	else if (*p != '\0')
		return -EINVAL;
	if (*p && p[1] != '\0')
		return -EINVAL;
	*ret = v * mul;
	return 0;
}

static const char *str(struct config_ctx *c, const yaml_node_t *n, const char *key)
{
	return ydoc_scalar(c->y, c->d, n, key, "a string");
}

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = xstrdup(s);
}

static char *secret_free(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
	return NULL;
}

/* Checks n is a list; "'KEY' must be a list" otherwise. */
static bool is_list(struct config_ctx *c, const yaml_node_t *n, const char *key)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return true;
	ydoc_diag(c->y, c->d, n, "'%s' must be a list, not %s", key, ydoc_kind(n));
	return false;
}

static size_t list_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* True when the checked mapping n has key (its first occurrence counts). */
static bool has_key(const yaml_node_t *n, struct config_ctx *c, const char *key)
{
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = ydoc_node(c->y, p->key);
		if (strcmp((const char *)k->data.scalar.value, key) == 0)
			return true;
	}
	return false;
}

/* Reads a secret file: relative names live in $CREDENTIALS_DIRECTORY (systemd
 * LoadCredential=) when it is set, else beside the config file. */
static char *resolve_file(struct config_ctx *c, const char *name)
{
	const char *creds = getenv("CREDENTIALS_DIRECTORY");

	if (name[0] == '/')
		return xstrdup(name);
	if (creds && creds[0])
		return xasprintf("%s/%s", creds, name);
	return xasprintf("%s/%s", c->dir, name);
}

/* A secret is a regular file: a FIFO or a terminal would block the loader
 * (O_NONBLOCK keeps open() itself from waiting on a FIFO's writer). */
static int open_secret(struct config_ctx *c, const yaml_node_t *n, const char *key,
		       const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;

	if (fd < 0) {
		ydoc_diag(c->y, c->d, n, "'%s': cannot read '%s': %s", key, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ydoc_diag(c->y, c->d, n, "'%s': '%s' is not a regular file", key, path);
		close(fd);
		return -1;
	}
	return fd;
}

static char *read_secret(struct config_ctx *c, const yaml_node_t *n, const char *key,
			 const char *name)
{
	char *path = resolve_file(c, name), *buf = NULL;
	int fd = open_secret(c, n, key, path);
	ssize_t len = 0, r;

	if (fd < 0)
		goto out;
	buf = xmalloc(CONFIG_SECRET_MAX + 1);
	while ((r = read(fd, buf + len, CONFIG_SECRET_MAX + 1 - (size_t)len)) > 0 &&
	       len + r <= (ssize_t)CONFIG_SECRET_MAX)
		len += r;
	if (r < 0 || len + (r > 0 ? r : 0) > (ssize_t)CONFIG_SECRET_MAX) {
		ydoc_diag(c->y, c->d, n, "'%s': '%s' is unreadable or larger than %u bytes", key,
			  path, CONFIG_SECRET_MAX);
		buf = secret_free(buf);
		goto out;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	if (len == 0 || memchr(buf, '\0', (size_t)len) != NULL) {
		ydoc_diag(c->y, c->d, n, "'%s': '%s' is empty or holds a NUL byte", key, path);
		buf = secret_free(buf);
	}
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return buf;
}

static bool valid_repo_name(const char *s)
{
	if (*s == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return false;
	}
	return true;
}

static bool valid_url(const char *s)
{
	static const char *const schemes[] = {"file://", "https://", "http://", "ssh://", "git://"};

	if (s[0] == '/')
		return true;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i]);
		if (strncmp(s, schemes[i], n) == 0)
			return s[n] != '\0';
	}
	/* scp-like user@host:path */
	return strchr(s, '@') && strchr(s, ':') && strchr(s, '@') < strchr(s, ':');
}

static bool valid_branch(const char *s)
{
	if (*s == '\0' || *s == '/' || *s == '-' || strstr(s, "..") || strstr(s, "//") ||
	    s[strlen(s) - 1] == '/' || strstr(s, "@{"))
		return false;
	for (; *s; s++) {
		if ((unsigned char)*s <= ' ' || strchr("~^:?*[\\", *s))
			return false;
	}
	return true;
}

/* --- value parsers: one per kind of value, then the keys that check more --- */

static void parse_string(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			 void *dst)
{
	const char *s = str(c, n, k->key);

	if (s)
		set_str(dst, s);
}

static void parse_bool(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
		       void *dst)
{
	const char *s = ydoc_scalar(c->y, c->d, n, k->key, "true or false");

	if (s == NULL)
		return;
	if (strcmp(s, "true") == 0)
		*(bool *)dst = true;
	else if (strcmp(s, "false") == 0)
		*(bool *)dst = false;
	else
		ydoc_diag(c->y, c->d, n, "'%s' must be true or false, not '%s'", k->key, s);
}

/* A bool whose absence (-1) means "ask the environment". */
static void parse_tristate(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			   void *dst)
{
	bool b;
	size_t before = c->d->n;

	parse_bool(c, k, n, &b);
	if (c->d->n == before)
		*(int *)dst = b;
}

static void parse_number(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			 void *dst)
{
	const char *s = ydoc_scalar(c->y, c->d, n, k->key, "a number");
	char *end;
	long long v;

	if (s == NULL)
		return;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end || errno || v < 0 || (uint64_t)v < k->min || (uint64_t)v > k->max)
		ydoc_diag(c->y, c->d, n, "'%s' must be %llu to %llu", k->key,
			  (unsigned long long)k->min, (unsigned long long)k->max);
	else
		*(unsigned *)dst = (unsigned)v;
}

static void parse_duration(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			   void *dst)
{
	const char *s = ydoc_scalar(c->y, c->d, n, k->key, "a duration");
	uint64_t v;

	if (s == NULL)
		return;
	if (config_parse_duration(s, &v) < 0)
		ydoc_diag(c->y, c->d, n, "'%s' is not a duration like 500ms, 30s, 5m or 1h: '%s'",
			  k->key, s);
	else if (v < k->min)
		ydoc_diag(c->y, c->d, n, "'%s' must be at least %llums", k->key,
			  (unsigned long long)k->min);
	else
		*(uint64_t *)dst = v;
}

static void parse_size(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
		       void *dst)
{
	const char *s = ydoc_scalar(c->y, c->d, n, k->key, "a size");
	uint64_t v;

	if (s == NULL)
		return;
	if (config_parse_size(s, &v) < 0)
		ydoc_diag(c->y, c->d, n, "'%s' must be a size like 512K, 10M or 1G, not '%s'",
			  k->key, s);
	else
		*(uint64_t *)dst = v;
}

static void parse_strv(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
		       void *dst)
{
	struct strv *sv = dst;

	if (!is_list(c, n, k->key))
		return;
	strv_done(sv);
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		const char *s = str(c, ydoc_node(c->y, *it), k->key);
		if (s)
			strv_push(sv, xstrdup(s));
	}
}

static void parse_secret(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			 void *dst)
{
	const char *s = str(c, n, k->key);
	char **secret = dst;

	if (s == NULL)
		return;
	secret_free(*secret);
	*secret = read_secret(c, n, k->key, s);
}

/* A file kilnd hands on by name (the SSH key goes to libgit2): resolved like a
 * secret and checked readable now, but never read here. */
static void parse_readable_file(struct config_ctx *c, const struct config_key *k,
				const yaml_node_t *n, void *dst)
{
	const char *s = str(c, n, k->key);
	char **path = dst;

	if (s == NULL)
		return;
	free(*path);
	*path = resolve_file(c, s);
	if (access(*path, R_OK) < 0)
		ydoc_diag(c->y, c->d, n, "'%s': cannot read '%s': %s", k->key, *path,
			  strerror(errno));
}

static void parse_group(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			void *dst)
{
	const char *s = str(c, n, k->key);

	if (s == NULL)
		return;
	if (getgrnam(s) == NULL)
		ydoc_diag(c->y, c->d, n, "'%s': no group '%s' on this system", k->key, s);
	else
		set_str(dst, s);
}

static void parse_absolute_path(struct config_ctx *c, const struct config_key *k,
				const yaml_node_t *n, void *dst)
{
	const char *s = str(c, n, k->key);

	if (s == NULL)
		return;
	if (s[0] != '/')
		ydoc_diag(c->y, c->d, n, "'%s' must be an absolute path", k->key);
	else
		set_str(dst, s);
}

/* A string that valid() accepts, else "'KEY' must RULE, not 'VALUE'". */
static void parse_checked(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			  void *dst, bool (*valid)(const char *), const char *rule)
{
	const char *s = str(c, n, k->key);

	if (s == NULL)
		return;
	if (!valid(s))
		ydoc_diag(c->y, c->d, n, "'%s' must %s, not '%s'", k->key, rule, s);
	else
		set_str(dst, s);
}

static bool valid_docker_host(const char *s)
{
	return strncmp(s, "unix:///", 8) == 0 || strncmp(s, "tcp://", 6) == 0;
}

static bool valid_registry_host(const char *s)
{
	return manifest_valid_registry(s) && strchr(s, '/') == NULL;
}

static bool valid_provider(const char *s)
{
	return strcmp(s, "github") == 0 || strcmp(s, "gitlab") == 0 || strcmp(s, "gitea") == 0 ||
	       strcmp(s, "generic") == 0;
}

/* A parser for one kind of checked string (systemd's DEFINE_CONFIG_PARSE). */
#define DEFINE_PARSE_CHECKED(name, valid, rule)                                                    \
	static void name(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,   \
			 void *dst)                                                                \
	{                                                                                          \
		parse_checked(c, k, n, dst, valid, rule);                                          \
	}

DEFINE_PARSE_CHECKED(parse_docker_host, valid_docker_host, "be unix:///path or tcp://host:port")
DEFINE_PARSE_CHECKED(parse_registry_host, valid_registry_host, "be a registry host[:port]")
DEFINE_PARSE_CHECKED(parse_repo_name, valid_repo_name, "match [A-Za-z0-9._-]+")
DEFINE_PARSE_CHECKED(parse_secret_id, manifest_valid_secret_id, "match [A-Za-z0-9._-]+")
DEFINE_PARSE_CHECKED(parse_url, valid_url,
		     "be a path, file://, https://, ssh:// or git:// URL, or user@host:path")
DEFINE_PARSE_CHECKED(parse_manifest_name, manifest_valid_file_name, "be a file name")
DEFINE_PARSE_CHECKED(parse_provider, valid_provider, "be github, gitlab, gitea or generic")
DEFINE_PARSE_CHECKED(parse_builder, manifest_valid_builder, "be auto, buildkit or classic")
DEFINE_PARSE_CHECKED(parse_network, manifest_valid_network, "be default, none or host")

static bool valid_status_provider(const char *s)
{
	enum forge_provider p;

	return forge_provider_parse(s, &p) == 0;
}

static bool valid_http_url(const char *s)
{
	return (strncmp(s, "https://", 8) == 0 && s[8]) || (strncmp(s, "http://", 7) == 0 && s[7]);
}

DEFINE_PARSE_CHECKED(parse_status_provider, valid_status_provider, "be github, gitlab or gitea")
DEFINE_PARSE_CHECKED(parse_http_url, valid_http_url, "be an http:// or https:// URL")

static void parse_branches(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			   void *dst)
{
	struct strv *b = dst;

	if (!is_list(c, n, k->key))
		return;
	parse_strv(c, k, n, dst);
	for (size_t i = 0; i < b->n; i++) {
		if (!valid_branch(b->v[i]))
			ydoc_diag(c->y, c->d, n, "'%s' is not a valid branch name", b->v[i]);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(b->v[i], b->v[j]) == 0)
				ydoc_diag(c->y, c->d, n, "branch '%s' is listed twice", b->v[i]);
		}
	}
	if (b->n == 0)
		ydoc_diag(c->y, c->d, n, "'%s' must not be empty", k->key);
}

static void parse_build_on_start(struct config_ctx *c, const struct config_key *k,
				 const yaml_node_t *n, void *dst)
{
	const char *s = str(c, n, k->key);

	if (s == NULL)
		return;
	if (strcmp(s, "none") == 0)
		*(enum config_build_on_start *)dst = CONFIG_BUILD_ON_START_NONE;
	else if (strcmp(s, "all") == 0)
		*(enum config_build_on_start *)dst = CONFIG_BUILD_ON_START_ALL;
	else
		ydoc_diag(c->y, c->d, n, "'%s' must be none or all, not '%s'", k->key, s);
}

/* --- sections: a mapping whose keys are the rows naming it as their section --- */

static config_parse_fn parse_section, parse_credentials, parse_webhook, parse_registries,
    parse_repositories, parse_repo_secrets, parse_status, parse_notify, parse_events;

#define KEY(sec, name, ty, fn, st, field)                                                          \
	.section = sec, .key = name, .type = ty, .parse = fn, .offset = offsetof(st, field)
#define SECTION(sec, name, fn)	      .section = sec, .key = name, .type = CONFIG_SECTION, .parse = fn
#define TOP(name, ty, fn, field)      KEY("", name, ty, fn, struct config, field)
#define SUB(sec, name, ty, fn, field) KEY(sec, name, ty, fn, struct config, field)
#define REG(name, ty, fn, field)      KEY("registries[]", name, ty, fn, struct config_registry, field)
#define REPO(sec, name, ty, fn, field)                                                             \
	KEY("repositories[]" sec, name, ty, fn, struct config_repo, field)
#define NOTIFY(sec, name, ty, fn, field) KEY(sec, name, ty, fn, struct config_notify, field)
#define SECRET(name, ty, fn, field)                                                                \
	KEY("repositories[].secrets[]", name, ty, fn, struct config_secret, field)

/* In the order README.md lists them; a section's row comes before its keys.
 * A CONFIG_SECTION row has offset 0: its keys land in the same struct. */
const struct config_key config_keys[] = {
    {TOP("state_dir", CONFIG_STRING, parse_absolute_path, state_dir), .def = "/var/lib/kiln",
     .help = "absolute path: database, lock, mirrors"},
    {TOP("state_backup_interval", CONFIG_DURATION, parse_duration, backup_interval_ms),
     .min = POLL_MIN_MS, .def = "15m",
     .help = "how often, at most, a verified snapshot of the database is written to "
	     "`kilnd.db.backup` (only when it changed); `kilnd --recover` restores it"},
    {SECTION("", "docker", parse_section),
     .help = "the Docker engine: a `dockerd`, or Podman's `podman system service`"},
    {SUB("docker", "host", CONFIG_STRING, parse_docker_host, docker_host),
     .help = "`unix:///path` or `tcp://host:port`; unset: `$DOCKER_HOST`, else "
	     "`unix:///var/run/docker.sock`"},
    {SUB("docker", "tls_verify", CONFIG_BOOL, parse_tristate, docker_tls_verify),
     .help = "with `tcp://`: TLS with client certificates, verifying the engine; unset: "
	     "`$DOCKER_TLS_VERIFY`"},
    {SUB("docker", "cert_path", CONFIG_STRING, parse_string, docker_cert_path),
     .help = "directory of `ca.pem`, `cert.pem`, `key.pem`; unset: `$DOCKER_CERT_PATH`, else "
	     "`~/.docker`"},
    {SECTION("", "builds", parse_section), .help = "how builds run"},
    {SUB("builds", "concurrency", CONFIG_NUMBER, parse_number, concurrency), .min = 1,
     .max = CONCURRENCY_MAX, .def = "2", .help = "builds at once"},
    {SUB("builds", "dry_run", CONFIG_BOOL, parse_bool, dry_run), .def = "false",
     .help = "true: record builds as done without an engine (see *Dry run*)"},
    {SUB("builds", "retries", CONFIG_NUMBER, parse_number, retries), .max = 100, .def = "3",
     .help = "retries of a build that failed in passing"},
    {SUB("builds", "retry_delay", CONFIG_DURATION, parse_duration, retry_delay_ms),
     .min = POLL_MIN_MS, .def = "10s",
     .help = "the first retry's delay; doubles per attempt, at most 10 minutes"},
    {SUB("builds", "test_timeout", CONFIG_DURATION, parse_duration, test_timeout_ms), .min = 1000,
     .def = "10m", .help = "how long a smoke test may run"},
    {SUB("builds", "log_max_size", CONFIG_SIZE, parse_size, log_max_bytes), .def = "10M",
     .help = "a build log's cap: a number with `K`, `M` or `G`"},
    {SUB("builds", "keep_logs", CONFIG_NUMBER, parse_number, keep_logs), .min = 1, .max = 1000000,
     .def = "1000", .help = "build logs kept; older ones are deleted"},
    {SUB("builds", "builder", CONFIG_STRING, parse_builder, builder), .def = "auto",
     .help = "`auto`, `buildkit` or `classic`; `auto`: BuildKit on a Docker engine with API "
	     ">= 1.39, else the classic builder; a manifest's `builder:` overrides it"},
    {SUB("builds", "network", CONFIG_STRING, parse_network, network), .def = "default",
     .help = "the network of `RUN` steps: `default` (the engine's), `none` or `host`; a "
	     "manifest's `network:` overrides it (see *BuildKit*)"},
    {SUB("builds", "pull", CONFIG_BOOL, parse_bool, pull), .def = "false",
     .help = "pull every base image anew on each build, not only when the engine lacks it "
	     "(a moving tag such as `debian:12` gets its security updates); a base image "
	     "built by kiln must then be in its registry"},
    {TOP("registries", CONFIG_LIST, parse_registries, registries),
     .help = "credentials for pushing, one entry per registry host"},
    {REG("host", CONFIG_STRING, parse_registry_host, host), .required = true,
     .help = "the registry host as in manifests, `host[:port]`"},
    {REG("username", CONFIG_STRING, parse_string, username), .required = true,
     .help = "the user to push as"},
    {REG("password_file", CONFIG_FILE, parse_secret, password), .secret = true, .required = true,
     .help = "file holding the password or token"},
    {SECTION("", "listen", parse_section), .help = "the HTTP listener and the status socket"},
    {SUB("listen", "http", CONFIG_LIST, parse_strv, listen_http),
     .help = "webhook, `/healthz` and `/metrics` listener addresses: `127.0.0.1:8080`, "
	     "`[::1]:8080`, `:8080`; changes take effect at the next start"},
    {SUB("listen", "dashboard", CONFIG_BOOL, parse_bool, listen_dashboard), .def = "false",
     .help = "true: serve the read-only web dashboard on the `listen.http` addresses too (see "
	     "*Dashboard*)"},
    {SUB("listen", "dashboard_http", CONFIG_STRING, parse_string, listen_dashboard_http),
     .help = "an address of its own for the dashboard (as in `listen.http`), served whether "
	     "or not `listen.dashboard` is set; changes take effect at the next start"},
    {SUB("listen", "header_timeout", CONFIG_DURATION, parse_duration, header_timeout_ms),
     .min = POLL_MIN_MS, .def = "10s",
     .help = "from a request's first byte to its last header; a connection over a deadline is "
	     "closed"},
    {SUB("listen", "body_timeout", CONFIG_DURATION, parse_duration, body_timeout_ms),
     .min = POLL_MIN_MS, .def = "30s", .help = "for a request's body"},
    {SUB("listen", "idle_timeout", CONFIG_DURATION, parse_duration, idle_timeout_ms),
     .min = POLL_MIN_MS, .def = "15s", .help = "between keep-alive requests"},
    {SUB("listen", "first_byte_timeout", CONFIG_DURATION, parse_duration, first_byte_timeout_ms),
     .min = POLL_MIN_MS, .def = "3s",
     .help = "from accepting a connection to its first byte; a silent connection is closed"},
    {SUB("listen", "connections_per_client", CONFIG_NUMBER, parse_number, conns_per_client),
     .min = 1, .max = 65535, .def = "64",
     .help = "connections from one client address (IPv6: one /64); behind a reverse proxy, "
	     "at least the proxy's own connection limit"},
    {SUB("listen", "bodies_max", CONFIG_SIZE, parse_size, bodies_max), .def = "64M",
     .help = "request body bytes held at once over all connections (a body counts from its "
	     "`Content-Length`); past it a request gets `503` with `Retry-After`; a body larger "
	     "than this gets `413`"},
    {SUB("listen", "status_socket", CONFIG_STRING, parse_string, status_socket),
     .def = "/run/kiln/kiln.sock", .help = "the status socket; `\"\"` turns it off"},
    {SUB("listen", "status_idle_timeout", CONFIG_DURATION, parse_duration, status_idle_ms),
     .min = 1000, .def = "5m",
     .help = "a status socket connection with no request under way is closed after this (a "
	     "request being answered, such as `kiln logs -f` waiting for a build's end, is not "
	     "cut)"},
    {SUB("listen", "status_group", CONFIG_STRING, parse_group, status_group),
     .help = "group allowed to read over the status socket"},
    {SUB("listen", "admin_group", CONFIG_STRING, parse_group, admin_group),
     .help = "group also allowed to `trigger` and `cancel`"},
    {SECTION("", "dashboard", parse_section), .help = "the web dashboard (see *Dashboard*)"},
    {SUB("dashboard", "auth_file", CONFIG_FILE, parse_readable_file, dashboard_auth_file),
     .secret = true,
     .help = "htpasswd-style `user:hash` lines (bcrypt `$2b$`/`$2y$`, sha-crypt `$5$`/`$6$`): "
	     "the dashboard asks for HTTP Basic authentication; read at start and at a reload; "
	     "unset: no authentication"},
    {SUB("dashboard", "url", CONFIG_STRING, parse_http_url, dashboard_url),
     .help = "the dashboard's public base URL: commit statuses link to `URL/builds/ID`, "
	     "notifications carry it as `log_url`; unset: no links"},
    {TOP("shutdown_grace", CONFIG_DURATION, parse_duration, shutdown_grace_ms), .def = "30s",
     .help = "how long SIGTERM waits for work in flight"},
    {SECTION("", "health", parse_section),
     .help = "when `/healthz`, `kiln health` and `STATUS=` say degraded (see *Health*)"},
    {SUB("health", "repository_failing_after", CONFIG_DURATION, parse_duration,
	 health_repo_failing_ms),
     .min = POLL_MIN_MS, .def = "10m",
     .help = "a repository whose polls have failed this long, with none working since, is a "
	     "reason"},
    {SUB("health", "min_free_space", CONFIG_SIZE, parse_size, health_min_free_bytes), .def = "1G",
     .help = "less free space than this in `state_dir` is a reason; `0`: not checked"},
    {TOP("notify", CONFIG_LIST, parse_notify, notify),
     .help = "notification targets for every repository: a signed JSON `POST` per build end "
	     "(see *Notifications*)"},
    {NOTIFY("notify[]", "url", CONFIG_STRING, parse_http_url, url), .required = true,
     .help = "where the JSON goes: `http://` or `https://`"},
    {NOTIFY("notify[]", "secret_file", CONFIG_FILE, parse_secret, secret), .secret = true,
     .help = "file holding the key of `X-Kiln-Signature-256`; unset: unsigned"},
    {NOTIFY("notify[]", "events", CONFIG_LIST, parse_events, events),
     .def = "[succeeded, failed, cancelled]",
     .help = "the build ends reported: `succeeded`, `failed`, `cancelled`, `superseded`"},
    {TOP("repositories", CONFIG_LIST, parse_repositories, repos),
     .help = "the watched repositories"},
    {REPO("", "name", CONFIG_STRING, parse_repo_name, name), .required = true,
     .help = "`[A-Za-z0-9._-]+`, unique; names the mirror and the builds"},
    {REPO("", "url", CONFIG_STRING, parse_url, url), .required = true,
     .help = "a path, `file://`, `https://`, `http://`, `ssh://`, `git://`, or "
	     "`user@host:path`"},
    {REPO("", "branches", CONFIG_LIST, parse_branches, branches), .def = "[main]",
     .help = "branches to follow; the first is the base for branches added later"},
    {REPO("", "poll_interval", CONFIG_DURATION, parse_duration, poll_interval_ms),
     .min = POLL_MIN_MS, .def = "60s", .help = "how often the remote's tip is checked"},
    /* 32: an object lookup tries each pack in turn and libgit2 keeps only
     * REPO_PACK_FILES_MAX packs open over all mirrors, while a repack
     * rewrites the whole mirror: its cost is spread over 32 fetches. */
    {REPO("", "repack_packs", CONFIG_NUMBER, parse_number, repack_packs), .max = PACKS_MAX,
     .def = "32",
     .help = "when a fetch leaves the mirror with more packs than this, they are folded into "
	     "one; `0`: never"},
    {REPO("", "manifest", CONFIG_STRING, parse_manifest_name, manifest), .def = "manifest.yaml",
     .help = "the file that marks an image folder"},
    {REPO("", "build_on_start", CONFIG_STRING, parse_build_on_start, build_on_start), .def = "none",
     .help = "`none`, or `all`: build everything when a branch is first seen"},
    {SECTION("repositories[]", "credentials", parse_credentials),
     .help = "how to authenticate to the remote"},
    {REPO(".credentials", "username", CONFIG_STRING, parse_string, username),
     .help = "user for HTTP(S) and SSH"},
    {REPO(".credentials", "password_file", CONFIG_FILE, parse_secret, password), .secret = true,
     .help = "file holding the password or token"},
    {REPO(".credentials", "ssh_key_file", CONFIG_FILE, parse_readable_file, ssh_key_file),
     .secret = true, .help = "private key for `ssh://`"},
    {SECTION("repositories[]", "webhook", parse_webhook),
     .help = "where pushes are announced; without it, polling only"},
    {REPO(".webhook", "provider", CONFIG_STRING, parse_provider, webhook_provider),
     .required = true, .help = "`github`, `gitlab`, `gitea` or `generic`"},
    {REPO(".webhook", "secret_file", CONFIG_FILE, parse_secret, webhook_secret), .secret = true,
     .required = true, .help = "file holding the webhook secret: unsigned hooks are refused"},
    {REPO(".webhook", "header", CONFIG_STRING, parse_string, webhook_header),
     .help = "the signature header, `generic` only"},
    {REPO("", "overwrite_tags", CONFIG_BOOL, parse_bool, overwrite_tags), .def = "false",
     .help = "true: allow a build to replace an existing version tag"},
    {REPO("", "secrets", CONFIG_LIST, parse_repo_secrets, secrets),
     .help = "build secrets (BuildKit `RUN --mount=type=secret`) the repository's manifests may "
	     "grant with `secrets: [id, ...]`"},
    {SECRET("id", CONFIG_STRING, parse_secret_id, id), .required = true,
     .help = "the `id` a Dockerfile names, `[A-Za-z0-9._-]+`"},
    {SECRET("file", CONFIG_FILE, parse_readable_file, file), .secret = true, .required = true,
     .help = "file holding the secret; read when a build that is granted it starts"},
    {SECTION("repositories[]", "status", parse_status),
     .help = "commit statuses on the forge, one context `kiln/<image folder>` per image (see "
	     "*Commit statuses*)"},
    {REPO(".status", "provider", CONFIG_STRING, parse_status_provider, status_provider),
     .required = true, .help = "`github`, `gitlab` or `gitea`"},
    {REPO(".status", "api_url", CONFIG_STRING, parse_http_url, status_api_url),
     .help = "the API's base URL; unset: `https://api.github.com`, "
	     "`https://gitlab.com/api/v4`; required for `gitea`"},
    {REPO(".status", "token_file", CONFIG_FILE, parse_secret, status_token), .secret = true,
     .required = true, .help = "file holding the API token"},
    {REPO(".status", "project", CONFIG_STRING, parse_string, status_project),
     .help = "`owner/name` (GitLab: the project's path); unset: what `url` names"},
    {REPO("", "notify", CONFIG_LIST, parse_notify, notify),
     .help = "notification targets for this repository's builds, besides the global ones"},
    {NOTIFY("repositories[].notify[]", "url", CONFIG_STRING, parse_http_url, url), .required = true,
     .help = "as `notify[].url`"},
    {NOTIFY("repositories[].notify[]", "secret_file", CONFIG_FILE, parse_secret, secret),
     .secret = true, .help = "as `notify[].secret_file`"},
    {NOTIFY("repositories[].notify[]", "events", CONFIG_LIST, parse_events, events),
     .def = "[succeeded, failed, cancelled]", .help = "as `notify[].events`"},
};
const size_t config_nkeys = ARRAY_SIZE(config_keys);

/* "docker", "repositories[]", "repositories[].webhook": the section whose rows
 * are k's keys. */
static void child_section(const struct config_key *k, char buf[SECTION_MAX])
{
	snprintf(buf, SECTION_MAX, "%s%s%s%s", k->section, k->section[0] ? "." : "", k->key,
		 k->type == CONFIG_LIST ? "[]" : "");
}

static const struct config_key *key_find(const char *section, const char *key)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].key, key) == 0)
			return &config_keys[i];
	}
	return NULL;
}

static void unknown(struct config_ctx *c, const yaml_node_t *k, const char *section)
{
	struct buf known = {0};
	const char *dot = strrchr(section, '.');
	char *where;

	for (size_t i = 0; i < config_nkeys; i++) {
		if (strcmp(config_keys[i].section, section) == 0)
			buf_printf(&known, "%s%s", known.len ? ", " : "", config_keys[i].key);
	}
	if (section[0] == '\0')
		where = xstrdup("the configuration");
	else if (strcmp(section, "repositories[]") == 0)
		where = xstrdup("a repository");
	else
		where = xasprintf("'%s'", dot ? dot + 1 : section);
	ydoc_diag(c->y, c->d, k, "unknown key '%s' in %s (known: %s)",
		  (const char *)k->data.scalar.value, where, known.len ? known.p : "");
	free(where);
	buf_done(&known);
}

/* Runs each key of the checked mapping n through its row's parser. */
static void parse_keys(struct config_ctx *c, const char *section, const yaml_node_t *n, void *base)
{
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = ydoc_node(c->y, p->key), *v = ydoc_node(c->y, p->value);
		const struct config_key *row;

		if (ydoc_pair_is_dup(c->y, n, p))
			continue;
		row = key_find(section, (const char *)k->data.scalar.value);
		if (row == NULL)
			unknown(c, k, section);
		else
			row->parse(c, row, v, (char *)base + row->offset);
	}
}

/* Sets every key of section (and of the sections inside it that share its
 * struct) to its default by parsing the row's YAML text, so the default obeys
 * the same rules as a value from the file. */
static void apply_defaults(struct config_ctx *c, const char *section, void *base)
{
	struct ydoc *file = c->y;
	char sub[SECTION_MAX];

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		struct ydoc def;

		if (strcmp(k->section, section) != 0)
			continue;
		if (k->type == CONFIG_SECTION) {
			child_section(k, sub);
			apply_defaults(c, sub, base);
		}
		if (k->def == NULL)
			continue;
		if (ydoc_load(&def, k->def, strlen(k->def), "(default)", c->d) == 0 &&
		    ydoc_root(&def) != NULL) {
			c->y = &def;
			k->parse(c, k, ydoc_root(&def), (char *)base + k->offset);
			c->y = file;
		}
		ydoc_done(&def);
	}
}

static void parse_section(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			  void *dst)
{
	char sub[SECTION_MAX];

	if (!ydoc_mapping(c->y, c->d, n, k->key))
		return;
	child_section(k, sub);
	parse_keys(c, sub, n, dst);
}

static void parse_credentials(struct config_ctx *c, const struct config_key *k,
			      const yaml_node_t *n, void *dst)
{
	struct config_repo *r = dst;

	if (!ydoc_mapping(c->y, c->d, n, k->key))
		return;
	parse_keys(c, "repositories[].credentials", n, r);
	if (r->password && !r->username)
		ydoc_diag(c->y, c->d, n, "'credentials' has a password_file but no username");
}

static void parse_webhook(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			  void *dst)
{
	struct config_repo *r = dst;

	if (!ydoc_mapping(c->y, c->d, n, k->key))
		return;
	parse_keys(c, "repositories[].webhook", n, r);
	if (r->webhook_provider == NULL)
		ydoc_diag(c->y, c->d, n, "'webhook' needs 'provider'");
	else if (!has_key(n, c, "secret_file"))
		ydoc_diag(c->y, c->d, n,
			  "'webhook' needs 'secret_file': unsigned hooks are refused");
	if (r->webhook_header &&
	    (r->webhook_provider == NULL || strcmp(r->webhook_provider, "generic")))
		ydoc_diag(c->y, c->d, n, "'header' applies only to the generic provider");
}

static void parse_registry(struct config_ctx *c, const yaml_node_t *n, struct config *cfg,
			   struct config_registry *g)
{
	if (!ydoc_mapping(c->y, c->d, n, "registries[]"))
		return;
	parse_keys(c, "registries[]", n, g);
	if (!g->host)
		ydoc_diag(c->y, c->d, n, "'registries[]' needs 'host'");
	else if (!g->username || !g->password)
		ydoc_diag(c->y, c->d, n, "registry '%s' needs 'username' and 'password_file'",
			  g->host);
	for (size_t j = 0; g->host && &cfg->registries[j] != g; j++) {
		if (cfg->registries[j].host && strcmp(cfg->registries[j].host, g->host) == 0)
			ydoc_diag(c->y, c->d, n, "registry '%s' is listed twice", g->host);
	}
}

static void parse_registries(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			     void *dst)
{
	struct config *cfg = container_of(dst, struct config, registries);

	if (!is_list(c, n, k->key))
		return;
	cfg->registries = xcalloc(list_len(n) + 1, sizeof(*cfg->registries));
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++)
		parse_registry(c, ydoc_node(c->y, *it), cfg, &cfg->registries[cfg->nregistries++]);
}

static void parse_repo_secrets(struct config_ctx *c, const struct config_key *k,
			       const yaml_node_t *n, void *dst)
{
	struct config_repo *r = container_of(dst, struct config_repo, secrets);

	if (!is_list(c, n, k->key) || r->secrets)
		return;
	r->secrets = xcalloc(list_len(n) + 1, sizeof(*r->secrets));
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		const yaml_node_t *e = ydoc_node(c->y, *it);
		struct config_secret *s = &r->secrets[r->nsecrets++];

		if (!ydoc_mapping(c->y, c->d, e, "secrets[]"))
			continue;
		parse_keys(c, "repositories[].secrets[]", e, s);
		if (!s->id || !s->file) {
			ydoc_diag(c->y, c->d, e, "a secret needs 'id' and 'file'");
			continue;
		}
		for (struct config_secret *o = r->secrets; o != s; o++) {
			if (o->id && strcmp(o->id, s->id) == 0)
				ydoc_diag(c->y, c->d, e, "secret '%s' is listed twice", s->id);
		}
	}
}

static void parse_status(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			 void *dst)
{
	struct config_repo *r = dst;

	if (!ydoc_mapping(c->y, c->d, n, k->key))
		return;
	parse_keys(c, "repositories[].status", n, r);
	if (r->status_provider == NULL) {
		ydoc_diag(c->y, c->d, n, "'status' needs 'provider'");
		return;
	}
	if (!has_key(n, c, "token_file"))
		ydoc_diag(c->y, c->d, n, "'status' needs 'token_file'");
	if (strcmp(r->status_provider, "gitea") == 0 && r->status_api_url == NULL)
		ydoc_diag(c->y, c->d, n,
			  "'status' with provider gitea needs 'api_url' (there is no public "
			  "Gitea to default to)");
}

static void parse_events(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			 void *dst)
{
	static const char *const known[] = {"succeeded", "failed", "cancelled", "superseded"};
	struct strv *ev = dst;

	parse_strv(c, k, n, dst);
	for (size_t i = 0; i < ev->n; i++) {
		bool ok = false;
		for (size_t j = 0; j < ARRAY_SIZE(known); j++)
			ok = ok || strcmp(ev->v[i], known[j]) == 0;
		if (!ok)
			ydoc_diag(c->y, c->d, n,
				  "'%s': unknown event '%s' (known: succeeded, failed, cancelled, "
				  "superseded)",
				  k->key, ev->v[i]);
	}
}

static void parse_notify(struct config_ctx *c, const struct config_key *k, const yaml_node_t *n,
			 void *dst)
{
	struct config_notifies *ns = dst;
	char sub[SECTION_MAX];

	if (!is_list(c, n, k->key) || ns->v)
		return;
	child_section(k, sub);
	ns->v = xcalloc(list_len(n) + 1, sizeof(*ns->v));
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		const yaml_node_t *e = ydoc_node(c->y, *it);
		struct config_notify *t = &ns->v[ns->n++];

		apply_defaults(c, sub, t);
		if (!ydoc_mapping(c->y, c->d, e, sub))
			continue;
		parse_keys(c, sub, e, t);
		if (!t->url) {
			ydoc_diag(c->y, c->d, e, "a notification target needs 'url'");
			continue;
		}
		/* kilnd knows a target by its URL: two would be one */
		for (size_t i = 0; i + 1 < ns->n; i++) {
			if (ns->v[i].url && strcmp(ns->v[i].url, t->url) == 0) {
				ydoc_diag(c->y, c->d, e,
					  "%s[%zu] has the url of %s[%zu]: one entry per target "
					  "(list all its events there)",
					  k->key, ns->n - 1, k->key, i);
				break;
			}
		}
	}
}

static void parse_repository(struct config_ctx *c, const yaml_node_t *n, struct config *cfg,
			     struct config_repo *r)
{
	apply_defaults(c, "repositories[]", r);
	if (!ydoc_mapping(c->y, c->d, n, "repositories[]"))
		return;
	parse_keys(c, "repositories[]", n, r);
	if (!has_key(n, c, "name"))
		ydoc_diag(c->y, c->d, n, "a repository needs 'name'");
	if (!has_key(n, c, "url"))
		ydoc_diag(c->y, c->d, n, "a repository needs 'url'");
	if (r->status_provider && r->url) {
		char *project = config_status_project(r);
		if (project == NULL)
			ydoc_diag(c->y, c->d, n,
				  "'status' needs 'project': the repository URL '%s' names no "
				  "owner/name",
				  r->url);
		free(project);
	}
	for (size_t j = 0; r->name && &cfg->repos[j] != r; j++) {
		if (cfg->repos[j].name && strcmp(cfg->repos[j].name, r->name) == 0)
			ydoc_diag(c->y, c->d, n, "repository name '%s' is used twice", r->name);
	}
}

static void parse_repositories(struct config_ctx *c, const struct config_key *k,
			       const yaml_node_t *n, void *dst)
{
	struct config *cfg = container_of(dst, struct config, repos);

	if (!is_list(c, n, k->key))
		return;
	cfg->repos = xcalloc(list_len(n) + 1, sizeof(*cfg->repos));
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++)
		parse_repository(c, ydoc_node(c->y, *it), cfg, &cfg->repos[cfg->nrepos++]);
}

/* --- loading --- */

static char *read_file(const char *path, size_t *ret_len, struct kiln_diags *d)
{
	FILE *f = fopen(path, "re");
	struct buf b = {0};
	char chunk[8192];
	size_t n;

	if (f == NULL) {
		kiln_diags_add(d, path, 0, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= CONFIG_FILE_MAX)
		buf_append(&b, chunk, n);
	if (ferror(f) || b.len > CONFIG_FILE_MAX) {
		kiln_diags_add(d, path, 0, 0, ferror(f) ? "cannot read" : "larger than %u bytes",
			       CONFIG_FILE_MAX);
		fclose(f);
		buf_done(&b);
		return NULL;
	}
	fclose(f);
	*ret_len = b.len;
	return buf_steal(&b);
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	return xasprintf("%.*s", (int)(slash - path), path);
}

int config_parse(const char *text, size_t len, const char *path, struct config *ret,
		 struct kiln_diags *diags)
{
	struct config cfg = {0};
	struct ydoc y = {0};
	size_t before = diags->n;
	char *dir = dir_of(path);
	struct config_ctx c = {&y, diags, dir};
	yaml_node_t *root;

	memset(ret, 0, sizeof(*ret));
	cfg.path = xstrdup(path);
	cfg.docker_tls_verify = -1; /* not a default but "unset": $DOCKER_TLS_VERIFY decides */
	apply_defaults(&c, "", &cfg);
	if (memchr(text, '\0', len)) {
		kiln_diags_add(diags, path, 0, 0, "contains a NUL byte");
	} else if (ydoc_load(&y, text, len, path, diags) == 0) {
		root = ydoc_root(&y);
		if (root == NULL)
			kiln_diags_add(diags, path, 1, 1, "the configuration is empty");
		else if (ydoc_mapping(&y, diags, root, "the configuration"))
			parse_keys(&c, "", root, &cfg);
	}
	ydoc_done(&y);
	free(dir);
	if (diags->n != before) {
		config_done(&cfg);
		return -EINVAL;
	}
	*ret = cfg;
	return 0;
}

int config_load(const char *path, struct config *ret, struct kiln_diags *diags)
{
	size_t len = 0;
	char *text = read_file(path, &len, diags);
	int r;

	if (text == NULL) {
		memset(ret, 0, sizeof(*ret));
		return -EINVAL;
	}
	r = config_parse(text, len, path, ret, diags);
	free(text);
	return r;
}

static void notifies_done(struct config_notifies *ns)
{
	for (size_t i = 0; i < ns->n; i++) {
		free(ns->v[i].url);
		secret_free(ns->v[i].secret);
		strv_done(&ns->v[i].events);
	}
	free(ns->v);
	memset(ns, 0, sizeof(*ns));
}

void config_done(struct config *c)
{
	for (size_t i = 0; i < c->nrepos; i++) {
		struct config_repo *r = &c->repos[i];
		free(r->name);
		free(r->url);
		strv_done(&r->branches);
		free(r->manifest);
		free(r->username);
		secret_free(r->password);
		free(r->ssh_key_file);
		free(r->webhook_provider);
		secret_free(r->webhook_secret);
		free(r->webhook_header);
		for (size_t j = 0; j < r->nsecrets; j++) {
			free(r->secrets[j].id);
			free(r->secrets[j].file);
		}
		free(r->secrets);
		free(r->status_provider);
		free(r->status_api_url);
		secret_free(r->status_token);
		free(r->status_project);
		notifies_done(&r->notify);
	}
	free(c->repos);
	free(c->dashboard_url);
	notifies_done(&c->notify);
	free(c->path);
	free(c->state_dir);
	free(c->docker_host);
	free(c->docker_cert_path);
	free(c->builder);
	free(c->network);
	for (size_t i = 0; i < c->nregistries; i++) {
		free(c->registries[i].host);
		free(c->registries[i].username);
		secret_free(c->registries[i].password);
	}
	free(c->registries);
	strv_done(&c->listen_http);
	free(c->listen_dashboard_http);
	free(c->dashboard_auth_file);
	free(c->status_socket);
	free(c->status_group);
	free(c->admin_group);
	memset(c, 0, sizeof(*c));
}

char *config_status_project(const struct config_repo *r)
{
	if (r->status_project)
		return xstrdup(r->status_project);
	return r->url ? forge_project_from_url(r->url) : NULL;
}

const struct config_repo *config_repo(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nrepos; i++) {
		if (c->repos[i].name && strcmp(c->repos[i].name, name) == 0)
			return &c->repos[i];
	}
	return NULL;
}

/* --- README.md's table --- */

static void print_duration(FILE *f, uint64_t ms)
{
	if (ms % 3600000 == 0)
		fprintf(f, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms % 60000 == 0)
		fprintf(f, "%llum", (unsigned long long)(ms / 60000));
	else if (ms % 1000 == 0)
		fprintf(f, "%llus", (unsigned long long)(ms / 1000));
	else
		fprintf(f, "%llums", (unsigned long long)ms);
}

/* A section, or a list of sections: shown without a default. */
static bool has_keys(const struct config_key *k)
{
	char sub[SECTION_MAX];

	child_section(k, sub);
	for (size_t i = 0; i < config_nkeys; i++) {
		if (strcmp(config_keys[i].section, sub) == 0)
			return true;
	}
	return false;
}

static void print_row(FILE *f, const struct config_key *k)
{
	fprintf(f, "| `%s%s%s` | ", k->section, k->section[0] ? "." : "", k->key);
	/* a secret file's row shows no default even if one were ever added */
	if (k->def && !k->secret)
		fprintf(f, "`%s`", k->def);
	else if (k->required)
		fputs("required", f);
	else if (!has_keys(k))
		fputs("none", f);
	fprintf(f, " | %s", k->help);
	if (k->type == CONFIG_NUMBER)
		fprintf(f, "; %llu to %llu", (unsigned long long)k->min,
			(unsigned long long)k->max);
	if (k->type == CONFIG_DURATION && k->min > 0) {
		fputs("; at least ", f);
		print_duration(f, k->min);
	}
	if (k->secret)
		fputs("; a secret: its contents never appear in messages", f);
	fputs(" |\n", f);
}

void config_keys_markdown(FILE *f)
{
	fputs("| key | default | meaning |\n| --- | --- | --- |\n", f);
	for (size_t i = 0; i < config_nkeys; i++)
		print_row(f, &config_keys[i]);
}
