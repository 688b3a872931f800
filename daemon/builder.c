/* builder.c: the builder. Each build runs in a slot that moves through
 *
 *   take (worker: the next startable build from the state)
 *   -> prepare (worker: manifest at the commit, credentials, log rotation)
 *   -> run (loop: the job on the engine; its output into the log file)
 *   [-> verify (loop: after a hard failure, is the engine still there?)]
 *   -> record (worker: the outcome into the state) -> free
 *
 * The builder owns its slots, the engine client and the timer; the state
 * and the configuration are borrowed. A dry run skips prepare and run. */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kiln/auth.h"
#include "kiln/buf.h"
#include "kiln/backoff.h"
#include "kiln/builder.h"
#include "kiln/err.h"
#include "kiln/job.h"
#include "kiln/log.h"
#include "kiln/path.h"

const double build_duration_bounds[BUILD_DURATION_BUCKETS] = {1,   5,	15,  30,   60,
							      120, 300, 600, 1200, 3600};

#define ENGINE_BACKOFF_MIN 1000u
#define ENGINE_BACKOFF_MAX (60u * 1000)
#define VERIFY_DELAY_MS	   1000u

enum slot_phase { SLOT_TAKE, SLOT_PREPARE, SLOT_RUN, SLOT_VERIFY, SLOT_RECORD };

struct builder_slot {
	struct builder *b;
	struct builder_slot *prev, *next;
	uv_work_t req;
	enum slot_phase phase;
	bool dry_run;
	int r;
	struct kiln_err err;
	struct store_build build;
	struct timespec t0;
	/* prepare's inputs, copied on the loop (the config may be reloaded) */
	char *repo_path, *manifest_name, *source_url, *logs_dir;
	bool overwrite;
	unsigned keep_logs;
	struct config_registry *regs;
	size_t nregs;
	/* prepare's output */
	struct job_spec spec;
	struct job *job;
	struct build_log log;
	bool cancel_requested;
	/* the job's outcome, and record's input */
	int res_code;
	bool res_transient;
	enum build_state final;
	bool requeue, count_attempt;
	uint64_t delay_ms;
	char error[1024];
	char image_id[80], digest[80];
	/* record's output */
	unsigned queued, running;
	int64_t next_retry;
};

static void take_after(uv_work_t *req, int status);
static void record(struct builder_slot *s);

/* ---- logs ---- */

int build_log_open(struct build_log *l, const char *path, uint64_t max, struct kiln_err *err)
{
	struct stat st;

	memset(l, 0, sizeof(*l));
	l->f = fopen(path, "ae");
	if (!l->f)
		return kiln_err_set(err, -errno, "cannot open build log '%s': %s", path,
				    strerror(errno));
	/* a retry appends to the same log */
	if (fstat(fileno(l->f), &st) == 0)
		l->bytes = (uint64_t)st.st_size;
	l->max = max;
	return 0;
}

void build_log_line(struct build_log *l, const char *line, size_t len)
{
	if (!l->f || l->cut)
		return;
	if (l->max && l->bytes + len + 1 > l->max) {
		fprintf(l->f, "[kiln: log cut at %" PRIu64 " bytes (builds.log_max_size)]\n",
			l->max);
		fflush(l->f);
		l->cut = true;
		return;
	}
	fwrite(line, 1, len, l->f);
	fputc('\n', l->f);
	l->bytes += len + 1;
	/* followers (kiln logs -f) read the file as it grows */
	fflush(l->f);
}

void build_log_close(struct build_log *l)
{
	if (l->f)
		fclose(l->f);
	l->f = NULL;
}

/* Keeps the newest `keep` logs besides the current build's (a retry appends
 * to it): build ids only grow, so the smallest go. */
static void rotate_logs(const char *dir, unsigned keep, int64_t current)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long long id = strtoll(e->d_name, &end, 10);
		if (end == e->d_name || strcmp(end, ".log") != 0 || id == current)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			ids = xreallocarray(ids, cap, sizeof(*ids));
		}
		ids[n++] = id;
	}
	closedir(d);
	if (n > keep) {
		/* partial selection: remove everything below the keep-th largest */
		for (size_t i = 0; i < n - keep; i++) {
			size_t min = i;
			for (size_t k = i + 1; k < n; k++)
				if (ids[k] < ids[min])
					min = k;
			int64_t t = ids[i];
			ids[i] = ids[min];
			ids[min] = t;
			char *p = xasprintf("%s/%" PRId64 ".log", dir, ids[i]);
			unlink(p);
			free(p);
		}
	}
	free(ids);
}

/* ---- slots ---- */

static struct builder_slot *slot_new(struct builder *b)
{
	struct builder_slot *s = xcalloc(1, sizeof(*s));

	s->b = b;
	s->dry_run = b->docker == NULL;
	s->next = b->slots;
	if (b->slots)
		b->slots->prev = s;
	b->slots = s;
	b->running++;
	return s;
}

static void slot_free(struct builder_slot *s)
{
	struct builder *b = s->b;

	if (s->prev)
		s->prev->next = s->next;
	else
		b->slots = s->next;
	if (s->next)
		s->next->prev = s->prev;
	b->running--;
	build_log_close(&s->log);
	job_spec_done(&s->spec);
	free(s->repo_path);
	free(s->manifest_name);
	free(s->source_url);
	free(s->logs_dir);
	for (size_t i = 0; i < s->nregs; i++) {
		free(s->regs[i].host);
		free(s->regs[i].username);
		if (s->regs[i].password)
			explicit_bzero(s->regs[i].password, strlen(s->regs[i].password));
		free(s->regs[i].password);
	}
	free(s->regs);
	free(s);
}

static double since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void observe(struct builder *b, double seconds)
{
	b->dur_count++;
	b->dur_sum += seconds;
	for (int k = 0; k < BUILD_DURATION_BUCKETS; k++)
		b->dur_buckets[k] += seconds <= build_duration_bounds[k];
}

/* ---- the engine's health ---- */

static void timer_cb(uv_timer_t *t)
{
	builder_kick(t->data);
}

static void ping_done(struct docker_call *c, void *arg)
{
	struct builder *b = arg;
	uint64_t delay_ms;

	b->pinging = false;
	if (docker_call_result(c) == 0 && docker_call_status(c) == 200) {
		if (b->engine != BUILDER_ENGINE_OK)
			log_info("docker engine %s is up (API %s)", docker_host(b->docker),
				 docker_api_version(b->docker) ? docker_api_version(b->docker)
							       : "?");
		b->engine = BUILDER_ENGINE_OK;
		b->engine_failures = 0;
		b->last_error[0] = '\0';
		if (b->changed)
			b->changed(b, b->arg);
		builder_kick(b);
		return;
	}
	b->engine_failures++;
	delay_ms = backoff_ms(ENGINE_BACKOFF_MIN, b->engine_failures, ENGINE_BACKOFF_MAX);
	/* said once when it goes down, then once per minute at the cap */
	if (b->engine != BUILDER_ENGINE_DOWN ||
	    backoff_exact_ms(ENGINE_BACKOFF_MIN, b->engine_failures, ENGINE_BACKOFF_MAX) ==
		ENGINE_BACKOFF_MAX)
		log_warning("docker engine %s unusable: %s; builds wait (next try in %" PRIu64
			    " ms)",
			    docker_host(b->docker),
			    docker_call_error(c)[0] ? docker_call_error(c) : "no reply", delay_ms);
	b->engine = BUILDER_ENGINE_DOWN;
	snprintf(b->last_error, sizeof(b->last_error), "docker engine %s unusable: %.180s",
		 docker_host(b->docker), docker_call_error(c));
	if (b->changed)
		b->changed(b, b->arg);
	if (!b->draining)
		uv_timer_start(&b->timer, timer_cb, delay_ms, 0);
}

static void ping(struct builder *b)
{
	struct docker_request rq = {.method = "GET", .path = "/_ping", .unversioned = true};

	if (b->pinging)
		return;
	b->pinging = true;
	docker_call_start(b->docker, &rq, ping_done, b);
}

/* ---- take ---- */

static void dry_run(struct builder_slot *s)
{
	char *path = builder_log_path(s->b, s->build.id);
	FILE *f = fopen(path, "we");

	if (f) {
		fprintf(f, "dry run: would build %s from repository '%s' branch '%s' at %s (%s)\n",
			s->build.image, s->build.repo, s->build.branch, s->build.commit,
			s->build.path[0] ? s->build.path : ".");
		fclose(f);
	}
	free(path);
	s->r = store_finish(s->b->store, s->build.id, BUILD_SUCCEEDED, NULL, &s->err);
}

static void take_work(uv_work_t *req)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);

	clock_gettime(CLOCK_MONOTONIC, &s->t0);
	s->r = store_take_next(s->b->store, &s->build, &s->err);
	if (s->r == 0 && s->dry_run)
		dry_run(s);
	if (s->r == 0 || s->r == -ENOENT) {
		store_counts(s->b->store, &s->queued, &s->running, NULL);
		s->next_retry = store_next_retry(s->b->store);
	}
}

static void arm_retry(struct builder *b, int64_t at_ms)
{
	struct timespec now;
	int64_t now_ms, wait;

	if (at_ms <= 0 || b->draining)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	wait = at_ms - now_ms;
	if (wait < 0)
		wait = 0;
	if (uv_is_active((uv_handle_t *)&b->timer) &&
	    uv_timer_get_due_in(&b->timer) <= (uint64_t)wait)
		return;
	uv_timer_start(&b->timer, timer_cb, (uint64_t)wait + 10, 0);
}

static void prepare_work(uv_work_t *req)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	char *host;
	int r;

	/* room for the log this build is about to write */
	rotate_logs(s->logs_dir, s->keep_logs - 1, s->build.id);
	s->r = job_prepare(s->repo_path, s->build.commit, s->build.path, s->manifest_name, &s->spec,
			   &s->err);
	if (s->r < 0)
		return;
	s->spec.id = s->build.id;
	s->spec.push = true;
	s->spec.source_url = s->source_url ? xstrdup(s->source_url) : NULL;
	/* a dependency rebuild re-pushes its tags: the new base is its purpose */
	s->spec.check_tag = !s->overwrite && strcmp(s->build.change, "dependency") != 0;
	host = auth_registry_host(s->spec.m.registry);
	s->spec.registry_auth = auth_header(s->regs, s->nregs, host);
	s->spec.registry_config = auth_config_header(s->regs, s->nregs);
	free(host);
	{
		char *ref = manifest_ref(&s->spec.m, s->spec.m.version);
		r = store_pushed_from(s->b->store, ref, s->spec.commit, NULL);
		s->spec.pushed_before = r == 1;
		free(ref);
	}
}

static void job_log(struct job *j, const char *line, size_t len, void *arg)
{
	struct builder_slot *s = arg;

	(void)j;
	build_log_line(&s->log, line, len);
}

/* Decides what a failed or finished job means for its build, then records
 * it. engine_gone: the engine stopped answering right after the failure. */
static void conclude(struct builder_slot *s, bool engine_gone)
{
	struct builder *b = s->b;
	unsigned max_attempts = b->cfg->retries + 1;
	bool transient = s->res_transient || engine_gone;
	char *line;

	if (s->res_code == 0) {
		s->final = BUILD_SUCCEEDED;
		build_log_line(&s->log, "kiln: build succeeded", 21);
		goto out;
	}
	if (s->res_code == -ECANCELED || s->cancel_requested) {
		s->final = BUILD_CANCELLED;
		snprintf(s->error, sizeof(s->error), "cancelled");
		build_log_line(&s->log, "kiln: build cancelled", 21);
		goto out;
	}
	if (s->res_code == -ECONNREFUSED) {
		/* the engine is gone: wait for it, whatever the attempt count */
		b->engine = BUILDER_ENGINE_UNKNOWN;
		docker_renegotiate(b->docker);
		s->requeue = true;
		s->count_attempt = false;
		s->delay_ms = ENGINE_BACKOFF_MIN;
	} else if (transient && (unsigned)s->build.attempts < max_attempts) {
		if (engine_gone || s->res_code == -ECONNRESET || s->res_code == -EIO)
			b->engine = BUILDER_ENGINE_UNKNOWN;
		docker_renegotiate(b->docker);
		s->requeue = true;
		s->count_attempt = true;
		s->delay_ms = backoff_ms(b->cfg->retry_delay_ms, (unsigned)s->build.attempts,
					 BACKOFF_RETRY_MAX_MS);
	} else {
		s->final = BUILD_FAILED;
	}
	line = s->requeue ? xasprintf("kiln: attempt %d failed: %s; retrying in %" PRIu64 " ms",
				      s->build.attempts, s->error, s->delay_ms)
			  : xasprintf("kiln: build failed: %s", s->error);
	build_log_line(&s->log, line, strlen(line));
	free(line);
out:
	build_log_close(&s->log);
	record(s);
}

static void verify_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void verify_done(struct docker_call *c, void *arg)
{
	struct builder_slot *s = arg;
	bool up = docker_call_result(c) == 0 && docker_call_status(c) == 200;

	if (!up)
		log_warning("build %" PRId64 " %s: the engine stopped answering after the "
			    "failure (%s); the build goes back to the queue",
			    s->build.id, s->build.image, docker_call_error(c));
	conclude(s, !up);
}

static void verify_cb(uv_timer_t *t)
{
	struct builder_slot *s = t->data;
	struct docker_request rq = {.method = "GET", .path = "/_ping", .unversioned = true};

	uv_close((uv_handle_t *)t, verify_timer_closed);
	if (!s->b->docker)
		return; /* the daemon is exiting; the build is requeued at the next start */
	docker_call_start(s->b->docker, &rq, verify_done, s);
}

/* A build that fails because its engine is shutting down can read like a
 * Dockerfile error ("failed to update the store state of sandbox"). Asking
 * the engine a moment later tells the two apart: one that no longer answers
 * had the failure, not the build. */
static void verify_engine(struct builder_slot *s)
{
	uv_timer_t *t = xcalloc(1, sizeof(*t));

	s->phase = SLOT_VERIFY;
	uv_timer_init(s->b->loop, t);
	t->data = s;
	uv_timer_start(t, verify_cb, VERIFY_DELAY_MS, 0);
}

static void job_done(struct job *j, void *arg)
{
	struct builder_slot *s = arg;
	const struct job_result *res = job_result(j);

	snprintf(s->image_id, sizeof(s->image_id), "%s", res->image_id);
	snprintf(s->digest, sizeof(s->digest), "%s", res->digest);
	snprintf(s->error, sizeof(s->error), "%s", res->error);
	s->res_code = res->code;
	s->res_transient = res->transient;
	s->job = job_free(s->job);
	if (s->res_code < 0 && s->res_code != -ECANCELED && s->res_code != -ECONNREFUSED &&
	    !s->res_transient)
		verify_engine(s);
	else
		conclude(s, false);
}

static void prepare_after(uv_work_t *req, int status)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	struct builder *b = s->b;
	char *path;
	char *line;

	(void)status;
	if (s->r < 0 || s->cancel_requested) {
		s->final = s->cancel_requested ? BUILD_CANCELLED : BUILD_FAILED;
		snprintf(s->error, sizeof(s->error), "%s",
			 s->cancel_requested ? "cancelled" : s->err.msg);
		record(s);
		return;
	}
	path = builder_log_path(b, s->build.id);
	if (build_log_open(&s->log, path, b->cfg->log_max_bytes, &s->err) < 0)
		log_warning("build %" PRId64 ": %s; building without a log", s->build.id,
			    s->err.msg);
	free(path);
	line = xasprintf("kiln: build %" PRId64 " attempt %d of %s: repository '%s' branch '%s' "
			 "commit %s (%s), engine %s",
			 s->build.id, s->build.attempts, s->build.image, s->build.repo,
			 s->build.branch, s->build.commit, s->build.change, docker_host(b->docker));
	build_log_line(&s->log, line, strlen(line));
	free(line);
	log_info("build %" PRId64 ": building %s from '%s' %s at %.12s (%s), attempt %d",
		 s->build.id, s->build.image, s->build.repo, s->build.branch, s->build.commit,
		 path_display(s->build.path), s->build.attempts);
	s->spec.test_timeout_ms = b->cfg->test_timeout_ms;
	s->phase = SLOT_RUN;
	s->job = job_start(b->loop, b->docker, &s->spec, job_log, job_done, s);
}

static void start_prepare(struct builder_slot *s)
{
	struct builder *b = s->b;
	const struct config_repo *rc = config_repo(b->cfg, s->build.repo);

	if (!rc) {
		s->final = BUILD_FAILED;
		snprintf(s->error, sizeof(s->error), "repository '%s' is no longer configured",
			 s->build.repo);
		record(s);
		return;
	}
	s->repo_path = xasprintf("%s/%s.git", b->mirrors_dir, rc->name);
	s->manifest_name = xstrdup(rc->manifest);
	s->source_url = xstrdup(rc->url);
	s->overwrite = rc->overwrite_tags;
	s->logs_dir = xstrdup(b->logs_dir);
	s->keep_logs = b->cfg->keep_logs;
	s->nregs = b->cfg->nregistries;
	s->regs = xcalloc(s->nregs + 1, sizeof(*s->regs));
	for (size_t i = 0; i < s->nregs; i++) {
		s->regs[i].host = xstrdup(b->cfg->registries[i].host);
		s->regs[i].username = xstrdup(b->cfg->registries[i].username);
		s->regs[i].password = xstrdup(b->cfg->registries[i].password);
	}
	s->phase = SLOT_PREPARE;
	uv_queue_work(b->loop, &s->req, prepare_work, prepare_after);
}

static void take_after(uv_work_t *req, int status)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	struct builder *b = s->b;

	(void)status;
	if (s->r == 0 || s->r == -ENOENT) {
		b->queued = s->queued;
		b->active = s->running;
		arm_retry(b, s->next_retry);
	}
	if (s->r == -ENOENT) {
		b->idle = true;
		slot_free(s);
	} else if (s->r < 0) {
		snprintf(b->last_error, sizeof(b->last_error), "%.250s", s->err.msg);
		log_error("builder: %s", s->err.msg);
		b->idle = true; /* retried on the next kick */
		slot_free(s);
	} else if (s->dry_run) {
		b->done++;
		observe(b, since(&s->t0));
		log_info("build %" PRId64 ": dry run, would build %s from '%s' %s at %.12s (%s)",
			 s->build.id, s->build.image, s->build.repo, s->build.branch,
			 s->build.commit, path_display(s->build.path));
		slot_free(s);
		b->idle = false; /* a finished build may have unblocked its dependents */
	} else {
		start_prepare(s);
		return;
	}
	if (b->changed)
		b->changed(b, b->arg);
	if (!b->idle)
		builder_kick(b);
}

/* ---- record ---- */

static void record_work(uv_work_t *req)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	struct store *st = s->b->store;

	s->r = 0;
	if (s->image_id[0] || s->digest[0])
		s->r = store_set_result(st, s->build.id, s->image_id, s->digest, &s->err);
	if (s->r == 0) {
		if (s->requeue)
			s->r = store_requeue(st, s->build.id, s->delay_ms, s->count_attempt,
					     s->error, &s->err);
		else
			s->r = store_finish(st, s->build.id, s->final,
					    s->final == BUILD_SUCCEEDED ? NULL : s->error, &s->err);
	}
	store_counts(st, &s->queued, &s->running, NULL);
	s->next_retry = store_next_retry(st);
}

static void record_after(uv_work_t *req, int status)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	struct builder *b = s->b;
	double secs = since(&s->t0);

	(void)status;
	b->queued = s->queued;
	b->active = s->running;
	if (s->r < 0) {
		snprintf(b->last_error, sizeof(b->last_error), "%.250s", s->err.msg);
		log_error("build %" PRId64 ": recording its outcome: %s", s->build.id, s->err.msg);
	} else if (s->requeue) {
		b->retried++;
		log_warning("build %" PRId64 " %s: %s; back in the queue, retry in %" PRIu64 " ms",
			    s->build.id, s->build.image, s->error, s->delay_ms);
	} else if (s->final == BUILD_SUCCEEDED) {
		b->done++;
		observe(b, secs);
		log_info("build %" PRId64 ": %s succeeded in %.1fs%s%s", s->build.id,
			 s->build.image, secs, s->digest[0] ? ", pushed " : "", s->digest);
	} else if (s->final == BUILD_CANCELLED) {
		b->cancelled++;
		log_notice("build %" PRId64 " %s: cancelled", s->build.id, s->build.image);
	} else {
		b->failed++;
		observe(b, secs);
		log_error("build %" PRId64 " %s failed: %s", s->build.id, s->build.image, s->error);
	}
	arm_retry(b, s->next_retry);
	slot_free(s);
	if (b->changed)
		b->changed(b, b->arg);
	builder_kick(b);
}

static void record(struct builder_slot *s)
{
	s->phase = SLOT_RECORD;
	uv_queue_work(s->b->loop, &s->req, record_work, record_after);
}

/* ---- the builder ---- */

void builder_init(struct builder *b, uv_loop_t *loop, struct store *store, const struct config *cfg,
		  struct docker *docker, const char *mirrors_dir, const char *logs_dir,
		  builder_changed_cb *changed, void *arg)
{
	memset(b, 0, sizeof(*b));
	b->logs_dir = xstrdup(logs_dir);
	mkdir(logs_dir, 0750);
	b->mirrors_dir = xstrdup(mirrors_dir);
	b->loop = loop;
	b->store = store;
	b->cfg = cfg;
	b->docker = docker;
	b->concurrency = cfg->concurrency ? cfg->concurrency : 1;
	b->changed = changed;
	b->arg = arg;
	uv_timer_init(loop, &b->timer);
	b->timer.data = b;
	/* a pending retry must not keep a stopping daemon alive */
	uv_unref((uv_handle_t *)&b->timer);
}

void builder_kick(struct builder *b)
{
	b->idle = false;
	if (b->draining)
		return;
	if (b->docker && b->engine != BUILDER_ENGINE_OK) {
		ping(b);
		return;
	}
	while (b->running < b->concurrency) {
		struct builder_slot *s = slot_new(b);
		s->phase = SLOT_TAKE;
		uv_queue_work(b->loop, &s->req, take_work, take_after);
		if (b->queued == 0)
			break; /* probe with one slot; more start when it finds work */
	}
}

void builder_drain(struct builder *b)
{
	b->draining = true;
	uv_timer_stop(&b->timer);
}

int builder_cancel(struct builder *b, int64_t id)
{
	for (struct builder_slot *s = b->slots; s; s = s->next) {
		if (s->build.id != id || s->phase == SLOT_TAKE || s->phase == SLOT_RECORD)
			continue;
		if (s->phase == SLOT_RUN)
			job_cancel(s->job);
		else
			s->cancel_requested = true;
		return 0;
	}
	return -ENOENT;
}

void builder_done(struct builder *b)
{
	b->docker = docker_free(b->docker);
	if (!uv_is_closing((uv_handle_t *)&b->timer))
		uv_close((uv_handle_t *)&b->timer, NULL);
	free(b->logs_dir);
	free(b->mirrors_dir);
	b->logs_dir = b->mirrors_dir = NULL;
}

char *builder_log_path(const struct builder *b, int64_t id)
{
	return xasprintf("%s/%" PRId64 ".log", b->logs_dir, id);
}
