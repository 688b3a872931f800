/* store.h (queue): kilnd's durable store in SQLite (WAL): the last commit seen per
 * repository and branch, and the builds. A plan (its builds and the new
 * last-seen commit) is written in one transaction, so a crash leaves either
 * all of it or none. One struct store per process; it serialises its own
 * use, so worker threads may share it. Blocking: call from workers or at
 * startup only. */
#ifndef KILN_STORE_H
#define KILN_STORE_H

#include <stdint.h>

#include "kiln/buf.h"
#include "kiln/common.h"

#define STORE_SHA_LEN 40

enum build_state {
	BUILD_QUEUED,
	BUILD_RUNNING,
	BUILD_SUCCEEDED,
	BUILD_FAILED,
	BUILD_CANCELLED,
	BUILD_SUPERSEDED,
};

const char *build_state_str(enum build_state s);

/* How a failed build's error starts when the engine or registry failed on
 * every attempt (not the build): commit statuses say error, not failure. */
#define STORE_ERROR_GAVE_UP "engine or registry trouble, retries exhausted: "

struct store;

/* In the state directory: the database and its verified snapshot. */
#define STORE_FILE	  "kilnd.db"
#define STORE_BACKUP_FILE "kilnd.db.backup"

/* Creates dir if needed, locks it against a second kilnd (-EBUSY, with the
 * holder's pid in err), opens or creates the database, migrates its schema
 * and puts builds left running by a crash back in the queue. A database that
 * would start kilnd on a lost state is refused before anything is written to
 * it, with the reason in err: -EUCLEAN when PRAGMA quick_check finds it
 * malformed (or it is no database), -ENODATA when it is empty (new, or
 * emptied to zero length) while dir/mirrors holds an earlier state's
 * mirrors. */
int store_open(const char *dir, struct store **ret, struct kiln_err *err);
struct store *store_close(struct store *s);

/* Writes a snapshot of the database to dir/kilnd.db.backup unless nothing
 * changed since the last one: VACUUM INTO a temporary name, quick_check of
 * the copy, fsync, rename; the old snapshot stays until a new one checks
 * whole. 1 written, 0 unchanged. Blocking (a worker's job); one call at a
 * time; does not hold up the store's other users. */
int store_backup(struct store *s, struct kiln_err *err);
/* kilnd --recover: with dir locked (-EBUSY while kilnd runs), checks the
 * snapshot (-ENOENT none, -EUCLEAN damaged) and the database (-EEXIST when it
 * passes store_open's checks: it is newer than any snapshot), renames the
 * database and its WAL files to kilnd.db.damaged-<unix time>[-wal|-shm] and
 * copies the snapshot in its place. *ret_aside: the damaged file's new name,
 * the caller frees it. */
int store_recover(const char *dir, char **ret_aside, struct kiln_err *err);
/* How many running builds store_open put back in the queue. */
unsigned store_requeued(const struct store *s);

/* The WAL is checkpointed (PASSIVE) after a commit leaves it this long. */
#define STORE_WAL_CHECKPOINT_PAGES 1000

/* Statements of the state that failed since the last commit that wrote to
 * the database (a full disk, an I/O error): what health reports. */
struct store_failure {
	uint64_t count;	   /* 0: none, the state is writable */
	int64_t since;	   /* the first of them, unix seconds */
	int64_t last;	   /* the last of them */
	int sys_errno;	   /* the last one's errno (ENOSPC for a full disk), 0: none known */
	char message[256]; /* the last one's, as its caller got it */
};
/* Copies the record into ret: true while failing. Never blocks on the
 * store's work (any thread). */
bool store_failing(struct store *s, struct store_failure *ret);

/* The branch's last-seen commit: 0 and the sha, or -ENOENT. */
int store_last_seen(struct store *s, const char *repo, const char *branch,
		    char ret_sha[STORE_SHA_LEN + 1], struct kiln_err *err);

struct store_plan_item {
	const char *path;   /* image folder, "" for the root */
	const char *image;  /* reference; NULL for a removed image with an invalid manifest */
	const char *change; /* added, modified, dependency, removed */
	/* folders of images in this plan it builds FROM: its build waits for
	 * theirs, and is cancelled when one of them fails */
	const char *const *depends_on;
	size_t ndepends;
};

/* In one transaction: queues a build per item that is not removed (a queued
 * build of the same repository, branch and path becomes superseded), records
 * removed items as such, keeps `to`'s summary when a build was queued
 * (subject; NULL: not known), sets the branch's last-seen commit to `to`, and
 * marks the repository's webhook deliveries and triggers up to serve_upto
 * (store_deliveries_bound before the poll that made the plan asked the
 * remote; 0: none) handled, so a crash leaves the plan and the marks
 * together or neither. Returns the number of builds queued. */
int store_record_plan(struct store *s, const char *repo, const char *branch, const char *to,
		      const char *subject, const struct store_plan_item *items, size_t n,
		      int64_t serve_upto, struct kiln_err *err);

struct store_build {
	int64_t id;
	char repo[256], branch[256], path[4096], image[1024];
	char commit[STORE_SHA_LEN + 1];
	char change[16];
	enum build_state state;
	int attempts;
};

/* Takes the oldest queued build that may start (its retry delay is over, no
 * build it depends on is queued or running) and marks it running: 0, or
 * -ENOENT. */
int store_take_next(struct store *s, struct store_build *ret, struct kiln_err *err);
/* Ends a build. A failed or cancelled build cancels the queued builds that
 * depend on it, transitively. */
int store_finish(struct store *s, int64_t id, enum build_state st, const char *error,
		 struct kiln_err *err);
/* Puts a running build back in the queue, to start no sooner than delay_ms
 * from now. count_attempt false: this try does not count (the engine was
 * unreachable before the build began). */
int store_requeue(struct store *s, int64_t id, uint64_t delay_ms, bool count_attempt,
		  const char *error, struct kiln_err *err);
/* Records the image id, the pushed digest of the version tag and the
 * builder used; NULL or "" leaves a field as it was. */
int store_set_result(struct store *s, int64_t id, const char *image_id, const char *digest,
		     const char *builder, struct kiln_err *err);
/* Whether kiln has pushed image (a reference) built from commit: 1 or 0. */
int store_pushed_from(struct store *s, const char *image, const char *commit, struct kiln_err *err);
/* The earliest time (unix ms) a queued build waiting for its retry delay
 * may start into ret_ms, 0 when none waits. */
int store_next_retry(struct store *s, int64_t *ret_ms, struct kiln_err *err);
/* Counts by state; ret untouched on failure. */
int store_counts(struct store *s, unsigned *queued, unsigned *running, struct kiln_err *err);

/* A build as the status socket shows it; strings are owned (NULL when unset). */
struct store_build_row {
	int64_t id;
	char *repo, *branch, *path, *image, *commit, *change, *state, *error, *digest;
	char *builder; /* classic or buildkit; NULL: not built (yet) */
	char *subject; /* the commit's summary; NULL: not known */
	int attempts;
	int64_t created_at, started_at, finished_at; /* unix seconds, 0: not yet */
};

struct store_build_filter {
	const char *repo;  /* NULL: any */
	const char *path;  /* image folder; NULL: any */
	const char *state; /* NULL: any */
	int64_t id;	   /* 0: any */
	unsigned limit;	   /* 0: 100 */
	const char *image; /* image reference; NULL: any */
	int64_t before;	   /* only ids below it (a page's cursor); 0: any */
};

/* Newest first. */
int store_list_builds(struct store *s, const struct store_build_filter *f,
		      struct store_build_row **ret, size_t *ret_n, struct kiln_err *err);
void store_build_rows_free(struct store_build_row *rows, size_t n);
/* The builds build id waits for (its bases) and those that wait for it, each
 * ascending; the caller frees both arrays. */
int store_build_links(struct store *s, int64_t id, int64_t **ret_bases, size_t *ret_nbases,
		      int64_t **ret_dependents, size_t *ret_ndependents, struct kiln_err *err);
/* Cancels a queued build: 0, -ENOENT (no such build), -EBUSY (not queued). */
int store_cancel(struct store *s, int64_t id, struct kiln_err *err);
/* Queues one build outside any plan (a rebuild); returns its id. subject:
 * the commit's summary, kept (NULL: not known). */
int64_t store_queue_build(struct store *s, const char *repo, const char *branch, const char *path,
			  const char *image, const char *commit, const char *subject,
			  struct kiln_err *err);

/* Webhook deliveries: 1 when id is new for repo (and now recorded), 0 when it
 * was seen before (a redelivery). branch: the branch pushed to; before: the
 * commit it moved from (40 hex digits), NULL when unknown or a new branch. */
int store_record_delivery(struct store *s, const char *repo, const char *id, const char *branch,
			  const char *before, struct kiln_err *err);
/* A batch of webhook deliveries for store_record_deliveries. */
struct store_delivery {
	const char *repo, *id, *branch, *before; /* borrowed; as store_record_delivery's */
	bool fresh; /* out: true when recorded now, false when seen before */
};
/* Records v[0..n) in one transaction, so one fsync makes them all durable:
 * 0 and every fresh set, or a negative errno and none of them recorded. An
 * id twice in v is fresh the first time only. */
int store_record_deliveries(struct store *s, struct store_delivery *v, size_t n,
			    struct kiln_err *err);
/* A poll asked for (kiln trigger, SIGUSR1), recorded like a delivery so that
 * it is served after a crash; branch may be NULL. */
int store_record_trigger(struct store *s, const char *repo, const char *branch,
			 struct kiln_err *err);
/* The commit the branch was at before its first push not yet served (a
 * delivery's `before`): 0 and the sha, or -ENOENT. A hint from the sender,
 * to be verified against the mirror. */
int store_delivery_hint(struct store *s, const char *repo, const char *branch,
			char ret_sha[STORE_SHA_LEN + 1], struct kiln_err *err);
/* The newest of the repository's deliveries and triggers not yet served
 * (0: none), as a bound for store_deliveries_handled: every one recorded
 * later is newer. Not a time: deliveries recorded in one millisecond are
 * told apart (it is the row's rowid, which SQLite gives as the table's
 * largest plus one, and an unserved row is never deleted). */
int store_deliveries_bound(struct store *s, const char *repo, int64_t *ret, struct kiln_err *err);
/* The repository's deliveries up to `upto` (store_deliveries_bound, read
 * before the remote was asked) led to a completed poll. */
int store_deliveries_handled(struct store *s, const char *repo, int64_t upto, struct kiln_err *err);
/* Repositories with deliveries or triggers not yet followed by a poll (after
 * a crash). */
int store_pending_deliveries(struct store *s, struct strv *ret, struct kiln_err *err);

/* Called after every commit that wrote to the database, on the committing
 * thread (the outbox's wake-up); cb NULL: none. */
typedef void store_commit_cb(void *arg);
void store_on_commit(struct store *s, store_commit_cb *cb, void *arg);

/* The outbox (schema 7): triggers on builds write, in the transaction of
 * each build state change, one row per sink that wants the new state; a
 * status sink's newer row for the same repository, commit and image folder
 * supersedes its unsent older ones. A sink is one commit status reporter
 * (kind "status", one repository) or one notification target (kind
 * "notify", one repository or all: repo NULL). */
struct store_outbox_sink {
	const char *sink;   /* its stable name; never a secret */
	const char *repo;   /* NULL: every repository */
	const char *kind;   /* "status" or "notify" */
	const char *states; /* ",queued,running,failed,": the build states it reports */
};
/* Replaces the sinks (at start), drops the unsent rows of sinks no longer
 * listed and deletes rows settled more than a week ago. */
int store_outbox_sinks(struct store *s, const struct store_outbox_sink *v, size_t n,
		       struct kiln_err *err);

struct store_outbox_row {
	int64_t id;		  /* stable: a delivery's id */
	char state[16];		  /* the build state it reports */
	char *error;		  /* the build's error at that change; NULL: none */
	int attempts;		  /* sends that failed in passing so far */
	int64_t not_before;	  /* unix ms: not to be sent before */
	struct store_build_row b; /* the build as it is now (state: its current one) */
};
/* The sink's oldest unsent row: 0, or -ENOENT. Free it with
 * store_outbox_row_done. */
int store_outbox_next(struct store *s, const char *sink, struct store_outbox_row *ret,
		      struct kiln_err *err);
void store_outbox_row_done(struct store_outbox_row *r);
/* done "sent", "failed" (refused for good): the row is settled; done NULL:
 * one more attempt failed, the row waits until not_before_ms (unix ms). */
int store_outbox_settle(struct store *s, int64_t id, const char *done, int64_t not_before_ms,
			struct kiln_err *err);
/* The sink's unsent rows. */
int store_outbox_backlog(struct store *s, const char *sink, unsigned *ret, struct kiln_err *err);

#endif
