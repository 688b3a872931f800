/* oneshot.c (build): `kiln build` runs a changeset's builds with the daemon's job
 * machine on a loop of its own. The scheduler is a small in-memory version
 * of the daemon's: an item starts when every base it builds FROM in this
 * changeset has succeeded, and is skipped when one has not. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "kiln/backoff.h"
#include "kiln/buf.h"
#include "kiln/job.h"
#include "kiln/log.h"
#include "kiln/oneshot.h"
#include "kiln/path.h"

enum item_state {
	ITEM_PENDING,
	ITEM_WAITING_RETRY,
	ITEM_RUNNING,
	ITEM_OK,
	ITEM_FAILED,
	ITEM_SKIPPED
};

struct item {
	struct run *run;
	const struct change *ch;
	enum item_state state;
	unsigned attempts;
	struct job *job;
	uv_timer_t retry;
	struct timespec t0;
	double seconds;
	char error[1024];
	char digest[80];
	char *prefix;
};

struct run {
	const struct oneshot_opts *o;
	uv_loop_t loop;
	struct docker *docker;
	struct item *items;
	size_t n;
	unsigned running;
	bool interrupted;
	uv_signal_t sigint, sigterm;
};

static void schedule(struct run *run);

/* The summary table's words: the three an item can end in stand out. */
static const char *item_state_str(enum item_state s)
{
	static const char *const names[] = {"pending", "waiting-retry", "running",
					    "ok",      "FAILED",	"SKIPPED"};

	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "?";
}

static void item_set_state(struct item *it, enum item_state s)
{
	log_debug("kiln build '%s': %s -> %s", it->ch->path, item_state_str(it->state),
		  item_state_str(s));
	it->state = s;
}

static struct item *find(struct run *run, const char *path)
{
	for (size_t i = 0; i < run->n; i++)
		if (strcmp(run->items[i].ch->path, path) == 0)
			return &run->items[i];
	return NULL;
}

static void item_log(struct job *j, const char *line, size_t len, void *arg)
{
	struct item *it = arg;

	(void)j;
	printf("%s | %.*s\n", it->prefix, (int)len, line);
	fflush(stdout);
}

static void retry_cb(uv_timer_t *t)
{
	struct item *it = t->data;

	item_set_state(it, ITEM_PENDING);
	schedule(it->run);
}

static void item_done(struct job *j, void *arg)
{
	struct item *it = arg;
	struct run *run = it->run;
	const struct job_result *res = job_result(j);
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	it->seconds +=
	    (double)(t1.tv_sec - it->t0.tv_sec) + (double)(t1.tv_nsec - it->t0.tv_nsec) / 1e9;
	run->running--;
	snprintf(it->digest, sizeof(it->digest), "%s", res->digest);
	if (res->code == 0) {
		item_set_state(it, ITEM_OK);
	} else if (res->transient && !run->interrupted && it->attempts <= run->o->retries) {
		uint64_t delay =
		    backoff_ms(run->o->retry_delay_ms, it->attempts, BACKOFF_RETRY_MAX_MS);
		printf("%s | kiln: attempt %u failed: %s; retrying in %" PRIu64 " ms\n", it->prefix,
		       it->attempts, res->error, delay);
		item_set_state(it, ITEM_WAITING_RETRY);
		uv_timer_start(&it->retry, retry_cb, delay, 0);
	} else {
		item_set_state(it, ITEM_FAILED);
		snprintf(it->error, sizeof(it->error), "%s", res->error);
		printf("%s | kiln: failed: %s\n", it->prefix, res->error);
	}
	fflush(stdout);
	it->job = job_free(j);
	schedule(run);
}

static void start(struct item *it)
{
	struct run *run = it->run;
	const struct oneshot_opts *o = run->o;
	struct job_policy policy = {
	    .push = o->push,
	    .overwrite_tags = o->overwrite_tags,
	    .dependency = it->ch->kind == CHANGE_DEPENDENCY,
	    .source_url = o->source_url,
	    .test_timeout_ms = o->test_timeout_ms,
	    .builder = o->builder,
	    .network = o->network,
	    .pull = o->pull,
	    .no_cache = o->no_cache,
	    .secrets = o->secrets,
	    .nsecrets = o->nsecrets,
	    .secrets_where = "kiln build's --secret options (--secret id=ID,src=FILE)",
	};
	struct job_spec spec;
	struct kiln_err err = {0};

	it->attempts++;
	clock_gettime(CLOCK_MONOTONIC, &it->t0);
	if (job_prepare(o->repo_path, o->commit, it->ch->path, o->manifest_name, &policy, &spec,
			&err) < 0) {
		item_set_state(it, ITEM_FAILED);
		snprintf(it->error, sizeof(it->error), "%s", err.msg);
		printf("%s | kiln: failed: %s\n", it->prefix, err.msg);
		return;
	}
	item_set_state(it, ITEM_RUNNING);
	run->running++;
	it->job = job_start(&run->loop, run->docker, &spec, item_log, item_done, it);
}

/* Starts what may start; skips what can no longer be built. */
static void schedule(struct run *run)
{
	bool changed = true;

	while (changed) {
		changed = false;
		for (size_t i = 0; i < run->n; i++) {
			struct item *it = &run->items[i];
			bool ready = true, doomed = run->interrupted;
			if (it->state != ITEM_PENDING)
				continue;
			for (size_t k = 0; k < it->ch->depends_on.n; k++) {
				struct item *base = find(run, it->ch->depends_on.v[k]);
				if (!base)
					continue; /* not rebuilt: its image is there already */
				if (base->state == ITEM_FAILED || base->state == ITEM_SKIPPED)
					doomed = true;
				else if (base->state != ITEM_OK)
					ready = false;
			}
			if (doomed) {
				item_set_state(it, ITEM_SKIPPED);
				snprintf(it->error, sizeof(it->error), "%s",
					 run->interrupted ? "interrupted"
							  : "skipped: a base image it builds FROM "
							    "failed");
				changed = true;
			} else if (ready && run->running < run->o->concurrency) {
				start(it);
				changed = true;
			}
		}
	}
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct run *run = s->data;

	(void)signum;
	if (run->interrupted)
		return;
	run->interrupted = true;
	fprintf(stderr, "kiln build: interrupted; cancelling the running builds\n");
	for (size_t i = 0; i < run->n; i++) {
		if (run->items[i].job)
			job_cancel(run->items[i].job);
		if (run->items[i].state == ITEM_WAITING_RETRY) {
			uv_timer_stop(&run->items[i].retry);
			item_set_state(&run->items[i], ITEM_FAILED);
			snprintf(run->items[i].error, sizeof(run->items[i].error), "interrupted");
		}
	}
	schedule(run);
}

int oneshot_run(const struct oneshot_opts *o, const struct changeset *cs)
{
	struct run run = {.o = o};
	struct docker_opts dopts = {.host = o->docker_host, .tls_verify = -1};
	struct kiln_err err = {0};
	unsigned failed = 0;

	uv_loop_init(&run.loop);
	if (docker_new(&run.loop, &dopts, &run.docker, &err) < 0) {
		fprintf(stderr, "kiln build: %s\n", err.msg);
		uv_loop_close(&run.loop);
		return 2;
	}
	run.items = xcalloc(cs->n + 1, sizeof(*run.items));
	for (size_t i = 0; i < cs->n; i++) {
		const struct change *ch = &cs->v[i];
		struct item *it;
		if (ch->kind == CHANGE_REMOVED || ch->kind == CHANGE_NONE || !ch->image)
			continue;
		it = &run.items[run.n++];
		it->run = &run;
		it->ch = ch;
		it->prefix = xasprintf("%s:%s", ch->name, ch->version);
		uv_timer_init(&run.loop, &it->retry);
		it->retry.data = it;
	}
	uv_signal_init(&run.loop, &run.sigint);
	uv_signal_init(&run.loop, &run.sigterm);
	run.sigint.data = run.sigterm.data = &run;
	uv_signal_start(&run.sigint, on_signal, SIGINT);
	uv_signal_start(&run.sigterm, on_signal, SIGTERM);
	uv_unref((uv_handle_t *)&run.sigint);
	uv_unref((uv_handle_t *)&run.sigterm);
	schedule(&run);
	uv_run(&run.loop, UV_RUN_DEFAULT);

	printf("\n%-40s %-8s %9s  %s\n", "IMAGE", "RESULT", "SECONDS",
	       o->push ? "DIGEST / ERROR" : "ERROR");
	for (size_t i = 0; i < run.n; i++) {
		struct item *it = &run.items[i];
		char *ref = xasprintf("%s/%s:%s", it->ch->registry, it->ch->name, it->ch->version);
		printf("%-40s %-8s %9.1f  %s\n", ref, item_state_str(it->state), it->seconds,
		       it->state == ITEM_OK ? it->digest : it->error);
		failed += it->state != ITEM_OK;
		free(ref);
	}
	printf("%zu image%s: %zu built%s, %u failed or skipped\n", run.n, run.n == 1 ? "" : "s",
	       run.n - failed, o->push ? " and pushed" : "", failed);

	run.docker = docker_free(run.docker);
	for (size_t i = 0; i < run.n; i++) {
		uv_close((uv_handle_t *)&run.items[i].retry, NULL);
		free(run.items[i].prefix);
	}
	uv_close((uv_handle_t *)&run.sigint, NULL);
	uv_close((uv_handle_t *)&run.sigterm, NULL);
	uv_run(&run.loop, UV_RUN_DEFAULT);
	uv_loop_close(&run.loop);
	free(run.items);
	return failed ? 1 : 0;
}
