/* build.h: the builder seam. It takes queued builds from the state, up to
 * `concurrency` at a time, on worker threads, and records how each ended.
 * This build has one builder, the dry run: it logs what it would build (image
 * reference, repository, commit) and records the build as succeeded. The
 * Docker builder will take the same place. */
#ifndef KILN_BUILD_H
#define KILN_BUILD_H

#include <uv.h>

#include "kiln/state.h"

struct builder;

#define BUILD_DURATION_BUCKETS 10
extern const double build_duration_bounds[BUILD_DURATION_BUCKETS]; /* seconds; +Inf implied */

typedef void builder_changed_cb(struct builder *b, void *arg);

struct builder {
	uv_loop_t *loop;
	struct state *state; /* borrowed */
	unsigned concurrency;
	unsigned running; /* jobs in flight */
	bool draining;	  /* stopping: take nothing new */
	bool idle;	  /* the last take found the queue empty */
	unsigned queued;  /* last counts seen, for status */
	unsigned active;
	char last_error[256];
	uint64_t done;
	/* build durations in seconds, Prometheus-style cumulative buckets */
	uint64_t dur_buckets[BUILD_DURATION_BUCKETS];
	uint64_t dur_count;
	double dur_sum;
	char *logs_dir; /* one file per build: <id>.log */
	builder_changed_cb *changed;
	void *arg;
};

/* logs_dir: where each build's log file goes (created if missing). */
void builder_init(struct builder *b, uv_loop_t *loop, struct state *state, unsigned concurrency,
		  const char *logs_dir, builder_changed_cb *changed, void *arg);
void builder_done(struct builder *b);
/* The path of a build's log file; the caller frees it. */
char *builder_log_path(const struct builder *b, int64_t id);
/* There may be new queued builds: start jobs up to the concurrency. */
void builder_kick(struct builder *b);
/* Take nothing new; running jobs finish. */
void builder_drain(struct builder *b);

#endif
