/* test_store.c: the SQLite state: schema, instance lock, plans recorded with
 * their last-seen commit in one transaction, supersede, crash recovery, the
 * refusal of a damaged or emptied database, snapshots and --recover. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "kiln/store.h"

#define A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kiln-test-state.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *sub_of(const char *d, const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", d, name) < 0)
		abort();
	return p;
}

static char *sub(const char *name)
{
	return sub_of(dir, name);
}

/* One value from the database, by a separate connection. */
static int count(const char *d, const char *sql)
{
	char *path;
	sqlite3 *db;
	sqlite3_stmt *st;
	int n = -1;

	if (asprintf(&path, "%s/kilnd.db", d) < 0)
		abort();
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(path);
	return n;
}

static void lock_and_schema(void **state)
{
	char *d = sub("lock");
	struct store *s = NULL, *s2 = NULL;
	struct kiln_err err = {0};

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_open(d, &s2, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "another kilnd (pid "));
	assert_null(s2);
	assert_int_equal(count(d, "PRAGMA user_version"), 9);
	s = store_close(s);
	/* released at close: opens again, schema already current */
	assert_int_equal(store_open(d, &s, &err), 0);
	store_close(s);
	free(d);
}

static void plans_supersede_and_last_seen(void **state)
{
	char *d = sub("plan");
	struct store *s = NULL;
	struct kiln_err err = {0};
	char seen[STORE_SHA_LEN + 1];
	const struct store_plan_item first[] = {
	    {"base", "r/base:1", "modified", NULL, 0},
	    {"app", "r/app:1", "dependency", NULL, 0},
	};
	const struct store_plan_item second[] = {
	    {"app", "r/app:2", "modified", NULL, 0},
	    {"old", NULL, "removed", NULL, 0},
	};
	unsigned q, r;

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_last_seen(s, "images", "main", seen, &err), -ENOENT);
	assert_int_equal(store_record_plan(s, "images", "main", A, NULL, first, 2, 0, &err), 2);
	assert_int_equal(store_last_seen(s, "images", "main", seen, &err), 0);
	assert_string_equal(seen, A);
	/* a queued build of the same path and branch is superseded */
	assert_int_equal(
	    store_record_plan(s, "images", "main", B, "fix <b>it</b>", second, 2, 0, &err), 1);
	assert_int_equal(store_last_seen(s, "images", "main", seen, &err), 0);
	assert_string_equal(seen, B);
	{ /* the commit's summary comes with each of its builds, once stored */
		struct store_build_filter f = {.repo = "images"};
		struct store_build_row *rows = NULL;
		size_t n = 0;
		assert_int_equal(store_list_builds(s, &f, &rows, &n, &err), 0);
		assert_int_equal(n, 4);
		assert_string_equal(rows[0].commit, B);
		assert_string_equal(rows[0].subject, "fix <b>it</b>");
		assert_string_equal(rows[1].subject, "fix <b>it</b>");
		assert_null(rows[2].subject); /* A's: recorded without one */
		store_build_rows_free(rows, n);
		assert_int_equal(count(d, "SELECT count(*) FROM commits"), 1);
	}
	assert_int_equal(
	    count(d, "SELECT count(*) FROM builds WHERE state = 'superseded' AND path = 'app'"), 1);
	assert_int_equal(
	    count(d, "SELECT count(*) FROM builds WHERE state = 'removed' AND path = 'old'"), 1);
	assert_int_equal(store_counts(s, &q, &r, &err), 0);
	assert_int_equal(q, 2);
	assert_int_equal(r, 0);
	/* other branches are independent */
	assert_int_equal(store_last_seen(s, "images", "dev", seen, &err), -ENOENT);
	/* a first sight records the head and no builds (nor a summary) */
	assert_int_equal(store_record_plan(s, "images", "dev", A, "first", NULL, 0, 0, &err), 0);
	assert_int_equal(count(d, "SELECT count(*) FROM commits"), 1);
	assert_int_equal(store_last_seen(s, "images", "dev", seen, &err), 0);
	store_close(s);
	free(d);
}

static void take_finish_and_recover(void **state)
{
	char *d = sub("run");
	struct store *s = NULL;
	struct kiln_err err = {0};
	struct store_build b;
	const struct store_plan_item items[] = {
	    {"a", "r/a:1", "added", NULL, 0},
	    {"b", "r/b:1", "added", NULL, 0},
	};
	unsigned q, r;

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_take_next(s, &b, &err), -ENOENT);
	assert_int_equal(store_record_plan(s, "images", "main", A, NULL, items, 2, 0, &err), 2);
	/* oldest first */
	assert_int_equal(store_take_next(s, &b, &err), 0);
	assert_string_equal(b.path, "a");
	assert_string_equal(b.image, "r/a:1");
	assert_string_equal(b.commit, A);
	assert_int_equal(b.attempts, 1);
	assert_int_equal(store_finish(s, b.id, BUILD_SUCCEEDED, NULL, &err), 0);
	assert_int_equal(store_take_next(s, &b, &err), 0);
	assert_string_equal(b.path, "b");
	assert_int_equal(store_counts(s, &q, &r, &err), 0);
	assert_int_equal(q, 0);
	assert_int_equal(r, 1);
	/* a crash with b running: the next start puts it back in the queue */
	s = store_close(s);
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_requeued(s), 1);
	assert_int_equal(store_take_next(s, &b, &err), 0);
	assert_string_equal(b.path, "b");
	assert_int_equal(b.attempts, 2);
	assert_int_equal(store_finish(s, b.id, BUILD_FAILED, "boom", &err), 0);
	assert_int_equal(
	    count(d, "SELECT count(*) FROM builds WHERE state = 'failed' AND error = 'boom'"), 1);
	store_close(s);
	free(d);
}

static void dependents_wait_and_are_cancelled(void **state)
{
	char *d = sub("deps");
	struct store *s = NULL;
	struct kiln_err err = {0};
	struct store_build b, c;
	const char *const on_base[] = {"base"};
	const char *const on_mid[] = {"mid"};
	const struct store_plan_item items[] = {
	    {"base", "r/base:1", "modified", NULL, 0},
	    {"mid", "r/mid:1", "dependency", on_base, 1},
	    {"top", "r/top:1", "dependency", on_mid, 1},
	    {"other", "r/other:1", "added", NULL, 0},
	};

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_record_plan(s, "images", "main", A, NULL, items, 4, 0, &err), 4);
	/* base runs; mid and top wait for it, so other (newer) goes next */
	assert_int_equal(store_take_next(s, &b, &err), 0);
	assert_string_equal(b.path, "base");
	assert_int_equal(store_take_next(s, &c, &err), 0);
	assert_string_equal(c.path, "other");
	assert_string_equal(c.change, "added");
	assert_int_equal(store_take_next(s, &c, &err), -ENOENT);
	/* a retry delay holds a build back */
	assert_int_equal(store_requeue(s, c.id, 60000, false, "engine down", &err), 0);
	assert_int_equal(store_take_next(s, &c, &err), -ENOENT);
	{
		int64_t at = 0;
		assert_int_equal(store_next_retry(s, &at, &err), 0);
		assert_true(at > 0);
	}
	/* base fails: everything above it is cancelled, transitively */
	assert_int_equal(store_finish(s, b.id, BUILD_FAILED, "boom", &err), 0);
	assert_int_equal(count(d,
			       "SELECT count(*) FROM builds WHERE state = 'cancelled'"
			       " AND path IN ('mid', 'top') AND error LIKE '%base image%failed'"),
			 2);
	/* and a success lets the next in line go */
	assert_int_equal(store_record_plan(s, "images", "main", B, NULL, items, 4, 0, &err), 4);
	assert_int_equal(store_take_next(s, &b, &err), 0);
	assert_string_equal(b.path, "base");
	assert_int_equal(store_set_result(s, b.id, "sha256:i", "sha256:d", "buildkit", &err), 0);
	assert_int_equal(count(d, "SELECT count(*) FROM builds WHERE builder = 'buildkit'"), 1);
	assert_int_equal(store_pushed_from(s, "r/base:1", B, &err), 1);
	assert_int_equal(store_pushed_from(s, "r/base:1", A, &err), 0);
	assert_int_equal(store_finish(s, b.id, BUILD_SUCCEEDED, NULL, &err), 0);
	assert_int_equal(store_take_next(s, &b, &err), 0);
	assert_string_equal(b.path, "mid");
	assert_string_equal(b.commit, B);
	store_close(s);
	free(d);
}

static void newer_schema_is_refused(void **state)
{
	char *d = sub("future");
	char *path = sub("future/kilnd.db");
	struct store *s = NULL;
	struct kiln_err err = {0};
	sqlite3 *db;

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	store_close(s);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(d, &s, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "newer than this kilnd"));
	free(path);
	free(d);
}

static void deliveries(void **state)
{
	char *d = sub("deliveries");
	struct store *s = NULL;
	struct kiln_err err = {0};
	struct strv pending = {0};

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_record_delivery(s, "images", "guid-1", NULL, NULL, &err), 1);
	assert_int_equal(store_record_delivery(s, "images", "guid-1", NULL, NULL, &err),
			 0); /* redelivery */
	assert_int_equal(store_record_delivery(s, "other", "guid-1", NULL, NULL, &err),
			 1); /* per repository */
	/* recorded before the answer: a restart finds them pending */
	s = store_close(s);
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_pending_deliveries(s, &pending, &err), 0);
	assert_int_equal(pending.n, 2);
	strv_done(&pending);
	assert_int_equal(store_deliveries_handled(s, "images", INT64_MAX, &err), 0);
	assert_int_equal(store_pending_deliveries(s, &pending, &err), 0);
	assert_int_equal(pending.n, 1);
	assert_string_equal(pending.v[0], "other");
	strv_done(&pending);
	/* a handled id is still remembered: no double trigger on redelivery */
	assert_int_equal(store_record_delivery(s, "images", "guid-1", NULL, NULL, &err), 0);
	store_close(s);
	free(d);
}

/* A batch is one transaction: each new id fresh once (a duplicate inside
 * the batch too), ids recorded before not fresh, and a batch that fails
 * (here: the database locked by another connection) records none. */
static void delivery_batches(void **state)
{
	char *d = sub("batches");
	char *path = sub_of(d, STORE_FILE);
	struct store *s = NULL;
	struct kiln_err err = {0};
	struct store_delivery v[] = {
	    {"images", "b-1", "main", A, true},	  {"images", "old", "main", NULL, true},
	    {"images", "b-2", NULL, NULL, false}, {"images", "b-1", "main", B, true},
	    {"other", "b-1", NULL, NULL, false},
	};
	sqlite3 *other = NULL;

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_record_delivery(s, "images", "old", NULL, NULL, &err), 1);
	assert_int_equal(store_record_deliveries(s, v, ARRAY_SIZE(v), &err), 0);
	assert_true(v[0].fresh && !v[1].fresh && v[2].fresh && !v[3].fresh && v[4].fresh);
	assert_int_equal(count(d, "SELECT count(*) FROM deliveries"), 4);
	/* the first `before` of the batch is the hint */
	{
		char sha[STORE_SHA_LEN + 1];
		assert_int_equal(store_delivery_hint(s, "images", "main", sha, &err), 0);
		assert_string_equal(sha, A);
	}
	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	v[2].id = "c-1";
	v[3].id = "c-2";
	assert_true(store_record_deliveries(s, &v[2], 2, &err) < 0); /* 5 s busy timeout */
	assert_non_null(strstr(err.msg, "recording a delivery"));
	sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(other);
	assert_int_equal(count(d, "SELECT count(*) FROM deliveries WHERE id LIKE 'c-%'"), 0);
	assert_int_equal(store_record_deliveries(s, &v[2], 2, &err), 0);
	assert_true(v[2].fresh && v[3].fresh);
	store_close(s);
	free(path);
	free(d);
}

/* A failed write is recorded for health until a commit writes again; a
 * statement that changes nothing proves nothing. */
static void failures_until_a_write(void **state)
{
	char *d = sub("failures");
	struct store *s = NULL;
	struct kiln_err err = {0};
	struct store_failure f;

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_false(store_failing(s, &f));
	assert_int_equal(f.count, 0);
	/* no commit: the NOT NULL constraint refuses the row */
	assert_true(store_queue_build(s, "images", "main", "a", "a:1", NULL, NULL, &err) < 0);
	assert_true(store_queue_build(s, "images", "main", "a", "a:1", NULL, NULL, &err) < 0);
	assert_true(store_failing(s, &f));
	assert_int_equal(f.count, 2);
	assert_true(f.since > 0 && f.last >= f.since);
	assert_non_null(strstr(f.message, "queueing a rebuild"));
	assert_string_equal(f.message, err.msg);
	assert_int_equal(store_deliveries_handled(s, "images", INT64_MAX, &err), 0); /* no row */
	assert_true(store_failing(s, &f));
	assert_int_equal(store_record_delivery(s, "images", "guid-1", NULL, NULL, &err), 1);
	assert_false(store_failing(s, &f));
	assert_int_equal(f.count, 0);
	store_close(s);
	free(d);
}

/* A state worth keeping: a plan, a few hundred deliveries (so the file has
 * pages to damage), closed so the WAL is folded into the file. */
static void fill(const char *d)
{
	struct store *s = NULL;
	struct kiln_err err = {0};
	const struct store_plan_item items[] = {{"a", "r/a:1", "added", NULL, 0}};

	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_record_plan(s, "images", "main", A, NULL, items, 1, 0, &err), 1);
	for (int i = 0; i < 300; i++) {
		char id[64];
		snprintf(id, sizeof(id), "delivery-%04d-padding-padding-padding", i);
		assert_int_equal(store_record_delivery(s, "images", id, NULL, NULL, &err), 1);
	}
	store_close(s);
}

/* 4 KiB of (seeded, so repeatable) random bytes at the middle of a
 * database in d, as a torn or misdirected write leaves it. */
static void damage(const char *d, const char *name)
{
	char *path = sub_of(d, name);
	unsigned char junk[4096];
	FILE *f = fopen(path, "r+b");
	long size;

	assert_non_null(f);
	srand(9);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)rand();
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size > 3 * 4096);
	assert_int_equal(fseek(f, size / 2, SEEK_SET), 0);
	assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
	fclose(f);
	free(path);
}

static void remove_file(const char *d, const char *name)
{
	char *path = sub_of(d, name);

	assert_int_equal(unlink(path), 0);
	free(path);
}

static long file_size(const char *d, const char *name)
{
	char *path = sub_of(d, name);
	struct stat sb;
	long r = stat(path, &sb) == 0 ? (long)sb.st_size : -1;

	free(path);
	return r;
}

static void touch(const char *d, const char *name)
{
	char *path = sub_of(d, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fclose(f);
	free(path);
}

static void malformed_is_refused(void **state)
{
	char *d = sub("malformed");
	struct store *s = NULL;
	struct kiln_err err = {0};
	long size;

	(void)state;
	fill(d);
	damage(d, "kilnd.db");
	size = file_size(d, "kilnd.db");
	assert_int_equal(store_open(d, &s, &err), -EUCLEAN);
	assert_null(s);
	assert_non_null(strstr(err.msg, "kilnd.db"));
	/* refused before anything was written: the evidence stays as found */
	assert_int_equal(file_size(d, "kilnd.db"), size);
	assert_int_equal(file_size(d, "kilnd.db-wal"), -1);
	/* and no lock is left behind */
	assert_int_equal(store_open(d, &s, &err), -EUCLEAN);
	free(d);
}

static void not_a_database_is_refused(void **state)
{
	char *d = sub("notadb");
	char *path = sub("notadb/kilnd.db");
	struct store *s = NULL;
	struct kiln_err err = {0};
	FILE *f;

	(void)state;
	assert_int_equal(mkdir(d, 0750), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < 2000; i++)
		fputs("not sqlite ", f);
	fclose(f);
	assert_int_equal(store_open(d, &s, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, path));
	free(path);
	free(d);
}

static void empty_beside_mirrors_is_refused(void **state)
{
	char *d = sub("empty");
	char *mirrors = sub("empty/mirrors");
	char *images = sub("empty/mirrors/images.git");
	struct store *s = NULL;
	struct kiln_err err = {0};

	(void)state;
	/* a fresh state directory, or one whose mirrors dir is empty: a new state */
	assert_int_equal(store_open(d, &s, &err), 0);
	s = store_close(s);
	fill(d);
	assert_int_equal(mkdir(mirrors, 0750), 0);
	assert_int_equal(mkdir(images, 0750), 0);
	/* a whole database beside its mirrors opens */
	assert_int_equal(store_open(d, &s, &err), 0);
	s = store_close(s);
	/* a zero-length one beside them is a lost state */
	touch(d, "kilnd.db");
	assert_int_equal(store_open(d, &s, &err), -ENODATA);
	assert_null(s);
	assert_non_null(strstr(err.msg, "kilnd.db' is empty"));
	assert_non_null(strstr(err.msg, "mirrors"));
	assert_int_equal(file_size(d, "kilnd.db"), 0);
	/* so is a missing one */
	remove_file(d, "kilnd.db");
	assert_int_equal(store_open(d, &s, &err), -ENODATA);
	/* without mirrors an empty database is a new state */
	assert_int_equal(rmdir(images), 0);
	assert_int_equal(store_open(d, &s, &err), 0);
	store_close(s);
	free(images);
	free(mirrors);
	free(d);
}

static void snapshot_and_recover(void **state)
{
	char *d = sub("recover");
	struct store *s = NULL;
	struct kiln_err err = {0};
	char seen[STORE_SHA_LEN + 1], *aside = NULL, *aside_path;
	const struct store_plan_item items[] = {{"a", "r/a:2", "modified", NULL, 0}};

	(void)state;
	fill(d);
	/* nothing to recover from yet, and nothing is touched */
	assert_int_equal(store_recover(d, &aside, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "kilnd.db.backup"));
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_backup(s, &err), 1);
	assert_int_equal(file_size(d, "kilnd.db.backup.tmp"), -1);
	assert_int_equal(store_backup(s, &err), 0); /* unchanged: not written again */
	/* kilnd holds the directory */
	assert_int_equal(store_recover(d, &aside, &err), -EBUSY);
	/* a later plan the snapshot does not have */
	assert_int_equal(store_record_plan(s, "images", "main", B, NULL, items, 1, 0, &err), 1);
	s = store_close(s);
	/* a whole database is not replaced by an older snapshot */
	assert_int_equal(store_recover(d, &aside, &err), -EEXIST);
	damage(d, "kilnd.db");
	assert_int_equal(store_recover(d, &aside, &err), 0);
	assert_non_null(strstr(aside, "/kilnd.db.damaged-"));
	aside_path = aside;
	assert_true(file_size(d, strrchr(aside_path, '/') + 1) > 0);
	/* kilnd starts on the snapshot's state, and the snapshot stays */
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_last_seen(s, "images", "main", seen, &err), 0);
	assert_string_equal(seen, A);
	assert_true(file_size(d, "kilnd.db.backup") > 0);
	s = store_close(s);
	/* a zero-length database is recovered too */
	touch(d, "kilnd.db");
	free(aside);
	aside = NULL;
	assert_int_equal(store_recover(d, &aside, &err), 0);
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_last_seen(s, "images", "main", seen, &err), 0);
	store_close(s);
	free(aside);
	free(d);
}

static void damaged_snapshot_is_not_restored(void **state)
{
	char *d = sub("badsnap");
	struct store *s = NULL;
	struct kiln_err err = {0};
	char *aside = NULL;

	(void)state;
	fill(d);
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_backup(s, &err), 1);
	store_close(s);
	damage(d, "kilnd.db.backup");
	touch(d, "kilnd.db");
	/* refused, and the database stays where it is */
	assert_int_equal(store_recover(d, &aside, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "kilnd.db.backup"));
	assert_int_equal(file_size(d, "kilnd.db"), 0);
	assert_null(aside);
	free(d);
}

/* A plan marks the deliveries its poll served in its own transaction: those
 * recorded before the poll asked the remote (the bound it read then), not
 * those that came during it, even in the same millisecond (no pause here:
 * a bound made of the clock left a trigger recorded in the millisecond its
 * poll began unserved for good). */
static void plan_marks_served_deliveries(void **state)
{
	char *d = sub("served");
	struct store *s = NULL;
	struct kiln_err err = {0};
	struct strv pending = {0};
	const struct store_plan_item items[] = {{"a", "r/a:1", "added", NULL, 0}};
	int64_t bound = -1, during = -1;

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_deliveries_bound(s, "images", &bound, &err), 0);
	assert_int_equal(bound, 0); /* none */
	assert_int_equal(store_record_delivery(s, "images", "before", NULL, NULL, &err), 1);
	assert_int_equal(store_record_trigger(s, "images", NULL, &err), 0);
	assert_int_equal(store_record_delivery(s, "other", "before", NULL, NULL, &err), 1);
	assert_int_equal(store_deliveries_bound(s, "images", &bound, &err), 0);
	assert_true(bound > 0);
	assert_int_equal(store_record_delivery(s, "images", "during", NULL, NULL, &err), 1);
	assert_int_equal(store_record_plan(s, "images", "main", A, NULL, items, 1, bound, &err), 1);
	assert_int_equal(count(d, "SELECT count(*) FROM deliveries WHERE handled = 0"), 2);
	assert_int_equal(count(d, "SELECT count(*) FROM deliveries WHERE handled = 1 AND"
				  " repository = 'images' AND id <> 'during'"),
			 2); /* the delivery and the trigger */
	assert_int_equal(store_pending_deliveries(s, &pending, &err), 0);
	assert_int_equal(pending.n, 2); /* images (during) and other */
	strv_done(&pending);
	/* the next poll's bound is the one left, and a plan without one marks nothing */
	assert_int_equal(store_deliveries_bound(s, "images", &during, &err), 0);
	assert_true(during > bound);
	assert_int_equal(store_record_plan(s, "images", "main", B, NULL, items, 1, 0, &err), 1);
	assert_int_equal(count(d, "SELECT count(*) FROM deliveries WHERE handled = 0"), 2);
	assert_int_equal(store_deliveries_handled(s, "images", during, &err), 0);
	assert_int_equal(store_deliveries_bound(s, "images", &bound, &err), 0);
	assert_int_equal(bound, 0);
	assert_int_equal(count(d, "SELECT count(*) FROM deliveries WHERE handled = 0"),
			 1); /* other */
	store_close(s);
	free(d);
}

/* Triggers are recorded like deliveries (pending until a poll serves them);
 * a delivery's `before` is the hint for its branch until it is served; a
 * database of schema 3 (deliveries without those columns) is migrated with
 * its rows (only the tables migration 4 and store_open touch are made). */
static void triggers_and_hints(void **state)
{
	char *d = sub("hints");
	char *path = sub_of(d, "kilnd.db");
	struct store *s = NULL;
	struct kiln_err err = {0};
	struct strv pending = {0};
	char sha[STORE_SHA_LEN + 1];
	sqlite3 *db;

	(void)state;
	assert_int_equal(mkdir(d, 0700), 0);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db,
			 "CREATE TABLE deliveries (repository TEXT NOT NULL, id TEXT NOT NULL,"
			 " received_at INTEGER NOT NULL, handled INTEGER NOT NULL DEFAULT 0,"
			 " PRIMARY KEY (repository, id));"
			 "INSERT INTO deliveries VALUES ('old', 'd-0', 1, 0);"
			 /* what store_open touches of the other tables (and
			  * schema 7's outbox triggers and schema 8's indexes read) */
			 "CREATE TABLE builds (id INTEGER PRIMARY KEY, repository TEXT,"
			 " commit_sha TEXT, path TEXT, image TEXT, error TEXT, state TEXT,"
			 " started_at INTEGER);"
			 "PRAGMA user_version = 3;",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(count(d, "PRAGMA user_version"), 9);
	assert_int_equal(store_delivery_hint(s, "old", "main", sha, &err), -ENOENT);
	assert_int_equal(store_record_trigger(s, "images", NULL, &err), 0);
	assert_int_equal(store_record_trigger(s, "images", "main", &err), 0);
	assert_int_equal(count(d, "SELECT count(*) FROM deliveries WHERE source = 'trigger'"), 2);
	assert_int_equal(store_delivery_hint(s, "images", "main", sha, &err), -ENOENT);
	assert_int_equal(store_record_delivery(s, "images", "d-1", "main", A, &err), 1);
	assert_int_equal(store_record_delivery(s, "images", "d-2", "main", B, &err), 1);
	assert_int_equal(store_record_delivery(s, "images", "d-3", "next", NULL, &err), 1);
	assert_int_equal(store_delivery_hint(s, "images", "main", sha, &err), 0);
	assert_string_equal(sha, A); /* the first push's */
	assert_int_equal(store_delivery_hint(s, "images", "next", sha, &err), -ENOENT);
	s = store_close(s);
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_pending_deliveries(s, &pending, &err), 0);
	assert_int_equal(pending.n, 2); /* old, images */
	strv_done(&pending);
	assert_int_equal(store_deliveries_handled(s, "images", INT64_MAX, &err), 0);
	assert_int_equal(store_delivery_hint(s, "images", "main", sha, &err), -ENOENT);
	store_close(s);
	free(path);
	free(d);
}

/* The outbox: rows written with each state change for the sinks that want
 * it, oldest first; a newer status of the same repository, commit and path
 * supersedes an unsent older one (never a notification); settled rows leave;
 * a retry waits; sinks no longer configured drop their rows. */
static void outbox_rows(void **state)
{
	char *d = sub("outbox");
	struct store *s = NULL;
	struct kiln_err err = {0};
	struct store_outbox_row row = {0};
	struct store_build b;
	const struct store_plan_item items[] = {
	    {"a", "r/a:1", "modified", NULL, 0},
	    {"b", "r/b:1", "modified", NULL, 0},
	};
	const struct store_outbox_sink sinks[] = {
	    {"status:images", "images", "status", ",queued,succeeded,failed,cancelled,superseded,"},
	    {"notify:*:x", NULL, "notify", ",succeeded,failed,"},
	    {"status:other", "other", "status", ",queued,succeeded,"},
	};
	unsigned n = 99;

	(void)state;
	assert_int_equal(store_open(d, &s, &err), 0);
	assert_int_equal(store_outbox_sinks(s, sinks, 3, &err), 0);
	assert_int_equal(store_record_plan(s, "images", "main", A, NULL, items, 2, 0, &err), 2);
	/* pending a, pending b; nothing for the other repository */
	assert_int_equal(store_outbox_backlog(s, "status:images", &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(store_outbox_backlog(s, "status:other", &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_outbox_next(s, "status:images", &row, &err), 0);
	assert_string_equal(row.state, "queued");
	assert_string_equal(row.b.path, "a");
	assert_string_equal(row.b.commit, A);
	store_outbox_row_done(&row);
	/* a runs and succeeds: no row for running (not wanted), success
	 * supersedes a's pending, which is no longer next */
	assert_int_equal(store_take_next(s, &b, &err), 0);
	assert_string_equal(b.path, "a");
	assert_int_equal(store_finish(s, b.id, BUILD_SUCCEEDED, NULL, &err), 0);
	assert_int_equal(count(d, "SELECT count(*) FROM outbox WHERE done = 'superseded'"), 1);
	assert_int_equal(store_outbox_next(s, "status:images", &row, &err), 0);
	assert_string_equal(row.b.path, "b");
	assert_string_equal(row.state, "queued");
	/* a retry keeps it first, with its time */
	assert_int_equal(store_outbox_settle(s, row.id, NULL, 12345, &err), 0);
	store_outbox_row_done(&row);
	assert_int_equal(store_outbox_next(s, "status:images", &row, &err), 0);
	assert_string_equal(row.b.path, "b");
	assert_int_equal(row.attempts, 1);
	assert_int_equal(row.not_before, 12345);
	assert_int_equal(store_outbox_settle(s, row.id, "sent", 0, &err), 0);
	store_outbox_row_done(&row);
	assert_int_equal(store_outbox_next(s, "status:images", &row, &err), 0);
	assert_string_equal(row.b.path, "a");
	assert_string_equal(row.state, "succeeded");
	store_outbox_row_done(&row);
	/* b fails: its row carries the error; the notification sink has both */
	assert_int_equal(store_take_next(s, &b, &err), 0);
	assert_int_equal(
	    store_finish(s, b.id, BUILD_FAILED, "smoke test failed: exit code 1", &err), 0);
	assert_int_equal(store_outbox_backlog(s, "notify:*:x", &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(store_outbox_next(s, "notify:*:x", &row, &err), 0);
	assert_string_equal(row.state, "succeeded");
	assert_string_equal(row.b.path, "a");
	assert_int_equal(store_outbox_settle(s, row.id, "sent", 0, &err), 0);
	store_outbox_row_done(&row);
	assert_int_equal(store_outbox_next(s, "notify:*:x", &row, &err), 0);
	assert_string_equal(row.state, "failed");
	assert_string_equal(row.error, "smoke test failed: exit code 1");
	store_outbox_row_done(&row);
	/* a newer commit's pending does not supersede the older commit's rows */
	assert_int_equal(store_record_plan(s, "images", "main", B, NULL, items, 2, 0, &err), 2);
	assert_int_equal(store_outbox_backlog(s, "status:images", &n, &err), 0);
	assert_int_equal(n, 4); /* success a, failure b at A; pending a, b at B */
	/* a sink no longer configured: its rows are dropped */
	assert_int_equal(store_outbox_sinks(s, sinks, 1, &err), 0);
	assert_int_equal(store_outbox_backlog(s, "notify:*:x", &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_outbox_backlog(s, "status:images", &n, &err), 0);
	assert_int_equal(n, 4);
	assert_int_equal(store_outbox_next(s, "status:other", &row, &err), -ENOENT);
	store_close(s);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lock_and_schema),
	    cmocka_unit_test(plans_supersede_and_last_seen),
	    cmocka_unit_test(take_finish_and_recover),
	    cmocka_unit_test(dependents_wait_and_are_cancelled),
	    cmocka_unit_test(newer_schema_is_refused),
	    cmocka_unit_test(deliveries),
	    cmocka_unit_test(delivery_batches),
	    cmocka_unit_test(failures_until_a_write),
	    cmocka_unit_test(plan_marks_served_deliveries),
	    cmocka_unit_test(triggers_and_hints),
	    cmocka_unit_test(malformed_is_refused),
	    cmocka_unit_test(not_a_database_is_refused),
	    cmocka_unit_test(empty_beside_mirrors_is_refused),
	    cmocka_unit_test(snapshot_and_recover),
	    cmocka_unit_test(damaged_snapshot_is_not_restored),
	    cmocka_unit_test(outbox_rows),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
