/* watch.h (trigger): one machine per watched repository: idle -> fetching -> planning
 * -> idle, and repacking before idle when a fetch left the mirror with more
 * than repack_packs packs. A poll asks the remote for its branch tips (ls-remote) and
 * fetches only branches that moved; planning turns each moved branch's range
 * into queued builds, recorded with the new last-seen commit in one
 * transaction. The remote conversation is per repository, so the machine is
 * too; each branch keeps its own last-seen commit. */
#ifndef KILN_WATCH_H
#define KILN_WATCH_H

#include <uv.h>

#include "kiln/buf.h"
#include "kiln/catalog.h"
#include "kiln/config.h"
#include "kiln/store.h"

enum watch_state { WATCH_IDLE, WATCH_FETCHING, WATCH_PLANNING, WATCH_REPACKING, WATCH_CLOSED };

struct watch;
struct watch_work;

/* Told on the loop thread. */
struct watch_ops {
	void (*planned)(struct watch *w, unsigned queued, void *arg); /* builds recorded */
	void (*changed)(struct watch *w, void *arg);		      /* state or error */
	void (*closed)(struct watch *w, void *arg);		      /* after watch_stop */
};

struct watch {
	uv_loop_t *loop;
	char *name;
	char *mirror_path;
	struct store *store; /* borrowed */
	struct watch_ops ops;
	void *arg;

	enum watch_state st;
	uv_timer_t timer;
	bool timer_closed;
	bool again;	   /* a trigger came while busy: one more poll at once */
	bool stopping;	   /* watch_stop called */
	bool have_seen;	   /* seen[] holds the last-seen commits */
	unsigned failures; /* consecutive, for the backoff */
	char last_error[sizeof(((struct kiln_err *)0)->msg)];
	struct watch_work *work; /* in flight */

	/* Settings, replaced by watch_reconfigure (which bumps gen); queued work
	 * has its own copy. */
	char *url, *manifest;
	struct strv branches;
	uint64_t interval_ms;
	unsigned repack_packs; /* 0: never */
	enum config_build_on_start build_on_start;
	char *username, *password, *ssh_key_file;
	unsigned gen;

	/* Only ever touched by the one work in flight, on its worker thread. */
	git_repository *mirror;
	struct catalog catalog;

	/* Loop thread; work in flight has a copy. */
	struct strv seen;	 /* per branch: last-seen sha or "" */
	struct strv mirror_tips; /* per branch: the mirror's tip as last known, or "" */
	uint64_t local_fp;	 /* refs fingerprint of a local remote at the last good poll */
	bool local_fp_valid;
	/* watch_trigger counts (deliveries and triggers are recorded before it
	 * is called); served: the count a poll last marked them served at. A
	 * poll with none new leaves the store alone. */
	uint64_t triggers, served;

	/* Counters and times (unix seconds), for metrics. */
	uint64_t polls, fetches, plans, errors;
	int64_t last_success;
	/* unix seconds of the first of the failures in a row; 0: the last poll
	 * worked (health: a repository failing too long) */
	int64_t failing_since;
};

/* Creates the machine for repo (mirror under mirrors_dir) and opens or
 * creates the mirror (no network). */
int watch_new(uv_loop_t *loop, const struct config_repo *repo, const char *mirrors_dir,
	      struct store *store, const struct watch_ops *ops, void *arg, struct watch **ret,
	      struct kiln_err *err);
/* Schedules the first poll: at once when a branch has no last-seen commit in
 * the store (its baseline: a push after it is built, not taken as the
 * starting point), else after a random part of the poll interval, so many
 * repositories do not poll together. Reads the store: at startup or reload. */
void watch_start(struct watch *w);
/* New settings for the same repository name; used from the next poll on. */
void watch_reconfigure(struct watch *w, const struct config_repo *repo);
/* Poll now. A trigger while a poll runs coalesces into one more poll after it;
 * the webhook listener calls this too. */
void watch_trigger(struct watch *w);
/* Stops polling; ops.closed follows once the work in flight is done, and the
 * owner calls watch_free there (or later). */
void watch_stop(struct watch *w);
struct watch *watch_free(struct watch *w);
const char *watch_state_str(enum watch_state s);

#endif
