/* test_catalog.c: the catalog of a tree's images on real repositories: its
 * records and indexes, following a new tree, and the cache file (saved,
 * read back lazily, and never trusted when damaged or foreign). */
#include <fcntl.h>
#include <sys/stat.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include <cmocka.h>

#include "gitrepo.h"
#include "kiln/catalog.h"
#include "kiln/repo.h"

#define REG "reg.example.com/team"

static char dir[64], cache[96];
static git_repository *repo;

static const struct gitrepo_file images[] = {
    {"base/manifest.yaml", "name: base\nversion: \"1\"\nregistry: " REG "\ntags: [latest]\n", 0},
    {"base/Dockerfile", "FROM scratch\n", 0},
    {"app/manifest.yaml",
     "name: app\nversion: \"2\"\nregistry: " REG "\ncontext: ..\ndockerfile: Containerfile\n", 0},
    {"app/Containerfile", "ARG V=latest\nFROM " REG "/base:$V AS b\nFROM b\nFROM debian\n", 0},
    {"bad/manifest.yaml", "name: [\n", 0},
    {"manifest.yaml", "name: root\nversion: \"0\"\nregistry: " REG "\n", 0},
};

static int setup(void **state)
{
	(void)state;
	repo = gitrepo_new(dir);
	snprintf(cache, sizeof(cache), "%s/catalog", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gitrepo_remove(repo, dir);
	return 0;
}

static void sync_to(struct catalog *c, git_commit *commit)
{
	git_tree *tree;
	struct kiln_err err = {0};

	assert_int_equal(git_commit_tree(&tree, commit), 0);
	assert_int_equal(catalog_sync(c, repo, tree, &err), 0);
	assert_true(git_oid_equal(&c->tree_id, git_tree_id(tree)));
	git_tree_free(tree);
}

static void get(struct catalog *c, const char *path, struct catalog_image *ret)
{
	uint32_t i;

	assert_int_equal(catalog_find(c, path, strlen(path), &i), 0);
	assert_int_equal(catalog_get(c, i, ret), 0);
	assert_string_equal(ret->path, path);
}

/* The paths of the images under key in an index, space-separated. */
static char *lookup(struct catalog *c, enum catalog_index which, const char *key)
{
	const unsigned char *ix;
	uint32_t n = catalog_lookup(c, which, key, strlen(key), &ix);
	struct buf b = {0};

	for (uint32_t k = 0; k < n; k++) {
		struct catalog_image img;
		assert_int_equal(catalog_get(c, catalog_u32(ix, k), &img), 0);
		buf_printf(&b, "%s%s", k ? " " : "", img.path);
	}
	buf_putc(&b, '\0');
	return b.p;
}

static void expect_lookup(struct catalog *c, enum catalog_index which, const char *key,
			  const char *want)
{
	char *got = lookup(c, which, key);
	assert_string_equal(got, want);
	free(got);
}

static void records_and_indexes(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, images, ARRAY_SIZE(images));
	struct catalog c;
	struct catalog_image img;
	const char *p;
	uint32_t i;

	(void)state;
	catalog_init(&c, "manifest.yaml", NULL);
	sync_to(&c, a);
	assert_int_equal(c.n, 4); /* path order: "", app, bad, base */
	assert_int_equal(catalog_get(&c, 0, &img), 0);
	assert_string_equal(img.path, "");
	get(&c, "app", &img);
	assert_true(img.valid);
	assert_true(img.has_dockerfile);
	assert_string_equal(img.context, "");
	assert_string_equal(img.dockerfile, "app/Containerfile");
	assert_string_equal(img.name, "app");
	assert_int_equal(img.nfroms, 2); /* the stage "b" is not an image */
	assert_string_equal(catalog_from_ref(img.froms), REG "/base:latest");
	assert_int_equal(catalog_from_line(img.froms), 2);
	p = catalog_from_next(img.froms);
	assert_string_equal(catalog_from_ref(p), "debian:latest");
	get(&c, "base", &img);
	assert_int_equal(img.nproduced, 2);
	assert_string_equal(img.produced, REG "/base:1");
	assert_string_equal(catalog_next(img.produced), REG "/base:latest");
	/* an invalid manifest is an image with the defaults and no fields */
	get(&c, "bad", &img);
	assert_false(img.valid);
	assert_null(img.name);
	assert_string_equal(img.context, "bad");
	assert_string_equal(img.dockerfile, "bad/Dockerfile");
	assert_int_equal(catalog_find(&c, "nothing", 7, &i), -ENOENT);

	expect_lookup(&c, CATALOG_BY_FROM, REG "/base:latest", "app");
	expect_lookup(&c, CATALOG_BY_PRODUCED, REG "/base:latest", "base");
	expect_lookup(&c, CATALOG_BY_DOCKERFILE, "app/Containerfile", "app");
	expect_lookup(&c, CATALOG_BY_CONTEXT, "", " app");
	expect_lookup(&c, CATALOG_BY_CONTEXT, "base", "base");
	expect_lookup(&c, CATALOG_BY_FROM, "busybox:latest", "");
	catalog_done(&c);
	git_commit_free(a);
}

static void follows_a_new_tree(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, images, ARRAY_SIZE(images));
	const struct gitrepo_file edit[] = {
	    {"app/Containerfile", "FROM busybox\n", 0}, /* only the Dockerfile */
	    {"base/manifest.yaml", NULL, 0},		/* gone */
	    {"new/manifest.yaml", "name: new\nversion: \"1\"\nregistry: " REG "\n", 0},
	    {"bad/manifest.yaml", "name: bad\nversion: \"1\"\nregistry: " REG "\n", 0}, /* fixed */
	};
	git_commit *b = gitrepo_commit(repo, a, edit, ARRAY_SIZE(edit));
	struct catalog c;
	struct catalog_image img;
	uint32_t i;

	(void)state;
	catalog_init(&c, "manifest.yaml", NULL);
	sync_to(&c, a);
	sync_to(&c, b);
	assert_int_equal(c.n, 4); /* "", app, bad, new */
	assert_int_equal(catalog_find(&c, "base", 4, &i), -ENOENT);
	expect_lookup(&c, CATALOG_BY_FROM, REG "/base:latest", "");
	expect_lookup(&c, CATALOG_BY_FROM, "busybox:latest", "app");
	get(&c, "bad", &img);
	assert_true(img.valid);
	assert_false(img.has_dockerfile);
	get(&c, "new", &img);
	assert_string_equal(img.version, "1");
	/* and back: the same as read from scratch */
	sync_to(&c, a);
	expect_lookup(&c, CATALOG_BY_FROM, REG "/base:latest", "app");
	get(&c, "bad", &img);
	assert_false(img.valid);
	catalog_done(&c);
	git_commit_free(a);
	git_commit_free(b);
}

/* A push of sources only changes no record: the snapshot is kept (patched
 * to the new tree, its checksum with it) and still saved and read back;
 * a Dockerfile's change is not such a push. */
static void sources_only_keep_the_records(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, images, ARRAY_SIZE(images));
	const struct gitrepo_file src[] = {{"base/src.txt", "1\n", 0}, {"app/notes", "2\n", 0}};
	const struct gitrepo_file df[] = {{"base/Dockerfile", "FROM busybox\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, src, ARRAY_SIZE(src));
	git_commit *d = gitrepo_commit(repo, b, df, 1);
	const struct gitrepo_file added[] = {
	    {"new/manifest.yaml", "name: new\nversion: \"1\"\nregistry: " REG "\n", 0}};
	git_commit *e = gitrepo_commit(repo, b, added, 1); /* a record, none dropped */
	struct kiln_err err = {0};
	struct catalog c;
	const char *snap;
	uint32_t i;

	(void)state;
	catalog_init(&c, "manifest.yaml", cache);
	sync_to(&c, a);
	snap = c.snap;
	sync_to(&c, b);
	assert_ptr_equal(c.snap, snap); /* not rewritten */
	assert_true(c.dirty);
	assert_int_equal(catalog_save(&c, &err), 0);
	catalog_done(&c);

	/* read back: the header names b and its checksum holds */
	catalog_init(&c, "manifest.yaml", cache);
	sync_to(&c, b);
	assert_true(c.fd >= 0);
	assert_false(c.dirty);
	expect_lookup(&c, CATALOG_BY_FROM, REG "/base:latest", "app");
	catalog_done(&c);

	catalog_init(&c, "manifest.yaml", NULL);
	sync_to(&c, b);
	sync_to(&c, d);
	expect_lookup(&c, CATALOG_BY_FROM, "busybox:latest", "base");
	sync_to(&c, b);
	sync_to(&c, e);
	assert_int_equal(catalog_find(&c, "new", 3, &i), 0);
	catalog_done(&c);
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(d);
	git_commit_free(e);
}

static void cache_file_round_trip(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, images, ARRAY_SIZE(images));
	struct kiln_err err = {0};
	struct catalog c;
	struct catalog_image img;

	(void)state;
	catalog_init(&c, "manifest.yaml", cache);
	sync_to(&c, a);
	assert_true(c.dirty);
	assert_int_equal(catalog_save(&c, &err), 0);
	assert_int_equal(access(cache, F_OK), 0);
	catalog_done(&c);

	/* read back lazily: the same tree costs no rebuild */
	catalog_init(&c, "manifest.yaml", cache);
	sync_to(&c, a);
	assert_true(c.fd >= 0);
	assert_false(c.dirty);
	get(&c, "app", &img);
	assert_string_equal(img.version, "2");
	catalog_done(&c);

	/* another manifest name: the file is foreign, rebuilt from the tree */
	catalog_init(&c, "image.yaml", cache);
	sync_to(&c, a);
	assert_int_equal(c.n, 0);
	catalog_done(&c);
	git_commit_free(a);
}

static void damaged_cache_is_not_trusted(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, images, ARRAY_SIZE(images));
	struct kiln_err err = {0};
	struct catalog c;
	struct catalog_image img;
	uint32_t i;
	int fd;
	off_t size;
	char junk[64];
	git_tree *tree;
	int r;

	(void)state;
	catalog_init(&c, "manifest.yaml", cache);
	sync_to(&c, a);
	assert_int_equal(catalog_save(&c, &err), 0);
	catalog_done(&c);
	/* damage the records (inside the data, past the header) */
	fd = open(cache, O_RDWR);
	assert_true(fd >= 0);
	size = lseek(fd, 0, SEEK_END);
	assert_true(size > 512);
	memset(junk, 'x', sizeof(junk));
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 200), sizeof(junk));
	close(fd);

	/* the damage is found where the block is first read: by the sync
	 * (header strings) or by a query; either way it is said, not used */
	catalog_init(&c, "manifest.yaml", cache);
	assert_int_equal(git_commit_tree(&tree, a), 0);
	r = catalog_sync(&c, repo, tree, &err);
	if (r == 0) {
		for (i = 0; i < c.n && catalog_get(&c, i, &img) == 0; i++)
			;
		assert_true(i < c.n);
	} else {
		assert_int_equal(r, -EBADMSG);
	}
	assert_true(c.broken);
	catalog_done(&c);
	/* the caller then starts over without the cache */
	catalog_init(&c, "manifest.yaml", NULL);
	assert_int_equal(catalog_sync(&c, repo, tree, &err), 0);
	get(&c, "base", &img);
	catalog_done(&c);
	git_tree_free(tree);

	/* a truncated file is not even opened: rebuilt from the tree */
	assert_int_equal(truncate(cache, 100), 0);
	catalog_init(&c, "manifest.yaml", cache);
	sync_to(&c, a);
	assert_true(c.dirty);
	get(&c, "base", &img);
	catalog_done(&c);
	git_commit_free(a);
}

/* A daemon's catalog between plans: released (saved, then out of memory)
 * and mapped again. A mapped snapshot follows a tree that changes no record
 * by rewriting the file's header in place, never the whole file, and never
 * a file another writer put there since. */
static void released_and_mapped_again(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, images, ARRAY_SIZE(images));
	const struct gitrepo_file src[] = {{"base/src.txt", "1\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, src, 1);
	const struct gitrepo_file src2[] = {{"app/notes", "2\n", 0}};
	git_commit *d = gitrepo_commit(repo, b, src2, 1);
	const struct gitrepo_file added[] = {
	    {"new/manifest.yaml", "name: new\nversion: \"1\"\nregistry: " REG "\n", 0}};
	git_commit *e = gitrepo_commit(repo, a, added, 1);
	struct kiln_err err = {0};
	struct catalog c, other;
	struct catalog_image img;
	struct stat st0, st1;
	uint32_t i;

	(void)state;
	catalog_init(&c, "manifest.yaml", cache);
	sync_to(&c, a);
	assert_int_equal(catalog_release(&c, &err), 0);
	assert_null(c.snap);
	assert_false(c.has_tree);
	assert_int_equal(stat(cache, &st0), 0);

	/* mapped again; b changes no record: the header alone is rewritten */
	sync_to(&c, b);
	assert_true(c.fd >= 0);
	assert_true(c.dirty);
	assert_int_equal(catalog_release(&c, &err), 0);
	assert_int_equal(stat(cache, &st1), 0);
	assert_int_equal(st1.st_ino, st0.st_ino);
	assert_int_equal(st1.st_size, st0.st_size);
	catalog_init(&other, "manifest.yaml", cache);
	sync_to(&other, b); /* the file names b now, and its checksum holds */
	assert_true(other.fd >= 0);
	assert_false(other.dirty);
	get(&other, "app", &img);
	assert_string_equal(img.version, "2");
	catalog_done(&other);

	/* replaced by another writer while mapped here: that file stands */
	sync_to(&c, b);
	assert_true(c.fd >= 0);
	catalog_init(&other, "manifest.yaml", NULL);
	sync_to(&other, e);
	free(other.cache_file);
	other.cache_file = strdup(cache);
	assert_int_equal(catalog_save(&other, &err), 0);
	catalog_done(&other);
	sync_to(&c, d);
	assert_int_equal(catalog_release(&c, &err), 0);
	sync_to(&c, e);
	assert_true(c.fd >= 0);
	assert_false(c.dirty); /* the file describes e: nothing was read */
	assert_int_equal(catalog_find(&c, "new", 3, &i), 0);

	/* a file that cannot be written keeps the snapshot in memory */
	catalog_done(&c);
	catalog_init(&c, "manifest.yaml", "/nonexistent/dir/catalog");
	sync_to(&c, a);
	assert_true(catalog_release(&c, &err) < 0);
	assert_non_null(c.snap);
	get(&c, "base", &img);
	catalog_done(&c);
	git_commit_free(a);
	git_commit_free(b);
	git_commit_free(d);
	git_commit_free(e);
}

/* Every record's FROMs and every FROM lookup of two catalogs agree. */
static void same_froms(struct catalog *x, struct catalog *y)
{
	assert_int_equal(x->n, y->n);
	for (uint32_t i = 0; i < x->n; i++) {
		struct catalog_image a, b;
		const char *p, *q;

		assert_int_equal(catalog_get(x, i, &a), 0);
		assert_int_equal(catalog_get(y, i, &b), 0);
		assert_string_equal(a.path, b.path);
		assert_int_equal(a.nfroms, b.nfroms);
		p = a.froms;
		q = b.froms;
		for (unsigned j = 0; j < a.nfroms; j++) {
			char *want, *got;
			assert_int_equal(catalog_from_line(p), catalog_from_line(q));
			assert_string_equal(catalog_from_ref(p), catalog_from_ref(q));
			want = lookup(x, CATALOG_BY_FROM, catalog_from_ref(p));
			got = lookup(y, CATALOG_BY_FROM, catalog_from_ref(p));
			assert_string_equal(got, want);
			free(want);
			free(got);
			p = catalog_from_next(p);
			q = catalog_from_next(q);
		}
	}
}

/* `kiln changes --no-cache` defers the Dockerfiles: until catalog_read_froms
 * no FROM is known; after it every record and lookup is kilnd's, and so
 * after following a new tree (which starts a deferred catalog over). A
 * catalog with a cache file never defers. */
static void deferred_froms(void **state)
{
	git_commit *a = gitrepo_commit(repo, NULL, images, ARRAY_SIZE(images));
	const struct gitrepo_file edit[] = {{"app/Containerfile", "FROM busybox\n", 0}};
	git_commit *b = gitrepo_commit(repo, a, edit, ARRAY_SIZE(edit));
	struct catalog whole, lazy, cached;
	struct catalog_image img;
	struct kiln_err err = {0};

	(void)state;
	catalog_init(&whole, "manifest.yaml", NULL);
	catalog_init(&lazy, "manifest.yaml", NULL);
	catalog_init(&cached, "manifest.yaml", cache);
	lazy.defer_froms = cached.defer_froms = true;
	sync_to(&whole, a);
	sync_to(&lazy, a);
	sync_to(&cached, a);
	assert_int_equal(lazy.ndeferred, 2); /* app and base; the root has no Dockerfile */
	assert_int_equal(cached.ndeferred, 0);
	expect_lookup(&lazy, CATALOG_BY_FROM, REG "/base:latest", "");
	expect_lookup(&lazy, CATALOG_BY_PRODUCED, REG "/base:latest", "base");
	get(&lazy, "app", &img);
	assert_int_equal(img.nfroms, 0);
	assert_int_equal(catalog_read_froms(&lazy, repo, &err), 0);
	expect_lookup(&lazy, CATALOG_BY_FROM, REG "/base:latest", "app");
	same_froms(&whole, &lazy);
	assert_int_equal(catalog_read_froms(&lazy, repo, &err), 0); /* nothing left */
	same_froms(&whole, &lazy);
	sync_to(&lazy, b);
	sync_to(&whole, b);
	expect_lookup(&lazy, CATALOG_BY_FROM, "busybox:latest", "");
	assert_int_equal(catalog_read_froms(&lazy, repo, &err), 0);
	expect_lookup(&lazy, CATALOG_BY_FROM, "busybox:latest", "app");
	same_froms(&whole, &lazy);
	catalog_done(&whole);
	catalog_done(&lazy);
	catalog_done(&cached);
	git_commit_free(a);
	git_commit_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(records_and_indexes, setup, teardown),
	    cmocka_unit_test_setup_teardown(follows_a_new_tree, setup, teardown),
	    cmocka_unit_test_setup_teardown(sources_only_keep_the_records, setup, teardown),
	    cmocka_unit_test_setup_teardown(cache_file_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(damaged_cache_is_not_trusted, setup, teardown),
	    cmocka_unit_test_setup_teardown(released_and_mapped_again, setup, teardown),
	    cmocka_unit_test_setup_teardown(deferred_froms, setup, teardown),
	};

	repo_global_init(REPO_ROLE_DAEMON);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
