/* status.c (report): kilnd's answers about itself: `kiln status` and
 * `kiln health` JSON, GET /healthz, the sd_notify STATUS= line, and the
 * /metrics families read from the builder's and the watches' counters.
 * Health is the list of reasons kilnd is degraded, gathered from the store's
 * failure record, the watches, the builder's engine state and a statvfs of
 * state_dir. Everything is read on the loop thread when asked; nothing here
 * changes the daemon. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "kiln/notify.h"
#include "kiln/proto.h"
#include "kiln/redact.h"
#include "kiln/status.h"

void status_init(struct status *st, const struct builder *b, struct store *store,
		 const struct config *cfg, struct watch **const *watches, const size_t *nwatches,
		 const bool *stopping)
{
	memset(st, 0, sizeof(*st));
	st->builder = b;
	st->store = store;
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

/* The engine builds run on: where, what it is (its last ping), its state;
 * null for a dry run. */
static json_t *engine_json(const struct builder *b)
{
	const char *what;

	if (!b->docker)
		return json_null();
	what = docker_engine_str(b->docker);
	return json_pack("{s:s, s:o, s:s}", PROTO_F_HOST, docker_host(b->docker), PROTO_F_ENGINE,
			 what[0] ? json_string(what) : json_null(), PROTO_F_STATE,
			 builder_engine_str(b->engine));
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
		if (uv_is_active((const uv_handle_t *)&w->timer))
			json_object_set_new(
			    r, "next_poll_in_ms",
			    json_integer((json_int_t)uv_timer_get_due_in(&w->timer)));
		json_array_append_new(repos, r);
	}
	json_object_set_new(o, "repositories", repos);
	json_object_set_new(o, "queued", json_integer(st->builder->queued));
	json_object_set_new(o, "running", json_integer(st->builder->active));
	json_object_set_new(o, PROTO_F_ENGINE, engine_json(st->builder));
}

/* ---- health: each reason it is degraded ---- */

static void add_reason(json_t *reasons, const char *what, const char *name, int64_t since,
		       json_t *extra, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void add_reason(json_t *reasons, const char *what, const char *name, int64_t since,
		       json_t *extra, const char *fmt, ...)
{
	char msg[STATUS_REASON_MAX];
	va_list ap;
	json_t *r;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	redact_text(msg, sizeof(msg)); /* a poll's error may quote its URL */
	r = json_pack("{s:s, s:o, s:s, s:o}", PROTO_F_WHAT, what, PROTO_F_NAME,
		      name ? json_string(name) : json_null(), PROTO_F_MESSAGE, msg, PROTO_F_SINCE,
		      since > 0 ? json_integer(since) : json_null());
	if (extra) {
		json_object_update(r, extra);
		json_decref(extra);
	}
	json_array_append_new(reasons, r);
}

static void state_reason(const struct status *st, json_t *reasons)
{
	struct store_failure f;

	if (st->store == NULL || !store_failing(st->store, &f))
		return;
	add_reason(reasons, STATUS_REASON_STATE, NULL, f.since,
		   json_pack("{s:I, s:i}", "failures", (json_int_t)f.count, "errno", f.sys_errno),
		   "%s%s%s%s; %" PRIu64 " failed since the last write", f.message,
		   f.sys_errno ? " (" : "", f.sys_errno ? strerror(f.sys_errno) : "",
		   f.sys_errno ? ")" : "", f.count);
}

/* A poll fails now and then (a network blip, a remote restarting): only one
 * failing for longer than health.repository_failing_after is a reason. */
static void repository_reasons(const struct status *st, int64_t now, json_t *reasons)
{
	int64_t after_s = (int64_t)(st->cfg->health_repo_failing_ms / 1000);

	for (size_t i = 0; i < *st->nwatches; i++) {
		const struct watch *w = watch_at(st, i);
		if (w->failing_since == 0 || now - w->failing_since < after_s)
			continue;
		add_reason(reasons, STATUS_REASON_REPOSITORY, w->name, w->failing_since,
			   json_pack("{s:i}", "failures", w->failures),
			   "polls failing (%u in a row): %s", w->failures, w->last_error);
	}
}

static void engine_reason(const struct status *st, json_t *reasons)
{
	const struct builder *b = st->builder;

	/* a dry run has no engine to be down */
	if (b->docker == NULL || b->engine != BUILDER_ENGINE_DOWN)
		return;
	add_reason(reasons, STATUS_REASON_ENGINE, docker_host(b->docker), b->engine_down_since,
		   NULL, "%s", b->engine_error[0] ? b->engine_error : "the engine does not answer");
}

static void human_size(char *dst, size_t size, uint64_t bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	snprintf(dst, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* Checked at each question: statvfs is cheap, and the space used by others
 * on the same file system is no event kilnd would see. f_bavail: what an
 * unprivileged kilnd may still use, not the blocks kept for root. */
static void disk_reason(const struct status *st, json_t *reasons)
{
	uint64_t min = st->cfg->health_min_free_bytes, avail;
	char have[32], want[32];
	struct statvfs sv;

	if (min == 0)
		return;
	if (statvfs(st->cfg->state_dir, &sv) < 0) {
		add_reason(reasons, STATUS_REASON_DISK, st->cfg->state_dir, 0, NULL,
			   "cannot read the free space: %s", strerror(errno));
		return;
	}
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (avail >= min)
		return;
	human_size(have, sizeof(have), avail);
	human_size(want, sizeof(want), min);
	add_reason(reasons, STATUS_REASON_DISK, st->cfg->state_dir, 0,
		   json_pack("{s:I, s:I}", "free_bytes", (json_int_t)avail, "min_free_bytes",
			     (json_int_t)min),
		   "%s free, below health.min_free_space (%s)", have, want);
}

json_t *status_reasons(const struct status *st)
{
	json_t *reasons = json_array();

	state_reason(st, reasons);
	repository_reasons(st, (int64_t)time(NULL), reasons);
	engine_reason(st, reasons);
	disk_reason(st, reasons);
	return reasons;
}

/* One line for a reason: "repository 'images': polls failing ...". */
static void reason_line(json_t *r, char *dst, size_t size)
{
	const char *name = json_string_value(json_object_get(r, PROTO_F_NAME));

	snprintf(dst, size, "%s%s%s%s: %s", json_string_value(json_object_get(r, PROTO_F_WHAT)),
		 name ? " '" : "", name ? name : "", name ? "'" : "",
		 json_string_value(json_object_get(r, PROTO_F_MESSAGE)));
}

int status_health_json(const struct status *st, json_t *o)
{
	json_t *reasons = status_reasons(st);
	bool ok = json_array_size(reasons) == 0;
	char line[STATUS_REASON_MAX + 300];

	json_object_set_new(o, "status", json_string(ok ? "ok" : "degraded"));
	if (!ok) {
		/* for a kiln that knows only the one reason */
		reason_line(json_array_get(reasons, 0), line, sizeof(line));
		json_object_set_new(o, PROTO_F_REASON, json_string(line));
	}
	json_object_set_new(o, PROTO_F_REASONS, reasons);
	return ok ? 0 : -EIO;
}

int status_healthz(const struct status *st, struct buf *json)
{
	json_t *reasons = status_reasons(st), *o;
	bool ok = json_array_size(reasons) == 0;
	char *text;

	o = json_pack("{s:s, s:s, s:I, s:I, s:i, s:i, s:b, s:o}", "status", ok ? "ok" : "degraded",
		      "version", KILN_VERSION, "uptime_s", (json_int_t)(time(NULL) - st->started),
		      "repositories", (json_int_t)*st->nwatches, "queued", st->builder->queued,
		      "running", st->builder->active, "dry_run", st->cfg->dry_run, PROTO_F_REASONS,
		      reasons);
	text = json_dumps(o, JSON_COMPACT);
	buf_printf(json, "%s\n", text ? text : "{}");
	free(text);
	json_decref(o);
	return ok ? 200 : 503;
}

/* STATUS= only when its text changes: hundreds of watches change state all
 * the time, the summary rarely. Degraded comes first, with its first reason:
 * systemctl status shows the line cut to the terminal's width. */
void status_notify(struct status *st)
{
	char line[sizeof(st->notified)], first[STATUS_REASON_MAX + 300] = "", more[32] = "";
	const char *err = "";
	json_t *reasons;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	reasons = status_reasons(st);
	if (json_array_size(reasons) > 0) {
		reason_line(json_array_get(reasons, 0), first, sizeof(first));
		if (json_array_size(reasons) > 1)
			snprintf(more, sizeof(more), " (and %zu more)",
				 json_array_size(reasons) - 1);
	}
	json_decref(reasons);
	for (size_t i = 0; i < *st->nwatches; i++) {
		if (watch_at(st, i)->last_error[0])
			err = watch_at(st, i)->last_error;
	}
	snprintf(line, sizeof(line),
		 "%s%s%.200s%s%s%zu repositories watched; builds: %u queued, %u running%s%.200s",
		 *st->stopping ? "stopping; " : "", first[0] ? "degraded: " : "", first, more,
		 first[0] ? "; " : "", *st->nwatches, st->builder->queued, st->builder->active,
		 !first[0] && err[0] ? "; last error: " : "", first[0] ? "" : err);
	redact_text(line, sizeof(line));
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

static void read_polls(struct metrics_out *o, void *arg)
{
	const struct status *st = arg;
	uint64_t n = 0;

	for (size_t i = 0; i < *st->nwatches; i++)
		n += watch_at(st, i)->polls;
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

static void read_health(struct metrics_out *o, void *arg)
{
	static const char *const kinds[] = {STATUS_REASON_STATE, STATUS_REASON_REPOSITORY,
					    STATUS_REASON_ENGINE, STATUS_REASON_DISK};
	json_t *reasons = status_reasons(arg), *r;

	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		size_t i, n = 0;
		json_array_foreach(reasons, i, r)
		{
			n += strcmp(json_string_value(json_object_get(r, PROTO_F_WHAT)),
				    kinds[k]) == 0;
		}
		metrics_put(o, "what", kinds[k], (double)n);
	}
	json_decref(reasons);
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
	    {"kiln_polls_total", METRICS_COUNTER,
	     "Polls begun (timer, trigger or webhook), whether or not they fetched.", read_polls},
	    {"kiln_fetches_total", METRICS_COUNTER, "Fetches that brought new commits.",
	     read_fetches},
	    {"kiln_fetch_errors_total", METRICS_COUNTER, "Polls or plans that failed.",
	     read_fetch_errors},
	    {"kiln_last_successful_poll_timestamp_seconds", METRICS_GAUGE,
	     "Last successful poll per repository, unix seconds.", read_last_success},
	    {"kiln_health_reasons", METRICS_GAUGE,
	     "Reasons kilnd is degraded now, by kind; all 0 when healthy.", read_health},
	};

	for (size_t i = 0; i < ARRAY_SIZE(fams); i++)
		metrics_read(m, fams[i].name, fams[i].type, fams[i].help, fams[i].read, st);
}
