/* builder.c (build): the builder. Each build runs in a slot that moves through
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
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* a failed read of the queue's counts leaves the retry timer unknown: look
 * again this soon rather than leave a requeued build waiting for a trigger */
#define QUEUE_REREAD_MS 5000u

enum slot_phase { SLOT_TAKE, SLOT_PREPARE, SLOT_RUN, SLOT_VERIFY, SLOT_RECORD };

/* The queue as a worker saw it after its step, for status and the retry timer. */
struct queue_view {
	int r; /* < 0: not read; err says why */
	struct kiln_err err;
	unsigned queued, running;
	int64_t next_retry;
};

struct builder_slot {
	struct builder *b;
	TAILQ_ENTRY(builder_slot) link; /* b->slots */
	uv_work_t req;
	enum slot_phase phase;
	bool dry_run;
	int r; /* the last worker step's result */
	/* the one error: a step's failure, then the build's (what record stores) */
	struct kiln_err err;
	struct store_build build;
	struct timespec t0;
	/* prepare's inputs, copied on the loop (the config may be reloaded);
	 * policy's strings point at the copies */
	char *repo_path, *manifest_name, *source_url, *logs_dir, *builder, *network;
	bool pull;
	unsigned keep_logs;
	struct config_registry *regs;
	size_t nregs;
	struct config_secret *secrets; /* the repository's, names and paths only */
	size_t nsecrets;
	struct job_policy policy;
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
	char image_id[80], digest[80], used_builder[16];
	/* record's output */
	struct queue_view view;
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

static const char *slot_phase_str(enum slot_phase p)
{
	static const char *const names[] = {"take", "prepare", "run", "verify", "record"};
	return (unsigned)p < ARRAY_SIZE(names) ? names[p] : "?";
}

static void slot_set_phase(struct builder_slot *s, enum slot_phase p)
{
	log_debug("build %" PRId64 ": slot %s -> %s", s->build.id, slot_phase_str(s->phase),
		  slot_phase_str(p));
	s->phase = p;
}

static struct builder_slot *slot_new(struct builder *b)
{
	struct builder_slot *s = xcalloc(1, sizeof(*s));

	s->b = b;
	s->dry_run = b->docker == NULL;
	s->phase = SLOT_TAKE;
	TAILQ_INSERT_HEAD(&b->slots, s, link);
	b->running++;
	return s;
}

static void slot_free(struct builder_slot *s)
{
	struct builder *b = s->b;

	TAILQ_REMOVE(&b->slots, s, link);
	b->running--;
	build_log_close(&s->log);
	job_spec_done(&s->spec);
	free(s->repo_path);
	free(s->manifest_name);
	free(s->source_url);
	free(s->logs_dir);
	free(s->builder);
	free(s->network);
	for (size_t i = 0; i < s->nregs; i++) {
		free(s->regs[i].host);
		free(s->regs[i].username);
		if (s->regs[i].password)
			explicit_bzero(s->regs[i].password, strlen(s->regs[i].password));
		free(s->regs[i].password);
	}
	free(s->regs);
	for (size_t i = 0; i < s->nsecrets; i++) {
		free(s->secrets[i].id);
		free(s->secrets[i].file);
	}
	free(s->secrets);
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

static void notify_changed(struct builder *b)
{
	if (b->changed)
		b->changed(b, b->arg);
}

/* ---- the engine's health ---- */

const char *builder_engine_str(enum builder_engine e)
{
	static const char *const names[] = {"unknown", "ok", "down"};
	return (unsigned)e < ARRAY_SIZE(names) ? names[e] : "?";
}

static void set_engine(struct builder *b, enum builder_engine e)
{
	if (b->engine == e)
		return;
	log_debug("builder: engine %s -> %s", builder_engine_str(b->engine), builder_engine_str(e));
	if (e == BUILDER_ENGINE_DOWN)
		b->engine_down_since = (int64_t)time(NULL);
	else if (e == BUILDER_ENGINE_OK)
		b->engine_down_since = 0;
	b->engine = e;
}

static void timer_cb(uv_timer_t *t)
{
	builder_kick(t->data);
}

static void engine_up(struct builder *b)
{
	if (b->engine != BUILDER_ENGINE_OK)
		log_info("engine: %s at %s is up", docker_engine_str(b->docker),
			 docker_host(b->docker));
	set_engine(b, BUILDER_ENGINE_OK);
	b->engine_failures = 0;
	b->engine_error[0] = '\0';
	b->last_error[0] = '\0';
	notify_changed(b);
	builder_kick(b);
}

static void engine_down(struct builder *b, const char *why)
{
	uint64_t delay_ms;

	b->engine_failures++;
	delay_ms = backoff_ms(ENGINE_BACKOFF_MIN, b->engine_failures, ENGINE_BACKOFF_MAX);
	/* said once when it goes down, then once per minute at the cap */
	if (b->engine != BUILDER_ENGINE_DOWN ||
	    backoff_exact_ms(ENGINE_BACKOFF_MIN, b->engine_failures, ENGINE_BACKOFF_MAX) ==
		ENGINE_BACKOFF_MAX)
		log_warning("docker engine %s unusable: %s; builds wait (next try in %" PRIu64
			    " ms)",
			    docker_host(b->docker), why[0] ? why : "no reply", delay_ms);
	set_engine(b, BUILDER_ENGINE_DOWN);
	snprintf(b->engine_error, sizeof(b->engine_error), "docker engine %s unusable: %.180s",
		 docker_host(b->docker), why[0] ? why : "no reply");
	snprintf(b->last_error, sizeof(b->last_error), "%s", b->engine_error);
	notify_changed(b);
	if (!b->draining)
		uv_timer_start(&b->timer, timer_cb, delay_ms, 0);
}

static void ping_done(struct docker_call *c, void *arg)
{
	struct builder *b = arg;

	b->pinging = false;
	if (docker_call_result(c) == 0 && docker_call_status(c) == 200)
		engine_up(b);
	else
		engine_down(b, docker_call_error(c));
}

static void ping(struct builder *b)
{
	struct docker_request rq = {.method = "GET", .path = "/_ping", .unversioned = true};

	if (b->pinging)
		return;
	b->pinging = true;
	docker_call_start(b->docker, &rq, ping_done, b);
}

/* ---- the queue ---- */

/* On a worker, after a take or a record. */
static void read_queue(struct store *st, struct queue_view *v)
{
	v->r = store_counts(st, &v->queued, &v->running, &v->err);
	if (v->r == 0)
		v->r = store_next_retry(st, &v->next_retry, &v->err);
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

/* On the loop: the counts for status, and the timer for the next retry. */
static void apply_queue(struct builder *b, const struct queue_view *v)
{
	struct timespec now;

	if (v->r < 0) {
		log_warning("builder: reading the queue: %s; looking again in %u ms", v->err.msg,
			    QUEUE_REREAD_MS);
		clock_gettime(CLOCK_REALTIME, &now);
		arm_retry(b, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + QUEUE_REREAD_MS);
		return;
	}
	b->queued = v->queued;
	b->active = v->running;
	arm_retry(b, v->next_retry);
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
	if (s->r == 0 || s->r == -ENOENT)
		read_queue(s->b->store, &s->view);
}

static void start_prepare(struct builder_slot *s);

static void take_after(uv_work_t *req, int status)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	struct builder *b = s->b;

	(void)status;
	if (s->r == 0 || s->r == -ENOENT)
		apply_queue(b, &s->view);
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
	notify_changed(b);
	if (!b->idle)
		builder_kick(b);
}

/* ---- prepare ---- */

static void prepare_work(uv_work_t *req)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);

	/* room for the log this build is about to write */
	rotate_logs(s->logs_dir, s->keep_logs - 1, s->build.id);
	s->r = job_prepare(s->repo_path, s->build.commit, s->build.path, s->manifest_name,
			   &s->policy, &s->spec, &s->err);
}

static void record(struct builder_slot *s);
static void conclude(struct builder_slot *s, bool engine_gone);
static void job_done(struct job *j, void *arg);

static void job_log(struct job *j, const char *line, size_t len, void *arg)
{
	struct builder_slot *s = arg;

	(void)j;
	build_log_line(&s->log, line, len);
}

static void open_log(struct builder_slot *s)
{
	struct builder *b = s->b;
	char *path = builder_log_path(b, s->build.id), *line;

	if (build_log_open(&s->log, path, b->cfg->log_max_bytes, &s->err) < 0) {
		log_warning("build %" PRId64 ": %s; building without a log", s->build.id,
			    s->err.msg);
		s->err = (struct kiln_err){0}; /* handled: the build goes on */
	}
	free(path);
	line = xasprintf("kiln: build %" PRId64 " attempt %d of %s: repository '%s' branch '%s' "
			 "commit %s (%s), engine %s",
			 s->build.id, s->build.attempts, s->build.image, s->build.repo,
			 s->build.branch, s->build.commit, s->build.change, docker_host(b->docker));
	build_log_line(&s->log, line, strlen(line));
	free(line);
}

static void prepare_after(uv_work_t *req, int status)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	struct builder *b = s->b;

	(void)status;
	if (s->r < 0 || s->cancel_requested) {
		/* -EAGAIN: the store could not answer; retried like an engine hiccup */
		s->res_code = s->r < 0 ? s->r : -ECANCELED;
		s->res_transient = s->r == -EAGAIN;
		conclude(s, false);
		return;
	}
	open_log(s);
	log_info("build %" PRId64 ": building %s from '%s' %s at %.12s (%s), attempt %d",
		 s->build.id, s->build.image, s->build.repo, s->build.branch, s->build.commit,
		 path_display(s->build.path), s->build.attempts);
	slot_set_phase(s, SLOT_RUN);
	s->job = job_start(b->loop, b->docker, &s->spec, job_log, job_done, s);
}

static void copy_registries(struct builder_slot *s, const struct config *cfg)
{
	s->nregs = cfg->nregistries;
	s->regs = xcalloc(s->nregs + 1, sizeof(*s->regs));
	for (size_t i = 0; i < s->nregs; i++) {
		s->regs[i].host = xstrdup(cfg->registries[i].host);
		s->regs[i].username = xstrdup(cfg->registries[i].username);
		s->regs[i].password = xstrdup(cfg->registries[i].password);
	}
}

static void start_prepare(struct builder_slot *s)
{
	struct builder *b = s->b;
	const struct config_repo *rc = config_repo(b->cfg, s->build.repo);

	if (!rc) {
		s->final = BUILD_FAILED;
		kiln_err_set(&s->err, -ENOENT, "repository '%s' is no longer configured",
			     s->build.repo);
		record(s);
		return;
	}
	s->repo_path = xasprintf("%s/%s.git", b->mirrors_dir, rc->name);
	s->manifest_name = xstrdup(rc->manifest);
	s->source_url = xstrdup(rc->url);
	s->logs_dir = xstrdup(b->logs_dir);
	s->keep_logs = b->cfg->keep_logs;
	s->builder = b->cfg->builder ? xstrdup(b->cfg->builder) : NULL;
	s->network = b->cfg->network ? xstrdup(b->cfg->network) : NULL;
	s->pull = b->cfg->pull;
	copy_registries(s, b->cfg);
	s->nsecrets = rc->nsecrets;
	s->secrets = xcalloc(rc->nsecrets + 1, sizeof(*s->secrets));
	for (size_t i = 0; i < rc->nsecrets; i++) {
		s->secrets[i].id = xstrdup(rc->secrets[i].id);
		s->secrets[i].file = xstrdup(rc->secrets[i].file);
	}
	s->policy = (struct job_policy){
	    .id = s->build.id,
	    .push = true,
	    .overwrite_tags = rc->overwrite_tags,
	    .dependency = strcmp(s->build.change, "dependency") == 0,
	    .source_url = s->source_url,
	    .registries = s->regs,
	    .nregistries = s->nregs,
	    .test_timeout_ms = b->cfg->test_timeout_ms,
	    .builder = s->builder,
	    .network = s->network,
	    .pull = s->pull,
	    .secrets = s->secrets,
	    .nsecrets = s->nsecrets,
	    .secrets_where = "the repository's secrets in kilnd.yaml",
	    .store = b->store,
	};
	slot_set_phase(s, SLOT_PREPARE);
	uv_queue_work(b->loop, &s->req, prepare_work, prepare_after);
}

/* ---- run ---- */

static void verify_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void verify_done(struct docker_call *c, void *arg)
{
	struct builder_slot *s = arg;
	bool up = docker_call_result(c) == 0 && docker_call_status(c) == 200;
	size_t n = strlen(s->err.msg);

	/* the cause goes with the build's error: record logs it once */
	if (!up)
		snprintf(s->err.msg + n, sizeof(s->err.msg) - n,
			 " (the engine stopped answering after it: %s)", docker_call_error(c));
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

	slot_set_phase(s, SLOT_VERIFY);
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
	snprintf(s->used_builder, sizeof(s->used_builder), "%s", res->builder);
	if (res->code < 0)
		kiln_err_set(&s->err, res->code, "%s", res->error);
	s->res_code = res->code;
	s->res_transient = res->transient;
	s->job = job_free(s->job);
	if (s->res_code < 0 && s->res_code != -ECANCELED && s->res_code != -ECONNREFUSED &&
	    !s->res_transient)
		verify_engine(s);
	else
		conclude(s, false);
}

/* ---- conclude ---- */

/* What a failed or finished build means: its final state, or a retry. */
static void decide(struct builder_slot *s, bool engine_gone)
{
	struct builder *b = s->b;
	unsigned max_attempts = b->cfg->retries + 1;
	bool from_engine = s->phase != SLOT_PREPARE;

	if (s->res_code == 0) {
		s->final = BUILD_SUCCEEDED;
	} else if (s->res_code == -ECANCELED || s->cancel_requested) {
		s->final = BUILD_CANCELLED;
		kiln_err_set(&s->err, -ECANCELED, "cancelled");
	} else if (s->res_code == -ECONNREFUSED) {
		/* the engine is gone: wait for it, whatever the attempt count */
		set_engine(b, BUILDER_ENGINE_UNKNOWN);
		docker_renegotiate(b->docker);
		s->requeue = true;
		s->count_attempt = false;
		s->delay_ms = ENGINE_BACKOFF_MIN;
	} else if ((s->res_transient || engine_gone) &&
		   (unsigned)s->build.attempts < max_attempts) {
		if (from_engine) {
			if (engine_gone || s->res_code == -ECONNRESET || s->res_code == -EIO)
				set_engine(b, BUILDER_ENGINE_UNKNOWN);
			docker_renegotiate(b->docker);
		}
		s->requeue = true;
		s->count_attempt = true;
		s->delay_ms = backoff_ms(b->cfg->retry_delay_ms, (unsigned)s->build.attempts,
					 BACKOFF_RETRY_MAX_MS);
	} else {
		s->final = BUILD_FAILED;
		/* said in the error, which is what commit statuses see: the
		 * build itself may be fine (README, Commit statuses) */
		if (s->res_transient || engine_gone) {
			char why[sizeof(s->err.msg)];
			snprintf(why, sizeof(why), "%s", s->err.msg);
			kiln_err_set(&s->err, s->res_code, STORE_ERROR_GAVE_UP "%s", why);
		}
	}
}

/* The outcome as the build's log file ends with it. */
static void log_outcome(struct builder_slot *s)
{
	char *line;

	if (s->requeue)
		line = xasprintf("kiln: attempt %d failed: %s; retrying in %" PRIu64 " ms",
				 s->build.attempts, s->err.msg, s->delay_ms);
	else if (s->final == BUILD_SUCCEEDED)
		line = xstrdup("kiln: build succeeded");
	else if (s->final == BUILD_CANCELLED)
		line = xstrdup("kiln: build cancelled");
	else
		line = xasprintf("kiln: build failed: %s", s->err.msg);
	build_log_line(&s->log, line, strlen(line));
	free(line);
	build_log_close(&s->log);
}

/* engine_gone: the engine stopped answering right after the failure. */
static void conclude(struct builder_slot *s, bool engine_gone)
{
	decide(s, engine_gone);
	log_outcome(s);
	record(s);
}

/* ---- record ---- */

static void record_work(uv_work_t *req)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	struct store *st = s->b->store;

	s->r = 0;
	if (s->image_id[0] || s->digest[0] || s->used_builder[0])
		s->r = store_set_result(st, s->build.id, s->image_id, s->digest, s->used_builder,
					&s->err);
	if (s->r == 0) {
		if (s->requeue)
			s->r = store_requeue(st, s->build.id, s->delay_ms, s->count_attempt,
					     s->err.msg, &s->err);
		else
			s->r =
			    store_finish(st, s->build.id, s->final,
					 s->final == BUILD_SUCCEEDED ? NULL : s->err.msg, &s->err);
	}
	read_queue(st, &s->view);
}

/* The one line the daemon's log gets about a build's end. */
static void report(struct builder_slot *s, double secs)
{
	struct builder *b = s->b;

	if (s->r < 0) {
		snprintf(b->last_error, sizeof(b->last_error), "%.250s", s->err.msg);
		log_error("build %" PRId64 ": recording its outcome: %s", s->build.id, s->err.msg);
	} else if (s->requeue) {
		b->retried++;
		log_warning("build %" PRId64 " %s: %s; back in the queue, retry in %" PRIu64 " ms",
			    s->build.id, s->build.image, s->err.msg, s->delay_ms);
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
		log_error("build %" PRId64 " %s failed: %s", s->build.id, s->build.image,
			  s->err.msg);
	}
}

static void record_after(uv_work_t *req, int status)
{
	struct builder_slot *s = container_of(req, struct builder_slot, req);
	struct builder *b = s->b;

	(void)status;
	report(s, since(&s->t0));
	apply_queue(b, &s->view);
	slot_free(s);
	notify_changed(b);
	builder_kick(b);
}

static void record(struct builder_slot *s)
{
	slot_set_phase(s, SLOT_RECORD);
	uv_queue_work(s->b->loop, &s->req, record_work, record_after);
}

/* ---- the builder ---- */

void builder_init(struct builder *b, uv_loop_t *loop, struct store *store, const struct config *cfg,
		  struct docker *docker, const char *mirrors_dir, const char *logs_dir,
		  builder_changed_cb *changed, void *arg)
{
	memset(b, 0, sizeof(*b));
	TAILQ_INIT(&b->slots);
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
		uv_queue_work(b->loop, &s->req, take_work, take_after);
		if (b->queued == 0)
			break; /* probe with one slot; more start when it finds work */
	}
}

void builder_planned(struct builder *b, unsigned n)
{
	/* counted now so that one kick fills every free slot and status shows
	 * them at once; the next take replaces it with the store's count */
	b->queued += n;
	builder_kick(b);
}

void builder_drain(struct builder *b)
{
	b->draining = true;
	uv_timer_stop(&b->timer);
}

int builder_cancel(struct builder *b, int64_t id)
{
	struct builder_slot *s;

	TAILQ_FOREACH(s, &b->slots, link)
	{
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
