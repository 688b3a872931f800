/* test_config.c: kilnd.yaml parsing: defaults, every section, secrets from
 * files and $CREDENTIALS_DIRECTORY, and located errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	    "         header_timeout: 2s, body_timeout: 3s, idle_timeout: 4s}\n"
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(full_config),
	    cmocka_unit_test(defaults),
	    cmocka_unit_test(credentials_directory),
	    cmocka_unit_test(errors_located),
	    cmocka_unit_test(every_error_at_once),
	    cmocka_unit_test(missing_file),
	    cmocka_unit_test(durations),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
