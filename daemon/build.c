/* build.c: the dry-run builder. Owns its jobs; the state is borrowed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kiln/buf.h"
#include "kiln/build.h"
#include "kiln/log.h"
#include "kiln/path.h"

const double build_duration_bounds[BUILD_DURATION_BUCKETS] = {1,   5,	15,  30,   60,
							      120, 300, 600, 1200, 3600};

struct build_job {
	uv_work_t req;
	struct builder *b;
	char *logs_dir;
	double seconds;
	int r;
	struct kiln_err err;
	struct state_build build;
	unsigned queued, running;
};

static void build_work(uv_work_t *req)
{
	struct build_job *j = container_of(req, struct build_job, req);

	struct timespec t0, t1;
	char *path;
	FILE *f;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	j->r = state_take_next(j->b->state, &j->build, &j->err);
	if (j->r == 0) {
		/* the build's log: the dry run says what it would have done */
		path = xasprintf("%s/%" PRId64 ".log", j->logs_dir, j->build.id);
		if ((f = fopen(path, "we")) != NULL) {
			fprintf(
			    f,
			    "dry run: would build %s from repository '%s' branch '%s' at %s (%s)\n",
			    j->build.image, j->build.repo, j->build.branch, j->build.commit,
			    j->build.path[0] ? j->build.path : ".");
			fclose(f);
		}
		free(path);
		j->r = state_finish(j->b->state, j->build.id, BUILD_SUCCEEDED, NULL, &j->err);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	j->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (j->r == 0 || j->r == -ENOENT)
		state_counts(j->b->state, &j->queued, &j->running, NULL);
}

static void build_after(uv_work_t *req, int status)
{
	struct build_job *j = container_of(req, struct build_job, req);
	struct builder *b = j->b;

	(void)status;
	b->running--;
	if (j->r == 0) {
		b->done++;
		b->dur_count++;
		b->dur_sum += j->seconds;
		for (int k = 0; k < BUILD_DURATION_BUCKETS; k++)
			b->dur_buckets[k] += j->seconds <= build_duration_bounds[k];
		log_info("build %" PRId64 ": dry run, would build %s from '%s' %s at %.12s (%s)",
			 j->build.id, j->build.image, j->build.repo, j->build.branch,
			 j->build.commit, path_display(j->build.path));
	} else if (j->r == -ENOENT) {
		b->idle = true;
	} else {
		snprintf(b->last_error, sizeof(b->last_error), "%.250s", j->err.msg);
		log_error("builder: %s", j->err.msg);
		b->idle = true; /* retried on the next kick */
	}
	if (j->r == 0 || j->r == -ENOENT) {
		b->queued = j->queued;
		b->active = j->running;
	}
	free(j->logs_dir);
	free(j);
	if (b->changed)
		b->changed(b, b->arg);
	if (!b->idle)
		builder_kick(b);
}

void builder_init(struct builder *b, uv_loop_t *loop, struct state *state, unsigned concurrency,
		  const char *logs_dir, builder_changed_cb *changed, void *arg)
{
	memset(b, 0, sizeof(*b));
	b->logs_dir = xstrdup(logs_dir);
	mkdir(logs_dir, 0750);
	b->loop = loop;
	b->state = state;
	b->concurrency = concurrency ? concurrency : 1;
	b->changed = changed;
	b->arg = arg;
}

void builder_kick(struct builder *b)
{
	b->idle = false;
	while (!b->draining && b->running < b->concurrency) {
		struct build_job *j = xcalloc(1, sizeof(*j));
		j->b = b;
		j->logs_dir = xstrdup(b->logs_dir);
		b->running++;
		uv_queue_work(b->loop, &j->req, build_work, build_after);
		if (b->running >= 1 && b->queued == 0)
			break; /* probe with one job; more start when it finds work */
	}
}

void builder_drain(struct builder *b)
{
	b->draining = true;
}

void builder_done(struct builder *b)
{
	free(b->logs_dir);
	b->logs_dir = NULL;
}

char *builder_log_path(const struct builder *b, int64_t id)
{
	return xasprintf("%s/%" PRId64 ".log", b->logs_dir, id);
}
