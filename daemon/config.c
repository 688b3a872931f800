/* config.c: parse and check kilnd.yaml with the shared YAML helpers. */
#include <ctype.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/config.h"
#include "kiln/manifest.h"
#include "kiln/yaml.h"

#define POLL_MIN_MS	100
#define DURATION_MAX_MS (7ull * 24 * 3600 * 1000)
#define CONCURRENCY_MAX 64

struct cctx {
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

static const char *str(struct cctx *c, const yaml_node_t *n, const char *key)
{
	return ydoc_scalar(c->y, c->d, n, key, "a string");
}

static void take_str(struct cctx *c, const yaml_node_t *n, const char *key, char **dst)
{
	const char *s = str(c, n, key);

	if (s) {
		free(*dst);
		*dst = xstrdup(s);
	}
}

static void take_bool(struct cctx *c, const yaml_node_t *n, const char *key, bool *dst)
{
	const char *s = ydoc_scalar(c->y, c->d, n, key, "true or false");

	if (s == NULL)
		return;
	if (strcmp(s, "true") == 0)
		*dst = true;
	else if (strcmp(s, "false") == 0)
		*dst = false;
	else
		ydoc_diag(c->y, c->d, n, "'%s' must be true or false, not '%s'", key, s);
}

static void take_duration(struct cctx *c, const yaml_node_t *n, const char *key, uint64_t min,
			  uint64_t *dst)
{
	const char *s = ydoc_scalar(c->y, c->d, n, key, "a duration");
	uint64_t v;

	if (s == NULL)
		return;
	if (config_parse_duration(s, &v) < 0)
		ydoc_diag(c->y, c->d, n, "'%s' is not a duration like 500ms, 30s, 5m or 1h: '%s'",
			  key, s);
	else if (v < min)
		ydoc_diag(c->y, c->d, n, "'%s' must be at least %llums", key,
			  (unsigned long long)min);
	else
		*dst = v;
}

static void take_strv(struct cctx *c, const yaml_node_t *n, const char *key, struct strv *dst)
{
	if (n->type != YAML_SEQUENCE_NODE) {
		ydoc_diag(c->y, c->d, n, "'%s' must be a list, not %s", key, ydoc_kind(n));
		return;
	}
	strv_done(dst);
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		const char *s = str(c, ydoc_node(c->y, *it), key);
		if (s)
			strv_push(dst, xstrdup(s));
	}
}

/* Reads a secret file: relative names live in $CREDENTIALS_DIRECTORY (systemd
 * LoadCredential=) when it is set, else beside the config file. */
static char *resolve_file(struct cctx *c, const char *name)
{
	const char *creds = getenv("CREDENTIALS_DIRECTORY");

	if (name[0] == '/')
		return xstrdup(name);
	if (creds && creds[0])
		return xasprintf("%s/%s", creds, name);
	return xasprintf("%s/%s", c->dir, name);
}

static char *read_secret(struct cctx *c, const yaml_node_t *n, const char *key, const char *name)
{
	char *path = resolve_file(c, name), *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	ssize_t len = 0, r;

	if (fd < 0) {
		ydoc_diag(c->y, c->d, n, "'%s': cannot read '%s': %s", key, path, strerror(errno));
		goto out;
	}
	buf = xmalloc(CONFIG_SECRET_MAX + 1);
	while ((r = read(fd, buf + len, CONFIG_SECRET_MAX + 1 - (size_t)len)) > 0 &&
	       len + r <= (ssize_t)CONFIG_SECRET_MAX)
		len += r;
	if (r < 0 || len + (r > 0 ? r : 0) > (ssize_t)CONFIG_SECRET_MAX) {
		ydoc_diag(c->y, c->d, n, "'%s': '%s' is unreadable or larger than %u bytes", key,
			  path, CONFIG_SECRET_MAX);
		free(buf);
		buf = NULL;
		goto out;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	if (len == 0 || memchr(buf, '\0', (size_t)len) != NULL) {
		ydoc_diag(c->y, c->d, n, "'%s': '%s' is empty or holds a NUL byte", key, path);
		free(buf);
		buf = NULL;
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

#define FOR_PAIRS(c, node, kvar, vvar, body)                                                       \
	for (yaml_node_pair_t *p_ = (node)->data.mapping.pairs.start;                              \
	     p_ < (node)->data.mapping.pairs.top; p_++) {                                          \
		yaml_node_t *kvar = ydoc_node((c)->y, p_->key),                                    \
			    *vvar = ydoc_node((c)->y, p_->value);                                  \
		if (ydoc_pair_is_dup((c)->y, (node), p_))                                          \
			continue;                                                                  \
		body                                                                               \
	}

static void unknown(struct cctx *c, const yaml_node_t *k, const char *where, const char *known)
{
	ydoc_diag(c->y, c->d, k, "unknown key '%s' in %s (known: %s)",
		  (const char *)k->data.scalar.value, where, known);
}

static void parse_credentials(struct cctx *c, const yaml_node_t *n, struct config_repo *r)
{
	if (!ydoc_mapping(c->y, c->d, n, "credentials"))
		return;
	FOR_PAIRS(c, n, k, v, {
		const char *key = (const char *)k->data.scalar.value;
		const char *s;
		if (strcmp(key, "username") == 0) {
			take_str(c, v, key, &r->username);
		} else if (strcmp(key, "password_file") == 0) {
			if ((s = str(c, v, key)) != NULL) {
				free(r->password);
				r->password = read_secret(c, v, key, s);
			}
		} else if (strcmp(key, "ssh_key_file") == 0) {
			if ((s = str(c, v, key)) != NULL) {
				free(r->ssh_key_file);
				r->ssh_key_file = resolve_file(c, s);
				if (access(r->ssh_key_file, R_OK) < 0)
					ydoc_diag(c->y, c->d, v, "'%s': cannot read '%s': %s", key,
						  r->ssh_key_file, strerror(errno));
			}
		} else {
			unknown(c, k, "'credentials'", "username, password_file, ssh_key_file");
		}
	})
	if (r->password && !r->username)
		ydoc_diag(c->y, c->d, n, "'credentials' has a password_file but no username");
}

static void parse_webhook(struct cctx *c, const yaml_node_t *n, struct config_repo *r)
{
	const yaml_node_t *secret = NULL;

	if (!ydoc_mapping(c->y, c->d, n, "webhook"))
		return;
	FOR_PAIRS(c, n, k, v, {
		const char *key = (const char *)k->data.scalar.value;
		const char *s;
		if (strcmp(key, "provider") == 0) {
			if ((s = str(c, v, key)) == NULL)
				continue;
			if (strcmp(s, "github") && strcmp(s, "gitlab") && strcmp(s, "gitea") &&
			    strcmp(s, "generic"))
				ydoc_diag(
				    c->y, c->d, v,
				    "'provider' must be github, gitlab, gitea or generic, not '%s'",
				    s);
			else
				take_str(c, v, key, &r->webhook_provider);
		} else if (strcmp(key, "secret_file") == 0) {
			if ((s = str(c, v, key)) != NULL) {
				free(r->webhook_secret);
				r->webhook_secret = read_secret(c, v, key, s);
				secret = v;
			}
		} else if (strcmp(key, "header") == 0) {
			take_str(c, v, key, &r->webhook_header);
		} else {
			unknown(c, k, "'webhook'", "provider, secret_file, header");
		}
	})
	if (r->webhook_provider == NULL)
		ydoc_diag(c->y, c->d, n, "'webhook' needs 'provider'");
	else if (secret == NULL)
		ydoc_diag(c->y, c->d, n,
			  "'webhook' needs 'secret_file': unsigned hooks are refused");
	if (r->webhook_header &&
	    (r->webhook_provider == NULL || strcmp(r->webhook_provider, "generic")))
		ydoc_diag(c->y, c->d, n, "'header' applies only to the generic provider");
}

static void parse_repo(struct cctx *c, const yaml_node_t *n, struct config_repo *r)
{
	const yaml_node_t *name = NULL, *url = NULL;

	r->poll_interval_ms = 60 * 1000;
	r->manifest = xstrdup("manifest.yaml");
	if (!ydoc_mapping(c->y, c->d, n, "repositories[]"))
		return;
	FOR_PAIRS(c, n, k, v, {
		const char *key = (const char *)k->data.scalar.value;
		const char *s;
		if (strcmp(key, "name") == 0) {
			name = v;
			if ((s = str(c, v, key)) != NULL && !valid_repo_name(s))
				ydoc_diag(c->y, c->d, v,
					  "'name' must match [A-Za-z0-9._-]+, not '%s'", s);
			else
				take_str(c, v, key, &r->name);
		} else if (strcmp(key, "url") == 0) {
			url = v;
			if ((s = str(c, v, key)) != NULL && !valid_url(s))
				ydoc_diag(c->y, c->d, v,
					  "'url' must be a path, file://, https://, ssh:// or "
					  "git:// URL, "
					  "or user@host:path, not '%s'",
					  s);
			else
				take_str(c, v, key, &r->url);
		} else if (strcmp(key, "branches") == 0) {
			take_strv(c, v, key, &r->branches);
			for (size_t i = 0; i < r->branches.n; i++) {
				if (!valid_branch(r->branches.v[i]))
					ydoc_diag(c->y, c->d, v, "'%s' is not a valid branch name",
						  r->branches.v[i]);
				for (size_t j = 0; j < i; j++) {
					if (strcmp(r->branches.v[i], r->branches.v[j]) == 0)
						ydoc_diag(c->y, c->d, v,
							  "branch '%s' is listed twice",
							  r->branches.v[i]);
				}
			}
			if (v->type == YAML_SEQUENCE_NODE && r->branches.n == 0)
				ydoc_diag(c->y, c->d, v, "'branches' must not be empty");
		} else if (strcmp(key, "poll_interval") == 0) {
			take_duration(c, v, key, POLL_MIN_MS, &r->poll_interval_ms);
		} else if (strcmp(key, "manifest") == 0) {
			if ((s = str(c, v, key)) != NULL && !manifest_valid_file_name(s))
				ydoc_diag(c->y, c->d, v, "'manifest' must be a file name, not '%s'",
					  s);
			else
				take_str(c, v, key, &r->manifest);
		} else if (strcmp(key, "build_on_start") == 0) {
			if ((s = str(c, v, key)) == NULL)
				continue;
			if (strcmp(s, "none") == 0)
				r->build_on_start = CONFIG_BUILD_ON_START_NONE;
			else if (strcmp(s, "all") == 0)
				r->build_on_start = CONFIG_BUILD_ON_START_ALL;
			else
				ydoc_diag(c->y, c->d, v,
					  "'build_on_start' must be none or all, not '%s'", s);
		} else if (strcmp(key, "credentials") == 0) {
			parse_credentials(c, v, r);
		} else if (strcmp(key, "webhook") == 0) {
			parse_webhook(c, v, r);
		} else if (strcmp(key, "overwrite_tags") == 0) {
			take_bool(c, v, key, &r->overwrite_tags);
		} else {
			unknown(c, k, "a repository",
				"name, url, branches, poll_interval, manifest, build_on_start, "
				"credentials, webhook, overwrite_tags");
		}
	})
	if (name == NULL)
		ydoc_diag(c->y, c->d, n, "a repository needs 'name'");
	if (url == NULL)
		ydoc_diag(c->y, c->d, n, "a repository needs 'url'");
	if (r->branches.n == 0)
		strv_push(&r->branches, xstrdup("main"));
}

static void take_group(struct cctx *c, const yaml_node_t *n, const char *key, char **dst)
{
	const char *s = str(c, n, key);

	if (s == NULL)
		return;
	if (getgrnam(s) == NULL)
		ydoc_diag(c->y, c->d, n, "'%s': no group '%s' on this system", key, s);
	else
		take_str(c, n, key, dst);
}

static void parse_registries(struct cctx *c, const yaml_node_t *v, struct config *cfg)
{
	if (v->type != YAML_SEQUENCE_NODE) {
		ydoc_diag(c->y, c->d, v, "'registries' must be a list, not %s", ydoc_kind(v));
		return;
	}
	cfg->registries =
	    xcalloc((size_t)(v->data.sequence.items.top - v->data.sequence.items.start) + 1,
		    sizeof(*cfg->registries));
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		const yaml_node_t *n = ydoc_node(c->y, *it);
		struct config_registry *g = &cfg->registries[cfg->nregistries++];
		if (!ydoc_mapping(c->y, c->d, n, "registries[]"))
			continue;
		FOR_PAIRS(c, n, k, v2, {
			const char *key = (const char *)k->data.scalar.value;
			const char *s;
			if (strcmp(key, "host") == 0) {
				if ((s = str(c, v2, key)) != NULL &&
				    (!manifest_valid_registry(s) || strchr(s, '/')))
					ydoc_diag(c->y, c->d, v2,
						  "'host' must be a registry host[:port], not '%s'",
						  s);
				else
					take_str(c, v2, key, &g->host);
			} else if (strcmp(key, "username") == 0) {
				take_str(c, v2, key, &g->username);
			} else if (strcmp(key, "password_file") == 0) {
				if ((s = str(c, v2, key)) != NULL) {
					free(g->password);
					g->password = read_secret(c, v2, key, s);
				}
			} else {
				unknown(c, k, "'registries[]'", "host, username, password_file");
			}
		})
		if (!g->host)
			ydoc_diag(c->y, c->d, n, "'registries[]' needs 'host'");
		else if (!g->username || !g->password)
			ydoc_diag(c->y, c->d, n,
				  "registry '%s' needs 'username' and 'password_file'", g->host);
		for (size_t j = 0; g->host && j + 1 < cfg->nregistries; j++)
			if (cfg->registries[j].host &&
			    strcmp(cfg->registries[j].host, g->host) == 0)
				ydoc_diag(c->y, c->d, n, "registry '%s' is listed twice", g->host);
	}
}

int config_parse_size(const char *s, uint64_t *ret)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > (1ull << 40))
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

static void parse_section(struct cctx *c, const yaml_node_t *k, const yaml_node_t *v,
			  struct config *cfg)
{
	const char *key = (const char *)k->data.scalar.value;

	if (strcmp(key, "state_dir") == 0) {
		const char *s = str(c, v, key);
		if (s && s[0] != '/')
			ydoc_diag(c->y, c->d, v, "'state_dir' must be an absolute path");
		else
			take_str(c, v, key, &cfg->state_dir);
	} else if (strcmp(key, "docker") == 0) {
		if (!ydoc_mapping(c->y, c->d, v, key))
			return;
		FOR_PAIRS(c, v, k2, v2, {
			const char *key2 = (const char *)k2->data.scalar.value;
			if (strcmp(key2, "host") == 0) {
				const char *s = str(c, v2, key2);
				if (s && strncmp(s, "unix:///", 8) && strncmp(s, "tcp://", 6))
					ydoc_diag(c->y, c->d, v2,
						  "'host' must be unix:///path or tcp://host:port, "
						  "not '%s'",
						  s);
				else
					take_str(c, v2, key2, &cfg->docker_host);
			} else if (strcmp(key2, "cert_path") == 0) {
				take_str(c, v2, key2, &cfg->docker_cert_path);
			} else if (strcmp(key2, "tls_verify") == 0) {
				bool b = false;
				take_bool(c, v2, key2, &b);
				cfg->docker_tls_verify = b;
			} else {
				unknown(c, k2, "'docker'", "host, tls_verify, cert_path");
			}
		})
	} else if (strcmp(key, "builds") == 0) {
		if (!ydoc_mapping(c->y, c->d, v, key))
			return;
		FOR_PAIRS(c, v, k2, v2, {
			const char *key2 = (const char *)k2->data.scalar.value;
			if (strcmp(key2, "concurrency") == 0) {
				const char *s = ydoc_scalar(c->y, c->d, v2, key2, "a number");
				char *end;
				long n = s ? strtol(s, &end, 10) : 0;
				if (s && (*end || n < 1 || n > CONCURRENCY_MAX))
					ydoc_diag(c->y, c->d, v2, "'concurrency' must be 1 to %d",
						  CONCURRENCY_MAX);
				else if (s)
					cfg->concurrency = (unsigned)n;
			} else if (strcmp(key2, "dry_run") == 0) {
				take_bool(c, v2, key2, &cfg->dry_run);
			} else if (strcmp(key2, "retries") == 0 || strcmp(key2, "keep_logs") == 0) {
				const char *s = ydoc_scalar(c->y, c->d, v2, key2, "a number");
				char *end;
				long n = s ? strtol(s, &end, 10) : 0;
				long max = key2[0] == 'r' ? 100 : 1000000;
				if (s && (*end || n < (key2[0] == 'r' ? 0 : 1) || n > max))
					ydoc_diag(c->y, c->d, v2, "'%s' must be %d to %ld", key2,
						  key2[0] == 'r' ? 0 : 1, max);
				else if (s && key2[0] == 'r')
					cfg->retries = (unsigned)n;
				else if (s)
					cfg->keep_logs = (unsigned)n;
			} else if (strcmp(key2, "retry_delay") == 0) {
				take_duration(c, v2, key2, POLL_MIN_MS, &cfg->retry_delay_ms);
			} else if (strcmp(key2, "test_timeout") == 0) {
				take_duration(c, v2, key2, 1000, &cfg->test_timeout_ms);
			} else if (strcmp(key2, "log_max_size") == 0) {
				const char *s = ydoc_scalar(c->y, c->d, v2, key2, "a size");
				if (s && config_parse_size(s, &cfg->log_max_bytes) < 0)
					ydoc_diag(c->y, c->d, v2,
						  "'log_max_size' must be a size like 512K, 10M or "
						  "1G, not '%s'",
						  s);
			} else {
				unknown(c, k2, "'builds'",
					"concurrency, dry_run, retries, retry_delay, test_timeout, "
					"log_max_size, keep_logs");
			}
		})
	} else if (strcmp(key, "listen") == 0) {
		if (!ydoc_mapping(c->y, c->d, v, key))
			return;
		FOR_PAIRS(c, v, k2, v2, {
			const char *key2 = (const char *)k2->data.scalar.value;
			if (strcmp(key2, "http") == 0)
				take_strv(c, v2, key2, &cfg->listen_http);
			else if (strcmp(key2, "status_socket") == 0)
				take_str(c, v2, key2, &cfg->status_socket);
			else if (strcmp(key2, "header_timeout") == 0)
				take_duration(c, v2, key2, POLL_MIN_MS, &cfg->header_timeout_ms);
			else if (strcmp(key2, "body_timeout") == 0)
				take_duration(c, v2, key2, POLL_MIN_MS, &cfg->body_timeout_ms);
			else if (strcmp(key2, "idle_timeout") == 0)
				take_duration(c, v2, key2, POLL_MIN_MS, &cfg->idle_timeout_ms);
			else if (strcmp(key2, "status_group") == 0 ||
				 strcmp(key2, "admin_group") == 0)
				take_group(c, v2, key2,
					   key2[0] == 's' ? &cfg->status_group : &cfg->admin_group);
			else
				unknown(c, k2, "'listen'",
					"http, header_timeout, body_timeout, idle_timeout, "
					"status_socket, status_group, admin_group");
		})
	} else if (strcmp(key, "registries") == 0) {
		parse_registries(c, v, cfg);
	} else if (strcmp(key, "shutdown_grace") == 0) {
		take_duration(c, v, key, 0, &cfg->shutdown_grace_ms);
	} else if (strcmp(key, "repositories") == 0) {
		if (v->type != YAML_SEQUENCE_NODE) {
			ydoc_diag(c->y, c->d, v, "'repositories' must be a list, not %s",
				  ydoc_kind(v));
			return;
		}
		cfg->repos =
		    xcalloc((size_t)(v->data.sequence.items.top - v->data.sequence.items.start) + 1,
			    sizeof(*cfg->repos));
		for (yaml_node_item_t *it = v->data.sequence.items.start;
		     it < v->data.sequence.items.top; it++) {
			const yaml_node_t *rn = ydoc_node(c->y, *it);
			struct config_repo *r = &cfg->repos[cfg->nrepos++];
			parse_repo(c, rn, r);
			for (size_t j = 0; r->name && j + 1 < cfg->nrepos; j++) {
				if (cfg->repos[j].name && strcmp(cfg->repos[j].name, r->name) == 0)
					ydoc_diag(c->y, c->d, rn,
						  "repository name '%s' is used twice", r->name);
			}
		}
	} else {
		unknown(c, k, "the configuration",
			"state_dir, docker, builds, registries, listen, shutdown_grace, "
			"repositories");
	}
}

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

int config_load(const char *path, struct config *ret, struct kiln_diags *diags)
{
	struct config cfg = {0};
	struct ydoc y;
	size_t before = diags->n, len = 0;
	char *text = read_file(path, &len, diags), *dir;
	struct cctx c = {&y, diags, NULL};
	yaml_node_t *root;

	memset(ret, 0, sizeof(*ret));
	if (text == NULL)
		return -EINVAL;
	dir = xstrdup(path);
	if (strrchr(dir, '/'))
		*strrchr(dir, '/') = '\0';
	else
		strcpy(dir, ".");
	c.dir = dir;
	cfg.path = xstrdup(path);
	cfg.state_dir = xstrdup("/var/lib/kiln");
	cfg.docker_tls_verify = -1;
	cfg.concurrency = 2;
	cfg.dry_run = false;
	cfg.retries = 3;
	cfg.retry_delay_ms = 10 * 1000;
	cfg.test_timeout_ms = 10 * 60 * 1000;
	cfg.log_max_bytes = 10u << 20;
	cfg.keep_logs = 1000;
	cfg.status_socket = xstrdup("/run/kiln/kiln.sock");
	cfg.shutdown_grace_ms = 30 * 1000;
	cfg.header_timeout_ms = 10 * 1000;
	cfg.body_timeout_ms = 30 * 1000;
	cfg.idle_timeout_ms = 15 * 1000;
	if (memchr(text, '\0', len)) {
		kiln_diags_add(diags, path, 0, 0, "contains a NUL byte");
	} else if (ydoc_load(&y, text, len, path, diags) == 0) {
		root = ydoc_root(&y);
		if (root == NULL)
			kiln_diags_add(diags, path, 1, 1, "the configuration is empty");
		else if (ydoc_mapping(&y, diags, root, "the configuration"))
			FOR_PAIRS(&c, root, k, v, { parse_section(&c, k, v, &cfg); })
	}
	ydoc_done(&y);
	free(text);
	free(dir);
	if (diags->n != before) {
		config_done(&cfg);
		return -EINVAL;
	}
	*ret = cfg;
	return 0;
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
		if (r->password)
			explicit_bzero(r->password, strlen(r->password));
		free(r->password);
		free(r->ssh_key_file);
		free(r->webhook_provider);
		if (r->webhook_secret)
			explicit_bzero(r->webhook_secret, strlen(r->webhook_secret));
		free(r->webhook_secret);
		free(r->webhook_header);
	}
	free(c->repos);
	free(c->path);
	free(c->state_dir);
	free(c->docker_host);
	free(c->docker_cert_path);
	for (size_t i = 0; i < c->nregistries; i++) {
		free(c->registries[i].host);
		free(c->registries[i].username);
		if (c->registries[i].password)
			explicit_bzero(c->registries[i].password,
				       strlen(c->registries[i].password));
		free(c->registries[i].password);
	}
	free(c->registries);
	strv_done(&c->listen_http);
	free(c->status_socket);
	free(c->status_group);
	free(c->admin_group);
	memset(c, 0, sizeof(*c));
}

const struct config_repo *config_repo(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nrepos; i++) {
		if (c->repos[i].name && strcmp(c->repos[i].name, name) == 0)
			return &c->repos[i];
	}
	return NULL;
}
