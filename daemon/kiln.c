/* kiln.c (main): the command-line tool's front. One table of commands; each
 * parses its own options. The commands that ask kilnd run here; `changes`
 * and `build` are modules loaded when they run (see kiln/cli.h), so that
 * the front links only libc, jansson and zlib (`changes` of an unchanged
 * range is answered here, gitref.h). Exit status: 0 success, 1 the
 * inputs have errors, 2 usage, a repository/revision that cannot be found
 * or a module that cannot be loaded. */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
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

#include "kiln/buf.h"
#include "kiln/changes_cli.h"
#include "kiln/cli.h"
#include "kiln/common.h"
#include "kiln/gitref.h"
#include "kiln/proto.h"

struct kiln_cmd {
	const char *name;
	const char *proto; /* the status socket command it sends; NULL: runs here */
	const char *summary;
	int (*run)(const struct kiln_cmd *cmd, int argc, char **argv);
	void (*help)(FILE *f);
	const char *module; /* run: the module and its cli_main_fn */
	const char *entry;
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
	      "  --builder B         auto (default), buildkit or classic; a manifest's builder:\n"
	      "                      wins; auto: BuildKit on Docker with API >= 1.39\n"
	      "  --network N         the network of RUN steps: default (the engine's), none or\n"
	      "                      host; a manifest's network: wins\n"
	      "  --secret id=ID,src=FILE\n"
	      "                      a build secret manifests may grant (secrets: [ID]) for\n"
	      "                      RUN --mount=type=secret,id=ID (BuildKit); repeatable\n"
	      "  --pull              pull every base image anew (the engine's copy is not\n"
	      "                      enough); a base image built by this run must be pushed\n"
	      "  --no-build-cache    build every step anew: nothing from the engine's build cache\n"
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
					     "--socket",  "--builder",	   "--network"};
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
	      "  logs     a build's log; -f waits until the build has ended (no time limit;\n"
	      "           other commands give kilnd 30 s to answer)\n"
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
	bool follow = json_is_true(json_object_get(req, PROTO_F_FOLLOW));
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
	/* a follower's answer comes when the build ends, however long it
	 * runs; kilnd gone closes the connection */
	if (!follow && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
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
		*rc = CLI_EXIT_USAGE;
		return NULL;
	}
	if (!json_is_true(json_object_get(ans, PROTO_F_OK))) {
		fprintf(stderr, "kiln: kilnd: %s\n", str_or(ans, PROTO_F_ERROR, "error"));
		*rc = CLI_EXIT_INVALID;
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
	    PROTO_F_STATE,	PROTO_F_REPOSITORY,  PROTO_F_BRANCH,  PROTO_F_PATH,
	    PROTO_F_IMAGE,	PROTO_F_COMMIT,	     PROTO_F_SUBJECT, PROTO_F_CHANGE,
	    PROTO_F_DIGEST,	PROTO_F_BUILDER,     PROTO_F_ERROR,   PROTO_F_QUEUED_AT,
	    PROTO_F_STARTED_AT, PROTO_F_FINISHED_AT,
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
	json_t *repo, *br, *eng;
	long long up = (long long)json_integer_value(json_object_get(r, PROTO_F_UPTIME));

	printf("kilnd %s, up %lldh%02lldm; builds: %lld queued, %lld running\n",
	       str_or(r, PROTO_F_SRV_VERSION, "?"), up / 3600, up / 60 % 60,
	       (long long)json_integer_value(json_object_get(r, PROTO_F_QUEUED)),
	       (long long)json_integer_value(json_object_get(r, PROTO_F_RUNNING)));
	eng = json_object_get(r, PROTO_F_ENGINE);
	if (json_is_object(eng))
		printf("engine: %s at %s, %s\n", str_or(eng, PROTO_F_ENGINE, "not identified yet"),
		       str_or(eng, PROTO_F_HOST, "?"), str_or(eng, PROTO_F_STATE, "?"));
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
	json_array_foreach(json_object_get(r, PROTO_F_REPOSITORIES), i, repo)
	{
		json_int_t backlog = json_integer_value(json_object_get(repo, PROTO_F_OUTBOX));
		const char *e = str_or(repo, PROTO_F_REPORTING_ERROR, NULL);
		if (backlog > 0 || e)
			printf("%s: reporting: %lld unsent%s%s\n", str_or(repo, PROTO_F_NAME, "-"),
			       (long long)backlog, e ? "; last refused: " : "", e ? e : "");
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
		return CLI_EXIT_INVALID;
	if (json_is_true(json_object_get(res, PROTO_F_HEALTHY))) {
		printf("healthy\n");
		return 0;
	}
	reasons = json_object_get(res, PROTO_F_REASONS);
	if (json_array_size(reasons) == 0) { /* a kilnd that gives one reason */
		printf("unhealthy: %s\n", str_or(res, PROTO_F_REASON, "unknown"));
		return CLI_EXIT_INVALID;
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
	return CLI_EXIT_INVALID;
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
				return CLI_EXIT_USAGE;
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
			return CLI_EXIT_USAGE;
		}
	}
	if (online_args(cmd, argc, argv, req) < 0) {
		json_decref(req);
		return CLI_EXIT_USAGE;
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

/* ---- commands in modules ---- */

/* Where module is: beside kiln in a build tree, else KILN_MODULE_RELDIR from
 * kiln's own directory (symbolic links resolved), which is where an install
 * puts it. The caller frees it. Not dlopen's search: its RUNPATH would be
 * the caller's, and under ASan the caller is the sanitizer's dlopen. */
static char *module_path(const char *module)
{
	char exe[PATH_MAX], *p;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0 || memchr(exe, '/', (size_t)n) == NULL)
		return xstrdup(module); /* no /proc: the loader's search, as a last resort */
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	p = xasprintf("%s/%s", exe, module);
	if (access(p, F_OK) == 0)
		return p;
	free(p);
	return xasprintf("%s/" KILN_MODULE_RELDIR "/%s", exe, module);
}

/* Loads cmd's module and runs it. A module, or a library it needs, that
 * cannot be loaded is named, with exit status 2. The module stays loaded
 * until the process exits. */
static int cmd_module(const struct kiln_cmd *cmd, int argc, char **argv)
{
	struct cli_call call = {.argc = argc, .argv = argv, .help = cmd->help};
	cli_main_fn *fn;
	char *path = module_path(cmd->module);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	free(path);
	if (h == NULL) {
		fprintf(stderr, "kiln %s: cannot load %s: %s\n", cmd->name, cmd->module, dlerror());
		return CLI_EXIT_USAGE;
	}
	fn = (cli_main_fn *)dlsym(h, cmd->entry);
	if (fn == NULL) {
		fprintf(stderr, "kiln %s: %s has no %s: %s\n", cmd->name, cmd->module, cmd->entry,
			dlerror());
		return CLI_EXIT_USAGE;
	}
	return fn(&call);
}

/* kiln changes: a range whose commits have one tree is answered here, from
 * the repository's files (gitref.h), without loading the module and
 * libgit2; whatever gitref cannot tell for sure goes to the module, which
 * parses the same arguments again and does everything as before. */
static int cmd_changes(const struct kiln_cmd *cmd, int argc, char **argv)
{
	struct cli_call call = {.argc = argc, .argv = argv, .help = cmd->help};
	struct changes_cli a;
	struct kiln_err err = {0};
	char from[GITREF_HEX + 1], to[GITREF_HEX + 1];
	int rc;

	if (!changes_cli_parse(&call, &a, &rc))
		return rc;
	if (gitref_unchanged(a.repo_dir, a.from, a.to, from, to, &err) < 0)
		return cmd_module(cmd, argc, argv);
	if (a.json)
		changes_cli_print_json(from, to, json_array(), json_array());
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "kiln changes: cannot write the output\n");
		return CLI_EXIT_INVALID;
	}
	return 0;
}

static int cmd_build(const struct kiln_cmd *cmd, int argc, char **argv)
{
	if (build_is_show(argc, argv)) {
		fprintf(stderr, "kiln: 'kiln build ID' is deprecated; use 'kiln show ID'\n");
		cmd = find_cmd("show");
		return cmd->run(cmd, argc, argv);
	}
	return cmd_module(cmd, argc, argv);
}

static const struct kiln_cmd cmds[] = {
    {"changes", NULL, "list the images changed between two commits", cmd_changes, changes_help,
     "kiln-changes.so", "cli_changes_main"},
    {"status", PROTO_CMD_STATUS, "kilnd's repositories, branches and queue", cmd_online,
     online_help, NULL, NULL},
    {"builds", PROTO_CMD_BUILDS, "kilnd's builds, newest first", cmd_online, online_help, NULL,
     NULL},
    {"show", PROTO_CMD_BUILD, "one of kilnd's builds, with its pushed digest", cmd_online,
     online_help, NULL, NULL},
    {"build", NULL, "build (and push) the images changed between two commits", cmd_build,
     build_help, "kiln-build.so", "cli_build_main"},
    {"logs", PROTO_CMD_LOGS, "a build's log", cmd_online, online_help, NULL, NULL},
    {"trigger", PROTO_CMD_TRIGGER, "ask kilnd to poll a repository now", cmd_online, online_help,
     NULL, NULL},
    {"rebuild", PROTO_CMD_REBUILD, "queue a build of one image", cmd_online, online_help, NULL,
     NULL},
    {"cancel", PROTO_CMD_CANCEL, "cancel a queued or running build", cmd_online, online_help, NULL,
     NULL},
    {"health", PROTO_CMD_HEALTH, "exit 0 when kilnd answers and is healthy", cmd_online,
     online_help, NULL, NULL},
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
		return CLI_EXIT_USAGE;
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
			return CLI_EXIT_USAGE;
		}
		cmd->help(stdout);
		return 0;
	}
	if ((cmd = find_cmd(argv[1])) == NULL) {
		fprintf(stderr, "kiln: unknown command '%s'; see 'kiln --help'\n", argv[1]);
		return CLI_EXIT_USAGE;
	}
	return cmd->run(cmd, argc - 1, argv + 1);
}
