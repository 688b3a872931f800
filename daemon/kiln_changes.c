/* kiln_changes.c (plan): `kiln changes FROM TO`, in kiln-changes.so, which the
 * front loads when the command runs; cli_plan is shared with kiln-build.so.
 * Links libgit2, libyaml and jansson, not the engine client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "kiln/changes.h"
#include "kiln/changes_cli.h"
#include "kiln/cli.h"
#include "kiln/manifest.h"
#include "kiln/map.h"
#include "kiln/path.h"
#include "kiln/repo.h"

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

/* git's empty tree as FROM: every image at TO is added (a first CI run) */
#define EMPTY_TREE "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

int cli_plan(const char *repo_dir, const char *manifest_name, bool use_cache, const char *from_rev,
	     const char *to_rev, git_repository **ret_repo, struct changeset *ret,
	     struct kiln_err *err)
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
	cat.defer_froms = true; /* one run: without a cache file, FROMs only when needed */
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
	char from[GIT_OID_HEXSZ + 1], to[GIT_OID_HEXSZ + 1];
	json_t *images = json_array(), *errors = json_array();

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
	changes_cli_print_json(git_oid_tostr(from, sizeof(from), &cs->from),
			       git_oid_tostr(to, sizeof(to), &cs->to), images, errors);
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

int cli_changes_main(const struct cli_call *call)
{
	struct changes_cli a;
	git_repository *repo = NULL;
	struct changeset cs = {0};
	struct kiln_err err = {0};
	int rc;

	if (!changes_cli_parse(call, &a, &rc))
		return rc;
	rc = CLI_EXIT_USAGE;
	repo_global_init(REPO_ROLE_CLI);
	if (cli_plan(a.repo_dir, a.manifest_name, a.use_cache, a.from, a.to, &repo, &cs, &err) <
	    0) {
		fprintf(stderr, "kiln changes: %s\n", err.msg);
		goto out;
	}
	if (a.json)
		print_json(&cs);
	else
		print_text(&cs);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "kiln changes: cannot write the output\n");
		rc = CLI_EXIT_INVALID;
		goto out;
	}
	rc = cs.errors.n ? CLI_EXIT_INVALID : 0;
out:
	changeset_done(&cs);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}
