/* test_repack.c: repack_mirror on real repositories: packs and loose objects
 * folded into one pack that keeps every object (here no ref reaches any of
 * them), a handle opened before the repack still reads everything, a .keep
 * pack is left alone, a lone pack is not rewritten. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "gitrepo.h"
#include "kiln/repack.h"
#include "kiln/repo.h"

#define NCOMMITS 10

static char dir[64], pack_dir[96];
static git_repository *repo;
static git_commit *commits[NCOMMITS + 1];

/* The commit's objects in a pack of their own, as a fetch leaves them. */
static void pack_commit(git_commit *c)
{
	git_packbuilder *pb;

	if (git_packbuilder_new(&pb, repo) < 0 ||
	    git_packbuilder_insert_commit(pb, git_commit_id(c)) < 0 ||
	    git_packbuilder_write(pb, pack_dir, 0, NULL, NULL) < 0)
		GITREPO_DIE("pack");
	git_packbuilder_free(pb);
}

/* NCOMMITS commits, each in its own pack, then one more left loose (every
 * object of the packed ones stays loose too). No ref names any of them. */
static int setup(void **state)
{
	git_commit *parent = NULL;

	(void)state;
	repo = gitrepo_new(dir);
	snprintf(pack_dir, sizeof(pack_dir), "%s/objects/pack", dir);
	for (size_t i = 0; i <= NCOMMITS; i++) {
		char path[32], content[32], common[32];
		struct gitrepo_file f[] = {{path, content, 0}, {"common", common, 0}};

		snprintf(path, sizeof(path), "img%zu/Dockerfile", i);
		snprintf(content, sizeof(content), "FROM scratch\n# %zu\n", i);
		snprintf(common, sizeof(common), "common %zu\n", i);
		commits[i] = gitrepo_commit(repo, parent, f, 2);
		if (i < NCOMMITS)
			pack_commit(commits[i]);
		parent = commits[i];
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i <= NCOMMITS; i++)
		git_commit_free(commits[i]);
	gitrepo_remove(repo, dir);
	return 0;
}

static size_t count_loose(void)
{
	size_t n = 0;

	for (unsigned i = 0; i < 256; i++) {
		char sub[128];
		DIR *d;
		struct dirent *e;

		snprintf(sub, sizeof(sub), "%s/objects/%02x", dir, i);
		if ((d = opendir(sub)) == NULL)
			continue;
		while ((e = readdir(d)) != NULL)
			n += e->d_name[0] != '.';
		closedir(d);
	}
	return n;
}

/* Every commit, its tree and its files, read through r. */
static void expect_all_readable(git_repository *r)
{
	for (size_t i = 0; i <= NCOMMITS; i++) {
		git_commit *c;
		git_tree *t;
		git_tree_entry *e;
		char path[32];

		snprintf(path, sizeof(path), "img%zu/Dockerfile", i);
		assert_int_equal(git_commit_lookup(&c, r, git_commit_id(commits[i])), 0);
		assert_int_equal(git_commit_tree(&t, c), 0);
		assert_int_equal(git_tree_entry_bypath(&e, t, path), 0);
		{
			git_blob *b;
			assert_int_equal(git_blob_lookup(&b, r, git_tree_entry_id(e)), 0);
			git_blob_free(b);
		}
		git_tree_entry_free(e);
		git_tree_free(t);
		git_commit_free(c);
	}
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void folds_packs_and_loose_objects(void **state)
{
	struct repack_result res;
	struct kiln_err err = {0};
	git_repository *before, *after;
	unsigned n;
	char orphan[160];

	(void)state;
	/* a pack without its index (a crash between the indexer's renames):
	 * unused, and removed with the others */
	snprintf(orphan, sizeof(orphan), "%s/pack-%040d.pack", pack_dir, 0);
	fclose(fopen(orphan, "w"));
	assert_int_equal(repack_count(dir, &n), 0);
	assert_int_equal(n, NCOMMITS + 1);
	assert_true(count_loose() > 0);
	assert_int_equal(repo_open_at(dir, &before, &err), 0);
	expect_all_readable(before); /* packs opened (and some closed again: limit 2) */

	assert_int_equal(repack_mirror(dir, &res, &err), 0);
	assert_int_equal(res.packs_before, NCOMMITS + 1);
	assert_int_equal(res.packs_after, 1);
	assert_true(res.loose_removed > 0);
	/* per commit: the commit, its root tree, an img tree, two blobs */
	assert_int_equal(res.objects, 5 * (NCOMMITS + 1));
	assert_int_equal(count_loose(), 0);
	assert_false(exists(orphan));
	assert_int_equal(repack_count(dir, &n), 0);
	assert_int_equal(n, 1);

	expect_all_readable(before); /* opened before, its packs gone */
	repo_close(before);
	assert_int_equal(repo_open_at(dir, &after, &err), 0);
	expect_all_readable(after);
	repo_close(after);

	/* a second repack finds nothing to do */
	assert_int_equal(repack_mirror(dir, &res, &err), 0);
	assert_int_equal(res.packs_before, 1);
	assert_int_equal(res.packs_after, 1);
}

static void kept_pack_is_left_alone(void **state)
{
	struct repack_result res;
	struct kiln_err err = {0};
	DIR *d = opendir(pack_dir);
	struct dirent *e;
	char keep[400] = "", kept_pack[400] = "";
	unsigned n;

	(void)state;
	while ((e = readdir(d)) != NULL && keep[0] == '\0') {
		size_t len = strlen(e->d_name);
		if (len > 5 && strcmp(e->d_name + len - 5, ".pack") == 0) {
			snprintf(kept_pack, sizeof(kept_pack), "%s/%s", pack_dir, e->d_name);
			snprintf(keep, sizeof(keep), "%s/%.*s.keep", pack_dir, (int)len - 5,
				 e->d_name);
		}
	}
	closedir(d);
	fclose(fopen(keep, "w"));
	assert_int_equal(repack_count(dir, &n), 0);
	assert_int_equal(n, NCOMMITS - 1);

	assert_int_equal(repack_mirror(dir, &res, &err), 0);
	assert_int_equal(res.packs_after, 1);
	assert_true(exists(kept_pack));
	assert_true(exists(keep));
	expect_all_readable(repo);
}

/* The name of the one pack in pack_dir ("" if there are more) */
static void only_pack(char *ret, size_t size)
{
	DIR *d = opendir(pack_dir);
	struct dirent *e;
	unsigned n = 0;

	ret[0] = '\0';
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len > 5 && strcmp(e->d_name + len - 5, ".pack") == 0 && n++ == 0)
			snprintf(ret, size, "%s/%s", pack_dir, e->d_name);
	}
	closedir(d);
	if (n != 1)
		ret[0] = '\0';
}

/* After a full repack, fetches add small packs: a repack folds those (and
 * the loose objects) and leaves the large pack as it is; the next repack
 * has nothing to fold. */
static void a_large_pack_is_left_alone(void **state)
{
	struct repack_result res;
	struct kiln_err err = {0};
	char base[400];
	git_commit *extra[2];

	(void)state;
	assert_int_equal(repack_mirror(dir, &res, &err), 0);
	only_pack(base, sizeof(base));
	assert_true(base[0] != '\0');
	for (size_t i = 0; i < 2; i++) {
		char path[16], content[32];
		const struct gitrepo_file f[] = {{path, content, 0}};
		git_packbuilder *pb;
		git_tree *t;

		snprintf(path, sizeof(path), "extra%zu", i);
		snprintf(content, sizeof(content), "extra %zu\n", i);
		extra[i] = gitrepo_commit(repo, i ? extra[0] : commits[NCOMMITS], f, 1);
		/* only what is new, as a fetch's pack holds it */
		assert_int_equal(git_commit_tree(&t, extra[i]), 0);
		if (git_packbuilder_new(&pb, repo) < 0 ||
		    git_packbuilder_insert(pb, git_commit_id(extra[i]), NULL) < 0 ||
		    git_packbuilder_insert(pb, git_tree_id(t), NULL) < 0 ||
		    git_packbuilder_insert(pb, git_tree_entry_id(git_tree_entry_byname(t, path)),
					   NULL) < 0 ||
		    git_packbuilder_write(pb, pack_dir, 0, NULL, NULL) < 0)
			GITREPO_DIE("pack");
		git_packbuilder_free(pb);
		git_tree_free(t);
	}
	assert_int_equal(repack_mirror(dir, &res, &err), 0);
	assert_int_equal(res.packs_before, 3);
	assert_int_equal(res.packs_after, 2);
	assert_int_equal(res.objects, 6); /* the two small packs' (also loose) */
	assert_true(exists(base));
	assert_int_equal(count_loose(), 0);
	expect_all_readable(repo);
	for (size_t i = 0; i < 2; i++) {
		git_commit *c;
		assert_int_equal(git_commit_lookup(&c, repo, git_commit_id(extra[i])), 0);
		git_commit_free(c);
		git_commit_free(extra[i]);
	}
	assert_int_equal(repack_mirror(dir, &res, &err), 0);
	assert_int_equal(res.packs_before, 2);
	assert_int_equal(res.packs_after, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(folds_packs_and_loose_objects, setup, teardown),
	    cmocka_unit_test_setup_teardown(kept_pack_is_left_alone, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_large_pack_is_left_alone, setup, teardown),
	};

	repo_global_init(REPO_ROLE_DAEMON);
	/* few pack files open at once: a handle opened before a repack must
	 * reopen what it closed, and find it gone */
	git_libgit2_opts(GIT_OPT_SET_MWINDOW_FILE_LIMIT, (size_t)2);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
