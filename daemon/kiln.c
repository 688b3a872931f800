/* kiln.c: the command-line tool. One table of commands; each parses its own
 * options. Exit status: 0 success, 1 the inputs have errors, 2 usage or a
 * repository/revision that cannot be found. */
#include <dlfcn.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <curl/curl.h>

#include "kiln/changes.h"
#include "kiln/oneshot.h"
#include "kiln/manifest.h"
#include "kiln/map.h"
#include "kiln/path.h"
#include "kiln/repo.h"

enum { EXIT_INVALID = 1, EXIT_USAGE = 2 };

/* Debian's libgit2 is built on mbedTLS, and git_libgit2_init() parses the
 * whole system CA bundle: about 8 ms, more than half of a typical
 * `kiln changes`. The command line makes no TLS connection through libgit2,
 * so this definition (which the dynamic linker binds ahead of libmbedx509's)
 * skips that one parse. Any other call reaches the real function; and were a
 * TLS connection ever attempted, the empty CA chain would make certificate
 * verification fail: it fails closed. Builds of libgit2 on OpenSSL never call
 * this at all. kilnd, which fetches over https, does not carry it. */
struct mbedtls_x509_crt;
int mbedtls_x509_crt_parse_file(struct mbedtls_x509_crt *chain, const char *path);
static bool in_git_init;

int mbedtls_x509_crt_parse_file(struct mbedtls_x509_crt *chain, const char *path)
{
	int (*real)(struct mbedtls_x509_crt *, const char *);

	if (in_git_init)
		return 0;
	real = (int (*)(struct mbedtls_x509_crt *, const char *))dlsym(
	    RTLD_NEXT, "mbedtls_x509_crt_parse_file");
	return real ? real(chain, path) : -1;
}

static void git_init_offline(void)
{
	in_git_init = true;
	repo_global_init();
	in_git_init = false;
}

struct kiln_cmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
	void (*help)(FILE *f);
};

static void changes_help(FILE *f)
{
	fputs("usage: kiln changes [--repo DIR] [--manifest NAME] [--json] [--no-cache] FROM TO\n"
	      "\n"
	      "List the image folders whose build differs between the trees of commits FROM\n"
	      "and TO (any revision git accepts: SHA, branch, tag, HEAD~3). One line per image:\n"
	      "  <change>\\t<path>\\t<registry>/<name>:<version>\n"
	      "where change is added, modified, dependency or removed, dependencies first,\n"
	      "otherwise by path. FROM may be git's empty tree,\n"
	      "4b825dc642cb6eb9a060e54bf8d69288fbee4904, to list every image of TO as added.\n"
	      "\n"
	      "  --repo DIR       the repository (bare or not); default: the current directory\n"
	      "  --manifest NAME  the file that marks an image folder; default: manifest.yaml\n"
	      "  --json           print one JSON object instead (see README.md)\n"
	      "  --no-cache       neither read nor write the cache under the git directory\n"
	      "  -h, --help       this text\n"
	      "\n"
	      "Exit status: 0 all affected manifests are valid, 1 some are not (they are\n"
	      "reported on stderr, or under \"errors\" with --json), 2 usage error, no\n"
	      "repository or unknown revision.\n",
	      f);
}

/* The cache lives in the git directory (shared by all worktrees). A read-only
 * repository simply runs without it. */
static char *cache_path(git_repository *repo, const char *manifest_name)
{
	const char *common = git_repository_commondir(repo);
	char *dir = xasprintf("%skiln", common);
	char *file = NULL;

	if (mkdir(dir, 0755) == 0 || errno == EEXIST)
		file = xasprintf(
		    "%s/catalog-%016llx", dir,
		    (unsigned long long)strmap_hash(manifest_name, strlen(manifest_name)));
	free(dir);
	return file;
}

/* The changeset FROM..TO of the repository at repo_dir, with the catalog
 * cache under its git directory unless use_cache is false. */
/* git's empty tree as FROM: every image at TO is added (a first CI run) */
#define EMPTY_TREE "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

static int plan(const char *repo_dir, const char *manifest_name, bool use_cache,
		const char *from_rev, const char *to_rev, git_repository **ret_repo,
		struct changeset *ret, struct kiln_err *err)
{
	git_repository *repo = NULL;
	git_commit *from = NULL, *to = NULL;
	struct catalog cat;
	char *cache = NULL;
	int r;

	catalog_init(&cat, manifest_name, NULL);
	if ((r = repo_open(repo_dir, &repo, err)) < 0 ||
	    (strcmp(from_rev, EMPTY_TREE) != 0 &&
	     (r = repo_commit(repo, from_rev, &from, err)) < 0) ||
	    (r = repo_commit(repo, to_rev, &to, err)) < 0)
		goto out;
	if (use_cache && (cache = cache_path(repo, manifest_name)) != NULL) {
		catalog_done(&cat);
		catalog_init(&cat, manifest_name, cache);
	}
	r = changes_compute(repo, from, to, &cat, ret, err);
	if (r == -EBADMSG && cache != NULL) {
		/* a damaged cache is never trusted: remove it and start over */
		unlink(cache);
		catalog_done(&cat);
		catalog_init(&cat, manifest_name, cache);
		r = changes_compute(repo, from, to, &cat, ret, err);
	}
	if (r == 0)
		catalog_save(&cat, NULL); /* best effort: a cache, not state */
out:
	catalog_done(&cat);
	free(cache);
	git_commit_free(from);
	git_commit_free(to);
	if (r == 0)
		*ret_repo = repo;
	else
		git_repository_free(repo);
	return r;
}

static json_t *strv_json(const struct strv *sv)
{
	json_t *a = json_array();
	for (size_t i = 0; i < sv->n; i++)
		json_array_append_new(a, json_string(path_display(sv->v[i])));
	return a;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static void print_json(const struct changeset *cs)
{
	char hex[GIT_OID_HEXSZ + 1];
	json_t *o = json_object(), *images = json_array(), *errors = json_array();

	json_object_set_new(o, "from", json_string(git_oid_tostr(hex, sizeof(hex), &cs->from)));
	json_object_set_new(o, "to", json_string(git_oid_tostr(hex, sizeof(hex), &cs->to)));
	for (size_t i = 0; i < cs->n; i++) {
		const struct change *c = &cs->v[i];
		json_t *im = json_object(), *tags = json_array();

		for (size_t k = 0; k < c->tags.n; k++)
			json_array_append_new(tags, json_string(c->tags.v[k]));
		json_object_set_new(im, "path", json_string(path_display(c->path)));
		json_object_set_new(im, "change", json_string(change_kind_str(c->kind)));
		json_object_set_new(im, "name", str_or_null(c->name));
		json_object_set_new(im, "version", str_or_null(c->version));
		json_object_set_new(im, "registry", str_or_null(c->registry));
		json_object_set_new(im, "image", str_or_null(c->image));
		json_object_set_new(im, "tags", tags);
		json_object_set_new(im, "depends_on", strv_json(&c->depends_on));
		json_array_append_new(images, im);
	}
	for (size_t i = 0; i < cs->errors.n; i++) {
		const struct kiln_diag *d = &cs->errors.v[i];
		json_t *e = json_object();
		json_object_set_new(e, "path", json_string(d->path));
		json_object_set_new(e, "line", json_integer(d->line));
		json_object_set_new(e, "column", json_integer(d->column));
		json_object_set_new(e, "message", json_string(d->message));
		json_array_append_new(errors, e);
	}
	json_object_set_new(o, "images", images);
	json_object_set_new(o, "errors", errors);
	json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(o);
}

static void print_text(const struct changeset *cs)
{
	char line[2048];

	for (size_t i = 0; i < cs->n; i++) {
		const struct change *c = &cs->v[i];
		printf("%s\t%s\t%s\n", change_kind_str(c->kind), path_display(c->path),
		       c->image ? c->image : "-");
	}
	for (size_t i = 0; i < cs->errors.n; i++) {
		kiln_diag_format(&cs->errors.v[i], line, sizeof(line));
		fprintf(stderr, "%s\n", line);
	}
}

static int cmd_changes(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"repo", required_argument, NULL, 'r'}, {"manifest", required_argument, NULL, 'm'},
	    {"json", no_argument, NULL, 'j'},	    {"no-cache", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},	    {NULL, 0, NULL, 0},
	};
	const char *repo_dir = ".", *manifest_name = "manifest.yaml";
	bool json = false, use_cache = true;
	git_repository *repo = NULL;
	struct changeset cs = {0};
	struct kiln_err err = {0};
	int c, rc = EXIT_USAGE;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			repo_dir = optarg;
			break;
		case 'm':
			manifest_name = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'n':
			use_cache = false;
			break;
		case 'h':
			changes_help(stdout);
			return 0;
		default:
			fprintf(stderr, "kiln changes: see 'kiln changes --help'\n");
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr,
			"kiln changes: expected FROM and TO, got %d argument%s; see 'kiln changes "
			"--help'\n",
			argc - optind, argc - optind == 1 ? "" : "s");
		return EXIT_USAGE;
	}
	if (!manifest_valid_file_name(manifest_name)) {
		fprintf(stderr, "kiln changes: --manifest '%s' must be a file name, not a path\n",
			manifest_name);
		return EXIT_USAGE;
	}
	git_init_offline();
	if (plan(repo_dir, manifest_name, use_cache, argv[optind], argv[optind + 1], &repo, &cs,
		 &err) < 0) {
		fprintf(stderr, "kiln changes: %s\n", err.msg);
		goto out;
	}
	if (json)
		print_json(&cs);
	else
		print_text(&cs);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "kiln changes: cannot write the output\n");
		rc = EXIT_INVALID;
		goto out;
	}
	rc = cs.errors.n ? EXIT_INVALID : 0;
out:
	changeset_done(&cs);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

/* ---- commands that talk to kilnd over its status socket ---- */

#define SOCKET_DEFAULT "/run/kiln/kiln.sock"
#define ANSWER_MAX     (64u << 20)

static void online_help(FILE *f)
{
	fputs("usage: kiln status [--json] [--socket PATH]\n"
	      "       kiln builds [--repository NAME] [--image PATH] [--state STATE] [--limit N]\n"
	      "                   [--json] [--socket PATH]\n"
	      "       kiln build ID [--json] [--socket PATH]\n"
	      "       kiln logs [-f] ID [--socket PATH]\n"
	      "       kiln trigger REPOSITORY [BRANCH] [--socket PATH]\n"
	      "       kiln rebuild REPOSITORY IMAGE-PATH [COMMIT] [--socket PATH]\n"
	      "       kiln cancel ID [--socket PATH]\n"
	      "       kiln health [--socket PATH]\n"
	      "\n"
	      "Ask the running kilnd. The socket is --socket, else $KILN_SOCKET, "
	      "else\n" SOCKET_DEFAULT ".\n"
	      "  status   version, uptime, every repository with its branches' heads and\n"
	      "           last-seen commits, and the queue\n"
	      "  builds   builds, newest first (--limit, default 100)\n"
	      "  build    one build\n"
	      "  logs     a build's log; -f waits until the build has ended\n"
	      "  rebuild  queue a build of an image folder at COMMIT (default: the first\n"
	      "           branch's last-seen commit; needs the admin group)\n"
	      "  trigger  poll a repository now (needs the admin group)\n"
	      "  cancel   cancel a queued build, or stop a running one (admin group)\n"
	      "  health   exit 0 when kilnd answers and is healthy, 1 otherwise, saying why\n"
	      "  --json   print kilnd's answer as JSON (times in RFC 3339)\n"
	      "\n"
	      "Exit status: 0 done, 1 kilnd refused or failed (the reason on stderr), 2 usage\n"
	      "error or no kilnd to talk to.\n",
	      f);
}

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : dflt;
}

/* One request, one answer line. NULL with a message on stderr on failure. */
static json_t *ask(const char *path, json_t *req)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {30, 0};
	char *text = json_dumps(req, JSON_COMPACT);
	struct buf in = {0};
	json_error_t jerr;
	json_t *ans = NULL;
	int fd = -1;
	size_t off = 0, len;

	json_decref(req);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "kiln: socket path too long: %s\n", path);
		goto out;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "kiln: cannot reach kilnd at '%s': %s\n", path, strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	len = strlen(text);
	text[len++] = '\n'; /* over the NUL: exactly len bytes are sent */
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0) {
			fprintf(stderr, "kiln: cannot write to '%s': %s\n", path, strerror(errno));
			goto out;
		}
		off += (size_t)n;
	}
	for (;;) {
		char chunk[65536];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n <= 0) {
			fprintf(stderr, "kiln: kilnd closed the connection without an answer%s%s\n",
				n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			goto out;
		}
		buf_append(&in, chunk, (size_t)n);
		if (memchr(in.p, '\n', in.len))
			break;
		if (in.len > ANSWER_MAX) {
			fprintf(stderr, "kiln: answer longer than %u bytes\n", ANSWER_MAX);
			goto out;
		}
	}
	ans = json_loadb(in.p, (size_t)((char *)memchr(in.p, '\n', in.len) - in.p), 0, &jerr);
	if (ans == NULL)
		fprintf(stderr, "kiln: kilnd's answer is not JSON: %s\n", jerr.text);
out:
	if (fd >= 0)
		close(fd);
	free(text);
	buf_done(&in);
	return ans;
}

/* The result of a successful answer, else NULL with kilnd's error printed. */
static json_t *result_of(json_t *ans, int *rc)
{
	if (ans == NULL) {
		*rc = EXIT_USAGE;
		return NULL;
	}
	if (!json_is_true(json_object_get(ans, "ok"))) {
		fprintf(stderr, "kiln: kilnd: %s\n", str_or(ans, "error", "error"));
		*rc = EXIT_INVALID;
		return NULL;
	}
	*rc = 0;
	return json_object_get(ans, "result");
}

static void rfc3339(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	char t[32];
	time_t s;
	struct tm tm;

	if (!json_is_integer(v))
		return;
	s = (time_t)json_integer_value(v);
	gmtime_r(&s, &tm);
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(o, key, json_string(t));
}

static void print_builds_table(json_t *arr)
{
	size_t i;
	json_t *b;

	printf("%-6s %-11s %-14s %-12s %-24s %-12s %s\n", "ID", "STATE", "REPOSITORY", "BRANCH",
	       "PATH", "COMMIT", "IMAGE");
	json_array_foreach(arr, i, b)
	{
		printf("%-6lld %-11s %-14s %-12s %-24s %-12.12s %s\n",
		       (long long)json_integer_value(json_object_get(b, "id")),
		       str_or(b, "state", "-"), str_or(b, "repository", "-"),
		       str_or(b, "branch", "-"), str_or(b, "path", "-"), str_or(b, "commit", "-"),
		       str_or(b, "image", "-"));
	}
}

static void print_status(json_t *r)
{
	size_t i, k;
	json_t *repo, *br;
	long long up = (long long)json_integer_value(json_object_get(r, "uptime_s"));

	printf("kilnd %s, up %lldh%02lldm; builds: %lld queued, %lld running\n",
	       str_or(r, "version", "?"), up / 3600, up / 60 % 60,
	       (long long)json_integer_value(json_object_get(r, "queued")),
	       (long long)json_integer_value(json_object_get(r, "running")));
	printf("%-16s %-9s %-12s %-12s %-12s %s\n", "REPOSITORY", "STATE", "BRANCH", "HEAD",
	       "LAST SEEN", "LAST ERROR");
	json_array_foreach(json_object_get(r, "repositories"), i, repo)
	{
		json_array_foreach(json_object_get(repo, "branches"), k, br)
		{
			printf("%-16s %-9s %-12s %-12.12s %-12.12s %s\n", str_or(repo, "name", "-"),
			       str_or(repo, "state", "-"), str_or(br, "name", "-"),
			       str_or(br, "head", "-"), str_or(br, "last_seen", "-"),
			       k == 0 ? str_or(repo, "last_error", "-") : "");
		}
	}
}

/* The positional arguments of each command into the request. */
static int online_args(const char *cmd, int argc, char **argv, json_t *req)
{
	if (strcmp(cmd, "rebuild") == 0) {
		if (argc - optind < 2 || argc - optind > 3) {
			fprintf(stderr, "kiln rebuild: expected REPOSITORY IMAGE-PATH [COMMIT]\n");
			return -EINVAL;
		}
		json_object_set_new(req, "repository", json_string(argv[optind]));
		json_object_set_new(req, "image", json_string(argv[optind + 1]));
		if (argc - optind == 3)
			json_object_set_new(req, "commit", json_string(argv[optind + 2]));
	} else if (strcmp(cmd, "build") == 0 || strcmp(cmd, "cancel") == 0 ||
		   strcmp(cmd, "logs") == 0) {
		char *end = NULL;
		long long id = optind < argc ? strtoll(argv[optind], &end, 10) : 0;
		if (argc - optind != 1 || *end || id <= 0) {
			fprintf(stderr, "kiln %s: expected one build ID; see 'kiln %s --help'\n",
				cmd, cmd);
			return -EINVAL;
		}
		json_object_set_new(req, "id", json_integer(id));
	} else if (strcmp(cmd, "trigger") == 0) {
		if (argc - optind < 1 || argc - optind > 2) {
			fprintf(stderr, "kiln trigger: expected REPOSITORY [BRANCH]\n");
			return -EINVAL;
		}
		json_object_set_new(req, "repository", json_string(argv[optind]));
		if (argc - optind == 2)
			json_object_set_new(req, "branch", json_string(argv[optind + 1]));
	} else if (optind != argc) {
		fprintf(stderr, "kiln %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static void times_to_rfc3339(json_t *res)
{
	size_t i;
	json_t *b;

	if (json_is_object(res)) {
		rfc3339(res, "queued_at");
		rfc3339(res, "started_at");
		rfc3339(res, "finished_at");
	}
	json_array_foreach(res, i, b)
	{
		rfc3339(b, "queued_at");
		rfc3339(b, "started_at");
		rfc3339(b, "finished_at");
	}
}

static void print_result(const char *cmd, json_t *res, bool json)
{
	if (strcmp(cmd, "builds") == 0 || strcmp(cmd, "build") == 0)
		times_to_rfc3339(res);
	if (json) {
		json_dumpf(res, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
	} else if (strcmp(cmd, "status") == 0) {
		print_status(res);
	} else if (strcmp(cmd, "builds") == 0) {
		print_builds_table(res);
	} else if (strcmp(cmd, "build") == 0) {
		json_t *arr = json_array();
		json_array_append(arr, res);
		print_builds_table(arr);
		json_decref(arr);
	} else if (strcmp(cmd, "trigger") == 0) {
		printf("polling '%s' now\n", str_or(res, "triggered", "?"));
	} else if (strcmp(cmd, "logs") == 0) {
		const char *log = str_or(res, "log", "");
		fwrite(log, 1, json_string_length(json_object_get(res, "log")), stdout);
		if (log[0] == '\0')
			fprintf(stderr, "kiln: build %lld (%s) has no log yet\n",
				(long long)json_integer_value(json_object_get(res, "id")),
				str_or(res, "state", "?"));
	} else if (strcmp(cmd, "rebuild") == 0) {
		printf("queued build %lld: %s at %.12s\n",
		       (long long)json_integer_value(json_object_get(res, "id")),
		       str_or(res, "image", "?"), str_or(res, "commit", "?"));
	} else {
		/* a running build is "cancelling" until its transfer is cut */
		printf("build %lld %s\n", (long long)json_integer_value(json_object_get(res, "id")),
		       str_or(res, "state", "cancelled"));
	}
}

static int cmd_online(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"repository", required_argument, NULL, 'r'},
	    {"image", required_argument, NULL, 'i'},
	    {"state", required_argument, NULL, 't'},
	    {"limit", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *cmd = argv[0], *sock = getenv("KILN_SOCKET");
	json_t *req = json_pack("{s:i, s:s}", "v", 1, "cmd", cmd), *ans, *res;
	bool json = false;
	int c, rc;

	if (sock == NULL || sock[0] == '\0')
		sock = SOCKET_DEFAULT;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hf", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'f':
			json_object_set_new(req, "follow", json_true());
			break;
		case 'j':
			json = true;
			break;
		case 'r':
			json_object_set_new(req, "repository", json_string(optarg));
			break;
		case 'i':
			json_object_set_new(req, "image", json_string(optarg));
			break;
		case 't':
			json_object_set_new(req, "state", json_string(optarg));
			break;
		case 'n':
			json_object_set_new(req, "limit", json_integer(atoi(optarg)));
			break;
		case 'h':
			online_help(stdout);
			json_decref(req);
			return 0;
		default:
			fprintf(stderr, "kiln %s: see 'kiln %s --help'\n", cmd, cmd);
			json_decref(req);
			return EXIT_USAGE;
		}
	}
	if (online_args(cmd, argc, argv, req) < 0) {
		json_decref(req);
		return EXIT_USAGE;
	}
	ans = ask(sock, req);
	res = result_of(ans, &rc);
	if (strcmp(cmd, "health") == 0) {
		if (res == NULL) {
			rc = 1;
		} else if (!json_is_true(json_object_get(res, "healthy"))) {
			printf("unhealthy: %s\n", str_or(res, "reason", "unknown"));
			rc = 1;
		} else {
			printf("healthy\n");
		}
	} else if (res != NULL) {
		print_result(cmd, res, json);
	}
	json_decref(ans);
	return rc;
}

/* ---- kiln build: the builder in the foreground ---- */

static void build_help(FILE *f)
{
	fputs("usage: kiln build [--repo DIR] [--push] [--dry-run] [OPTIONS] FROM TO\n"
	      "       kiln build ID [--json] [--socket PATH]\n"
	      "\n"
	      "Build every image that changed between commits FROM and TO (what 'kiln changes'\n"
	      "lists, except removed images) on a Docker engine, in dependency order, from\n"
	      "the git tree of TO (not the working copy). Each image's output goes to stdout,\n"
	      "each line prefixed with 'name:version | '; a summary table ends the run. An\n"
	      "image whose base image failed is skipped. No daemon is needed: this is what a\n"
	      "CI job calls. FROM may be git's empty tree, "
	      "4b825dc642cb6eb9a060e54bf8d69288fbee4904,\n"
	      "to build every image of TO. With one numeric argument, shows build ID of\n"
	      "kilnd instead.\n"
	      "\n"
	      "  --repo DIR          the repository (bare or not); default: the current directory\n"
	      "  --manifest NAME     the file that marks an image folder; default: manifest.yaml\n"
	      "  --push              push every tag after the build (and its smoke test); the\n"
	      "                      version tag must not exist in the registry yet\n"
	      "  --overwrite-tags    with --push: allow replacing an existing version tag\n"
	      "  --dry-run           print what would be built, in order, and build nothing\n"
	      "  --concurrency N     builds at once (default 2)\n"
	      "  --retries N         retries of a build that failed in passing, such as an\n"
	      "                      unreachable engine or a registry 5xx (default 2)\n"
	      "  --docker-host URL   unix:///path or tcp://host:port; default: $DOCKER_HOST,\n"
	      "                      else unix:///var/run/docker.sock ($DOCKER_TLS_VERIFY and\n"
	      "                      $DOCKER_CERT_PATH apply to tcp://)\n"
	      "  --source URL        org.opencontainers.image.source; default: remote.origin.url\n"
	      "  --no-cache          neither read nor write the change detection cache\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "Registry credentials come from $DOCKER_CONFIG/config.json or\n"
	      "~/.docker/config.json ('auths'), as 'docker login' writes them.\n"
	      "\n"
	      "Exit status: 0 every image built (and pushed), 1 an image failed, was skipped or\n"
	      "has an invalid manifest, 2 usage error, no repository, unknown revision or a\n"
	      "bad engine address.\n",
	      f);
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static char *origin_url(git_repository *repo)
{
	git_config *cfg = NULL;
	git_buf b = {0};
	char *r = NULL;

	if (git_repository_config_snapshot(&cfg, repo) == 0 &&
	    git_config_get_string_buf(&b, cfg, "remote.origin.url") == 0)
		r = xstrdup(b.ptr);
	git_buf_dispose(&b);
	git_config_free(cfg);
	return r;
}

static int cmd_build(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"repo", required_argument, NULL, 'r'},
	    {"manifest", required_argument, NULL, 'm'},
	    {"push", no_argument, NULL, 'p'},
	    {"overwrite-tags", no_argument, NULL, 'o'},
	    {"dry-run", no_argument, NULL, 'd'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"retries", required_argument, NULL, 'R'},
	    {"docker-host", required_argument, NULL, 'H'},
	    {"source", required_argument, NULL, 's'},
	    {"no-cache", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct oneshot_opts o = {.manifest_name = "manifest.yaml",
				 .concurrency = 2,
				 .retries = 2,
				 .retry_delay_ms = 2000,
				 .test_timeout_ms = 10 * 60 * 1000};
	const char *repo_dir = ".";
	bool dry = false, use_cache = true;
	git_repository *repo = NULL;
	struct changeset cs = {0};
	struct kiln_err err = {0};
	char *source = NULL, *end;
	int c, rc = EXIT_USAGE;
	long n;

	/* `kiln build ID`: one of kilnd's builds (one numeric argument) */
	{
		static const char *const valued[] = {"--repo",	  "--manifest",	   "--concurrency",
						     "--retries", "--docker-host", "--source",
						     "--socket"};
		int positional = 0, numeric = 0;
		for (int i = 1; i < argc; i++) {
			bool value = false;
			for (size_t k = 0; k < ARRAY_SIZE(valued); k++)
				value |= strcmp(argv[i - 1], valued[k]) == 0;
			if (argv[i][0] == '-' || value)
				continue;
			positional++;
			numeric += all_digits(argv[i]);
		}
		if (positional == 1 && numeric == 1)
			return cmd_online(argc, argv);
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			repo_dir = optarg;
			break;
		case 'm':
			o.manifest_name = optarg;
			break;
		case 'p':
			o.push = true;
			break;
		case 'o':
			o.overwrite_tags = true;
			break;
		case 'd':
			dry = true;
			break;
		case 'c':
		case 'R':
			n = strtol(optarg, &end, 10);
			if (*end || n < (c == 'c' ? 1 : 0) || n > 64) {
				fprintf(stderr, "kiln build: --%s must be %d to 64, not '%s'\n",
					c == 'c' ? "concurrency" : "retries", c == 'c' ? 1 : 0,
					optarg);
				return EXIT_USAGE;
			}
			if (c == 'c')
				o.concurrency = (unsigned)n;
			else
				o.retries = (unsigned)n;
			break;
		case 'H':
			o.docker_host = optarg;
			break;
		case 's':
			o.source_url = optarg;
			break;
		case 'n':
			use_cache = false;
			break;
		case 'h':
			build_help(stdout);
			return 0;
		default:
			fprintf(stderr, "kiln build: see 'kiln build --help'\n");
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr,
			"kiln build: expected FROM and TO, got %d argument%s; see 'kiln build "
			"--help'\n",
			argc - optind, argc - optind == 1 ? "" : "s");
		return EXIT_USAGE;
	}
	if (!manifest_valid_file_name(o.manifest_name)) {
		fprintf(stderr, "kiln build: --manifest '%s' must be a file name, not a path\n",
			o.manifest_name);
		return EXIT_USAGE;
	}
	git_init_offline();
	if (plan(repo_dir, o.manifest_name, use_cache, argv[optind], argv[optind + 1], &repo, &cs,
		 &err) < 0) {
		fprintf(stderr, "kiln build: %s\n", err.msg);
		goto out;
	}
	for (size_t i = 0; i < cs.errors.n; i++) {
		char line[1024];
		kiln_diag_format(&cs.errors.v[i], line, sizeof(line));
		fprintf(stderr, "kiln build: %s\n", line);
	}
	if (dry) {
		size_t k = 0;
		for (size_t i = 0; i < cs.n; i++) {
			const struct change *ch = &cs.v[i];
			if (ch->kind == CHANGE_REMOVED || !ch->image)
				continue;
			printf("%zu. %s (%s, %s)", ++k, ch->image, change_kind_str(ch->kind),
			       path_display(ch->path));
			for (size_t d = 0; d < ch->depends_on.n; d++)
				printf("%s%s", d ? ", " : " after ",
				       path_display(ch->depends_on.v[d]));
			printf("\n");
		}
		printf("%zu image%s would be built%s\n", k, k == 1 ? "" : "s",
		       o.push ? " and pushed" : "");
		rc = cs.errors.n ? EXIT_INVALID : 0;
		goto out;
	}
	if (!o.source_url)
		o.source_url = source = origin_url(repo);
	{
		char hex[GIT_OID_HEXSZ + 1];
		git_oid_tostr(hex, sizeof(hex), &cs.to);
		o.commit = hex;
		o.repo_path = git_repository_path(repo);
		signal(SIGPIPE, SIG_IGN); /* a cancelled build closes the context pipe */
		curl_global_init(CURL_GLOBAL_DEFAULT);
		rc = oneshot_run(&o, &cs);
		curl_global_cleanup();
	}
	if (rc == 0 && cs.errors.n)
		rc = EXIT_INVALID;
out:
	free(source);
	changeset_done(&cs);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

static const struct kiln_cmd cmds[] = {
    {"changes", "list the images changed between two commits", cmd_changes, changes_help},
    {"status", "kilnd's repositories, branches and queue", cmd_online, online_help},
    {"builds", "kilnd's builds, newest first", cmd_online, online_help},
    {"build", "build (and push) the images changed between two commits", cmd_build, build_help},
    {"logs", "a build's log", cmd_online, online_help},
    {"trigger", "ask kilnd to poll a repository now", cmd_online, online_help},
    {"rebuild", "queue a build of one image", cmd_online, online_help},
    {"cancel", "cancel a queued or running build", cmd_online, online_help},
    {"health", "exit 0 when kilnd answers and is healthy", cmd_online, online_help},
};

static void usage(FILE *f)
{
	fputs("usage: kiln COMMAND [OPTIONS] [ARGS]\n"
	      "       kiln --version | --help | help COMMAND\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
	fputs("\n'kiln COMMAND --help' describes a command.\n", f);
}

static const struct kiln_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const struct kiln_cmd *cmd;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("kiln %s\n", KILN_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "help") == 0) {
		if (argc < 3) {
			usage(stdout);
			return 0;
		}
		if ((cmd = find_cmd(argv[2])) == NULL) {
			fprintf(stderr, "kiln: unknown command '%s'; see 'kiln --help'\n", argv[2]);
			return EXIT_USAGE;
		}
		cmd->help(stdout);
		return 0;
	}
	if ((cmd = find_cmd(argv[1])) == NULL) {
		fprintf(stderr, "kiln: unknown command '%s'; see 'kiln --help'\n", argv[1]);
		return EXIT_USAGE;
	}
	return cmd->run(argc - 1, argv + 1);
}
