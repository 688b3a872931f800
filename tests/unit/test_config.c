/* test_config.c: kilnd.yaml parsing: defaults, every section, secrets from
 * files and $CREDENTIALS_DIRECTORY, and located errors; the key table itself
 * (every row parses and lands in its field, ranges, defaults, unknown keys)
 * and README.md's table printed from it.
 * `test_config --markdown` prints that table for pasting into README.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kiln/config.h"

static char dir[] = "/tmp/kiln-test-config.XXXXXX";

static char *write_file(const char *name, const char *text)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	free(write_file("token", "hunter2\n"));
	free(write_file("hook.secret", "s3cret"));
	free(write_file("reg.token", "pa55\n"));
	free(write_file("empty", ""));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Loads text expecting failure with a diag at line:col containing needle. */
static void expect_error(const char *text, unsigned line, unsigned col, const char *needle)
{
	char *path = write_file("bad.yaml", text);
	struct config c;
	struct kiln_diags d = {0};
	bool found = false;

	assert_int_equal(config_load(path, &c, &d), -EINVAL);
	for (size_t i = 0; i < d.n; i++) {
		if (d.v[i].line == line && d.v[i].column == col && strstr(d.v[i].message, needle))
			found = true;
		/* secrets never appear in messages */
		assert_null(strstr(d.v[i].message, "hunter2"));
	}
	if (!found) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "got %u:%u: %s\n", d.v[i].line, d.v[i].column,
				d.v[i].message);
		fail_msg("no error at %u:%u containing '%s'", line, col, needle);
	}
	assert_null(c.path);
	kiln_diags_done(&d);
	free(path);
}

static void full_config(void **state)
{
	char *path = write_file(
	    "full.yaml",
	    "state_dir: /var/lib/kiln-test\n"
	    "docker: {host: \"tcp://10.0.0.5:2376\", tls_verify: false}\n"
	    "builds: {concurrency: 3, dry_run: true, retries: 5, retry_delay: 2s,\n"
	    "         test_timeout: 1m, log_max_size: 512K, keep_logs: 20}\n"
	    "registries:\n"
	    "  - {host: \"r.example.com:5000\", username: ci, password_file: reg.token}\n"
	    "listen: {http: [\"127.0.0.1:8080\", \"[::1]:8081\"], status_socket: /run/k.sock,\n"
	    "         header_timeout: 2s, body_timeout: 3s, idle_timeout: 4s, bodies_max: 32M}\n"
	    "shutdown_grace: 1m\n"
	    "repositories:\n"
	    "  - name: images\n"
	    "    url: https://git.example.com/team/images.git\n"
	    "    branches: [main, release/1.x]\n"
	    "    poll_interval: 500ms\n"
	    "    manifest: image.yaml\n"
	    "    build_on_start: all\n"
	    "    credentials: {username: ci, password_file: token}\n"
	    "    webhook: {provider: github, secret_file: hook.secret}\n"
	    "  - name: other.repo_2\n"
	    "    url: /srv/git/other.git\n");
	struct config c;
	struct kiln_diags d = {0};
	const struct config_repo *r;

	(void)state;
	assert_int_equal(config_load(path, &c, &d), 0);
	assert_int_equal(d.n, 0);
	assert_string_equal(c.state_dir, "/var/lib/kiln-test");
	assert_string_equal(c.docker_host, "tcp://10.0.0.5:2376");
	assert_int_equal(c.docker_tls_verify, 0);
	assert_int_equal(c.concurrency, 3);
	assert_true(c.dry_run);
	assert_int_equal(c.retries, 5);
	assert_int_equal(c.retry_delay_ms, 2000);
	assert_int_equal(c.test_timeout_ms, 60000);
	assert_int_equal(c.log_max_bytes, 512 * 1024);
	assert_int_equal(c.keep_logs, 20);
	assert_int_equal(c.nregistries, 1);
	assert_string_equal(c.registries[0].host, "r.example.com:5000");
	assert_string_equal(c.registries[0].username, "ci");
	assert_string_equal(c.registries[0].password, "pa55");
	assert_int_equal(c.listen_http.n, 2);
	assert_string_equal(c.status_socket, "/run/k.sock");
	assert_int_equal(c.header_timeout_ms, 2000);
	assert_int_equal(c.body_timeout_ms, 3000);
	assert_int_equal(c.idle_timeout_ms, 4000);
	assert_int_equal(c.bodies_max, 32u << 20);
	assert_int_equal(c.shutdown_grace_ms, 60000);
	assert_int_equal(c.nrepos, 2);
	r = config_repo(&c, "images");
	assert_non_null(r);
	assert_int_equal(r->branches.n, 2);
	assert_string_equal(r->branches.v[1], "release/1.x");
	assert_int_equal(r->poll_interval_ms, 500);
	assert_string_equal(r->manifest, "image.yaml");
	assert_int_equal(r->build_on_start, CONFIG_BUILD_ON_START_ALL);
	assert_string_equal(r->username, "ci");
	assert_string_equal(r->password, "hunter2"); /* the trailing newline is dropped */
	assert_string_equal(r->webhook_provider, "github");
	assert_string_equal(r->webhook_secret, "s3cret");
	r = config_repo(&c, "other.repo_2");
	assert_non_null(r);
	assert_int_equal(r->branches.n, 1); /* default [main] */
	assert_string_equal(r->branches.v[0], "main");
	assert_int_equal(r->poll_interval_ms, 60000);
	assert_int_equal(r->repack_packs, 32);
	assert_string_equal(r->manifest, "manifest.yaml");
	assert_null(r->password);
	assert_null(config_repo(&c, "nope"));
	config_done(&c);
	free(path);
}

static void defaults(void **state)
{
	char *path = write_file("min.yaml", "repositories: []\n");
	struct config c;
	struct kiln_diags d = {0};

	(void)state;
	assert_int_equal(config_load(path, &c, &d), 0);
	assert_string_equal(c.state_dir, "/var/lib/kiln");
	assert_string_equal(c.status_socket, "/run/kiln/kiln.sock");
	assert_int_equal(c.concurrency, 2);
	assert_false(c.dry_run);
	assert_null(c.docker_host); /* $DOCKER_HOST, then the default socket */
	assert_int_equal(c.docker_tls_verify, -1);
	assert_int_equal(c.retries, 3);
	assert_int_equal(c.shutdown_grace_ms, 30000);
	assert_int_equal(c.health_repo_failing_ms, 10 * 60 * 1000);
	assert_int_equal(c.health_min_free_bytes, 1ull << 30);
	assert_int_equal(c.nrepos, 0);
	config_done(&c);
	free(path);
}

static void credentials_directory(void **state)
{
	char *path = write_file("creds.yaml",
				"repositories:\n"
				"  - name: a\n"
				"    url: /r\n"
				"    webhook: {provider: gitlab, secret_file: only-in-creds}\n");
	struct config c;
	struct kiln_diags d = {0};

	(void)state;
	assert_int_equal(config_load(path, &c, &d), -EINVAL);
	kiln_diags_done(&d);
	free(write_file("creds-dir-only-in-creds", "from-creds\n"));
	{
		char *cd;
		char *sub;
		if (asprintf(&cd, "%s/credsdir", dir) < 0)
			abort();
		assert_int_equal(mkdir(cd, 0700), 0);
		if (asprintf(&sub, "%s/only-in-creds", cd) < 0)
			abort();
		FILE *f = fopen(sub, "w");
		fputs("from-creds\n", f);
		fclose(f);
		setenv("CREDENTIALS_DIRECTORY", cd, 1);
		assert_int_equal(config_load(path, &c, &d), 0);
		unsetenv("CREDENTIALS_DIRECTORY");
		assert_string_equal(c.repos[0].webhook_secret, "from-creds");
		config_done(&c);
		free(sub);
		free(cd);
	}
	free(path);
}

static void errors_located(void **state)
{
	(void)state;
	expect_error("brnach: 1\n", 1, 1, "unknown key 'brnach'");
	expect_error("state_dir: relative/dir\n", 1, 12, "absolute path");
	expect_error("builds: {concurrency: 0}\n", 1, 23, "must be 1 to 64");
	expect_error("builds: {concurrency: lots}\n", 1, 23, "must be 1 to 64");
	expect_error("builds: {retries: -1}\n", 1, 19, "must be 0 to 100");
	expect_error("builds: {log_max_size: 10 MB}\n", 1, 24, "like 512K");
	expect_error("builds: {keep_logs: 0}\n", 1, 21, "must be 1 to");
	expect_error("builds: {builder: kit}\n", 1, 19, "must be auto, buildkit or classic");
	expect_error("builds: {network: bridge}\n", 1, 19, "must be default, none or host");
	expect_error("docker: {host: /var/run/docker.sock}\n", 1, 16, "unix:///path or tcp://");
	expect_error("registries:\n  - {host: r.example.com}\n", 2, 5, "needs 'username'");
	expect_error("registries:\n  - {host: r.example.com/ns, username: u}\n", 2, 12,
		     "host[:port]");
	expect_error("repositories:\n  - {name: a, url: /r, overwrite_tags: yes}\n", 2, 40,
		     "true or false");
	expect_error("builds: {dry_run: maybe}\n", 1, 19, "true or false");
	expect_error("shutdown_grace: 10 years\n", 1, 17, "not a duration");
	expect_error("listen: {http: 8080}\n", 1, 16, "must be a list");
	expect_error("docker: {sock: x}\n", 1, 10, "unknown key 'sock'");
	expect_error("repositories: {a: 1}\n", 1, 15, "must be a list");
	expect_error("repositories:\n  - url: /r\n", 2, 5, "needs 'name'");
	expect_error("repositories:\n  - name: a\n", 2, 5, "needs 'url'");
	expect_error("repositories:\n  - {name: 'a b', url: /r}\n", 2, 12, "must match");
	expect_error("repositories:\n  - {name: a, url: 'ftp://x'}\n", 2, 20, "must be a path");
	expect_error("repositories:\n  - {name: a, url: /r}\n  - {name: a, url: /s}\n", 3, 5,
		     "used twice");
	expect_error("repositories:\n  - {name: a, url: /r, branches: []}\n", 2, 34,
		     "must not be empty");
	expect_error("repositories:\n  - {name: a, url: /r, branches: ['a..b']}\n", 2, 34,
		     "not a valid branch");
	expect_error("repositories:\n  - {name: a, url: /r, branches: [x, x]}\n", 2, 34,
		     "listed twice");
	expect_error("repositories:\n  - {name: a, url: /r, poll_interval: 10ms}\n", 2, 39,
		     "at least 100ms");
	expect_error("repositories:\n  - {name: a, url: /r, manifest: a/b.yaml}\n", 2, 34,
		     "file name");
	expect_error("repositories:\n  - {name: a, url: /r, build_on_start: some}\n", 2, 40,
		     "none or all");
	expect_error("repositories:\n  - {name: a, url: /r, credentials: {password_file: token}}\n",
		     2, 37, "no username");
	expect_error("repositories:\n  - {name: a, url: /r, credentials: {token: x}}\n", 2, 38,
		     "unknown key 'token'");
	expect_error(
	    "repositories:\n  - {name: a, url: /r, credentials: {username: u, password_file: "
	    "empty}}\n",
	    2, 66, "empty");
	expect_error(
	    "repositories:\n  - {name: a, url: /r, webhook: {provider: svn, secret_file: token}}\n",
	    2, 44, "github, gitlab, gitea or generic");
	expect_error("repositories:\n  - {name: a, url: /r, webhook: {provider: github}}\n", 2, 33,
		     "needs 'secret_file'");
	expect_error(
	    "repositories:\n  - {name: a, url: /r, webhook: {provider: github, secret_file: "
	    "token, header: X-Sig}}\n",
	    2, 33, "only to the generic provider");
	expect_error("state_dir: [\n", 2, 1, "YAML syntax error");
	expect_error("", 1, 1, "empty");
}

static void every_error_at_once(void **state)
{
	char *path =
	    write_file("many.yaml", "brnach: 1\nshutdown_grace: x\nrepositories:\n  - {url: /r}\n");
	struct config c;
	struct kiln_diags d = {0};

	(void)state;
	assert_int_equal(config_load(path, &c, &d), -EINVAL);
	assert_int_equal(d.n, 3);
	kiln_diags_done(&d);
	free(path);
}

static void missing_file(void **state)
{
	struct config c;
	struct kiln_diags d = {0};

	(void)state;
	assert_int_equal(config_load("/nonexistent/kilnd.yaml", &c, &d), -EINVAL);
	assert_string_equal(d.v[0].path, "/nonexistent/kilnd.yaml");
	assert_non_null(strstr(d.v[0].message, "cannot open"));
	kiln_diags_done(&d);
}

static void durations(void **state)
{
	uint64_t ms = 0;

	(void)state;
	assert_int_equal(config_parse_duration("500ms", &ms), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(config_parse_duration("30s", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(config_parse_duration("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(config_parse_duration("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(config_parse_duration("1", &ms), -EINVAL);
	assert_int_equal(config_parse_duration("s", &ms), -EINVAL);
	assert_int_equal(config_parse_duration("-1s", &ms), -EINVAL);
	assert_int_equal(config_parse_duration("1.5s", &ms), -EINVAL);
	assert_int_equal(config_parse_duration("99999999999h", &ms), -ERANGE);
}

/* --- the key table --- */

static char *dotted(const struct config_key *k)
{
	char *s;

	if (asprintf(&s, "%s%s%s", k->section, k->section[0] ? "." : "", k->key) < 0)
		abort();
	return s;
}

/* A group this process is in, so parse_group's getgrnam() finds it. */
static const char *my_group(void)
{
	struct group *g = getgrgid(getgid());

	return g ? g->gr_name : "root";
}

/* A valid value for every leaf key (YAML text, then the field as value_str
 * renders it): a key added to the table without one here fails
 * every_key_parses. Each differs from the key's default. */
static const struct sample {
	const char *name, *yaml, *want;
} samples[] = {
    {"state_dir", "/srv/k", "/srv/k"},
    {"state_backup_interval", "2m", "120000"},
    {"docker.host", "\"tcp://h:1\"", "tcp://h:1"},
    {"docker.tls_verify", "true", "1"},
    {"docker.cert_path", "/certs", "/certs"},
    {"builds.concurrency", "64", "64"},
    {"builds.dry_run", "true", "1"},
    {"builds.retries", "100", "100"},
    {"builds.retry_delay", "7s", "7000"},
    {"builds.test_timeout", "2m", "120000"},
    {"builds.log_max_size", "3K", "3072"},
    {"builds.keep_logs", "1000000", "1000000"},
    {"builds.builder", "buildkit", "buildkit"},
    {"builds.network", "none", "none"},
    {"builds.pull", "true", "1"},
    {"registries[].host", "\"r2.example.com:5000\"", "r2.example.com:5000"},
    {"registries[].username", "bob", "bob"},
    {"registries[].password_file", "reg.token", "pa55"},
    {"listen.http", "[\"127.0.0.1:0\", \":8080\"]", "127.0.0.1:0,:8080"},
    {"listen.dashboard", "true", "1"},
    {"listen.dashboard_http", "\"127.0.0.1:8081\"", "127.0.0.1:8081"},
    {"listen.header_timeout", "1s", "1000"},
    {"listen.body_timeout", "2s", "2000"},
    {"listen.idle_timeout", "3s", "3000"},
    {"listen.first_byte_timeout", "500ms", "500"},
    {"listen.connections_per_client", "8", "8"},
    {"listen.bodies_max", "1G", "1073741824"},
    {"listen.status_socket", "/s.sock", "/s.sock"},
    {"listen.status_idle_timeout", "90s", "90000"},
    {"listen.status_group", NULL, NULL}, /* my_group() */
    {"listen.admin_group", NULL, NULL},
    {"dashboard.auth_file", "token", NULL}, /* dir/token */
    {"shutdown_grace", "1h", "3600000"},
    {"health.repository_failing_after", "200ms", "200"},
    {"health.min_free_space", "0", "0"},
    {"repositories[].name", "b-c_d.e", "b-c_d.e"},
    {"repositories[].url", "\"git@h:x.git\"", "git@h:x.git"},
    {"repositories[].branches", "[dev, release/2]", "dev,release/2"},
    {"repositories[].poll_interval", "100ms", "100"},
    {"repositories[].repack_packs", "0", "0"},
    {"repositories[].manifest", "image.yaml", "image.yaml"},
    {"repositories[].build_on_start", "all", "1"},
    {"repositories[].credentials.username", "ci", "ci"},
    {"repositories[].credentials.password_file", "token", "hunter2"},
    {"repositories[].credentials.ssh_key_file", "token", NULL}, /* dir/token */
    {"repositories[].webhook.provider", "gitlab", "gitlab"},
    {"repositories[].webhook.secret_file", "hook.secret", "s3cret"},
    {"repositories[].webhook.header", "X-Sig", "X-Sig"},
    {"repositories[].overwrite_tags", "true", "1"},
    {"repositories[].secrets[].id", "tok.en_1", "tok.en_1"},
    {"repositories[].secrets[].file", "token", NULL}, /* dir/token */
    {"dashboard.url", "\"https://kiln.example.com\"", "https://kiln.example.com"},
    {"notify[].url", "\"https://n.example.com/k\"", "https://n.example.com/k"},
    {"notify[].secret_file", "hook.secret", "s3cret"},
    {"notify[].events", "[superseded]", "superseded"},
    {"repositories[].status.provider", "gitlab", "gitlab"},
    {"repositories[].status.api_url", "\"https://gh.example.com/api/v3\"",
     "https://gh.example.com/api/v3"},
    {"repositories[].status.token_file", "token", "hunter2"},
    {"repositories[].status.project", "o/n", "o/n"},
    {"repositories[].notify[].url", "\"http://n.example.com/k\"", "http://n.example.com/k"},
    {"repositories[].notify[].secret_file", "hook.secret", "s3cret"},
    {"repositories[].notify[].events", "[failed]", "failed"},
};

static const struct sample *sample_for(const struct config_key *k)
{
	char *name = dotted(k);
	const struct sample *s = NULL;

	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		if (strcmp(samples[i].name, name) == 0)
			s = &samples[i];
	}
	free(name);
	return s;
}

/* A list of sections (registries, repositories) is exercised through its keys. */
static bool is_leaf(const struct config_key *k)
{
	char *name = dotted(k);
	size_t n = strlen(name);
	bool has_children = false;

	for (size_t i = 0; i < config_nkeys; i++) {
		if (strncmp(config_keys[i].section, name, n) == 0 &&
		    (config_keys[i].section[n] == '[' || config_keys[i].section[n] == '\0'))
			has_children = true;
	}
	free(name);
	return k->type != CONFIG_SECTION && !has_children;
}

/* The shortest valid file that sets key k of its section to yaml (or leaves k
 * out when yaml is NULL); companions that k would duplicate are left out. */
static char *yaml_for(const struct config_key *k, const char *yaml)
{
	static const struct {
		const char *section, *head, *companions[3], *tail;
	} ctx[] = {
	    {"registries[]",
	     "registries:\n  - {",
	     {"host: r.example.com", "username: u", "password_file: reg.token"},
	     "}\n"},
	    {"repositories[]", "repositories:\n  - {", {"name: a", "url: /r"}, "}\n"},
	    {"repositories[].credentials",
	     "repositories:\n  - {name: a, url: /r, credentials: {",
	     {"username: u"},
	     "}}\n"},
	    {"repositories[].webhook",
	     "repositories:\n  - {name: a, url: /r, webhook: {",
	     {"provider: generic", "secret_file: hook.secret"},
	     "}}\n"},
	    {"repositories[].secrets[]",
	     "repositories:\n  - {name: a, url: /r, secrets: [{",
	     {"id: t", "file: token"},
	     "}]}\n"},
	    {"repositories[].status",
	     "repositories:\n  - {name: a, url: /r, status: {",
	     {"provider: github", "token_file: token", "project: o/n"},
	     "}}\n"},
	    {"repositories[].notify[]",
	     "repositories:\n  - {name: a, url: /r, notify: [{",
	     {"url: \"http://h/x\""},
	     "}]}\n"},
	    {"notify[]", "notify:\n  - {", {"url: \"http://h/x\""}, "}\n"},
	};
	char *text = NULL, *item;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	bool first = true;

	assert_non_null(f);
	if (yaml)
		assert_int_not_equal(asprintf(&item, "%s: %s", k->key, yaml), -1);
	else
		item = NULL;
	if (k->section[0] == '\0') {
		/* something else at the top, so the file is never empty */
		fprintf(f, "%s\n%s", strcmp(k->key, "docker") ? "docker: {}" : "builds: {}",
			item ? item : "");
	} else if (strchr(k->section, '[') == NULL) {
		fprintf(f, "%s: {%s}\n", k->section, item ? item : "");
	} else {
		for (size_t i = 0; i < sizeof(ctx) / sizeof(ctx[0]); i++) {
			if (strcmp(ctx[i].section, k->section) != 0)
				continue;
			fputs(ctx[i].head, f);
			for (size_t j = 0; j < 3 && ctx[i].companions[j]; j++) {
				size_t n = strlen(k->key);
				if (strncmp(ctx[i].companions[j], k->key, n) == 0 &&
				    ctx[i].companions[j][n] == ':')
					continue;
				fprintf(f, "%s%s", first ? "" : ", ", ctx[i].companions[j]);
				first = false;
			}
			if (item)
				fprintf(f, "%s%s", first ? "" : ", ", item);
			fputs(ctx[i].tail, f);
		}
	}
	fclose(f);
	free(item);
	assert_true(len > 0);
	return text;
}

/* The struct k's offset is into, in a loaded config. */
static char *field_of(const struct config_key *k, struct config *c)
{
	if (strncmp(k->section, "registries[]", 12) == 0)
		return c->nregistries ? (char *)&c->registries[0] + k->offset : NULL;
	if (strcmp(k->section, "repositories[].secrets[]") == 0)
		return c->nrepos && c->repos[0].nsecrets
			   ? (char *)&c->repos[0].secrets[0] + k->offset
			   : NULL;
	if (strcmp(k->section, "notify[]") == 0)
		return c->notify.n ? (char *)&c->notify.v[0] + k->offset : NULL;
	if (strcmp(k->section, "repositories[].notify[]") == 0)
		return c->nrepos && c->repos[0].notify.n
			   ? (char *)&c->repos[0].notify.v[0] + k->offset
			   : NULL;
	if (strncmp(k->section, "repositories[]", 14) == 0)
		return c->nrepos ? (char *)&c->repos[0] + k->offset : NULL;
	return (char *)c + k->offset;
}

/* The field k names, as text (lists joined with ','). */
static char *value_str(const struct config_key *k, const char *p)
{
	char *s = NULL;
	int r = 0;

	switch (k->type) {
	case CONFIG_NUMBER:
		r = asprintf(&s, "%u", *(const unsigned *)p);
		break;
	case CONFIG_DURATION:
	case CONFIG_SIZE:
		r = asprintf(&s, "%llu", (unsigned long long)*(const uint64_t *)p);
		break;
	case CONFIG_BOOL:
		if (strcmp(k->key, "tls_verify") == 0) /* int: -1 means unset */
			r = asprintf(&s, "%d", *(const int *)p);
		else
			r = asprintf(&s, "%d", *(const bool *)p);
		break;
	case CONFIG_STRING:
	case CONFIG_FILE:
		if (strcmp(k->key, "build_on_start") == 0)
			r = asprintf(&s, "%d", (int)*(const enum config_build_on_start *)p);
		else
			s = strdup(*(char *const *)p ? *(char *const *)p : "(null)");
		break;
	case CONFIG_LIST: {
		const struct strv *sv = (const struct strv *)p;
		size_t len = 0;
		FILE *f = open_memstream(&s, &len);
		for (size_t i = 0; i < sv->n; i++)
			fprintf(f, "%s%s", i ? "," : "", sv->v[i]);
		fclose(f);
		break;
	}
	case CONFIG_SECTION:
		fail_msg("a section has no value");
	}
	assert_true(r >= 0 && s != NULL);
	return s;
}

/* Loads text, which must be valid, and returns the field k names as text. */
static char *load_value(const struct config_key *k, const char *text)
{
	char *path = write_file("key.yaml", text), *v;
	struct config c;
	struct kiln_diags d = {0};

	if (config_load(path, &c, &d) != 0) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "%u:%u: %s\n", d.v[i].line, d.v[i].column, d.v[i].message);
		fail_msg("this should load:\n%s", text);
	}
	assert_non_null(field_of(k, &c));
	v = value_str(k, field_of(k, &c));
	config_done(&c);
	free(path);
	return v;
}

static void every_key_parses(void **state)
{
	(void)state;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		const struct sample *s;
		const char *yaml, *want;
		char *text, *got;

		if (!is_leaf(k))
			continue;
		s = sample_for(k);
		if (s == NULL)
			fail_msg("no sample value for '%s.%s' in test_config.c", k->section,
				 k->key);
		yaml = s->yaml ? s->yaml : my_group();
		want = s->want ? s->want : yaml;
		text = yaml_for(k, yaml);
		got = load_value(k, text);
		if (strcmp(k->key, "ssh_key_file") == 0 || strcmp(k->key, "file") == 0 ||
		    strcmp(k->key, "auth_file") == 0)
			assert_non_null(strstr(got, "/token"));
		else if (strcmp(got, want) != 0)
			fail_msg("'%s: %s' gave %s, not %s", k->key, yaml, got, want);
		free(got);
		free(text);
	}
}

static void defaults_applied(void **state)
{
	unsigned n = 0;

	(void)state;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		char *unset, *set, *a, *b;

		if (k->def == NULL)
			continue;
		assert_true(is_leaf(k));
		unset = yaml_for(k, NULL);
		set = yaml_for(k, k->def);
		a = load_value(k, unset);
		b = load_value(k, set);
		if (strcmp(a, b) != 0)
			fail_msg("'%s' left out gives %s, but its default '%s' gives %s", k->key, a,
				 k->def, b);
		/* the sample is not the default, so this shows the field can move */
		free(a);
		free(b);
		free(unset);
		free(set);
		n++;
	}
	assert_true(n >= 10);
}

/* Expects text to fail with a diag at "key: value" in it: at the value, or at
 * the key when on_key. */
static void expect_error_at(const char *text, const char *key, const char *value, bool on_key,
			    const char *needle)
{
	char *kv, *at;
	const char *bol = text;
	unsigned line = 1;

	assert_int_not_equal(asprintf(&kv, "%s: %s", key, value), -1);
	at = strstr(text, kv);
	assert_non_null(at);
	for (const char *p = text; p < at; p++) {
		if (*p == '\n') {
			line++;
			bol = p + 1;
		}
	}
	expect_error(text, line,
		     (unsigned)(at - bol) + 1 + (on_key ? 0 : (unsigned)strlen(key) + 2), needle);
	free(kv);
}

static void ranges_enforced(void **state)
{
	(void)state;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		char v[64], msg[64], *text, *got;

		if (k->type == CONFIG_NUMBER) {
			assert_true(k->min <= k->max && k->max > 0);
			snprintf(msg, sizeof(msg), "must be %llu to %llu",
				 (unsigned long long)k->min, (unsigned long long)k->max);
			for (int edge = 0; edge < 4; edge++) {
				unsigned long long x = edge == 0   ? k->min - 1
						       : edge == 1 ? k->min
						       : edge == 2 ? k->max
								   : k->max + 1;
				if (edge == 0 && k->min == 0)
					snprintf(v, sizeof(v), "-1");
				else
					snprintf(v, sizeof(v), "%llu", x);
				text = yaml_for(k, v);
				if (edge == 1 || edge == 2) {
					got = load_value(k, text);
					assert_string_equal(got, v);
					free(got);
				} else {
					expect_error_at(text, k->key, v, false, msg);
				}
				free(text);
			}
		} else if (k->type == CONFIG_DURATION && k->min > 0) {
			snprintf(msg, sizeof(msg), "must be at least %llums",
				 (unsigned long long)k->min);
			snprintf(v, sizeof(v), "%llums", (unsigned long long)k->min - 1);
			text = yaml_for(k, v);
			expect_error_at(text, k->key, v, false, msg);
			free(text);
			snprintf(v, sizeof(v), "%llums", (unsigned long long)k->min);
			text = yaml_for(k, v);
			got = load_value(k, text);
			snprintf(v, sizeof(v), "%llu", (unsigned long long)k->min);
			assert_string_equal(got, v);
			free(got);
			free(text);
		}
	}
}

static void unknown_key_located(void **state)
{
	(void)state;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		struct config_key probe = *k;
		char *text, *path, *known = NULL;
		size_t klen = 0;
		struct config c;
		struct kiln_diags d = {0};
		size_t found = 0;

		bool seen = false;
		FILE *f;

		/* once per section: at its first row */
		for (size_t m = 0; m < i; m++)
			seen |= strcmp(config_keys[m].section, k->section) == 0;
		if (seen)
			continue;
		f = open_memstream(&known, &klen);
		fputs("(known: ", f);
		for (size_t m = 0, n = 0; m < config_nkeys; m++) {
			if (strcmp(config_keys[m].section, k->section) == 0)
				fprintf(f, "%s%s", n++ ? ", " : "", config_keys[m].key);
		}
		fputs(")", f);
		fclose(f);
		probe.key = "bogus";
		text = yaml_for(&probe, "1");
		expect_error_at(text, "bogus", "1", true, "unknown key 'bogus' in ");
		/* the message names the file and lists every key of the section */
		path = write_file("unknown.yaml", text);
		assert_int_equal(config_load(path, &c, &d), -EINVAL);
		for (size_t j = 0; j < d.n; j++) {
			if (strstr(d.v[j].message, "unknown key 'bogus'") == NULL)
				continue;
			found++;
			assert_string_equal(d.v[j].path, path);
			assert_non_null(strstr(d.v[j].message, known));
		}
		assert_int_equal(found, 1);
		free(known);
		kiln_diags_done(&d);
		free(path);
		free(text);
	}
}

static void secrets_are_files(void **state)
{
	(void)state;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		size_t n = strlen(k->key);
		bool file =
		    (n > 5 && strcmp(k->key + n - 5, "_file") == 0) || strcmp(k->key, "file") == 0;

		/* every *_file key (and a build secret's file) names a secret, and
		 * a secret never has a default */
		assert_int_equal(file, k->secret);
		assert_int_equal(file, k->type == CONFIG_FILE);
		if (k->secret)
			assert_null(k->def);
		assert_non_null(k->help);
		assert_null(strchr(k->help, '|')); /* would split the Markdown row */
	}
}

static void readme_table_is_current(void **state)
{
	char *want = NULL, *line = NULL, *got = NULL;
	size_t wlen = 0, glen = 0, cap = 0;
	FILE *out = open_memstream(&want, &wlen), *readme, *in;
	bool section = false;

	(void)state;
	config_keys_markdown(out);
	fclose(out);
	readme = fopen(KILN_TEST_DATA "/../../README.md", "r");
	if (readme == NULL) {
		if (getenv("CI") && strcmp(getenv("CI"), "true") == 0)
			fail_msg("cannot open README.md");
		fprintf(stderr, "SKIPPED: no README.md beside the tests\n");
		skip();
	}
	in = open_memstream(&got, &glen);
	/* the first table after the "Configuration (`kilnd.yaml`)" heading */
	while (getline(&line, &cap, readme) > 0) {
		if (strncmp(line, "### Configuration (`kilnd.yaml`)", 32) == 0)
			section = true;
		else if (section && line[0] == '|')
			fputs(line, in);
		else if (section && glen > 0)
			break;
		fflush(in);
	}
	fclose(in);
	fclose(readme);
	free(line);
	if (strcmp(got, want) != 0) {
		fprintf(stderr,
			"README.md's configuration table should be (from "
			"`build/tests/test_config --markdown`):\n%s",
			want);
		fail_msg("README.md's configuration table differs from config_keys[]");
	}
	free(got);
	free(want);
}

static void reported_once(void **state)
{
	char *path = write_file("once.yaml", "repositories:\n  - {name: [x], url: /r}\n");
	struct config c;
	struct kiln_diags d = {0};

	(void)state;
	/* a non-string used to be reported by the check and again by the copy */
	assert_int_equal(config_load(path, &c, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.v[0].message, "'name' must be a string"));
	kiln_diags_done(&d);
	free(path);
	/* an empty number is not 0 */
	expect_error("builds: {retries: ''}\n", 1, 19, "must be 0 to 100");
}

/* status: and notify: refuse what cannot work, located; the project
 * defaults from the URL. */
static void statuses_and_notifications(void **state)
{
	char *path;
	struct config c;
	struct kiln_diags d = {0};
	char *project;

	(void)state;
	expect_error("repositories:\n  - {name: a, url: \"https://h/o/n.git\", status: {provider: "
		     "gitea, token_file: token}}\n",
		     2, 49, "'status' with provider gitea needs 'api_url'");
	expect_error("repositories:\n  - {name: a, url: /srv/r.git, status: {provider: github, "
		     "token_file: token}}\n",
		     2, 5, "'status' needs 'project': the repository URL '/srv/r.git' names no");
	expect_error("repositories:\n  - {name: a, url: /r, status: {provider: bitbucket, "
		     "token_file: token, project: o/n}}\n",
		     2, 43, "'provider' must be github, gitlab or gitea, not 'bitbucket'");
	expect_error("repositories:\n  - {name: a, url: /r, status: {provider: github, project: "
		     "o/n}}\n",
		     2, 32, "'status' needs 'token_file'");
	expect_error("notify:\n  - {url: \"ftp://x\"}\n", 2, 11, "must be an http:// or https://");
	expect_error("notify:\n  - {url: \"http://x\", events: [exploded]}\n", 2, 31,
		     "unknown event 'exploded'");
	expect_error("notify:\n  - {secret_file: token}\n", 2, 5,
		     "a notification target needs 'url'");
	expect_error("notify:\n  - {url: \"http://x/h\"}\n  - {url: \"http://x/h\"}\n", 3, 5,
		     "notify[1] has the url of notify[0]");
	path =
	    write_file("st.yaml", "repositories:\n  - {name: a, url: \"git@gitlab.com:g/s/n.git\","
				  " status: {provider: gitlab, token_file: token}}\n");
	assert_int_equal(config_load(path, &c, &d), 0);
	project = config_status_project(&c.repos[0]);
	assert_string_equal(project, "g/s/n");
	assert_string_equal(c.repos[0].status_token, "hunter2");
	assert_null(c.repos[0].status_api_url);
	free(project);
	config_done(&c);
	free(path);
}

static void buffer_with_nul(void **state)
{
	static const char text[] = "state_dir: /x\0\nrepositories: []\n";
	struct config c;
	struct kiln_diags d = {0};

	(void)state;
	/* this path used to free a YAML document it had never loaded */
	assert_int_equal(config_parse(text, sizeof(text) - 1, "nul.yaml", &c, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.v[0].path, "nul.yaml");
	assert_non_null(strstr(d.v[0].message, "NUL byte"));
	assert_null(c.path);
	kiln_diags_done(&d);
	/* the same text without the NUL parses from the buffer */
	assert_int_equal(config_parse("state_dir: /x\n", 14, "ok.yaml", &c, &d), 0);
	assert_string_equal(c.state_dir, "/x");
	config_done(&c);
}

static void secret_not_a_regular_file(void **state)
{
	char *fifo;

	(void)state;
	/* a FIFO would block the loader until someone writes to it */
	assert_int_not_equal(asprintf(&fifo, "%s/fifo", dir), -1);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	expect_error("registries:\n  - {host: r.example.com, username: u, password_file: fifo}\n",
		     2, 55, "not a regular file");
	expect_error("registries:\n  - {host: r.example.com, username: u, password_file: /}\n", 2,
		     55, "not a regular file");
	free(fifo);
}

/* Build secrets: ids unique and valid, a readable file, both keys there;
 * the file's contents are not read at load time. */
static void build_secrets(void **state)
{
	static const char head[] = "repositories:\n  - name: a\n    url: /r\n    secrets:\n";
	char *text, *path;
	struct config c;
	struct kiln_diags d = {0};

	(void)state;
	assert_int_not_equal(asprintf(&text, "%s      - {id: t.1, file: token}\n", head), -1);
	path = write_file("sec.yaml", text);
	assert_int_equal(config_load(path, &c, &d), 0);
	assert_int_equal(c.repos[0].nsecrets, 1);
	assert_string_equal(c.repos[0].secrets[0].id, "t.1");
	assert_non_null(strstr(c.repos[0].secrets[0].file, "/token"));
	config_done(&c);
	free(path);
	free(text);
	assert_int_not_equal(
	    asprintf(&text, "%s      - {id: t, file: token}\n      - {id: t, file: token}\n", head),
	    -1);
	expect_error(text, 6, 9, "secret 't' is listed twice");
	free(text);
	assert_int_not_equal(asprintf(&text, "%s      - {id: \"a b\", file: token}\n", head), -1);
	expect_error_at(text, "id", "\"a b\"", false, "match [A-Za-z0-9._-]+");
	free(text);
	assert_int_not_equal(asprintf(&text, "%s      - {id: t, file: nonexistent}\n", head), -1);
	expect_error_at(text, "file", "nonexistent", false, "cannot read");
	free(text);
	assert_int_not_equal(asprintf(&text, "%s      - {id: t}\n", head), -1);
	expect_error(text, 5, 9, "a secret needs 'id' and 'file'");
	free(text);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(full_config),
	    cmocka_unit_test(defaults),
	    cmocka_unit_test(credentials_directory),
	    cmocka_unit_test(errors_located),
	    cmocka_unit_test(every_error_at_once),
	    cmocka_unit_test(missing_file),
	    cmocka_unit_test(durations),
	    cmocka_unit_test(every_key_parses),
	    cmocka_unit_test(defaults_applied),
	    cmocka_unit_test(ranges_enforced),
	    cmocka_unit_test(unknown_key_located),
	    cmocka_unit_test(secrets_are_files),
	    cmocka_unit_test(readme_table_is_current),
	    cmocka_unit_test(reported_once),
	    cmocka_unit_test(secret_not_a_regular_file),
	    cmocka_unit_test(buffer_with_nul),
	    cmocka_unit_test(statuses_and_notifications),
	    cmocka_unit_test(build_secrets),
	};

	if (argc == 2 && strcmp(argv[1], "--markdown") == 0) {
		config_keys_markdown(stdout);
		return 0;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
