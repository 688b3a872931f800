/* watch.c: one machine per repository; decides when to poll, fetch and plan.
 * Owns the poll timer, the job in flight, the mirror handle and the catalog
 * (the latter two used only by that job, on a worker thread). */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/backoff.h"
#include "kiln/changes.h"
#include "kiln/log.h"
#include "kiln/path.h"
#include "kiln/repo.h"
#include "kiln/watch.h"

#define BACKOFF_MAX_MS (15ull * 60 * 1000)

enum job_kind { JOB_FETCH, JOB_PLAN };

struct watch_job {
	uv_work_t req;
	struct watch *w;
	enum job_kind kind;
	/* inputs, copied so a reload cannot change them under the worker */
	char *url, *manifest;
	struct strv branches;
	enum config_build_on_start build_on_start;
	char *username, *password, *ssh_key_file;
	struct strv seen_in;	    /* empty: unknown */
	struct strv mirror_tips_in; /* empty: unknown */
	/* outputs */
	int r;
	struct kiln_err err;
	git_oid *tips;
	bool *found;
	bool fetched, moved, skipped;
	uint64_t fp;
	bool fp_valid;
	struct strv seen_out;
	struct strv mirror_tips_out;
	unsigned queued;
	struct strv notes; /* lines to log on the loop thread */
};

static void poll_start(struct watch *w);

const char *watch_state_str(enum watch_state s)
{
	static const char *const names[] = {"idle", "fetching", "planning", "closed"};
	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

static void set_state(struct watch *w, enum watch_state s)
{
	log_debug("watch '%s': %s -> %s", w->name, watch_state_str(w->st), watch_state_str(s));
	w->st = s;
	if (w->ops.changed)
		w->ops.changed(w, w->arg);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void strv_copy(struct strv *dst, const struct strv *src)
{
	for (size_t i = 0; i < src->n; i++)
		strv_push(dst, xstrdup(src->v[i]));
}

static void secret_free(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

static void settings_done(struct watch *w)
{
	free(w->url);
	free(w->manifest);
	strv_done(&w->branches);
	free(w->username);
	secret_free(w->password);
	free(w->ssh_key_file);
}

static void settings_take(struct watch *w, const struct config_repo *repo)
{
	w->url = xstrdup(repo->url);
	w->manifest = xstrdup(repo->manifest);
	strv_copy(&w->branches, &repo->branches);
	w->interval_ms = repo->poll_interval_ms;
	w->build_on_start = repo->build_on_start;
	w->username = dup_or_null(repo->username);
	w->password = dup_or_null(repo->password);
	w->ssh_key_file = dup_or_null(repo->ssh_key_file);
}

/* ---- scheduling ---- */

/* The interval, doubled per consecutive failure up to BACKOFF_MAX_MS (or the
 * interval when that is longer), then spread by +-10%. */
static uint64_t next_delay(const struct watch *w)
{
	return backoff_ms(w->interval_ms, w->failures + 1, BACKOFF_MAX_MS);
}

static void timer_cb(uv_timer_t *t)
{
	struct watch *w = container_of(t, struct watch, timer);

	assert(w->st == WATCH_IDLE);
	poll_start(w);
}

static void schedule(struct watch *w, uint64_t delay_ms)
{
	if (!w->stopping)
		uv_timer_start(&w->timer, timer_cb, delay_ms, 0);
}

/* ---- jobs ---- */

static struct watch_job *job_new(struct watch *w, enum job_kind kind)
{
	struct watch_job *j = xcalloc(1, sizeof(*j));

	j->w = w;
	j->kind = kind;
	j->url = xstrdup(w->url);
	j->manifest = xstrdup(w->manifest);
	strv_copy(&j->branches, &w->branches);
	j->build_on_start = w->build_on_start;
	j->username = dup_or_null(w->username);
	j->password = dup_or_null(w->password);
	j->ssh_key_file = dup_or_null(w->ssh_key_file);
	if (w->have_seen)
		strv_copy(&j->seen_in, &w->seen);
	if (w->mirror_tips.n == w->branches.n)
		strv_copy(&j->mirror_tips_in, &w->mirror_tips);
	j->tips = xcalloc(j->branches.n + 1, sizeof(git_oid));
	j->found = xcalloc(j->branches.n + 1, sizeof(bool));
	return j;
}

static void job_free(struct watch_job *j)
{
	free(j->url);
	free(j->manifest);
	strv_done(&j->branches);
	free(j->username);
	secret_free(j->password);
	free(j->ssh_key_file);
	strv_done(&j->seen_in);
	free(j->tips);
	free(j->found);
	strv_done(&j->seen_out);
	strv_done(&j->mirror_tips_in);
	strv_done(&j->mirror_tips_out);
	strv_done(&j->notes);
	free(j);
}

static void note(struct watch_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct watch_job *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	strv_push(&j->notes, xvasprintf(fmt, ap));
	va_end(ap);
}

/* Every branch's mirror tip has been planned (is its last-seen commit). */
static bool all_planned(const struct watch_job *j)
{
	if (j->seen_in.n != j->branches.n || j->mirror_tips_in.n != j->branches.n)
		return false;
	for (size_t i = 0; i < j->branches.n; i++) {
		if (strcmp(j->seen_in.v[i], j->mirror_tips_in.v[i]) != 0)
			return false;
	}
	return true;
}

/* Worker: ls-remote, then fetch only the branches whose tip the mirror lacks.
 * A remote on this machine whose refs files are untouched since the last
 * good poll is not even asked. */
static void fetch_work(uv_work_t *req)
{
	struct watch_job *j = container_of(req, struct watch_job, req);
	struct watch *w = j->w;
	struct repo_creds cr = {j->username, j->password, j->ssh_key_file};
	const char *const *branches = (const char *const *)j->branches.v;
	struct strv need = {0};
	char hex[GIT_OID_HEXSZ + 1];

	j->fp_valid = repo_local_fingerprint(j->url, branches, j->branches.n, &j->fp) == 0;
	if (j->fp_valid && w->local_fp_valid && j->fp == w->local_fp && all_planned(j)) {
		j->skipped = true;
		strv_copy(&j->mirror_tips_out, &j->mirror_tips_in);
		return;
	}
	j->r = repo_remote_heads(j->url, &cr, branches, j->branches.n, j->tips, j->found, &j->err);
	if (j->r < 0)
		return;
	for (size_t i = 0; i < j->branches.n; i++) {
		git_oid local;
		bool have;

		if (!j->found[i]) {
			note(j, "branch '%s' does not exist on the remote", j->branches.v[i]);
			strv_push(&j->mirror_tips_out, xstrdup(""));
			continue;
		}
		git_oid_tostr(hex, sizeof(hex), &j->tips[i]);
		if (j->mirror_tips_in.n == j->branches.n) {
			have = strcmp(j->mirror_tips_in.v[i], hex) == 0;
		} else {
			if (w->mirror == NULL &&
			    (j->r = repo_mirror_open(w->mirror_path, &w->mirror, &j->err)) < 0)
				goto out;
			have = repo_branch_tip(w->mirror, j->branches.v[i], &local) == 0 &&
			       git_oid_equal(&local, &j->tips[i]);
		}
		if (!have)
			strv_push(&need, xstrdup(j->branches.v[i]));
		strv_push(&j->mirror_tips_out, xstrdup(hex));
		if (j->seen_in.n != j->branches.n || strcmp(j->seen_in.v[i], hex) != 0)
			j->moved = true;
	}
	if (need.n > 0) {
		if (w->mirror == NULL &&
		    (j->r = repo_mirror_open(w->mirror_path, &w->mirror, &j->err)) < 0)
			goto out;
		j->r = repo_fetch(w->mirror, j->url, &cr, (const char *const *)need.v, need.n,
				  &j->err);
		j->fetched = j->r == 0;
	}
out:
	strv_done(&need);
}

static int lookup_commit(git_repository *repo, const char *hex, git_commit **ret)
{
	git_oid id;

	if (git_oid_fromstr(&id, hex) < 0 || git_commit_lookup(ret, repo, &id) < 0)
		return -ENOENT;
	return 0;
}

/* Worker: one branch's range -> builds, recorded with its new last-seen. */
static int plan_branch(struct watch_job *j, size_t i, const char *repo_name)
{
	struct watch *w = j->w;
	const char *branch = j->branches.v[i];
	char tip[GIT_OID_HEXSZ + 1], seen[STORE_SHA_LEN + 1], first[STORE_SHA_LEN + 1];
	git_commit *from = NULL, *to = NULL;
	struct changeset cs = {0};
	struct store_plan_item *items = NULL;
	const char *from_hex = NULL;
	bool empty_from = false;
	int r;

	git_oid_tostr(tip, sizeof(tip), &j->tips[i]);
	r = store_last_seen(w->store, repo_name, branch, seen, &j->err);
	if (r == 0 && strcmp(seen, tip) == 0) {
		strv_push(&j->seen_out, xstrdup(seen));
		return 0;
	}
	if (r < 0 && r != -ENOENT)
		return r;
	if (r == 0) {
		from_hex = seen;
	} else if (i > 0 &&
		   store_last_seen(w->store, repo_name, j->branches.v[0], first, NULL) == 0) {
		from_hex = first; /* a branch added later starts from the first branch */
	} else if (j->build_on_start == CONFIG_BUILD_ON_START_ALL) {
		empty_from = true;
	} else {
		/* first sight: remember the head, build nothing */
		r = store_record_plan(w->store, repo_name, branch, tip, NULL, 0, &j->err);
		if (r >= 0) {
			note(j, "branch '%s' first seen at %.12s; nothing built", branch, tip);
			strv_push(&j->seen_out, xstrdup(tip));
		}
		return r < 0 ? r : 0;
	}
	if (lookup_commit(w->mirror, tip, &to) < 0) {
		r = kiln_err_set(&j->err, -EIO, "branch '%s': commit %s is not in the mirror",
				 branch, tip);
		goto out;
	}
	if (!empty_from && lookup_commit(w->mirror, from_hex, &from) < 0) {
		r = kiln_err_set(&j->err, -EIO,
				 "branch '%s': last-seen commit %s is not in the mirror", branch,
				 from_hex);
		goto out;
	}
	if (strcmp(w->catalog.manifest_name ? w->catalog.manifest_name : "", j->manifest) != 0) {
		catalog_done(&w->catalog);
		catalog_init(&w->catalog, j->manifest, NULL);
	}
	r = changes_compute(w->mirror, from, to, &w->catalog, &cs, &j->err);
	if (r == -EBADMSG) { /* never from memory, but be safe: start over */
		catalog_done(&w->catalog);
		catalog_init(&w->catalog, j->manifest, NULL);
		r = changes_compute(w->mirror, from, to, &w->catalog, &cs, &j->err);
	}
	if (r < 0)
		goto out;
	for (size_t k = 0; k < cs.errors.n; k++) {
		char line[1024];
		kiln_diag_format(&cs.errors.v[k], line, sizeof(line));
		note(j, "branch '%s' at %.12s: %s", branch, tip, line);
	}
	items = xcalloc(cs.n + 1, sizeof(*items));
	for (size_t k = 0; k < cs.n; k++) {
		items[k].path = cs.v[k].path;
		items[k].image = cs.v[k].image;
		items[k].change = change_kind_str(cs.v[k].kind);
		items[k].depends_on = (const char *const *)cs.v[k].depends_on.v;
		items[k].ndepends = cs.v[k].depends_on.n;
	}
	r = store_record_plan(w->store, repo_name, branch, tip, items, cs.n, &j->err);
	if (r >= 0) {
		j->queued += (unsigned)r;
		for (size_t k = 0; k < cs.n; k++)
			note(j, "branch '%s' %.12s..%.12s: %s %s %s", branch,
			     empty_from ? "(empty)" : from_hex, tip, change_kind_str(cs.v[k].kind),
			     path_display(cs.v[k].path), cs.v[k].image ? cs.v[k].image : "-");
		strv_push(&j->seen_out, xstrdup(tip));
		r = 0;
	}
out:
	free(items);
	changeset_done(&cs);
	git_commit_free(from);
	git_commit_free(to);
	return r;
}

static void plan_work(uv_work_t *req)
{
	struct watch_job *j = container_of(req, struct watch_job, req);

	if (j->w->mirror == NULL &&
	    (j->r = repo_mirror_open(j->w->mirror_path, &j->w->mirror, &j->err)) < 0)
		return;

	for (size_t i = 0; i < j->branches.n && j->r == 0; i++) {
		if (!j->found[i]) {
			strv_push(&j->seen_out, xstrdup(i < j->seen_in.n ? j->seen_in.v[i] : ""));
			continue;
		}
		j->r = plan_branch(j, i, j->w->name);
	}
}

static void job_failed(struct watch *w, struct watch_job *j)
{
	uint64_t delay;

	w->mirror = repo_close(w->mirror);
	w->failures++;
	w->errors++;
	snprintf(w->last_error, sizeof(w->last_error), "%s", j->err.msg);
	delay = next_delay(w);
	log_warning("watch '%s': %s failed: %s; retrying in %" PRIu64 "s", w->name,
		    j->kind == JOB_FETCH ? "poll" : "planning", j->err.msg, (delay + 999) / 1000);
	w->again = false;
	set_state(w, WATCH_IDLE);
	schedule(w, delay);
}

static void succeeded(struct watch *w)
{
	w->failures = 0;
	w->last_error[0] = '\0';
	w->last_success = (int64_t)time(NULL);
	if (w->ops.polled)
		w->ops.polled(w, w->arg);
}

static void go_idle(struct watch *w)
{
	/* An open repository holds config, ref and pack caches: with hundreds
	 * of repositories that is most of kilnd's memory. Reopen per poll. */
	w->mirror = repo_close(w->mirror);
	set_state(w, WATCH_IDLE);
	if (w->again && !w->stopping) {
		w->again = false;
		poll_start(w);
	} else {
		schedule(w, next_delay(w));
	}
}

static void close_cb(uv_handle_t *h)
{
	struct watch *w = container_of((uv_timer_t *)h, struct watch, timer);

	w->timer_closed = true;
	w->st = WATCH_CLOSED;
	if (w->ops.closed)
		w->ops.closed(w, w->arg); /* the owner frees w there */
}

static void finish_stop(struct watch *w)
{
	uv_close((uv_handle_t *)&w->timer, close_cb);
}

/* Back on the loop: the job's notes are logged and a cancelled job failed. */
static void job_landed(struct watch *w, struct watch_job *j, int status)
{
	w->job = NULL;
	for (size_t i = 0; i < j->notes.n; i++)
		log_info("watch '%s': %s", w->name, j->notes.v[i]);
	if (status < 0 && j->r == 0)
		j->r = kiln_err_set(&j->err, status, "the %s job was cancelled",
				    j->kind == JOB_FETCH ? "poll" : "planning");
}

static void job_end(struct watch *w, struct watch_job *j)
{
	job_free(j);
	if (w->stopping)
		finish_stop(w);
}

static void plan_after(uv_work_t *req, int status)
{
	struct watch_job *j = container_of(req, struct watch_job, req);
	struct watch *w = j->w;

	assert(w->st == WATCH_PLANNING);
	job_landed(w, j, status);
	w->plans++;
	if (j->r < 0) {
		w->local_fp_valid = false; /* plan again at the next poll */
		job_failed(w, j);
	} else {
		succeeded(w);
		strv_done(&w->seen);
		strv_copy(&w->seen, &j->seen_out);
		w->have_seen = w->seen.n == w->branches.n;
		if (w->ops.planned)
			w->ops.planned(w, j->queued, w->arg);
		go_idle(w);
	}
	job_end(w, j);
}

static void fetch_after(uv_work_t *req, int status)
{
	struct watch_job *j = container_of(req, struct watch_job, req);
	struct watch *w = j->w;

	assert(w->st == WATCH_FETCHING);
	job_landed(w, j, status);
	if (j->fetched) {
		w->fetches++;
		log_info("watch '%s': fetched", w->name);
	}
	if (j->r < 0) {
		w->local_fp_valid = false;
		strv_done(&w->mirror_tips);
		job_failed(w, j);
		job_end(w, j);
		return;
	}
	w->local_fp = j->fp;
	w->local_fp_valid = j->fp_valid;
	strv_done(&w->mirror_tips);
	strv_copy(&w->mirror_tips, &j->mirror_tips_out);
	if (w->stopping || !j->moved) {
		succeeded(w);
		go_idle(w);
	} else {
		/* the plan job takes over the tips: reuse this job */
		j->kind = JOB_PLAN;
		set_state(w, WATCH_PLANNING);
		w->job = j;
		uv_queue_work(w->loop, &j->req, plan_work, plan_after);
		return;
	}
	job_end(w, j);
}

static void poll_start(struct watch *w)
{
	struct watch_job *j;

	if (w->stopping)
		return;
	uv_timer_stop(&w->timer);
	j = job_new(w, JOB_FETCH);
	w->job = j;
	w->polls++;
	{
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		w->poll_started_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	}
	set_state(w, WATCH_FETCHING);
	uv_queue_work(w->loop, &j->req, fetch_work, fetch_after);
}

/* ---- public ---- */

int watch_new(uv_loop_t *loop, const struct config_repo *repo, const char *mirrors_dir,
	      struct store *store, const struct watch_ops *ops, void *arg, struct watch **ret,
	      struct kiln_err *err)
{
	struct watch *w = xcalloc(1, sizeof(*w));
	int r;

	w->loop = loop;
	w->name = xstrdup(repo->name);
	w->mirror_path = xasprintf("%s/%s.git", mirrors_dir, repo->name);
	w->store = store;
	w->ops = *ops;
	w->arg = arg;
	settings_take(w, repo);
	catalog_init(&w->catalog, repo->manifest, NULL);
	r = repo_mirror_open(w->mirror_path, &w->mirror, err);
	w->mirror = repo_close(w->mirror); /* created and usable; reopened per poll */
	if (r < 0) {
		catalog_done(&w->catalog);
		settings_done(w);
		free(w->mirror_path);
		free(w->name);
		free(w);
		return r;
	}
	uv_timer_init(loop, &w->timer);
	*ret = w;
	return 0;
}

void watch_start(struct watch *w)
{
	/* a random part of the interval: no thundering herd at startup */
	schedule(w, backoff_rand() % (w->interval_ms + 1));
}

void watch_reconfigure(struct watch *w, const struct config_repo *repo)
{
	bool branches_changed = repo->branches.n != w->branches.n;
	bool interval_changed = repo->poll_interval_ms != w->interval_ms;

	for (size_t i = 0; !branches_changed && i < repo->branches.n; i++)
		branches_changed = strcmp(repo->branches.v[i], w->branches.v[i]) != 0;
	settings_done(w);
	settings_take(w, repo);
	if (branches_changed) {
		strv_done(&w->seen);
		strv_done(&w->mirror_tips);
		w->have_seen = false;
	}
	w->local_fp_valid = false; /* the URL may have changed too */
	if (interval_changed && w->st == WATCH_IDLE && !w->stopping)
		schedule(w, backoff_rand() % (w->interval_ms + 1));
}

void watch_trigger(struct watch *w)
{
	if (w->stopping)
		return;
	if (w->st == WATCH_IDLE)
		poll_start(w);
	else
		w->again = true; /* coalesced: at most one more poll */
}

void watch_stop(struct watch *w)
{
	if (w->stopping)
		return;
	w->stopping = true;
	uv_timer_stop(&w->timer);
	if (w->job == NULL)
		finish_stop(w);
}

struct watch *watch_free(struct watch *w)
{
	if (w == NULL)
		return NULL;
	git_repository_free(w->mirror);
	catalog_done(&w->catalog);
	settings_done(w);
	strv_done(&w->seen);
	strv_done(&w->mirror_tips);
	free(w->mirror_path);
	free(w->name);
	free(w);
	return NULL;
}
