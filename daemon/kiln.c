/* kiln.c: the command-line tool. One table of commands; each parses its own
 * options. Exit status: 0 success, 1 the inputs have errors, 2 usage or a
 * repository/revision that cannot be found. */
#include <dlfcn.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kiln/changes.h"
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
	      "otherwise by path.\n"
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

static bool valid_manifest_name(const char *s)
{
	return s[0] && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
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
	git_commit *from = NULL, *to = NULL;
	struct catalog cat;
	struct changeset cs = {0};
	struct kiln_err err = {0};
	char *cache = NULL;
	int c, r, rc = EXIT_USAGE;

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
	if (!valid_manifest_name(manifest_name)) {
		fprintf(stderr, "kiln changes: --manifest '%s' must be a file name, not a path\n",
			manifest_name);
		return EXIT_USAGE;
	}
	git_init_offline();
	catalog_init(&cat, manifest_name, NULL);
	if (repo_open(repo_dir, &repo, &err) < 0 ||
	    repo_commit(repo, argv[optind], &from, &err) < 0 ||
	    repo_commit(repo, argv[optind + 1], &to, &err) < 0) {
		fprintf(stderr, "kiln changes: %s\n", err.msg);
		goto out;
	}
	if (use_cache && (cache = cache_path(repo, manifest_name)) != NULL) {
		catalog_done(&cat);
		catalog_init(&cat, manifest_name, cache);
	}
	r = changes_compute(repo, from, to, &cat, &cs, &err);
	if (r == -EBADMSG && cache != NULL) {
		/* a damaged cache is never trusted: remove it and start over */
		unlink(cache);
		catalog_done(&cat);
		catalog_init(&cat, manifest_name, cache);
		r = changes_compute(repo, from, to, &cat, &cs, &err);
	}
	if (r < 0) {
		fprintf(stderr, "kiln changes: %s\n", err.msg);
		goto out;
	}
	catalog_save(&cat, NULL); /* best effort: a cache, not state */
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
	catalog_done(&cat);
	free(cache);
	git_commit_free(from);
	git_commit_free(to);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

static const struct kiln_cmd cmds[] = {
    {"changes", "list the images changed between two commits", cmd_changes, changes_help},
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
