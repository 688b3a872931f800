/* store.c (queue): the SQLite schema, its migrations, the instance lock, the checks
 * that refuse a damaged database, the verified snapshot that recovers one,
 * and the few statements kilnd needs. Owns the database connection, the lock
 * file and the snapshot file. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "kiln/buf.h"
#include "kiln/err.h"
#include "kiln/fsio.h"
#include "kiln/store.h"
#include "kiln/map.h"

struct store {
	pthread_mutex_t lock; /* one operation (and its transaction) at a time */
	sqlite3 *db;
	int lock_fd;
	unsigned requeued;
	char *dir, *path, *backup_path;
	int64_t backed_up; /* sqlite3_total_changes64 at the last snapshot; -1: none yet */
	int64_t pruned_ms; /* when handled deliveries were last pruned (unix ms) */
	/* the state's health, read by the loop thread while a worker may hold
	 * lock for a long transaction: its own lock, held for a copy only */
	pthread_mutex_t failure_lock;
	struct store_failure failure;
	store_commit_cb *on_commit; /* any thread */
	void *on_commit_arg;
};

/* The outbox triggers' body: a newer state of a (repository, commit, image)
 * supersedes the unsent older one of every status sink, then each sink that
 * wants this state gets its row. */
#define OUTBOX_MS_NOW	  "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
#define OUTBOX_STATUS_KEY "NEW.repository || ':' || NEW.commit_sha || ':' || NEW.path"
#define OUTBOX_WANTS	  "instr(states, ',' || NEW.state || ',') > 0"
#define OUTBOX_TRIGGER_BODY                                                                        \
	"UPDATE outbox SET done = 'superseded', done_at = " OUTBOX_MS_NOW                          \
	" WHERE done IS NULL AND key = " OUTBOX_STATUS_KEY                                         \
	" AND sink IN (SELECT sink FROM outbox_sinks WHERE kind = 'status' AND " OUTBOX_WANTS      \
	"); INSERT INTO outbox (sink, build, state, error, key, created_at)"                       \
	" SELECT sink, NEW.id, NEW.state, NEW.error, CASE kind WHEN 'status' "                     \
	"THEN " OUTBOX_STATUS_KEY " ELSE NEW.id || ':' || NEW.state END, " OUTBOX_MS_NOW           \
	" FROM outbox_sinks WHERE (repository IS NULL OR repository = NEW.repository) "            \
	"AND " OUTBOX_WANTS " ORDER BY sink;"

/* Each entry moves the schema one version up; never edit a shipped one. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE branches ("
    "  repository TEXT NOT NULL,"
    "  branch TEXT NOT NULL,"
    "  last_seen TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (repository, branch));"
    "CREATE TABLE builds ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  repository TEXT NOT NULL,"
    "  branch TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  image TEXT,"
    "  commit_sha TEXT NOT NULL,"
    "  change TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed',"
    "                                       'cancelled', 'superseded', 'removed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  started_at INTEGER,"
    "  finished_at INTEGER,"
    "  error TEXT);"
    "CREATE INDEX builds_by_state ON builds (state, id);"
    "CREATE INDEX builds_by_image ON builds (repository, branch, path, state);",
    /* 2: webhook deliveries, recorded before they are answered */
    "CREATE TABLE deliveries ("
    "  repository TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  received_at INTEGER NOT NULL," /* unix milliseconds */
    "  handled INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (repository, id));",
    /* 3: the Docker builder: results, retry delays, dependency order */
    "ALTER TABLE builds ADD COLUMN image_id TEXT;"
    "ALTER TABLE builds ADD COLUMN digest TEXT;"
    "ALTER TABLE builds ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;" /* unix ms */
    "CREATE TABLE build_deps ("
    "  build INTEGER NOT NULL,"
    "  base INTEGER NOT NULL,"
    "  PRIMARY KEY (build, base));"
    "CREATE INDEX build_deps_by_base ON build_deps (base);"
    "CREATE INDEX builds_by_pushed ON builds (image, commit_sha) WHERE digest IS NOT NULL;",
    /* 4: triggers recorded like deliveries; a push's branch and the commit it
     * moved from (a hint for a branch not yet seen) */
    "ALTER TABLE deliveries ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook';"
    "ALTER TABLE deliveries ADD COLUMN branch TEXT;"
    "ALTER TABLE deliveries ADD COLUMN before_sha TEXT;",
    /* 5: the deliveries no poll served, found without reading the ones that
     * were (a busy webhook leaves days of those) */
    ("CREATE INDEX deliveries_unhandled ON deliveries (repository, received_at)"
     " WHERE handled = 0;"),
    /* 6: which builder built it (classic, buildkit) */
    "ALTER TABLE builds ADD COLUMN builder TEXT;",
    /* 7: the outbox: what each build state change owes the commit statuses
     * and the notifications, written by triggers in the transaction of the
     * change itself. outbox_sinks is kilnd's configuration of the moment
     * (rewritten at each start); the rows keep the sink's name only. */
    "CREATE TABLE outbox_sinks ("
    "  sink TEXT PRIMARY KEY,"
    "  repository TEXT," /* NULL: every repository */
    "  kind TEXT NOT NULL CHECK (kind IN ('status', 'notify')),"
    "  states TEXT NOT NULL);" /* ",queued,failed,": the build states it reports */
    "CREATE TABLE outbox ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  sink TEXT NOT NULL,"
    "  build INTEGER NOT NULL,"
    "  state TEXT NOT NULL," /* the build's state this row reports */
    "  error TEXT,"
    "  key TEXT NOT NULL,"	     /* status: repository:commit:path; notify: build:state */
    "  created_at INTEGER NOT NULL," /* unix ms */
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  not_before INTEGER NOT NULL DEFAULT 0," /* unix ms */
    "  done TEXT CHECK (done IN ('sent', 'failed', 'superseded', 'dropped')),"
    "  done_at INTEGER);"
    "CREATE INDEX outbox_unsent ON outbox (sink, id) WHERE done IS NULL;"
    "CREATE INDEX outbox_unsent_by_key ON outbox (key) WHERE done IS NULL;"
    "CREATE TRIGGER outbox_build_queued AFTER INSERT ON builds WHEN NEW.state = 'queued'"
    " BEGIN " OUTBOX_TRIGGER_BODY " END;"
    "CREATE TRIGGER outbox_build_moved AFTER UPDATE OF state ON builds"
    " WHEN NEW.state IS NOT OLD.state BEGIN " OUTBOX_TRIGGER_BODY " END;",
    /* 8: the dashboard's filters, each walked newest first: a page of 50
     * builds of one repository, folder or image reference reads about 50
     * index entries instead of scanning (or sorting) a long history */
    ("CREATE INDEX builds_by_repository ON builds (repository, id);"
     "CREATE INDEX builds_by_path ON builds (path, id);"
     "CREATE INDEX builds_by_reference ON builds (image, id);"),
    /* 9: what a commit says, for the pages that show a build: its summary
     * (the first paragraph of the message), one row per commit however
     * many images it built */
    ("CREATE TABLE commits ("
     "  repository TEXT NOT NULL,"
     "  sha TEXT NOT NULL,"
     "  subject TEXT NOT NULL,"
     "  PRIMARY KEY (repository, sha)) WITHOUT ROWID;"),
};

static const char *const state_names[] = {"queued", "running",	 "succeeded",
					  "failed", "cancelled", "superseded"};

const char *build_state_str(enum build_state s)
{
	return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

/* Every failed statement of the connection passes here (db_err, exec), so
 * health sees what the callers see. SQLite reports a full disk as
 * SQLITE_FULL without an errno: that one is ENOSPC. */
static void note_failure(struct store *s, const char *msg)
{
	int sys = sqlite3_system_errno(s->db);
	int64_t now = (int64_t)time(NULL);

	if (sys == 0 && (sqlite3_extended_errcode(s->db) & 0xff) == SQLITE_FULL)
		sys = ENOSPC;
	pthread_mutex_lock(&s->failure_lock);
	if (s->failure.count++ == 0)
		s->failure.since = now;
	s->failure.last = now;
	s->failure.sys_errno = sys;
	snprintf(s->failure.message, sizeof(s->failure.message), "%s", msg);
	pthread_mutex_unlock(&s->failure_lock);
}

/* SQLite calls this after each commit that wrote to the WAL (none for a
 * transaction that changed nothing): the one proof that writes reach the
 * disk again. It replaces the automatic checkpoint, so it checkpoints as
 * that did (PASSIVE, at SQLite's default of 1000 pages). */
static int committed(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct store *s = arg;

	pthread_mutex_lock(&s->failure_lock);
	memset(&s->failure, 0, sizeof(s->failure));
	pthread_mutex_unlock(&s->failure_lock);
	if (pages >= STORE_WAL_CHECKPOINT_PAGES)
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	if (s->on_commit)
		s->on_commit(s->on_commit_arg);
	return SQLITE_OK;
}

static int db_err(struct store *s, struct kiln_err *err, const char *what)
{
	char msg[sizeof(s->failure.message)];

	snprintf(msg, sizeof(msg), "state database: %s: %s", what, sqlite3_errmsg(s->db));
	note_failure(s, msg);
	return kiln_err_set(err, -EIO, "%s", msg);
}

/* err NULL: a best-effort statement (a ROLLBACK after a failure, a prune),
 * whose failure says nothing new about the state */
static int exec(struct store *s, const char *sql, struct kiln_err *err)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		char text[sizeof(s->failure.message)];
		snprintf(text, sizeof(text), "state database: %s", msg ? msg : "error");
		sqlite3_free(msg);
		if (err)
			note_failure(s, text);
		return kiln_err_set(err, -EIO, "%s", text);
	}
	return 0;
}

static int lock_dir(const char *dir, int *ret_fd, struct kiln_err *err)
{
	char *path = xasprintf("%s/kilnd.lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	char pid[32] = "";
	int r = 0;

	if (fd < 0) {
		r = kiln_err_set(err, -errno, "cannot open lock '%s': %s", path, strerror(errno));
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		r = kiln_err_set(err, -EBUSY,
				 "another kilnd (pid %s) is using the state directory '%s'",
				 pid[0] ? pid : "unknown", dir);
		close(fd);
		goto out;
	}
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0) {
		/* the lock holds regardless; the pid is only for the message */
	}
	*ret_fd = fd;
out:
	free(path);
	return r;
}

static int migrate(struct store *s, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int version = 0, r;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "reading the schema version");
	if (sqlite3_step(st) != SQLITE_ROW) {
		/* not 0: that would run every migration again on a live schema */
		r = db_err(s, err, "reading the schema version");
		sqlite3_finalize(st);
		return r;
	}
	version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > (int)ARRAY_SIZE(migrations))
		return kiln_err_set(err, -EPROTO,
				    "state database schema %d is newer than this kilnd knows (%zu)",
				    version, ARRAY_SIZE(migrations));
	for (int v = version; v < (int)ARRAY_SIZE(migrations); v++) {
		char *sql = xasprintf("BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;",
				      migrations[v], v + 1);
		r = exec(s, sql, err);
		free(sql);
		if (r < 0) {
			exec(s, "ROLLBACK", NULL);
			return r;
		}
	}
	return 0;
}

/* The first problems PRAGMA quick_check lists, or the error that stopped it,
 * into err: 0 when the database reads as whole, -EUCLEAN when it does not. */
static int quick_check(sqlite3 *db, const char *path, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	struct buf text = {0};
	int rc, r = 0;

	rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(3)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			const char *row = (const char *)sqlite3_column_text(st, 0);
			if (row && strcmp(row, "ok") != 0)
				buf_printf(&text, "%s%s", text.len ? "; " : "", row);
		}
	}
	if (rc != SQLITE_DONE) {
		int code = sqlite3_extended_errcode(db) & 0xff;
		/* anything but a damaged file (a lock held too long, no memory)
		 * is no verdict on the file */
		r = kiln_err_set(err,
				 code == SQLITE_CORRUPT || code == SQLITE_NOTADB ? -EUCLEAN : -EIO,
				 "'%s' cannot be checked: %s", path, sqlite3_errmsg(db));
	} else if (text.len > 0) {
		for (char *nl = text.p; (nl = strchr(nl, '\n')) != NULL;)
			*nl = ' '; /* one log line */
		r = kiln_err_set(err, -EUCLEAN, "'%s' is malformed: %s", path, text.p);
	}
	sqlite3_finalize(st);
	buf_done(&text);
	return r;
}

/* Whether dir/mirrors holds anything: a state existed before. */
static bool has_mirrors(const char *dir)
{
	char *path = xasprintf("%s/mirrors", dir);
	DIR *d = opendir(path);
	struct dirent *e;
	bool found = false;

	while (d && !found && (e = readdir(d)) != NULL)
		found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	if (d)
		closedir(d);
	free(path);
	return found;
}

/* Refuses what would start kilnd on a lost state: a damaged file
 * (-EUCLEAN), or one without a schema (new, or emptied to zero length) when
 * an earlier state existed (-ENODATA): kilnd's start knows that from the
 * mirrors in dir, a recovery assumes it. */
static int check_db(sqlite3 *db, const char *dir, bool recovering, const char *path,
		    struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	bool empty;
	int r = quick_check(db, path, err);

	if (r < 0)
		return r;
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) !=
		SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		r = kiln_err_set(err, -EIO, "'%s' cannot be read: %s", path, sqlite3_errmsg(db));
		goto out;
	}
	empty = sqlite3_column_int(st, 0) == 0;
	if (empty && (recovering || has_mirrors(dir)))
		r = kiln_err_set(err, -ENODATA,
				 "'%s' is empty, but '%s/mirrors' holds the mirrors of an earlier "
				 "state: every branch's last-seen commit is lost",
				 path, dir);
out:
	sqlite3_finalize(st);
	return r;
}

int store_open(const char *dir, struct store **ret, struct kiln_err *err)
{
	struct store *s = xcalloc(1, sizeof(*s));
	int r;

	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->failure_lock, NULL);
	s->lock_fd = -1;
	s->backed_up = -1;
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		r = kiln_err_set(err, -errno, "cannot create state directory '%s': %s", dir,
				 strerror(errno));
		goto fail;
	}
	r = lock_dir(dir, &s->lock_fd, err);
	if (r < 0)
		goto fail;
	s->dir = xstrdup(dir);
	s->path = xasprintf("%s/" STORE_FILE, dir);
	s->backup_path = xasprintf("%s/" STORE_BACKUP_FILE, dir);
	if (sqlite3_open_v2(s->path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		r = kiln_err_set(err, -EIO, "cannot open '%s': %s", s->path,
				 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000);
	/* before anything writes: a refused file stays as it was found */
	r = check_db(s->db, dir, false, s->path, err);
	if (r < 0)
		goto fail;
	/* WAL with synchronous=FULL: a commit that returned is on disk. A
	 * 512 KiB page cache, not SQLite's 2 MiB: days of webhook deliveries
	 * would fill that, and the kernel caches the file anyway. */
	r = exec(s,
		 "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
		 "PRAGMA foreign_keys = ON; PRAGMA cache_size = -512;",
		 err);
	if (r == 0)
		r = migrate(s, err);
	if (r == 0)
		r = exec(s,
			 "UPDATE builds SET state = 'queued', started_at = NULL "
			 "WHERE state = 'running'",
			 err);
	if (r < 0)
		goto fail;
	s->requeued = (unsigned)sqlite3_changes(s->db);
	sqlite3_wal_hook(s->db, committed, s);
	*ret = s;
	return 0;
fail:
	store_close(s);
	return r;
}

struct store *store_close(struct store *s)
{
	if (s == NULL)
		return NULL;
	if (s->db)
		sqlite3_close(s->db);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the lock */
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->failure_lock);
	free(s->dir);
	free(s->path);
	free(s->backup_path);
	free(s);
	return NULL;
}

/* dst becomes a copy of the database src that checks whole, or stays as it
 * was: VACUUM INTO a temporary name (a consistent snapshot; src is only
 * read), quick_check of the copy, fsync, rename, fsync of the directory. */
static int snapshot(const char *src, const char *dst, const char *dir, struct kiln_err *err)
{
	char *tmp = xasprintf("%s.tmp", dst);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (unlink(tmp) < 0 && errno != ENOENT) { /* VACUUM INTO wants no file there */
		r = kiln_err_set(err, -errno, "cannot remove '%s': %s", tmp, strerror(errno));
		goto out;
	}
	if (sqlite3_open_v2(src, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "VACUUM INTO ?", -1, &st, NULL) != SQLITE_OK) {
		r = kiln_err_set(err, -EIO, "cannot read '%s': %s", src,
				 db ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	sqlite3_bind_text(st, 1, tmp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		r = kiln_err_set(err, -EIO, "cannot copy '%s' to '%s': %s", src, tmp,
				 sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	sqlite3_close(db);
	if (sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		r = kiln_err_set(err, -EIO, "cannot open '%s': %s", tmp,
				 db ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	r = quick_check(db, tmp, err);
	if (r == 0)
		r = fsio_sync_path(tmp, 0, err);
	if (r == 0 && rename(tmp, dst) < 0)
		r = kiln_err_set(err, -errno, "cannot rename '%s' to '%s': %s", tmp, dst,
				 strerror(errno));
	if (r == 0)
		r = fsio_sync_path(dir, O_DIRECTORY, err);
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (r < 0)
		unlink(tmp);
	free(tmp);
	return r;
}

int store_backup(struct store *s, struct kiln_err *err)
{
	int64_t changes;
	int r;

	pthread_mutex_lock(&s->lock);
	changes = sqlite3_total_changes64(s->db);
	pthread_mutex_unlock(&s->lock);
	if (changes == s->backed_up)
		return 0;
	r = snapshot(s->path, s->backup_path, s->dir, err);
	if (r < 0)
		return r;
	s->backed_up = changes;
	return 1;
}

/* The current database at path, checked as store_open does but without
 * writing to it; missing or empty counts as lost. */
static int check_file(const char *dir, const char *path, struct kiln_err *err)
{
	sqlite3 *db = NULL;
	struct stat sb;
	int r;

	if (stat(path, &sb) < 0 && errno == ENOENT)
		return kiln_err_set(err, -ENODATA, "'%s' is missing", path);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		r = kiln_err_set(err, -EUCLEAN, "cannot open '%s': %s", path,
				 db ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	r = check_db(db, dir, true, path, err);
out:
	sqlite3_close(db);
	return r;
}

/* Renames path and its WAL files to path.damaged-<unix time>; the new name
 * of path into *ret_aside. */
static int move_aside(const char *path, char **ret_aside, struct kiln_err *err)
{
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	char *aside = xasprintf("%s.damaged-%lld", path, (long long)time(NULL));
	int r = 0;

	for (size_t i = 0; i < ARRAY_SIZE(suffixes) && r == 0; i++) {
		char *from = xasprintf("%s%s", path, suffixes[i]);
		char *to = xasprintf("%s%s", aside, suffixes[i]);
		if (rename(from, to) < 0 && errno != ENOENT)
			r = kiln_err_set(err, -errno, "cannot rename '%s' to '%s': %s", from, to,
					 strerror(errno));
		free(from);
		free(to);
	}
	if (r == 0)
		*ret_aside = aside;
	else
		free(aside);
	return r;
}

int store_recover(const char *dir, char **ret_aside, struct kiln_err *err)
{
	char *path = xasprintf("%s/" STORE_FILE, dir),
	     *backup = xasprintf("%s/" STORE_BACKUP_FILE, dir);
	char *aside = NULL;
	sqlite3 *db = NULL;
	int fd = -1, r;

	r = lock_dir(dir, &fd, err);
	if (r < 0)
		goto out;
	/* the snapshot must check whole before anything is moved */
	if (access(backup, F_OK) < 0) {
		r = kiln_err_set(err, -ENOENT, "there is no snapshot '%s' to recover from", backup);
		goto out;
	}
	if (sqlite3_open_v2(backup, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		r = kiln_err_set(err, -EIO, "cannot open '%s': %s", backup,
				 db ? sqlite3_errmsg(db) : "out of memory");
	else
		r = quick_check(db, backup, err);
	if (r < 0)
		goto out;
	/* a database that passes the checks holds newer state than any snapshot */
	r = check_file(dir, path, err);
	if (r == 0) {
		r = kiln_err_set(err, -EEXIST, "'%s' passes its checks: nothing to recover", path);
		goto out;
	}
	if (r != -EUCLEAN && r != -ENODATA)
		goto out;
	r = move_aside(path, &aside, err);
	if (r == 0)
		r = snapshot(backup, path, dir, err);
	if (r < 0)
		goto out;
	*ret_aside = aside;
	aside = NULL;
out:
	sqlite3_close(db);
	if (fd >= 0)
		close(fd);
	free(aside);
	free(path);
	free(backup);
	return r;
}

unsigned store_requeued(const struct store *s)
{
	return s->requeued;
}

bool store_failing(struct store *s, struct store_failure *ret)
{
	pthread_mutex_lock(&s->failure_lock);
	*ret = s->failure;
	pthread_mutex_unlock(&s->failure_lock);
	return ret->count > 0;
}

static int last_seen_locked(struct store *s, const char *repo, const char *branch,
			    char ret_sha[STORE_SHA_LEN + 1], struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = -ENOENT;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT last_seen FROM branches WHERE repository = ? AND branch = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "last seen");
	sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
	switch (sqlite3_step(st)) {
	case SQLITE_ROW: {
		const char *sha = (const char *)sqlite3_column_text(st, 0);
		if (sha && strlen(sha) == STORE_SHA_LEN) {
			memcpy(ret_sha, sha, STORE_SHA_LEN + 1);
			r = 0;
		}
		break;
	}
	case SQLITE_DONE:
		break;
	default:
		/* not -ENOENT: that would make the branch's head a first sighting */
		r = db_err(s, err, "last seen");
	}
	sqlite3_finalize(st);
	return r;
}

static int64_t now(void)
{
	return (int64_t)time(NULL);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The statements of one plan. */
struct plan_stmts {
	sqlite3_stmt *sup, *ins, *seen, *dep;
};

static int plan_stmts_prepare(struct store *s, struct plan_stmts *st, struct kiln_err *err)
{
	if (sqlite3_prepare_v2(
		s->db,
		"UPDATE builds SET state = 'superseded', finished_at = ?4 "
		"WHERE repository = ?1 AND branch = ?2 AND path = ?3 AND state = 'queued'",
		-1, &st->sup, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(
		s->db,
		"INSERT INTO builds (repository, branch, path, image, commit_sha, change,"
		" state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		-1, &st->ins, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db,
			       "INSERT INTO branches (repository, branch, last_seen, updated_at)"
			       " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (repository, branch)"
			       " DO UPDATE SET last_seen = ?3, updated_at = ?4",
			       -1, &st->seen, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db,
			       "INSERT OR IGNORE INTO build_deps (build, base) VALUES (?, ?)", -1,
			       &st->dep, NULL) != SQLITE_OK)
		return db_err(s, err, "preparing the plan");
	return 0;
}

static void plan_stmts_done(struct plan_stmts *st)
{
	sqlite3_finalize(st->sup);
	sqlite3_finalize(st->ins);
	sqlite3_finalize(st->seen);
	sqlite3_finalize(st->dep);
}

/* One item: a queued build that supersedes the path's queued one, or a
 * removed row. *ret_id is the build's id, 0 for a removed item. */
static int record_item(struct store *s, struct plan_stmts *st, const char *repo, const char *branch,
		       const char *to, const struct store_plan_item *it, int64_t *ret_id,
		       struct kiln_err *err)
{
	bool removed = strcmp(it->change, "removed") == 0;

	if (!removed) {
		sqlite3_reset(st->sup);
		sqlite3_bind_text(st->sup, 1, repo, -1, SQLITE_STATIC);
		sqlite3_bind_text(st->sup, 2, branch, -1, SQLITE_STATIC);
		sqlite3_bind_text(st->sup, 3, it->path, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st->sup, 4, now());
		if (sqlite3_step(st->sup) != SQLITE_DONE)
			return db_err(s, err, "superseding");
	}
	sqlite3_reset(st->ins);
	sqlite3_bind_text(st->ins, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(st->ins, 2, branch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st->ins, 3, it->path, -1, SQLITE_STATIC);
	if (it->image)
		sqlite3_bind_text(st->ins, 4, it->image, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st->ins, 4);
	sqlite3_bind_text(st->ins, 5, to, -1, SQLITE_STATIC);
	sqlite3_bind_text(st->ins, 6, it->change, -1, SQLITE_STATIC);
	sqlite3_bind_text(st->ins, 7, removed ? "removed" : "queued", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st->ins, 8, now());
	if (sqlite3_step(st->ins) != SQLITE_DONE)
		return db_err(s, err, "queueing a build");
	*ret_id = removed ? 0 : sqlite3_last_insert_rowid(s->db);
	return 0;
}

/* Each queued build waits for the builds of this plan it builds FROM.
 * Dependencies come first in a plan, so every base has its id by now. */
static int record_deps(struct store *s, struct plan_stmts *st, const struct store_plan_item *items,
		       size_t n, const int64_t *ids, struct kiln_err *err)
{
	struct strmap by_path = {0};
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		if (ids[i])
			*strmap_put(&by_path, items[i].path, strlen(items[i].path)) =
			    (void *)&ids[i];
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		for (size_t k = 0; ids[i] && k < items[i].ndepends && r == 0; k++) {
			const char *d = items[i].depends_on[k];
			const int64_t *base = strmap_get(&by_path, d, strlen(d));
			if (!base)
				continue; /* not rebuilt in this plan: nothing to wait for */
			sqlite3_reset(st->dep);
			sqlite3_bind_int64(st->dep, 1, ids[i]);
			sqlite3_bind_int64(st->dep, 2, *base);
			if (sqlite3_step(st->dep) != SQLITE_DONE)
				r = db_err(s, err, "recording a build's dependency");
		}
	}
	strmap_done(&by_path);
	return r;
}

static int record_seen(struct store *s, struct plan_stmts *st, const char *repo, const char *branch,
		       const char *to, struct kiln_err *err)
{
	sqlite3_bind_text(st->seen, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(st->seen, 2, branch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st->seen, 3, to, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st->seen, 4, now());
	if (sqlite3_step(st->seen) != SQLITE_DONE)
		return db_err(s, err, "recording the last-seen commit");
	return 0;
}

static int deliveries_handled_locked(struct store *s, const char *repo, int64_t upto,
				     struct kiln_err *err);

/* A commit's summary, kept once (NULL: not known, nothing kept). */
static int record_subject(struct store *s, const char *repo, const char *sha, const char *subject,
			  struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (subject == NULL)
		return 0;
	if (sqlite3_prepare_v2(s->db,
			       "INSERT OR IGNORE INTO commits (repository, sha, subject)"
			       " VALUES (?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "recording a commit's summary");
	sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, sha, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, subject, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		r = db_err(s, err, "recording a commit's summary");
	sqlite3_finalize(st);
	return r;
}

static int record_plan_locked(struct store *s, const char *repo, const char *branch, const char *to,
			      const char *subject, const struct store_plan_item *items, size_t n,
			      int64_t serve_upto, struct kiln_err *err)
{
	struct plan_stmts st = {0};
	int64_t *ids = xcalloc(n + 1, sizeof(*ids));
	int r, queued = 0;

	r = exec(s, "BEGIN IMMEDIATE", err);
	if (r < 0)
		goto out;
	r = plan_stmts_prepare(s, &st, err);
	for (size_t i = 0; i < n && r == 0; i++) {
		r = record_item(s, &st, repo, branch, to, &items[i], &ids[i], err);
		queued += r == 0 && ids[i] != 0;
	}
	if (r == 0)
		r = record_deps(s, &st, items, n, ids, err);
	if (r == 0 && queued > 0)
		r = record_subject(s, repo, to, subject, err);
	if (r == 0)
		r = record_seen(s, &st, repo, branch, to, err);
	if (r == 0 && serve_upto > 0)
		r = deliveries_handled_locked(s, repo, serve_upto, err);
	plan_stmts_done(&st);
	if (r == 0)
		r = exec(s, "COMMIT", err);
	if (r < 0) {
		struct kiln_err rb = {0};
		if (exec(s, "ROLLBACK", &rb) < 0 && err) {
			/* the first cause stays first; the caller logs both once */
			size_t len = strlen(err->msg);
			snprintf(err->msg + len, sizeof(err->msg) - len,
				 "; rolling back failed too: %s", rb.msg);
		}
	}
out:
	free(ids);
	return r < 0 ? r : queued;
}

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t size)
{
	const char *v = (const char *)sqlite3_column_text(st, col);
	snprintf(dst, size, "%s", v ? v : "");
}

static int take_next_locked(struct store *s, struct store_build *ret, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = -ENOENT;

	if (exec(s, "BEGIN IMMEDIATE", err) < 0)
		return -EIO;
	if (sqlite3_prepare_v2(
		s->db,
		"UPDATE builds SET state = 'running', started_at = ?1,"
		" attempts = attempts + 1 WHERE id = (SELECT b.id FROM builds b"
		" WHERE b.state = 'queued' AND b.not_before <= ?2 AND NOT EXISTS"
		" (SELECT 1 FROM build_deps d JOIN builds x ON x.id = d.base"
		"  WHERE d.build = b.id AND x.state IN ('queued', 'running'))"
		" ORDER BY b.id LIMIT 1)"
		" RETURNING id, repository, branch, path, image, commit_sha, attempts, change",
		-1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "taking a build");
		goto out;
	}
	sqlite3_bind_int64(st, 1, now());
	sqlite3_bind_int64(st, 2, now_ms());
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		memset(ret, 0, sizeof(*ret));
		ret->id = sqlite3_column_int64(st, 0);
		copy_col(st, 1, ret->repo, sizeof(ret->repo));
		copy_col(st, 2, ret->branch, sizeof(ret->branch));
		copy_col(st, 3, ret->path, sizeof(ret->path));
		copy_col(st, 4, ret->image, sizeof(ret->image));
		copy_col(st, 5, ret->commit, sizeof(ret->commit));
		ret->attempts = sqlite3_column_int(st, 6);
		copy_col(st, 7, ret->change, sizeof(ret->change));
		ret->state = BUILD_RUNNING;
		r = 0;
		if (sqlite3_step(st) != SQLITE_DONE)
			r = db_err(s, err, "taking a build");
		break;
	case SQLITE_DONE:
		break;
	default:
		r = db_err(s, err, "taking a build");
	}
out:
	sqlite3_finalize(st);
	if (r == 0 || r == -ENOENT) {
		if (exec(s, "COMMIT", err) < 0)
			r = -EIO;
	}
	if (r < 0 && r != -ENOENT)
		exec(s, "ROLLBACK", NULL);
	return r;
}

static int finish_locked(struct store *s, int64_t id, enum build_state bst, const char *error,
			 struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(
		s->db, "UPDATE builds SET state = ?1, finished_at = ?2, error = ?3 WHERE id = ?4",
		-1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "finishing a build");
	sqlite3_bind_text(st, 1, build_state_str(bst), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now());
	if (error)
		sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_int64(st, 4, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		r = db_err(s, err, "finishing a build");
	sqlite3_finalize(st);
	if (r < 0 || (bst != BUILD_FAILED && bst != BUILD_CANCELLED))
		return r;
	/* what builds FROM it cannot be built as planned */
	if (sqlite3_prepare_v2(
		s->db,
		"WITH RECURSIVE dep(id) AS (SELECT build FROM build_deps WHERE base = ?1"
		" UNION SELECT d.build FROM build_deps d JOIN dep ON d.base = dep.id)"
		" UPDATE builds SET state = 'cancelled', finished_at = ?2, error = ?3"
		" WHERE id IN dep AND state = 'queued'",
		-1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "cancelling dependent builds");
	{
		char *why = xasprintf("its base image's build %lld %s", (long long)id,
				      build_state_str(bst));
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, now());
		sqlite3_bind_text(st, 3, why, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) != SQLITE_DONE)
			r = db_err(s, err, "cancelling dependent builds");
		free(why);
	}
	sqlite3_finalize(st);
	return r;
}

static int counts_locked(struct store *s, unsigned *queued, unsigned *running, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	unsigned q = 0, run = 0;
	int rc, r = 0;

	if (sqlite3_prepare_v2(
		s->db,
		"SELECT state, count(*) FROM builds WHERE state IN ('queued', 'running')"
		" GROUP BY state",
		-1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "counting builds");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		unsigned c = (unsigned)sqlite3_column_int(st, 1);
		if (name && strcmp(name, "queued") == 0)
			q = c;
		else
			run = c;
	}
	if (rc != SQLITE_DONE)
		r = db_err(s, err, "counting builds");
	sqlite3_finalize(st);
	if (r == 0) {
		*queued = q;
		*running = run;
	}
	return r;
}

int store_last_seen(struct store *s, const char *repo, const char *branch,
		    char ret_sha[STORE_SHA_LEN + 1], struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = last_seen_locked(s, repo, branch, ret_sha, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_record_plan(struct store *s, const char *repo, const char *branch, const char *to,
		      const char *subject, const struct store_plan_item *items, size_t n,
		      int64_t serve_upto, struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = record_plan_locked(s, repo, branch, to, subject, items, n, serve_upto, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_take_next(struct store *s, struct store_build *ret, struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = take_next_locked(s, ret, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_finish(struct store *s, int64_t id, enum build_state bst, const char *error,
		 struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = exec(s, "BEGIN IMMEDIATE", err);
	if (r == 0)
		r = finish_locked(s, id, bst, error, err);
	if (r == 0)
		r = exec(s, "COMMIT", err);
	if (r < 0)
		exec(s, "ROLLBACK", NULL);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_requeue(struct store *s, int64_t id, uint64_t delay_ms, bool count_attempt,
		  const char *error, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(s->db,
			       "UPDATE builds SET state = 'queued', not_before = ?2, error = ?3,"
			       " attempts = attempts - ?4 WHERE id = ?1 AND state = 'running'",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "requeueing a build");
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now_ms() + (int64_t)delay_ms);
	if (error)
		sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, count_attempt ? 0 : 1);
	if (sqlite3_step(st) != SQLITE_DONE)
		r = db_err(s, err, "requeueing a build");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_set_result(struct store *s, int64_t id, const char *image_id, const char *digest,
		     const char *builder, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(s->db,
			       "UPDATE builds SET image_id = coalesce(?2, image_id),"
			       " digest = coalesce(?3, digest), builder = coalesce(?4, builder)"
			       " WHERE id = ?1",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "recording a build's result");
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	if (image_id && *image_id)
		sqlite3_bind_text(st, 2, image_id, -1, SQLITE_STATIC);
	if (digest && *digest)
		sqlite3_bind_text(st, 3, digest, -1, SQLITE_STATIC);
	if (builder && *builder)
		sqlite3_bind_text(st, 4, builder, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		r = db_err(s, err, "recording a build's result");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_pushed_from(struct store *s, const char *image, const char *commit, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(s->db,
			       "SELECT 1 FROM builds WHERE image = ? AND commit_sha = ?"
			       " AND digest IS NOT NULL LIMIT 1",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "looking up pushed images");
		goto out;
	}
	sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, commit, -1, SQLITE_STATIC);
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		r = 1;
		break;
	case SQLITE_DONE:
		r = 0;
		break;
	default:
		r = db_err(s, err, "looking up pushed images");
	}
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_next_retry(struct store *s, int64_t *ret_ms, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(s->db,
			       "SELECT min(not_before) FROM builds WHERE state = 'queued'"
			       " AND not_before > ?",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "finding the next retry");
		goto out;
	}
	sqlite3_bind_int64(st, 1, now_ms());
	/* an aggregate always gives one row; NULL (0) when none waits */
	if (sqlite3_step(st) != SQLITE_ROW)
		r = db_err(s, err, "finding the next retry");
	else
		*ret_ms = sqlite3_column_int64(st, 0);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_counts(struct store *s, unsigned *queued, unsigned *running, struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = counts_locked(s, queued, running, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* The INSERT that records a delivery or a trigger (id NULL: a trigger's id
 * is made here, unique without a counter that a restart would start over). */
static int delivery_stmt(struct store *s, sqlite3_stmt **ret, struct kiln_err *err)
{
	if (sqlite3_prepare_v2(
		s->db,
		"INSERT OR IGNORE INTO deliveries (repository, id, received_at,"
		" source, branch, before_sha) VALUES (?1,"
		" coalesce(?2, ?4 || '-' || lower(hex(randomblob(8)))), ?3, ?4, ?5, ?6)",
		-1, ret, NULL) != SQLITE_OK)
		return db_err(s, err, "recording a delivery");
	return 0;
}

/* 1 when recorded, 0 when (repo, id) was there already; st is reset. */
static int insert_delivery(struct store *s, sqlite3_stmt *st, const char *repo, const char *source,
			   const char *id, const char *branch, const char *before,
			   struct kiln_err *err)
{
	int r;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
	if (id)
		sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now_ms());
	sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC);
	if (branch)
		sqlite3_bind_text(st, 5, branch, -1, SQLITE_STATIC);
	if (before)
		sqlite3_bind_text(st, 6, before, -1, SQLITE_STATIC);
	r = sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(s->db)
					    : db_err(s, err, "recording a delivery");
	sqlite3_reset(st);
	return r;
}

static int record_delivery_locked(struct store *s, const char *repo, const char *source,
				  const char *id, const char *branch, const char *before,
				  struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = delivery_stmt(s, &st, err);

	if (r == 0)
		r = insert_delivery(s, st, repo, source, id, branch, before, err);
	sqlite3_finalize(st);
	return r;
}

int store_record_delivery(struct store *s, const char *repo, const char *id, const char *branch,
			  const char *before, struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = record_delivery_locked(s, repo, "webhook", id, branch, before, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_record_deliveries(struct store *s, struct store_delivery *v, size_t n,
			    struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r;

	pthread_mutex_lock(&s->lock);
	/* failures named as a single delivery's are (health shows the message) */
	r = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK
		? delivery_stmt(s, &st, err)
		: db_err(s, err, "recording a delivery");
	for (size_t i = 0; r >= 0 && i < n; i++) {
		r = insert_delivery(s, st, v[i].repo, "webhook", v[i].id, v[i].branch, v[i].before,
				    err);
		v[i].fresh = r > 0;
	}
	sqlite3_finalize(st);
	if (r >= 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		r = db_err(s, err, "recording a delivery");
	if (r < 0 && !sqlite3_get_autocommit(s->db))
		exec(s, "ROLLBACK", NULL); /* none of the batch is recorded */
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? r : 0;
}

int store_record_trigger(struct store *s, const char *repo, const char *branch,
			 struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = record_delivery_locked(s, repo, "trigger", NULL, branch, NULL, err);
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? r : 0;
}

int store_delivery_hint(struct store *s, const char *repo, const char *branch,
			char ret_sha[STORE_SHA_LEN + 1], struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = -ENOENT;

	pthread_mutex_lock(&s->lock);
	/* the first push not yet served: where the branch was before it */
	if (sqlite3_prepare_v2(s->db,
			       "SELECT before_sha FROM deliveries WHERE repository = ? AND"
			       " branch = ? AND handled = 0 AND length(before_sha) = 40"
			       " ORDER BY received_at, rowid LIMIT 1",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "reading a delivery's hint");
		goto out;
	}
	sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		memcpy(ret_sha, sqlite3_column_text(st, 0), STORE_SHA_LEN);
		ret_sha[STORE_SHA_LEN] = '\0';
		r = 0;
		break;
	case SQLITE_DONE:
		break;
	default:
		r = db_err(s, err, "reading a delivery's hint");
	}
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int deliveries_handled_locked(struct store *s, const char *repo, int64_t upto,
				     struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(
		s->db,
		"UPDATE deliveries SET handled = 1 WHERE repository = ? AND handled = 0"
		" AND rowid <= ?",
		-1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "marking deliveries");
	sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, upto);
	if (sqlite3_step(st) != SQLITE_DONE)
		r = db_err(s, err, "marking deliveries");
	sqlite3_finalize(st);
	return r;
}

int store_deliveries_bound(struct store *s, const char *repo, int64_t *ret, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	*ret = 0;
	pthread_mutex_lock(&s->lock);
	/* deliveries_unhandled holds the rowids: the table is not read */
	if (sqlite3_prepare_v2(s->db,
			       "SELECT max(rowid) FROM deliveries WHERE repository = ? AND"
			       " handled = 0",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "reading deliveries");
	} else {
		sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			*ret = sqlite3_column_int64(st, 0); /* NULL: 0 */
		else
			r = db_err(s, err, "reading deliveries");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_deliveries_handled(struct store *s, const char *repo, int64_t upto, struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	/* Not synced: a mark lost in a crash costs one more poll at the next
	 * start, and the next synced commit (WAL frames stay in order) makes it
	 * durable anyway; under a webhook load a poll follows every batch of
	 * deliveries, and its fsync would cost as much as theirs. */
	exec(s, "PRAGMA synchronous = NORMAL", NULL);
	r = deliveries_handled_locked(s, repo, upto, err);
	/* GitHub keeps redeliveries for three days: older ids need not be kept.
	 * Best effort: a failed prune leaves rows the next one removes. Only
	 * after a mark that marked something (most polls serve no delivery),
	 * and hourly: the prune reads every handled row. */
	if (r == 0 && sqlite3_changes(s->db) > 0 && now_ms() - s->pruned_ms >= 3600 * 1000) {
		s->pruned_ms = now_ms();
		exec(s,
		     "DELETE FROM deliveries WHERE handled = 1"
		     " AND received_at < 1000 * (strftime('%s', 'now') - 4 * 86400)",
		     NULL);
	}
	exec(s, "PRAGMA synchronous = FULL", NULL);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_pending_deliveries(struct store *s, struct strv *ret, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(s->db,
			       "SELECT DISTINCT repository FROM deliveries WHERE handled = 0", -1,
			       &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "reading deliveries");
	} else {
		int rc;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			strv_push(ret, xstrdup((const char *)sqlite3_column_text(st, 0)));
		if (rc != SQLITE_DONE)
			r = db_err(s, err, "reading deliveries");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static char *col_dup(sqlite3_stmt *st, int col)
{
	const char *v = (const char *)sqlite3_column_text(st, col);
	return v ? xstrdup(v) : NULL;
}

/* A build row's columns, in the order build_row_read takes them from col0 on
 * (prefix: the table's alias and a dot, or ""). */
#define BUILD_COLUMNS(p)                                                                           \
	p "id, " p "repository, " p "branch, " p "path, " p "image, " p "commit_sha, " p           \
	  "change, " p "state, " p "error, " p "attempts, " p "created_at, " p "started_at, " p    \
	  "finished_at, " p "digest, " p "builder, (SELECT subject FROM commits c WHERE "          \
	  "c.repository = " p "repository AND c.sha = " p "commit_sha)"

static void build_row_read(sqlite3_stmt *st, int col0, struct store_build_row *b)
{
	b->id = sqlite3_column_int64(st, col0);
	b->repo = col_dup(st, col0 + 1);
	b->branch = col_dup(st, col0 + 2);
	b->path = col_dup(st, col0 + 3);
	b->image = col_dup(st, col0 + 4);
	b->commit = col_dup(st, col0 + 5);
	b->change = col_dup(st, col0 + 6);
	b->state = col_dup(st, col0 + 7);
	b->error = col_dup(st, col0 + 8);
	b->attempts = sqlite3_column_int(st, col0 + 9);
	b->created_at = sqlite3_column_int64(st, col0 + 10);
	b->started_at = sqlite3_column_int64(st, col0 + 11);
	b->finished_at = sqlite3_column_int64(st, col0 + 12);
	b->digest = col_dup(st, col0 + 13);
	b->builder = col_dup(st, col0 + 14);
	b->subject = col_dup(st, col0 + 15);
}

static void build_row_done(struct store_build_row *b)
{
	free(b->repo);
	free(b->branch);
	free(b->path);
	free(b->image);
	free(b->commit);
	free(b->change);
	free(b->state);
	free(b->error);
	free(b->digest);
	free(b->builder);
	free(b->subject);
}

int store_list_builds(struct store *s, const struct store_build_filter *f,
		      struct store_build_row **ret, size_t *ret_n, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	struct store_build_row *rows = NULL;
	struct buf sql = {0};
	size_t n = 0, cap = 0;
	int r = 0, rc;

	*ret = NULL;
	*ret_n = 0;
	pthread_mutex_lock(&s->lock);
	/* Only the filters given are in the statement, so that SQLite can walk
	 * the index that matches them newest first (a "?1 IS NULL OR" term
	 * hides every index and scans the whole table for a rare state). */
	buf_puts(&sql, "SELECT " BUILD_COLUMNS("builds.") " FROM builds WHERE 1");
	if (f->repo)
		buf_puts(&sql, " AND repository = ?1");
	if (f->path)
		buf_puts(&sql, " AND path = ?2");
	if (f->state)
		buf_puts(&sql, " AND state = ?3");
	if (f->id)
		buf_puts(&sql, " AND id = ?4");
	if (f->image)
		buf_puts(&sql, " AND image = ?6");
	if (f->before)
		buf_puts(&sql, " AND id < ?7");
	buf_puts(&sql, " ORDER BY id DESC LIMIT ?5");
	if (sqlite3_prepare_v2(s->db, sql.p, -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "listing builds");
		goto out;
	}
	if (f->repo)
		sqlite3_bind_text(st, 1, f->repo, -1, SQLITE_STATIC);
	if (f->path)
		sqlite3_bind_text(st, 2, f->path, -1, SQLITE_STATIC);
	if (f->state)
		sqlite3_bind_text(st, 3, f->state, -1, SQLITE_STATIC);
	if (f->id)
		sqlite3_bind_int64(st, 4, f->id);
	sqlite3_bind_int(st, 5, f->limit ? (int)f->limit : 100);
	if (f->image)
		sqlite3_bind_text(st, 6, f->image, -1, SQLITE_STATIC);
	if (f->before)
		sqlite3_bind_int64(st, 7, f->before);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_build_row *b;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			rows = xreallocarray(rows, cap, sizeof(*rows));
		}
		b = &rows[n++];
		build_row_read(st, 0, b);
	}
	if (rc != SQLITE_DONE)
		r = db_err(s, err, "listing builds");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	buf_done(&sql);
	if (r < 0) {
		store_build_rows_free(rows, n);
		return r;
	}
	*ret = rows;
	*ret_n = n;
	return 0;
}

void store_build_rows_free(struct store_build_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		build_row_done(&rows[i]);
	free(rows);
}

/* The ids one column of build_deps holds where the other is id. */
static int deps_ids(struct store *s, const char *sql, int64_t id, int64_t **ret, size_t *ret_n,
		    struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int64_t *v = NULL;
	size_t n = 0, cap = 0;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "reading build dependencies");
	sqlite3_bind_int64(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(v);
		return db_err(s, err, "reading build dependencies");
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int store_build_links(struct store *s, int64_t id, int64_t **ret_bases, size_t *ret_nbases,
		      int64_t **ret_dependents, size_t *ret_ndependents, struct kiln_err *err)
{
	int64_t *bases = NULL, *deps = NULL;
	size_t nb = 0, nd = 0;
	int r;

	pthread_mutex_lock(&s->lock);
	r = deps_ids(s, "SELECT base FROM build_deps WHERE build = ?1 ORDER BY base", id, &bases,
		     &nb, err);
	if (r == 0)
		r = deps_ids(s, "SELECT build FROM build_deps WHERE base = ?1 ORDER BY build", id,
			     &deps, &nd, err);
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		free(bases);
		return r;
	}
	*ret_bases = bases;
	*ret_nbases = nb;
	*ret_dependents = deps;
	*ret_ndependents = nd;
	return 0;
}

int store_cancel(struct store *s, int64_t id, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(s->db,
			       "UPDATE builds SET state = 'cancelled', finished_at = ?2"
			       " WHERE id = ?1 AND state = 'queued'",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "cancelling");
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now());
	if (sqlite3_step(st) != SQLITE_DONE) {
		r = db_err(s, err, "cancelling");
	} else if (sqlite3_changes(s->db) == 0) {
		sqlite3_stmt *q = NULL;
		r = kiln_err_set(err, -ENOENT, "no build %lld", (long long)id);
		if (sqlite3_prepare_v2(s->db, "SELECT state FROM builds WHERE id = ?", -1, &q,
				       NULL) != SQLITE_OK) {
			r = db_err(s, err, "cancelling");
		} else {
			sqlite3_bind_int64(q, 1, id);
			switch (sqlite3_step(q)) {
			case SQLITE_ROW:
				r = kiln_err_set(err, -EBUSY, "build %lld is %s, not queued",
						 (long long)id,
						 (const char *)sqlite3_column_text(q, 0));
				break;
			case SQLITE_DONE:
				break;
			default:
				r = db_err(s, err, "cancelling");
			}
		}
		sqlite3_finalize(q);
	}
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int64_t store_queue_build(struct store *s, const char *repo, const char *branch, const char *path,
			  const char *image, const char *commit, const char *subject,
			  struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int64_t r;

	pthread_mutex_lock(&s->lock);
	/* before the build: a summary without its build harms nothing */
	if ((r = record_subject(s, repo, commit, subject, err)) < 0)
		goto out;
	if (sqlite3_prepare_v2(
		s->db,
		"INSERT INTO builds (repository, branch, path, image, commit_sha, change,"
		" state, created_at) VALUES (?, ?, ?, ?, ?, 'rebuild', 'queued', ?)",
		-1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "queueing a rebuild");
		goto out;
	}
	sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, path, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, image, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, commit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now());
	r = sqlite3_step(st) == SQLITE_DONE ? sqlite3_last_insert_rowid(s->db)
					    : db_err(s, err, "queueing a rebuild");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ---- the outbox ---- */

void store_on_commit(struct store *s, store_commit_cb *cb, void *arg)
{
	pthread_mutex_lock(&s->lock);
	s->on_commit = cb;
	s->on_commit_arg = arg;
	pthread_mutex_unlock(&s->lock);
}

/* Rows older than this that were settled are deleted when the sinks are set. */
#define OUTBOX_KEEP_MS (7ll * 24 * 3600 * 1000)

static int outbox_sinks_locked(struct store *s, const struct store_outbox_sink *v, size_t n,
			       struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r;

	r = exec(s, "DELETE FROM outbox_sinks", err);
	if (r == 0 &&
	    sqlite3_prepare_v2(s->db,
			       "INSERT OR REPLACE INTO outbox_sinks (sink, repository, kind,"
			       " states) VALUES (?, ?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK)
		r = db_err(s, err, "setting the outbox's sinks");
	for (size_t i = 0; i < n && r == 0; i++) {
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, v[i].sink, -1, SQLITE_STATIC);
		if (v[i].repo)
			sqlite3_bind_text(st, 2, v[i].repo, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 2);
		sqlite3_bind_text(st, 3, v[i].kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, v[i].states, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			r = db_err(s, err, "setting the outbox's sinks");
	}
	sqlite3_finalize(st);
	st = NULL;
	/* rows of a sink no longer configured would wait for ever */
	if (r == 0 &&
	    sqlite3_prepare_v2(s->db,
			       "UPDATE outbox SET done = 'dropped', done_at = ?1 WHERE done"
			       " IS NULL AND sink NOT IN (SELECT sink FROM outbox_sinks)",
			       -1, &st, NULL) != SQLITE_OK)
		r = db_err(s, err, "dropping the outbox rows of removed sinks");
	if (r == 0) {
		sqlite3_bind_int64(st, 1, now_ms());
		if (sqlite3_step(st) != SQLITE_DONE)
			r = db_err(s, err, "dropping the outbox rows of removed sinks");
	}
	sqlite3_finalize(st);
	st = NULL;
	if (r == 0 &&
	    sqlite3_prepare_v2(s->db, "DELETE FROM outbox WHERE done IS NOT NULL AND done_at < ?1",
			       -1, &st, NULL) != SQLITE_OK)
		r = db_err(s, err, "pruning the outbox");
	if (r == 0) {
		sqlite3_bind_int64(st, 1, now_ms() - OUTBOX_KEEP_MS);
		if (sqlite3_step(st) != SQLITE_DONE)
			r = db_err(s, err, "pruning the outbox");
	}
	sqlite3_finalize(st);
	return r;
}

int store_outbox_sinks(struct store *s, const struct store_outbox_sink *v, size_t n,
		       struct kiln_err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = exec(s, "BEGIN IMMEDIATE", err);
	if (r == 0)
		r = outbox_sinks_locked(s, v, n, err);
	if (r == 0)
		r = exec(s, "COMMIT", err);
	if (r < 0)
		exec(s, "ROLLBACK", NULL);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_outbox_next(struct store *s, const char *sink, struct store_outbox_row *ret,
		      struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = -ENOENT;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(
		s->db,
		"SELECT o.id, o.state, o.error, o.attempts, o.not_before, " BUILD_COLUMNS(
		    "b.") " FROM outbox o JOIN builds b ON b.id = o.build"
			  " WHERE o.sink = ?1 AND o.done IS NULL ORDER BY o.id LIMIT 1",
		-1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "reading the outbox");
		goto out;
	}
	sqlite3_bind_text(st, 1, sink, -1, SQLITE_STATIC);
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		memset(ret, 0, sizeof(*ret));
		ret->id = sqlite3_column_int64(st, 0);
		copy_col(st, 1, ret->state, sizeof(ret->state));
		ret->error = col_dup(st, 2);
		ret->attempts = sqlite3_column_int(st, 3);
		ret->not_before = sqlite3_column_int64(st, 4);
		build_row_read(st, 5, &ret->b);
		r = 0;
		break;
	case SQLITE_DONE:
		break;
	default:
		r = db_err(s, err, "reading the outbox");
	}
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

void store_outbox_row_done(struct store_outbox_row *r)
{
	free(r->error);
	build_row_done(&r->b);
	memset(r, 0, sizeof(*r));
}

int store_outbox_settle(struct store *s, int64_t id, const char *done, int64_t not_before_ms,
			struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(s->db,
			       done ? "UPDATE outbox SET done = ?2, done_at = ?3 WHERE id = ?1"
				    : "UPDATE outbox SET attempts = attempts + 1, not_before = ?3"
				      " WHERE id = ?1 AND done IS NULL",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "settling an outbox row");
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	if (done)
		sqlite3_bind_text(st, 2, done, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, done ? now_ms() : not_before_ms);
	if (sqlite3_step(st) != SQLITE_DONE)
		r = db_err(s, err, "settling an outbox row");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_outbox_backlog(struct store *s, const char *sink, unsigned *ret, struct kiln_err *err)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_prepare_v2(s->db,
			       "SELECT count(*) FROM outbox WHERE sink = ?1 AND done IS NULL", -1,
			       &st, NULL) != SQLITE_OK) {
		r = db_err(s, err, "counting the outbox");
		goto out;
	}
	sqlite3_bind_text(st, 1, sink, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		*ret = (unsigned)sqlite3_column_int(st, 0);
	else
		r = db_err(s, err, "counting the outbox");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return r;
}
