/* test_plan.c: plan_branch on real repositories, and its rows recorded with
 * store_record_plan as watch does: first sighting, a normal range, a branch
 * added later, supersede and removed items, dependency order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gitrepo.h"
#include "kiln/plan.h"
#include "kiln/repo.h"

#define REG	      "reg.example.com/team"
#define BASE_MANIFEST "name: base\nversion: \"1\"\nregistry: " REG "\ntags: [latest]\n"
#define APP_MANIFEST  "name: app\nversion: \"2\"\nregistry: " REG "\n"

static char dir[64], state_dir[80];
static git_repository *repo;
static struct store *store;
static struct catalog cat;
static const struct plan_settings none = {"manifest.yaml", CONFIG_BUILD_ON_START_NONE};
static const struct plan_settings all = {"manifest.yaml", CONFIG_BUILD_ON_START_ALL};

static const struct gitrepo_file two_images[] = {
    {"base/manifest.yaml", BASE_MANIFEST, 0},
    {"base/Dockerfile", "FROM scratch\n", 0},
    {"app/manifest.yaml", APP_MANIFEST, 0},
    {"app/Dockerfile", "FROM " REG "/base:latest\n", 0},
};

static int setup(void **state)
{
	struct kiln_err err = {0};

	(void)state;
	repo = gitrepo_new(dir);
	snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
	if (store_open(state_dir, &store, &err) < 0)
		return -1;
	catalog_init(&cat, "manifest.yaml", NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	catalog_done(&cat);
	store = store_close(store);
	gitrepo_remove(repo, dir);
	return 0;
}

/* plan_branch that must succeed, with a webhook's hint. */
static void plan_hinted(const struct plan_settings *s, const char *seen, const char *base,
			const char *hint, git_commit *head, struct plan *ret)
{
	char hex[GIT_OID_HEXSZ + 1];
	struct plan_input in = {"main", hex, seen, base, hint};
	struct kiln_err err = {0};

	gitrepo_hex(head, hex);
	memset(ret, 0xa5, sizeof(*ret));
	assert_int_equal(plan_branch(repo, &cat, s, &in, ret, &err), 0);
	assert_string_equal(ret->to, hex);
}

static void plan(const struct plan_settings *s, const char *seen, const char *base,
		 git_commit *head, struct plan *ret)
{
	plan_hinted(s, seen, base, NULL, head, ret);
}

/* "<change> <path>" per item; freed by the caller. */
static char *items(const struct plan *p)
{
	struct buf b = {0};

	for (size_t i = 0; i < p->n; i++)
		buf_printf(&b, "%s%s %s", i ? "\n" : "", p->items[i].change, p->items[i].path);
	buf_putc(&b, '\0');
	return b.p;
}

static void expect_items(const struct plan *p, const char *want)
{
	char *got = items(p);
	assert_string_equal(got, want);
	free(got);
}

/* "<path> <state>" of the builds of a branch, oldest first; freed by the caller. */
static char *builds(void)
{
	struct store_build_row *rows;
	struct store_build_filter f = {.repo = "images"};
	struct kiln_err err = {0};
	struct buf b = {0};
	size_t n;

	assert_int_equal(store_list_builds(store, &f, &rows, &n, &err), 0);
	for (size_t i = n; i-- > 0;)
		buf_printf(&b, "%s %s%s", rows[i].path, rows[i].state, i ? "\n" : "");
	buf_putc(&b, '\0');
	store_build_rows_free(rows, n);
	return b.p;
}

static int record(const struct plan *p)
{
	struct kiln_err err = {0};
	int r = store_record_plan(store, "images", "main", p->to, NULL, p->items, p->n, 0, &err);
	assert_true(r >= 0);
	return r;
}

static void first_sight(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	char hex[GIT_OID_HEXSZ + 1], seen[STORE_SHA_LEN + 1];
	struct plan p;
	char *got;

	(void)state;
	gitrepo_hex(a, hex);
	/* nothing seen, build_on_start none: remember the head, build nothing */
	plan(&none, NULL, NULL, a, &p);
	assert_int_equal(p.kind, PLAN_FIRST_SIGHT);
	assert_int_equal(p.n, 0);
	assert_int_equal(record(&p), 0);
	assert_int_equal(store_last_seen(store, "images", "main", seen, NULL), 0);
	assert_string_equal(seen, hex);
	plan_done(&p);
	/* build_on_start all: the whole tree, from the empty tree */
	plan(&all, NULL, NULL, a, &p);
	assert_int_equal(p.kind, PLAN_RANGE);
	assert_string_equal(p.from, "");
	expect_items(&p, "added base\nadded app");
	plan_done(&p);
	/* seen is the head: nothing to record */
	plan(&all, hex, NULL, a, &p);
	assert_int_equal(p.kind, PLAN_UNCHANGED);
	assert_int_equal(p.n, 0);
	plan_done(&p);
	got = builds();
	assert_string_equal(got, "");
	free(got);
	git_commit_free(a);
}

static void range_in_dependency_order(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	const struct gitrepo_file edit[] = {{"base/Dockerfile", "FROM scratch\nCOPY x /\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, edit, 1);
	char ha[GIT_OID_HEXSZ + 1];
	struct store_build next;
	struct kiln_err err = {0};
	struct plan p;

	(void)state;
	gitrepo_hex(a, ha);
	plan(&none, ha, NULL, b, &p);
	assert_int_equal(p.kind, PLAN_RANGE);
	assert_string_equal(p.from, ha);
	expect_items(&p, "modified base\ndependency app");
	assert_string_equal(p.items[0].image, REG "/base:1");
	assert_int_equal(p.items[1].ndepends, 1);
	assert_string_equal(p.items[1].depends_on[0], "base");
	assert_int_equal(record(&p), 2);
	plan_done(&p);
	/* the queue honours the order: app waits for base */
	assert_int_equal(store_take_next(store, &next, &err), 0);
	assert_string_equal(next.path, "base");
	assert_int_equal(store_take_next(store, &next, &err), -ENOENT);
	git_commit_free(a);
	git_commit_free(b);
}

static void branch_added_later_starts_from_base(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	const struct gitrepo_file edit[] = {{"app/x", "1\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, edit, 1);
	char ha[GIT_OID_HEXSZ + 1];
	struct plan p;

	(void)state;
	gitrepo_hex(a, ha);
	plan(&none, NULL, ha, b, &p);
	assert_int_equal(p.kind, PLAN_RANGE);
	assert_string_equal(p.from, ha);
	expect_items(&p, "modified app");
	plan_done(&p);
	git_commit_free(a);
	git_commit_free(b);
}

/* A branch not seen yet starts from a webhook push's `before` when the
 * mirror has that commit (ahead of base and of build_on_start); a hint the
 * mirror lacks is ignored. Its own last-seen commit wins over any hint. */
static void webhook_hint_starts_an_unseen_branch(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	const struct gitrepo_file edit[] = {{"app/x", "1\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, edit, 1);
	const char *missing = "0123456789012345678901234567890123456789";
	char ha[GIT_OID_HEXSZ + 1], hb[GIT_OID_HEXSZ + 1];
	struct plan p;

	(void)state;
	gitrepo_hex(a, ha);
	gitrepo_hex(b, hb);
	plan_hinted(&none, NULL, NULL, ha, b, &p);
	assert_int_equal(p.kind, PLAN_RANGE);
	assert_string_equal(p.from, ha);
	expect_items(&p, "modified app");
	plan_done(&p);
	plan_hinted(&all, NULL, hb, ha, b, &p); /* ahead of base and of build_on_start */
	assert_string_equal(p.from, ha);
	plan_done(&p);
	plan_hinted(&none, NULL, NULL, missing, b, &p);
	assert_int_equal(p.kind, PLAN_FIRST_SIGHT);
	plan_done(&p);
	plan_hinted(&none, NULL, ha, missing, b, &p);
	assert_string_equal(p.from, ha); /* base, the hint being unusable */
	plan_done(&p);
	plan_hinted(&none, hb, NULL, ha, b, &p);
	assert_int_equal(p.kind, PLAN_UNCHANGED);
	plan_done(&p);
	git_commit_free(a);
	git_commit_free(b);
}

static void supersede_and_removed(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	const struct gitrepo_file e1[] = {{"base/x", "1\n", 0}};
	const struct gitrepo_file e2[] = {{"base/x", "2\n", 0}, {"app/manifest.yaml", NULL, 0}};
	git_commit *b = gitrepo_commit(repo, a, e1, 1);
	git_commit *c = gitrepo_commit(repo, b, e2, ARRAY_SIZE(e2));
	char ha[GIT_OID_HEXSZ + 1], hb[GIT_OID_HEXSZ + 1];
	struct plan p;
	char *got;

	(void)state;
	gitrepo_hex(a, ha);
	gitrepo_hex(b, hb);
	plan(&none, ha, NULL, b, &p);
	assert_int_equal(record(&p), 2);
	plan_done(&p);
	plan(&none, hb, NULL, c, &p);
	expect_items(&p, "removed app\nmodified base");
	assert_string_equal(p.items[0].image, REG "/app:2");
	/* one build queued; the removed image is recorded, never built */
	assert_int_equal(record(&p), 1);
	plan_done(&p);
	got = builds();
	/* only a rebuild supersedes: app's queued build of b stays (b still has it) */
	assert_string_equal(got, "base superseded\napp queued\napp removed\nbase queued");
	free(got);
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(c);
}

static void failures_leave_ret_alone(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, two_images, ARRAY_SIZE(two_images));
	char ha[GIT_OID_HEXSZ + 1];
	const char *missing = "0123456789012345678901234567890123456789";
	struct plan_input in = {"main", ha, missing, NULL, NULL};
	struct kiln_err err = {0};
	struct plan p, before;

	(void)state;
	gitrepo_hex(a, ha);
	memset(&p, 0x5a, sizeof(p));
	before = p;
	assert_int_equal(plan_branch(repo, &cat, &none, &in, &p, &err), -EIO);
	assert_non_null(strstr(err.msg, "last-seen commit 0123456789"));
	assert_memory_equal(&p, &before, sizeof(p));
	in.head = missing;
	in.seen = ha;
	assert_int_equal(plan_branch(repo, &cat, &none, &in, &p, &err), -EIO);
	assert_non_null(strstr(err.msg, "is not in the mirror"));
	git_commit_free(a);
}

static void manifest_name_follows_the_settings(void **state)
{
	const struct gitrepo_file files[] = {
	    {"x/image.yaml", "name: x\nversion: \"1\"\nregistry: " REG "\n", 0},
	    {"x/Dockerfile", "FROM scratch\n", 0},
	    {"y/manifest.yaml", APP_MANIFEST, 0},
	    {"y/Dockerfile", "FROM scratch\n", 0},
	};
	git_commit *a = gitrepo_commit(repo, NULL, files, ARRAY_SIZE(files));
	const struct plan_settings image_yaml = {"image.yaml", CONFIG_BUILD_ON_START_ALL};
	struct plan p;

	(void)state;
	plan(&all, NULL, NULL, a, &p);
	expect_items(&p, "added y");
	plan_done(&p);
	/* the catalog of the old name is not reused */
	plan(&image_yaml, NULL, NULL, a, &p);
	expect_items(&p, "added x");
	assert_string_equal(cat.manifest_name, "image.yaml");
	plan_done(&p);
	git_commit_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(first_sight, setup, teardown),
	    cmocka_unit_test_setup_teardown(range_in_dependency_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(branch_added_later_starts_from_base, setup, teardown),
	    cmocka_unit_test_setup_teardown(webhook_hint_starts_an_unseen_branch, setup, teardown),
	    cmocka_unit_test_setup_teardown(supersede_and_removed, setup, teardown),
	    cmocka_unit_test_setup_teardown(failures_leave_ret_alone, setup, teardown),
	    cmocka_unit_test_setup_teardown(manifest_name_follows_the_settings, setup, teardown),
	};

	repo_global_init(REPO_ROLE_DAEMON);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
