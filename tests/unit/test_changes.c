/* test_changes.c: changes_compute on real repositories, against the verdicts
 * README's `kiln changes` section documents: added, modified, dependency,
 * removed; .dockerignore; a Dockerfile outside the folder; trees, not
 * history. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gitrepo.h"
#include "kiln/buf.h"
#include "kiln/changes.h"
#include "kiln/repo.h"

#define REG	      "reg.example.com/team"
#define BASE_MANIFEST "name: base\nversion: \"1\"\nregistry: " REG "\ntags: [latest]\n"
#define APP_MANIFEST  "name: app\nversion: \"2\"\nregistry: " REG "\n"

static char dir[64];
static git_repository *repo;

static int setup(void **state)
{
	(void)state;
	repo = gitrepo_new(dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gitrepo_remove(repo, dir);
	return 0;
}

/* base (FROM scratch) and app (FROM base:latest). */
static const struct gitrepo_file two_images[] = {
    {"base/manifest.yaml", BASE_MANIFEST, 0},
    {"base/Dockerfile", "FROM scratch\nCOPY . /\n", 0},
    {"base/file", "one\n", 0},
    {"app/manifest.yaml", APP_MANIFEST, 0},
    {"app/Dockerfile", "FROM " REG "/base:latest\nCOPY . /\n", 0},
    {"app/main.c", "int main;\n", 0},
    {"README", "not an image\n", 0},
};

/* Everything a changeset says, for comparing two of them. */
static char *render_all(const struct changeset *cs)
{
	struct buf b = {0};

	for (size_t i = 0; i < cs->n; i++) {
		const struct change *c = &cs->v[i];
		buf_printf(&b, "%s %s %s %s %s %s deps:", change_kind_str(c->kind), c->path,
			   c->image ? c->image : "-", c->name ? c->name : "-",
			   c->version ? c->version : "-", c->registry ? c->registry : "-");
		for (size_t k = 0; k < c->depends_on.n; k++)
			buf_printf(&b, " %s", c->depends_on.v[k]);
		buf_puts(&b, " tags:");
		for (size_t k = 0; k < c->tags.n; k++)
			buf_printf(&b, " %s", c->tags.v[k]);
		buf_putc(&b, '\n');
	}
	for (size_t i = 0; i < cs->errors.n; i++)
		buf_printf(&b, "error %s:%u:%u %s\n", cs->errors.v[i].path, cs->errors.v[i].line,
			   cs->errors.v[i].column, cs->errors.v[i].message);
	buf_putc(&b, '\0');
	return b.p;
}

/* "<change> <path> <image>" per line, in the changeset's order; freed by the
 * caller. Computed twice: with kilnd's catalog and with the one-shot CLI's
 * (Dockerfiles read only when an image is affected), which must agree. */
static char *changes(git_commit *from, git_commit *to, struct changeset *ret_cs)
{
	struct catalog cat;
	struct changeset cs, deferred;
	struct kiln_err err = {0};
	struct buf b = {0};
	char *all, *all_deferred;

	catalog_init(&cat, "manifest.yaml", NULL);
	assert_int_equal(changes_compute(repo, from, to, &cat, &cs, &err), 0);
	catalog_done(&cat);
	catalog_init(&cat, "manifest.yaml", NULL);
	cat.defer_froms = true;
	assert_int_equal(changes_compute(repo, from, to, &cat, &deferred, &err), 0);
	catalog_done(&cat);
	all = render_all(&cs);
	all_deferred = render_all(&deferred);
	assert_string_equal(all_deferred, all);
	free(all);
	free(all_deferred);
	changeset_done(&deferred);
	for (size_t i = 0; i < cs.n; i++)
		buf_printf(&b, "%s%s %s %s", i ? "\n" : "", change_kind_str(cs.v[i].kind),
			   cs.v[i].path, cs.v[i].image ? cs.v[i].image : "-");
	buf_putc(&b, '\0');
	if (ret_cs)
		*ret_cs = cs;
	else
		changeset_done(&cs);
	return b.p;
}

static void expect(git_commit *from, git_commit *to, const char *want)
{
	char *got = changes(from, to, NULL);

	assert_string_equal(got, want);
	free(got);
}

static void added_from_empty_tree(void **state)
{
	git_commit *c = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	struct changeset cs;
	char *got;

	(void)state;
	/* dependencies first: base before app, though "app" sorts first */
	got = changes(NULL, c, &cs);
	assert_string_equal(got, "added base " REG "/base:1\nadded app " REG "/app:2");
	assert_int_equal(cs.v[1].depends_on.n, 1);
	assert_string_equal(cs.v[1].depends_on.v[0], "base");
	assert_int_equal(cs.v[0].depends_on.n, 0);
	assert_int_equal(cs.errors.n, 0);
	changeset_done(&cs);
	free(got);
	git_commit_free(c);
}

static void modified_and_dependency(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	const struct gitrepo_file in_base[] = {{"base/file", "two\n", 0}};
	const struct gitrepo_file in_app[] = {{"app/main.c", "int main(void);\n", 0}};
	const struct gitrepo_file mode[] = {{"base/file", "one\n", GIT_FILEMODE_BLOB_EXECUTABLE}};
	const struct gitrepo_file outside[] = {{"README", "still not an image\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, in_base, 1);
	git_commit *c = gitrepo_commit(repo, a, in_app, 1);
	git_commit *d = gitrepo_commit(repo, a, mode, 1);
	git_commit *e = gitrepo_commit(repo, a, outside, 1);

	(void)state;
	/* a base change rebuilds what builds FROM it */
	expect(a, b, "modified base " REG "/base:1\ndependency app " REG "/app:2");
	/* a dependent's change does not touch its base */
	expect(a, c, "modified app " REG "/app:2");
	/* the mode is part of the build */
	expect(a, d, "modified base " REG "/base:1\ndependency app " REG "/app:2");
	/* a path in no context changes no image */
	expect(a, e, "");
	expect(a, a, "");
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(c);
	git_commit_free(d);
	git_commit_free(e);
}

static void removed_keeps_the_old_manifest(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	const struct gitrepo_file rm[] = {{"app/manifest.yaml", NULL, 0}};
	const struct gitrepo_file bad[] = {{"app/manifest.yaml", "name: [\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, rm, 1);
	git_commit *c = gitrepo_commit(repo, a, bad, 1);
	git_commit *d = gitrepo_commit(repo, c, rm, 1);

	(void)state;
	expect(a, b, "removed app " REG "/app:2");
	/* removed with an invalid old manifest: no image */
	expect(c, d, "removed app -");
	/* renaming a folder is removed + added */
	{
		const struct gitrepo_file mv[] = {
		    {"app/manifest.yaml", NULL, 0},
		    {"app/Dockerfile", NULL, 0},
		    {"app/main.c", NULL, 0},
		    {"app2/manifest.yaml", APP_MANIFEST, 0},
		    {"app2/Dockerfile", "FROM scratch\n", 0},
		};
		git_commit *e = gitrepo_commit(repo, a, mv, ARRAY_SIZE(mv));
		expect(a, e, "removed app " REG "/app:2\nadded app2 " REG "/app:2");
		git_commit_free(e);
	}
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(c);
	git_commit_free(d);
}

static void dockerignore_decides_what_counts(void **state)
{
	const struct gitrepo_file ign[] = {{"base/.dockerignore", "*.md\n", 0},
					   {"base/notes.md", "x\n", 0}};
	git_commit *a0 = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	git_commit *a = gitrepo_commit(repo, a0, ign, ARRAY_SIZE(ign));
	const struct gitrepo_file md[] = {{"base/notes.md", "changed\n", 0}};
	const struct gitrepo_file di[] = {{"base/.dockerignore", "*.md\n*.txt\n", 0}};
	const struct gitrepo_file both[] = {{"base/notes.md", "changed\n", 0},
					    {"base/file", "two\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, md, 1);
	git_commit *c = gitrepo_commit(repo, a, di, 1);
	git_commit *d = gitrepo_commit(repo, a, both, ARRAY_SIZE(both));

	(void)state;
	/* an excluded path does not count */
	expect(a, b, "");
	/* the .dockerignore itself always counts */
	expect(a, c, "modified base " REG "/base:1\ndependency app " REG "/app:2");
	expect(a, d, "modified base " REG "/base:1\ndependency app " REG "/app:2");
	/* the ignore file of the FROM side is not the one that counts: adding
	 * it makes notes.md ignored in TO, and only the ignore file changed */
	expect(a0, a, "modified base " REG "/base:1\ndependency app " REG "/app:2");
	git_commit_free(a0);
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(c);
	git_commit_free(d);
}

/* Folders share one .dockerignore text (one blob) or not, nest, and lose
 * files: each folder's own file decides, whichever was read first. */
static void dockerignore_per_folder_when_shared(void **state)
{
#define M(n) "name: " n "\nversion: \"1\"\nregistry: " REG "\n"
	const struct gitrepo_file files[] = {
	    {"x/manifest.yaml", M("x"), 0},
	    {"x/Dockerfile", "FROM scratch\n", 0},
	    {"x/.dockerignore", "**/*.md\n", 0},
	    {"x/a.md", "1\n", 0},
	    {"x/a.txt", "1\n", 0},
	    {"x/in/y/manifest.yaml", M("y"), 0}, /* nested in x, its own file differs */
	    {"x/in/y/Dockerfile", "FROM scratch\n", 0},
	    {"x/in/y/.dockerignore", "*.txt\n", 0},
	    {"x/in/y/a.md", "1\n", 0},
	    {"z/manifest.yaml", M("z"), 0}, /* the same text as x's: the same blob */
	    {"z/Dockerfile", "FROM scratch\n", 0},
	    {"z/.dockerignore", "**/*.md\n", 0},
	    {"z/a.md", "1\n", 0},
	    {"z/a.txt", "1\n", 0},
	};
#undef M
	git_commit *a = gitrepo_commit(repo, NULL, files, ARRAY_SIZE(files));
	/* y's a.md counts for y (y ignores .txt files) and x ignores it (every .md) */
	const struct gitrepo_file nested[] = {{"x/in/y/a.md", "2\n", 0}};
	/* deleting an ignored file changes nothing; a kept one modifies */
	const struct gitrepo_file del_md[] = {{"z/a.md", NULL, 0}, {"x/a.md", NULL, 0}};
	const struct gitrepo_file del_txt[] = {{"z/a.txt", NULL, 0}, {"x/a.md", "2\n", 0}};
	/* the .dockerignore's deletion counts, and the file it ignored now
	 * counts in TO; z keeps its own (same blob as x's had) */
	const struct gitrepo_file no_ignore[] = {{"x/.dockerignore", NULL, 0},
						 {"z/a.md", "2\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, nested, 1);
	git_commit *c = gitrepo_commit(repo, a, del_md, ARRAY_SIZE(del_md));
	git_commit *d = gitrepo_commit(repo, a, del_txt, ARRAY_SIZE(del_txt));
	git_commit *e = gitrepo_commit(repo, a, no_ignore, ARRAY_SIZE(no_ignore));
	const struct gitrepo_file md_again[] = {{"x/a.md", "3\n", 0}};
	git_commit *f = gitrepo_commit(repo, e, md_again, 1);

	(void)state;
	expect(a, b, "modified x/in/y " REG "/y:1");
	expect(a, c, "");
	expect(a, d, "modified z " REG "/z:1");
	expect(a, e, "modified x " REG "/x:1");
	/* back: x's ignore file comes back (counts); z's a.md is ignored */
	expect(e, a, "modified x " REG "/x:1");
	/* x without a .dockerignore: every path counts */
	expect(e, f, "modified x " REG "/x:1");
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(c);
	git_commit_free(d);
	git_commit_free(e);
	git_commit_free(f);
}

static void dockerfile_outside_the_context(void **state)
{
	const struct gitrepo_file files[] = {
	    {"svc/manifest.yaml",
	     "name: svc\nversion: \"3\"\nregistry: " REG "\ndockerfile: ../docker/svc.Dockerfile\n",
	     0},
	    {"svc/app.py", "print(1)\n", 0},
	    {"docker/svc.Dockerfile", "FROM scratch\n", 0},
	    {"docker/other.Dockerfile", "FROM scratch\n", 0},
	};
	git_commit *a = gitrepo_commit(repo, NULL, files, ARRAY_SIZE(files));
	const struct gitrepo_file df[] = {{"docker/svc.Dockerfile", "FROM scratch\nCOPY . /\n", 0}};
	const struct gitrepo_file other[] = {{"docker/other.Dockerfile", "FROM busybox\n", 0}};
	const struct gitrepo_file base[] = {
	    {"docker/svc.Dockerfile", "FROM " REG "/base:latest\n", 0},
	    {"base/manifest.yaml", BASE_MANIFEST, 0},
	    {"base/Dockerfile", "FROM scratch\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, df, 1);
	git_commit *c = gitrepo_commit(repo, a, other, 1);
	git_commit *d = gitrepo_commit(repo, a, base, ARRAY_SIZE(base));
	const struct gitrepo_file base2[] = {{"base/Dockerfile", "FROM scratch\nCOPY x /\n", 0}};
	git_commit *e = gitrepo_commit(repo, d, base2, 1);

	(void)state;
	expect(a, b, "modified svc " REG "/svc:3");
	expect(a, c, "");
	/* the outside Dockerfile's FROM lines make a dependency too */
	expect(a, d, "added base " REG "/base:1\nmodified svc " REG "/svc:3");
	expect(d, e, "modified base " REG "/base:1\ndependency svc " REG "/svc:3");
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(c);
	git_commit_free(d);
	git_commit_free(e);
}

static void trees_not_history(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	const struct gitrepo_file there[] = {{"base/file", "two\n", 0}};
	const struct gitrepo_file back[] = {{"base/file", "one\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, there, 1);
	git_commit *c = gitrepo_commit(repo, b, back, 1);
	/* an orphan root with the same images, app changed */
	const struct gitrepo_file orphan[] = {
	    {"base/manifest.yaml", BASE_MANIFEST, 0},
	    {"base/Dockerfile", "FROM scratch\nCOPY . /\n", 0},
	    {"base/file", "one\n", 0},
	    {"app/manifest.yaml", APP_MANIFEST, 0},
	    {"app/Dockerfile", "FROM " REG "/base:latest\nCOPY . /\n", 0},
	    {"app/main.c", "unrelated\n", 0},
	};
	git_commit *o = gitrepo_commit(repo, NULL, orphan, ARRAY_SIZE(orphan));

	(void)state;
	/* made and undone inside the range: no change */
	expect(a, c, "");
	/* unrelated commits compare by tree */
	expect(a, o, "modified app " REG "/app:2");
	/* both differ: app in its own files, base in base/file */
	expect(o, b, "modified base " REG "/base:1\nmodified app " REG "/app:2");
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(c);
	git_commit_free(o);
}

static void problems_go_to_errors(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	const struct gitrepo_file bad[] = {{"app/manifest.yaml", APP_MANIFEST "brnach: x\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, bad, 1);
	struct changeset cs;
	char *got;

	(void)state;
	/* the invalid image is left out, the error located */
	got = changes(a, b, &cs);
	assert_string_equal(got, "");
	assert_int_equal(cs.errors.n, 1);
	assert_string_equal(cs.errors.v[0].path, "app/manifest.yaml");
	assert_int_equal(cs.errors.v[0].line, 4);
	assert_non_null(strstr(cs.errors.v[0].message, "brnach"));
	changeset_done(&cs);
	free(got);
	git_commit_free(a);
	git_commit_free(b);
}

/* A FROM chain (top FROM mid FROM low), one FROM through a build arg the
 * manifest sets, and an image whose context is elsewhere: what a shortcut
 * that skips manifests or Dockerfiles outside the changed folders gets
 * wrong. Every expect() also runs the CLI's deferring catalog. */
static void chains_args_and_contexts(void **state)
{
	const struct gitrepo_file files[] = {
	    {"low/manifest.yaml", "name: low\nversion: \"1\"\nregistry: " REG "\n", 0},
	    {"low/Dockerfile", "FROM scratch\n", 0},
	    {"mid/manifest.yaml",
	     "name: mid\nversion: \"1\"\nregistry: " REG "\nbuild_args: {V: \"1\"}\n", 0},
	    {"mid/Dockerfile", "ARG V\nFROM " REG "/low:$V\n", 0},
	    {"top/manifest.yaml", "name: top\nversion: \"1\"\nregistry: " REG "\n", 0},
	    {"top/Dockerfile", "FROM " REG "/mid:1 AS m\nFROM m\n", 0},
	    {"z/far/manifest.yaml",
	     "name: far\nversion: \"1\"\nregistry: " REG "\ncontext: ../../shared\n", 0},
	    {"z/far/Dockerfile", "FROM scratch\n", 0},
	    {"shared/lib.sh", "one\n", 0},
	};
	const struct gitrepo_file in_low[] = {{"low/x", "1\n", 0}};
	const struct gitrepo_file in_shared[] = {{"shared/lib.sh", "two\n", 0}};
	const struct gitrepo_file arg[] = {
	    {"mid/manifest.yaml",
	     "name: mid\nversion: \"1\"\nregistry: " REG "\nbuild_args: {V: \"2\"}\n", 0}};
	const struct gitrepo_file rm_mid[] = {{"mid/manifest.yaml", NULL, 0}};
	git_commit *a = gitrepo_commit(repo, NULL, files, ARRAY_SIZE(files));
	git_commit *b = gitrepo_commit(repo, a, in_low, 1);
	git_commit *c = gitrepo_commit(repo, a, in_shared, 1);
	git_commit *d = gitrepo_commit(repo, a, arg, 1);
	git_commit *e = gitrepo_commit(repo, a, rm_mid, 1);
	struct changeset cs;
	char *got;

	(void)state;
	got = changes(a, b, &cs);
	assert_string_equal(got, "modified low " REG "/low:1\ndependency mid " REG
				 "/mid:1\ndependency top " REG "/top:1");
	assert_string_equal(cs.v[2].depends_on.v[0], "mid");
	changeset_done(&cs);
	free(got);
	/* a path outside every image folder, in another folder's context */
	expect(a, c, "modified z/far " REG "/far:1");
	/* mid no longer builds FROM low:1: modified, and top with it */
	expect(a, d, "modified mid " REG "/mid:1\ndependency top " REG "/top:1");
	expect(a, e, "removed mid " REG "/mid:1");
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(c);
	git_commit_free(d);
	git_commit_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(added_from_empty_tree, setup, teardown),
	    cmocka_unit_test_setup_teardown(modified_and_dependency, setup, teardown),
	    cmocka_unit_test_setup_teardown(removed_keeps_the_old_manifest, setup, teardown),
	    cmocka_unit_test_setup_teardown(dockerignore_decides_what_counts, setup, teardown),
	    cmocka_unit_test_setup_teardown(dockerignore_per_folder_when_shared, setup, teardown),
	    cmocka_unit_test_setup_teardown(dockerfile_outside_the_context, setup, teardown),
	    cmocka_unit_test_setup_teardown(trees_not_history, setup, teardown),
	    cmocka_unit_test_setup_teardown(chains_args_and_contexts, setup, teardown),
	    cmocka_unit_test_setup_teardown(problems_go_to_errors, setup, teardown),
	};

	repo_global_init(REPO_ROLE_DAEMON);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
