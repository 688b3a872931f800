/* status.c (report): kilnd's answers about itself: `kiln status` and
 * `kiln health` JSON, GET /healthz, the sd_notify STATUS= line, and the
 * /metrics families read from the builder's and the watches' counters.
 * Everything is read on the loop thread when asked; nothing here changes the
 * daemon. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/notify.h"
#include "kiln/redact.h"
#include "kiln/status.h"

void status_init(struct status *st, const struct builder *b, const struct config *cfg,
		 struct watch **const *watches, const size_t *nwatches, const bool *stopping)
{
	memset(st, 0, sizeof(*st));
	st->builder = b;
	st->cfg = cfg;
	st->watches = watches;
	st->nwatches = nwatches;
	st->stopping = stopping;
	st->started = (int64_t)time(NULL);
}

static struct watch *watch_at(const struct status *st, size_t i)
{
	return (*st->watches)[i];
}

static json_t *branches_json(const struct watch *w)
{
	json_t *branches = json_array();

	for (size_t k = 0; k < w->branches.n; k++) {
		const char *head = k < w->mirror_tips.n ? w->mirror_tips.v[k] : "";
		const char *seen = w->have_seen && k < w->seen.n ? w->seen.v[k] : "";
		json_array_append_new(
		    branches, json_pack("{s:s, s:o, s:o}", "name", w->branches.v[k], "head",
					head[0] ? json_string(head) : json_null(), "last_seen",
					seen[0] ? json_string(seen) : json_null()));
	}
	return branches;
}

void status_json(const struct status *st, json_t *o)
{
	json_t *repos = json_array();

	json_object_set_new(o, "version", json_string(KILN_VERSION));
	json_object_set_new(o, "uptime_s", json_integer(time(NULL) - st->started));
	for (size_t i = 0; i < *st->nwatches; i++) {
		const struct watch *w = watch_at(st, i);
		json_t *r = json_object();
		char *url = redact_dup(w->url);
		json_object_set_new(r, "name", json_string(w->name));
		json_object_set_new(r, "url", json_string(url));
		free(url);
		json_object_set_new(r, "state", json_string(watch_state_str(w->st)));
		json_object_set_new(r, "last_error",
				    w->last_error[0] ? json_string(w->last_error) : json_null());
		json_object_set_new(r, "branches", branches_json(w));
		json_array_append_new(repos, r);
	}
	json_object_set_new(o, "repositories", repos);
	json_object_set_new(o, "queued", json_integer(st->builder->queued));
	json_object_set_new(o, "running", json_integer(st->builder->active));
}

int status_health_json(const struct status *st, json_t *o)
{
	bool ok = st->builder->last_error[0] == '\0';

	json_object_set_new(o, "status", json_string(ok ? "ok" : "degraded"));
	if (!ok)
		json_object_set_new(o, "reason", json_string(st->builder->last_error));
	return ok ? 0 : -EIO;
}

int status_healthz(const struct status *st, struct buf *json)
{
	bool ok = st->builder->last_error[0] == '\0';

	buf_printf(json,
		   "{\"status\":\"%s\",\"version\":\"%s\",\"uptime_s\":%lld,"
		   "\"repositories\":%zu,\"queued\":%u,\"running\":%u,\"dry_run\":%s}\n",
		   ok ? "ok" : "degraded", KILN_VERSION, (long long)(time(NULL) - st->started),
		   *st->nwatches, st->builder->queued, st->builder->active,
		   st->cfg->dry_run ? "true" : "false");
	return ok ? 200 : 503;
}

/* STATUS= only when its text changes: hundreds of watches change state all
 * the time, the summary rarely. */
void status_notify(struct status *st)
{
	char line[sizeof(st->notified)];
	const char *err = st->builder->last_error;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	for (size_t i = 0; i < *st->nwatches; i++) {
		if (watch_at(st, i)->last_error[0])
			err = watch_at(st, i)->last_error;
	}
	snprintf(line, sizeof(line),
		 "%s%zu repositories watched; builds: %u queued, %u running%s%.300s",
		 *st->stopping ? "stopping; " : "", *st->nwatches, st->builder->queued,
		 st->builder->active, err[0] ? "; last error: " : "", err);
	if (strcmp(line, st->notified) == 0)
		return;
	memcpy(st->notified, line, sizeof(line));
	notify_status("%s", line);
}

/* ---- /metrics: read from the counters their owners keep ---- */

static void read_start_time(struct metrics_out *o, void *arg)
{
	const struct status *st = arg;
	metrics_put(o, NULL, NULL, (double)st->started);
}

static void read_queue_depth(struct metrics_out *o, void *arg)
{
	const struct status *st = arg;
	metrics_put(o, NULL, NULL, st->builder->queued);
}

static void read_running(struct metrics_out *o, void *arg)
{
	const struct status *st = arg;
	metrics_put(o, NULL, NULL, st->builder->active);
}

static void read_builds(struct metrics_out *o, void *arg)
{
	const struct builder *b = ((const struct status *)arg)->builder;

	metrics_put(o, "result", "succeeded", (double)b->done);
	metrics_put(o, "result", "failed", (double)b->failed);
	metrics_put(o, "result", "cancelled", (double)b->cancelled);
	metrics_put(o, "result", "retried", (double)b->retried);
}

static void read_durations(struct metrics_out *o, void *arg)
{
	const struct builder *b = ((const struct status *)arg)->builder;

	metrics_put_histogram(o, build_duration_bounds, b->dur_buckets, BUILD_DURATION_BUCKETS,
			      b->dur_count, b->dur_sum);
}

static void read_fetches(struct metrics_out *o, void *arg)
{
	const struct status *st = arg;
	uint64_t n = 0;

	for (size_t i = 0; i < *st->nwatches; i++)
		n += watch_at(st, i)->fetches;
	metrics_put(o, NULL, NULL, (double)n);
}

static void read_fetch_errors(struct metrics_out *o, void *arg)
{
	const struct status *st = arg;
	uint64_t n = 0;

	for (size_t i = 0; i < *st->nwatches; i++)
		n += watch_at(st, i)->errors;
	metrics_put(o, NULL, NULL, (double)n);
}

static void read_last_success(struct metrics_out *o, void *arg)
{
	const struct status *st = arg;

	for (size_t i = 0; i < *st->nwatches; i++)
		metrics_put(o, "repository", watch_at(st, i)->name,
			    (double)watch_at(st, i)->last_success);
}

void status_register_metrics(struct status *st, struct metrics *m)
{
	static const struct {
		const char *name;
		enum metrics_type type;
		const char *help;
		metrics_read_cb *read;
	} fams[] = {
	    {"kiln_process_start_time_seconds", METRICS_GAUGE, "Start time of kilnd, unix seconds.",
	     read_start_time},
	    {"kiln_queue_depth", METRICS_GAUGE, "Builds waiting.", read_queue_depth},
	    {"kiln_running_builds", METRICS_GAUGE, "Builds running.", read_running},
	    {"kiln_builds_total", METRICS_COUNTER, "Builds finished since start, by result.",
	     read_builds},
	    {"kiln_build_duration_seconds", METRICS_HISTOGRAM, "How long builds took.",
	     read_durations},
	    {"kiln_fetches_total", METRICS_COUNTER, "Fetches that brought new commits.",
	     read_fetches},
	    {"kiln_fetch_errors_total", METRICS_COUNTER, "Polls or plans that failed.",
	     read_fetch_errors},
	    {"kiln_last_successful_poll_timestamp_seconds", METRICS_GAUGE,
	     "Last successful poll per repository, unix seconds.", read_last_success},
	};

	for (size_t i = 0; i < ARRAY_SIZE(fams); i++)
		metrics_read(m, fams[i].name, fams[i].type, fams[i].help, fams[i].read, st);
}
