/* kiln_build.c (build): `kiln build FROM TO`, in kiln-build.so, which the front
 * loads when the command runs: the only part of kiln that needs the engine
 * client (libcurl, libarchive, libuv, ...). Plans with cli_plan, then hands
 * the changeset to oneshot_run. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "kiln/buf.h"
#include "kiln/changes.h"
#include "kiln/changes_cli.h"
#include "kiln/cli.h"
#include "kiln/manifest.h"
#include "kiln/oneshot.h"
#include "kiln/path.h"
#include "kiln/repo.h"

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
	struct config_secret *secrets; /* --secret; the strings point into argv */
	size_t nsecrets;
	const char *repo_dir;
	bool dry, use_cache;
};

/* --secret id=ID,src=FILE (also source=, and type=file), as the docker CLI
 * takes it; the file is read when a build granted it starts. */
static int parse_secret(struct build_args *a, char *arg)
{
	char *id = NULL, *src = NULL, *save = NULL;

	for (char *f = strtok_r(arg, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
		if (strncmp(f, "id=", 3) == 0)
			id = f + 3;
		else if (strncmp(f, "src=", 4) == 0)
			src = f + 4;
		else if (strncmp(f, "source=", 7) == 0)
			src = f + 7;
		else if (strcmp(f, "type=file") != 0) {
			fprintf(
			    stderr,
			    "kiln build: --secret takes id=ID,src=FILE; '%s' is not understood\n",
			    f);
			return CLI_EXIT_USAGE;
		}
	}
	if (!id || !src || !*src || !manifest_valid_secret_id(id)) {
		fprintf(stderr,
			"kiln build: --secret needs id=ID ([A-Za-z0-9._-]+) and src=FILE\n");
		return CLI_EXIT_USAGE;
	}
	for (size_t i = 0; i < a->nsecrets; i++) {
		if (strcmp(a->secrets[i].id, id) == 0) {
			fprintf(stderr, "kiln build: --secret id=%s is given twice\n", id);
			return CLI_EXIT_USAGE;
		}
	}
	a->secrets = xreallocarray(a->secrets, a->nsecrets + 1, sizeof(*a->secrets));
	a->secrets[a->nsecrets++] = (struct config_secret){.id = id, .file = src};
	a->o.secrets = a->secrets;
	a->o.nsecrets = a->nsecrets;
	return 0;
}

/* Options into a; then argv[optind] and argv[optind + 1] are FROM and TO.
 * 0 to go on, else the exit status (after --help, 0 too: *done is set). */
static int build_parse(const struct cli_call *call, struct build_args *a, bool *done)
{
	int argc = call->argc;
	char **argv = call->argv;
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
	    {"pull", no_argument, NULL, 'P'},
	    {"no-build-cache", no_argument, NULL, 'C'},
	    {"builder", required_argument, NULL, 'B'},
	    {"network", required_argument, NULL, 'N'},
	    {"secret", required_argument, NULL, 'S'},
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
				return CLI_EXIT_USAGE;
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
		case 'P':
			a->o.pull = true;
			break;
		case 'C':
			a->o.no_cache = true;
			break;
		case 'B':
			if (!manifest_valid_builder(optarg)) {
				fprintf(stderr,
					"kiln build: --builder must be auto, buildkit or classic, "
					"not '%s'\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			a->o.builder = optarg;
			break;
		case 'N':
			if (!manifest_valid_network(optarg)) {
				fprintf(stderr,
					"kiln build: --network must be default, none or host, not "
					"'%s'\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			a->o.network = optarg;
			break;
		case 'S':
			if (parse_secret(a, optarg) != 0)
				return CLI_EXIT_USAGE;
			break;
		case 'h':
			call->help(stdout);
			*done = true;
			return 0;
		default:
			fprintf(stderr, "kiln build: see 'kiln build --help'\n");
			return CLI_EXIT_USAGE;
		}
	}
	if (!changes_cli_check("build", argc - optind, a->o.manifest_name))
		return CLI_EXIT_USAGE;
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

int cli_build_main(const struct cli_call *call)
{
	char **argv = call->argv;
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

	rc = build_parse(call, &a, &done);
	if (rc != 0 || done) {
		free(a.secrets);
		return rc;
	}
	rc = CLI_EXIT_USAGE;
	repo_global_init(REPO_ROLE_CLI);
	if (cli_plan(a.repo_dir, a.o.manifest_name, a.use_cache, argv[optind], argv[optind + 1],
		     &repo, &cs, &err) < 0) {
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
		rc = CLI_EXIT_INVALID;
out:
	free(a.secrets);
	changeset_done(&cs);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}
