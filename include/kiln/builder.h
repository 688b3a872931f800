/* builder.h (build): the builder. It takes queued builds from the store, up to
 * `concurrency` at a time, runs each as a job on a Docker engine (or, with
 * builds.dry_run, only logs what it would build), keeps each build's log
 * under <state_dir>/logs, and records how each ended: succeeded, failed,
 * cancelled, or back in the queue with a delay when the engine or the
 * registry failed in passing. While the engine cannot be reached nothing is
 * taken: the builder pings it with a growing delay and says why in
 * last_error. */
#ifndef KILN_BUILDER_H
#define KILN_BUILDER_H

#include <stdio.h>
#include <sys/queue.h>
#include <uv.h>

#include "kiln/config.h"
#include "kiln/docker.h"
#include "kiln/store.h"

struct builder;
struct builder_slot;

#define BUILD_DURATION_BUCKETS 10
extern const double build_duration_bounds[BUILD_DURATION_BUCKETS]; /* seconds; +Inf implied */

typedef void builder_changed_cb(struct builder *b, void *arg);

enum builder_engine { BUILDER_ENGINE_UNKNOWN, BUILDER_ENGINE_OK, BUILDER_ENGINE_DOWN };
const char *builder_engine_str(enum builder_engine e);

struct builder {
	uv_loop_t *loop;
	struct store *store;	  /* borrowed */
	const struct config *cfg; /* borrowed; read on the loop thread only */
	struct docker *docker;	  /* owned; NULL in a dry run */
	char *mirrors_dir;
	unsigned concurrency;
	unsigned running; /* slots in flight */
	bool draining;	  /* stopping: take nothing new */
	bool idle;	  /* the last take found nothing to start */
	unsigned queued;  /* last counts seen, for status */
	unsigned active;
	/* what keeps builds from running (engine, state store); "" when nothing */
	char last_error[256];
	enum builder_engine engine;
	bool pinging;
	unsigned engine_failures; /* pings failed in a row, for the backoff */
	uv_timer_t timer;	  /* the next engine ping, or the next retry's start */
	uint64_t done;		  /* succeeded */
	uint64_t failed, cancelled, retried;
	/* build durations in seconds, Prometheus-style cumulative buckets */
	uint64_t dur_buckets[BUILD_DURATION_BUCKETS];
	uint64_t dur_count;
	double dur_sum;
	/* while the engine is DOWN (health): since when (unix seconds), and why */
	int64_t engine_down_since;
	char engine_error[256];
	char *logs_dir;			  /* one file per build: <id>.log */
	TAILQ_HEAD(, builder_slot) slots; /* every build in flight, newest first */
	builder_changed_cb *changed;
	void *arg;
};

/* docker: the engine client, taken (NULL for a dry run). cfg stays the
 * caller's and may be replaced between loop turns (a reload). */
void builder_init(struct builder *b, uv_loop_t *loop, struct store *store, const struct config *cfg,
		  struct docker *docker, const char *mirrors_dir, const char *logs_dir,
		  builder_changed_cb *changed, void *arg);
/* Closes the engine client and the timer; run the loop once more after. */
void builder_done(struct builder *b);
/* The path of a build's log file; the caller frees it. */
char *builder_log_path(const struct builder *b, int64_t id);
/* There may be new queued builds: start jobs up to the concurrency. */
void builder_kick(struct builder *b);
/* A plan queued n builds: start jobs for them up to the concurrency. */
void builder_planned(struct builder *b, unsigned n);
/* Take nothing new; running jobs finish. */
void builder_drain(struct builder *b);
/* Cancels a running build: 0, or -ENOENT when it is not running here. */
int builder_cancel(struct builder *b, int64_t id);

/* A build log with a size cap, shared with `kiln build`. */
struct build_log {
	FILE *f;
	uint64_t bytes, max;
	bool cut;
};
int build_log_open(struct build_log *l, const char *path, uint64_t max, struct kiln_err *err);
void build_log_line(struct build_log *l, const char *line, size_t len);
void build_log_close(struct build_log *l);

#endif
