/* kiln.c (main): the command-line tool. One table of commands; each parses its own
 * options. Exit status: 0 success, 1 the inputs have errors, 2 usage or a
 * repository/revision that cannot be found. */
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
#include "kiln/proto.h"
#include "kiln/repo.h"

enum { EXIT_INVALID = 1, EXIT_USAGE = 2 };

struct kiln_cmd {
	const char *name;
	const char *proto; /* the status socket command it sends; NULL: runs here */
	const char *summary;
	int (*run)(const struct kiln_cmd *cmd, int argc, char **argv);
	void (*help)(FILE *f);
};

static const struct kiln_cmd *find_cmd(const char *name);

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
	struct kiln_err save_err = {0};
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
	if (r == 0 && catalog_save(&cat, &save_err) < 0) /* a cache, not state: go on */
		fprintf(stderr, "kiln: warning: the cache was not saved: %s\n", save_err.msg);
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

static int cmd_changes(const struct kiln_cmd *cmd, int argc, char **argv)
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

	(void)cmd;
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
	repo_global_init(REPO_ROLE_CLI);
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

static void online_help(FILE *f)
{
	fputs("usage: kiln status [--json] [--socket PATH]\n"
	      "       kiln builds [--repository NAME] [--image PATH] [--state STATE] [--limit N]\n"
	      "                   [--json] [--socket PATH]\n"
	      "       kiln show ID [--json] [--socket PATH]\n"
	      "       kiln logs [-f] ID [--socket PATH]\n"
	      "       kiln trigger REPOSITORY [BRANCH] [--socket PATH]\n"
	      "       kiln rebuild REPOSITORY IMAGE-PATH [COMMIT] [--socket PATH]\n"
	      "       kiln cancel ID [--socket PATH]\n"
	      "       kiln health [--socket PATH]\n"
	      "\n"
	      "Ask the running kilnd. The socket is --socket, else $KILN_SOCKET, "
	      "else\n" PROTO_SOCKET_DEFAULT ".\n"
	      "  status   version, uptime, every repository with its branches' heads and\n"
	      "           last-seen commits, and the queue\n"
	      "  builds   builds, newest first (--limit, default 100)\n"
	      "  show     one build, with the digest of its pushed version tag ('kiln build ID'\n"
	      "           still works and says so on stderr)\n"
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
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) /* then wait on */
		fprintf(stderr, "kiln: warning: no answer timeout: %s\n", strerror(errno));
	len = strlen(text);
	text[len++] = '\n'; /* over the NUL: exactly len bytes are sent */
	while (off < len) {
		/* no SIGPIPE: a kilnd that refused us closed its side after a line
		 * saying why, and that line is still there to read */
		ssize_t n = send(fd, text + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EPIPE)
			break;
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
		if (in.len > PROTO_ANSWER_MAX) {
			fprintf(stderr, "kiln: answer longer than %u bytes\n", PROTO_ANSWER_MAX);
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
	if (!json_is_true(json_object_get(ans, PROTO_F_OK))) {
		fprintf(stderr, "kiln: kilnd: %s\n", str_or(ans, PROTO_F_ERROR, "error"));
		*rc = EXIT_INVALID;
		return NULL;
	}
	*rc = 0;
	return json_object_get(ans, PROTO_F_RESULT);
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
		       (long long)json_integer_value(json_object_get(b, PROTO_F_ID)),
		       str_or(b, PROTO_F_STATE, "-"), str_or(b, PROTO_F_REPOSITORY, "-"),
		       str_or(b, PROTO_F_BRANCH, "-"), str_or(b, PROTO_F_PATH, "-"),
		       str_or(b, PROTO_F_COMMIT, "-"), str_or(b, PROTO_F_IMAGE, "-"));
	}
}

/* kiln show: one build, a field per line */
static void print_build(json_t *b)
{
	static const char *const keys[] = {
	    PROTO_F_STATE, PROTO_F_REPOSITORY, PROTO_F_BRANCH,	   PROTO_F_PATH,
	    PROTO_F_IMAGE, PROTO_F_COMMIT,     PROTO_F_CHANGE,	   PROTO_F_DIGEST,
	    PROTO_F_ERROR, PROTO_F_QUEUED_AT,  PROTO_F_STARTED_AT, PROTO_F_FINISHED_AT,
	};

	printf("%-12s %lld\n", PROTO_F_ID,
	       (long long)json_integer_value(json_object_get(b, PROTO_F_ID)));
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		printf("%-12s %s\n", keys[i], str_or(b, keys[i], "-"));
	printf("%-12s %lld\n", PROTO_F_ATTEMPTS,
	       (long long)json_integer_value(json_object_get(b, PROTO_F_ATTEMPTS)));
}

static void print_status(json_t *r)
{
	size_t i, k;
	json_t *repo, *br;
	long long up = (long long)json_integer_value(json_object_get(r, PROTO_F_UPTIME));

	printf("kilnd %s, up %lldh%02lldm; builds: %lld queued, %lld running\n",
	       str_or(r, PROTO_F_SRV_VERSION, "?"), up / 3600, up / 60 % 60,
	       (long long)json_integer_value(json_object_get(r, PROTO_F_QUEUED)),
	       (long long)json_integer_value(json_object_get(r, PROTO_F_RUNNING)));
	printf("%-16s %-9s %-12s %-12s %-12s %s\n", "REPOSITORY", "STATE", "BRANCH", "HEAD",
	       "LAST SEEN", "LAST ERROR");
	json_array_foreach(json_object_get(r, PROTO_F_REPOSITORIES), i, repo)
	{
		json_array_foreach(json_object_get(repo, PROTO_F_BRANCHES), k, br)
		{
			printf("%-16s %-9s %-12s %-12.12s %-12.12s %s\n",
			       str_or(repo, PROTO_F_NAME, "-"), str_or(repo, PROTO_F_STATE, "-"),
			       str_or(br, PROTO_F_NAME, "-"), str_or(br, PROTO_F_HEAD, "-"),
			       str_or(br, PROTO_F_LAST_SEEN, "-"),
			       k == 0 ? str_or(repo, PROTO_F_LAST_ERROR, "-") : "");
		}
	}
}

/* The positional arguments of each command into the request. */
static int online_args(const struct kiln_cmd *cmd, int argc, char **argv, json_t *req)
{
	const char *p = cmd->proto;

	if (strcmp(p, PROTO_CMD_REBUILD) == 0) {
		if (argc - optind < 2 || argc - optind > 3) {
			fprintf(stderr, "kiln %s: expected REPOSITORY IMAGE-PATH [COMMIT]\n",
				cmd->name);
			return -EINVAL;
		}
		json_object_set_new(req, PROTO_F_REPOSITORY, json_string(argv[optind]));
		json_object_set_new(req, PROTO_F_IMAGE, json_string(argv[optind + 1]));
		if (argc - optind == 3)
			json_object_set_new(req, PROTO_F_COMMIT, json_string(argv[optind + 2]));
	} else if (strcmp(p, PROTO_CMD_BUILD) == 0 || strcmp(p, PROTO_CMD_CANCEL) == 0 ||
		   strcmp(p, PROTO_CMD_LOGS) == 0) {
		char *end = NULL;
		long long id = optind < argc ? strtoll(argv[optind], &end, 10) : 0;
		if (argc - optind != 1 || *end || id <= 0) {
			fprintf(stderr, "kiln %s: expected one build ID; see 'kiln %s --help'\n",
				cmd->name, cmd->name);
			return -EINVAL;
		}
		json_object_set_new(req, PROTO_F_ID, json_integer(id));
	} else if (strcmp(p, PROTO_CMD_TRIGGER) == 0) {
		if (argc - optind < 1 || argc - optind > 2) {
			fprintf(stderr, "kiln %s: expected REPOSITORY [BRANCH]\n", cmd->name);
			return -EINVAL;
		}
		json_object_set_new(req, PROTO_F_REPOSITORY, json_string(argv[optind]));
		if (argc - optind == 2)
			json_object_set_new(req, PROTO_F_BRANCH, json_string(argv[optind + 1]));
	} else if (optind != argc) {
		fprintf(stderr, "kiln %s: unexpected argument '%s'\n", cmd->name, argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static void build_times_to_rfc3339(json_t *b)
{
	rfc3339(b, PROTO_F_QUEUED_AT);
	rfc3339(b, PROTO_F_STARTED_AT);
	rfc3339(b, PROTO_F_FINISHED_AT);
}

static void times_to_rfc3339(json_t *res)
{
	size_t i;
	json_t *b;

	if (json_is_object(res))
		build_times_to_rfc3339(res);
	json_array_foreach(res, i, b)
	{
		build_times_to_rfc3339(b);
	}
}

static void print_result(const char *p, json_t *res, bool json)
{
	if (strcmp(p, PROTO_CMD_BUILDS) == 0 || strcmp(p, PROTO_CMD_BUILD) == 0)
		times_to_rfc3339(res);
	if (json) {
		json_dumpf(res, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
	} else if (strcmp(p, PROTO_CMD_STATUS) == 0) {
		print_status(res);
	} else if (strcmp(p, PROTO_CMD_BUILDS) == 0) {
		print_builds_table(res);
	} else if (strcmp(p, PROTO_CMD_BUILD) == 0) {
		print_build(res);
	} else if (strcmp(p, PROTO_CMD_TRIGGER) == 0) {
		printf("polling '%s' now\n", str_or(res, PROTO_F_TRIGGERED, "?"));
	} else if (strcmp(p, PROTO_CMD_LOGS) == 0) {
		const char *log = str_or(res, PROTO_F_LOG, "");
		fwrite(log, 1, json_string_length(json_object_get(res, PROTO_F_LOG)), stdout);
		if (log[0] == '\0')
			fprintf(stderr, "kiln: build %lld (%s) has no log yet\n",
				(long long)json_integer_value(json_object_get(res, PROTO_F_ID)),
				str_or(res, PROTO_F_STATE, "?"));
	} else if (strcmp(p, PROTO_CMD_REBUILD) == 0) {
		printf("queued build %lld: %s at %.12s\n",
		       (long long)json_integer_value(json_object_get(res, PROTO_F_ID)),
		       str_or(res, PROTO_F_IMAGE, "?"), str_or(res, PROTO_F_COMMIT, "?"));
	} else {
		/* a running build is "cancelling" until its transfer is cut */
		printf("build %lld %s\n",
		       (long long)json_integer_value(json_object_get(res, PROTO_F_ID)),
		       str_or(res, PROTO_F_STATE, PROTO_STATE_CANCELLED));
	}
}

/* kiln health: exit 0 only when kilnd answers and says it is healthy; each
 * reason on a line of its own */
static int print_health(json_t *res)
{
	json_t *reasons, *r;
	size_t i;

	if (res == NULL)
		return EXIT_INVALID;
	if (json_is_true(json_object_get(res, PROTO_F_HEALTHY))) {
		printf("healthy\n");
		return 0;
	}
	reasons = json_object_get(res, PROTO_F_REASONS);
	if (json_array_size(reasons) == 0) { /* a kilnd that gives one reason */
		printf("unhealthy: %s\n", str_or(res, PROTO_F_REASON, "unknown"));
		return EXIT_INVALID;
	}
	printf("unhealthy: %zu reason%s\n", json_array_size(reasons),
	       json_array_size(reasons) == 1 ? "" : "s");
	json_array_foreach(reasons, i, r)
	{
		const char *name = str_or(r, PROTO_F_NAME, NULL);
		rfc3339(r, PROTO_F_SINCE);
		printf("  %s%s%s%s: %s", str_or(r, PROTO_F_WHAT, "?"), name ? " '" : "",
		       name ? name : "", name ? "'" : "", str_or(r, PROTO_F_MESSAGE, "?"));
		if (json_is_string(json_object_get(r, PROTO_F_SINCE)))
			printf(" (since %s)", str_or(r, PROTO_F_SINCE, "?"));
		printf("\n");
	}
	return EXIT_INVALID;
}

static int cmd_online(const struct kiln_cmd *cmd, int argc, char **argv)
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
	const char *sock = getenv("KILN_SOCKET");
	json_t *req =
		   json_pack("{s:i, s:s}", PROTO_F_VERSION, PROTO_VERSION, PROTO_F_CMD, cmd->proto),
	       *ans, *res;
	bool json = false;
	int c, rc;

	if (sock == NULL || sock[0] == '\0')
		sock = PROTO_SOCKET_DEFAULT;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hf", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'f':
			json_object_set_new(req, PROTO_F_FOLLOW, json_true());
			break;
		case 'j':
			json = true;
			break;
		case 'r':
			json_object_set_new(req, PROTO_F_REPOSITORY, json_string(optarg));
			break;
		case 'i':
			json_object_set_new(req, PROTO_F_IMAGE, json_string(optarg));
			break;
		case 't':
			json_object_set_new(req, PROTO_F_STATE, json_string(optarg));
			break;
		case 'n': {
			char *end;
			long n = strtol(optarg, &end, 10);

			if (end == optarg || *end || n < 1 || n > PROTO_LIMIT_MAX) {
				fprintf(stderr, "kiln %s: --limit must be 1 to %d, not '%s'\n",
					cmd->name, PROTO_LIMIT_MAX, optarg);
				json_decref(req);
				return EXIT_USAGE;
			}
			json_object_set_new(req, PROTO_F_LIMIT, json_integer(n));
			break;
		}
		case 'h':
			online_help(stdout);
			json_decref(req);
			return 0;
		default:
			fprintf(stderr, "kiln %s: see 'kiln %s --help'\n", cmd->name, cmd->name);
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
	if (strcmp(cmd->proto, PROTO_CMD_HEALTH) == 0)
		rc = print_health(res);
	else if (res != NULL)
		print_result(cmd->proto, res, json);
	json_decref(ans);
	return rc;
}

/* ---- kiln build: the builder in the foreground ---- */

static void build_help(FILE *f)
{
	fputs("usage: kiln build [--repo DIR] [--push] [--dry-run] [OPTIONS] FROM TO\n"
	      "\n"
	      "Build every image that changed between commits FROM and TO (what 'kiln changes'\n"
	      "lists, except removed images) on a Docker engine, in dependency order, from\n"
	      "the git tree of TO (not the working copy). Each image's output goes to stdout,\n"
	      "each line prefixed with 'name:version | '; a summary table ends the run. An\n"
	      "image whose base image failed is skipped. No daemon is needed: this is what a\n"
	      "CI job calls. FROM may be git's empty tree, "
	      "4b825dc642cb6eb9a060e54bf8d69288fbee4904,\n"
	      "to build every image of TO. 'kiln build ID' (one argument, all digits) is the\n"
	      "old spelling of 'kiln show ID': it still works, with a note on stderr.\n"
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

/* Whether argv is the old `kiln build ID`: exactly one argument that is not
 * an option or an option's value, and it is all digits. A FROM and TO are
 * two arguments, so this is never a build. */
static bool build_is_show(int argc, char **argv)
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
	return positional == 1 && numeric == 1;
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

struct build_args {
	struct oneshot_opts o;
	const char *repo_dir;
	bool dry, use_cache;
};

/* Options into a; then argv[optind] and argv[optind + 1] are FROM and TO.
 * 0 to go on, else the exit status (after --help, 0 too: *done is set). */
static int build_parse(int argc, char **argv, struct build_args *a, bool *done)
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
	char *end;
	long n;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			a->repo_dir = optarg;
			break;
		case 'm':
			a->o.manifest_name = optarg;
			break;
		case 'p':
			a->o.push = true;
			break;
		case 'o':
			a->o.overwrite_tags = true;
			break;
		case 'd':
			a->dry = true;
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
				a->o.concurrency = (unsigned)n;
			else
				a->o.retries = (unsigned)n;
			break;
		case 'H':
			a->o.docker_host = optarg;
			break;
		case 's':
			a->o.source_url = optarg;
			break;
		case 'n':
			a->use_cache = false;
			break;
		case 'h':
			build_help(stdout);
			*done = true;
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
	if (!manifest_valid_file_name(a->o.manifest_name)) {
		fprintf(stderr, "kiln build: --manifest '%s' must be a file name, not a path\n",
			a->o.manifest_name);
		return EXIT_USAGE;
	}
	return 0;
}

/* --dry-run: what would be built, in order */
static void print_dry_run(const struct changeset *cs, bool push)
{
	size_t k = 0;

	for (size_t i = 0; i < cs->n; i++) {
		const struct change *ch = &cs->v[i];
		if (ch->kind == CHANGE_REMOVED || !ch->image)
			continue;
		printf("%zu. %s (%s, %s)", ++k, ch->image, change_kind_str(ch->kind),
		       path_display(ch->path));
		for (size_t d = 0; d < ch->depends_on.n; d++)
			printf("%s%s", d ? ", " : " after ", path_display(ch->depends_on.v[d]));
		printf("\n");
	}
	printf("%zu image%s would be built%s\n", k, k == 1 ? "" : "s", push ? " and pushed" : "");
}

/* The builds themselves, on the engine: oneshot_run's exit status. */
static int build_run(git_repository *repo, struct oneshot_opts o, const struct changeset *cs)
{
	char hex[GIT_OID_HEXSZ + 1], *source = NULL;
	int rc;

	if (!o.source_url)
		o.source_url = source = origin_url(repo);
	o.commit = git_oid_tostr(hex, sizeof(hex), &cs->to);
	o.repo_path = git_repository_path(repo);
	signal(SIGPIPE, SIG_IGN); /* a cancelled build closes the context pipe */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = oneshot_run(&o, cs);
	curl_global_cleanup();
	free(source);
	return rc;
}

static int cmd_build(const struct kiln_cmd *cmd, int argc, char **argv)
{
	struct build_args a = {.o = {.manifest_name = "manifest.yaml",
				     .concurrency = 2,
				     .retries = 2,
				     .retry_delay_ms = 2000,
				     .test_timeout_ms = 10 * 60 * 1000},
			       .repo_dir = ".",
			       .use_cache = true};
	git_repository *repo = NULL;
	struct changeset cs = {0};
	struct kiln_err err = {0};
	bool done = false;
	int rc;

	(void)cmd;
	if (build_is_show(argc, argv)) {
		fprintf(stderr, "kiln: 'kiln build ID' is deprecated; use 'kiln show ID'\n");
		cmd = find_cmd("show");
		return cmd->run(cmd, argc, argv);
	}
	rc = build_parse(argc, argv, &a, &done);
	if (rc != 0 || done)
		return rc;
	rc = EXIT_USAGE;
	repo_global_init(REPO_ROLE_CLI);
	if (plan(a.repo_dir, a.o.manifest_name, a.use_cache, argv[optind], argv[optind + 1], &repo,
		 &cs, &err) < 0) {
		fprintf(stderr, "kiln build: %s\n", err.msg);
		goto out;
	}
	for (size_t i = 0; i < cs.errors.n; i++) {
		char line[1024];
		kiln_diag_format(&cs.errors.v[i], line, sizeof(line));
		fprintf(stderr, "kiln build: %s\n", line);
	}
	if (a.dry) {
		print_dry_run(&cs, a.o.push);
		rc = 0;
	} else {
		rc = build_run(repo, a.o, &cs);
	}
	if (rc == 0 && cs.errors.n)
		rc = EXIT_INVALID;
out:
	changeset_done(&cs);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

static const struct kiln_cmd cmds[] = {
    {"changes", NULL, "list the images changed between two commits", cmd_changes, changes_help},
    {"status", PROTO_CMD_STATUS, "kilnd's repositories, branches and queue", cmd_online,
     online_help},
    {"builds", PROTO_CMD_BUILDS, "kilnd's builds, newest first", cmd_online, online_help},
    {"show", PROTO_CMD_BUILD, "one of kilnd's builds, with its pushed digest", cmd_online,
     online_help},
    {"build", NULL, "build (and push) the images changed between two commits", cmd_build,
     build_help},
    {"logs", PROTO_CMD_LOGS, "a build's log", cmd_online, online_help},
    {"trigger", PROTO_CMD_TRIGGER, "ask kilnd to poll a repository now", cmd_online, online_help},
    {"rebuild", PROTO_CMD_REBUILD, "queue a build of one image", cmd_online, online_help},
    {"cancel", PROTO_CMD_CANCEL, "cancel a queued or running build", cmd_online, online_help},
    {"health", PROTO_CMD_HEALTH, "exit 0 when kilnd answers and is healthy", cmd_online,
     online_help},
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
	return cmd->run(cmd, argc - 1, argv + 1);
}
