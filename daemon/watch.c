/* watch.c (trigger -> fetch -> plan): one machine per repository,
 * idle -> fetching -> planning -> idle (repacking the mirror before idle when
 * a fetch left too many packs); decides when to poll (timer, jitter,
 * backoff, coalesced triggers). Owns the poll timer, the work in flight, the
 * mirror handle and the catalog (the latter two used only by that work, on a
 * worker thread). What a plan contains is plan.c's business. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/backoff.h"
#include "kiln/changes.h"
#include "kiln/log.h"
#include "kiln/path.h"
#include "kiln/plan.h"
#include "kiln/repack.h"
#include "kiln/repo.h"
#include "kiln/watch.h"

#define BACKOFF_MAX_MS (15ull * 60 * 1000)
/* the longest step of the poll grid (on_grid) */
#define WATCH_GRID_MS 1000u

/* What the worker does: a poll (ls-remote and fetch), then maybe a plan;
 * a repack is work of its own, queued once the poll's plan is recorded and
 * announced, so that it never delays a build. */
enum watch_work_kind { WATCH_WORK_FETCH, WATCH_WORK_PLAN, WATCH_WORK_REPACK };

/* One poll on the worker pool. The worker reads only this struct, plus the
 * watch's name, mirror path and store (fixed at watch_new) and its mirror and
 * catalog (touched by nothing but the work in flight); everything a reload
 * may change is copied in before the work is queued. */
struct watch_work {
	uv_work_t req;
	struct watch *w;
	enum watch_work_kind kind;
	unsigned gen; /* w->gen when queued */
	/* inputs */
	char *url, *manifest;
	struct strv branches;
	enum config_build_on_start build_on_start;
	char *username, *password, *ssh_key_file;
	struct strv seen_in;	    /* empty: unknown */
	struct strv mirror_tips_in; /* empty: unknown */
	uint64_t prev_fp;	    /* the local remote's fingerprint at the last good poll */
	bool prev_fp_valid;
	int64_t serve_upto; /* the newest unserved delivery before the remote was asked (0: none) */
	atomic_bool stale;  /* a reload changed the settings since it was queued */
	uint64_t plan_queued_ns; /* uv_hrtime() when the fetch landed and planning was queued */
	uint64_t changes_ns;	 /* of which computing the changes (plan_branch) */
	unsigned manifests_read; /* by the catalog in them (0: all from its snapshot) */
	uint64_t triggers;	 /* w->triggers when queued */
	bool serve;		 /* deliveries or triggers may wait: mark them served */
	/* outputs */
	int r;
	struct kiln_err err;
	git_oid *tips;
	bool *found;
	bool fetched, moved, skipped;
	uint64_t fp;
	bool fp_valid;
	unsigned packs; /* after a fetch: the mirror's packs (repack_count) */
	struct repack_result repacked;
	struct strv seen_out;
	struct strv mirror_tips_out;
	unsigned queued;
	bool served;	   /* the deliveries are marked served (by a plan's transaction or after) */
	struct strv notes; /* lines to log on the loop thread */
};

static void poll_start(struct watch *w);

const char *watch_state_str(enum watch_state s)
{
	static const char *const names[] = {"idle", "fetching", "planning", "repacking", "closed"};
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

/* dst becomes a copy of src, keeping its strings when they are the same (an
 * idle poll's tips): what lives from one poll to the next is not allocated
 * anew at each, where it would land in whatever hole the poll's short-lived
 * memory left and keep that page of the heap from going back. */
static void strv_set(struct strv *dst, const struct strv *src)
{
	bool same = dst->n == src->n;

	for (size_t i = 0; same && i < src->n; i++)
		same = strcmp(dst->v[i], src->v[i]) == 0;
	if (same)
		return;
	strv_done(dst);
	strv_copy(dst, src);
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
	w->repack_packs = repo->repack_packs;
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

/* A poll that is due later is moved to the next multiple of the grid on the
 * loop's clock: the polls due within one grid step start in one loop
 * wake-up, and the worker threads take them one after the other instead of
 * waking once each. Every wake-up of an idle kilnd is a context switch into
 * it, which costs more than a whole ls-remote's own work (measured with 200
 * repositories: two thirds of kilnd's idle CPU). The step is a tenth of the
 * interval (the jitter is +-10% anyway), at most WATCH_GRID_MS. */
static uint64_t on_grid(const struct watch *w, uint64_t delay_ms)
{
	uint64_t grid = w->interval_ms / 10, due;

	if (grid > WATCH_GRID_MS)
		grid = WATCH_GRID_MS;
	if (delay_ms == 0 || grid < 2)
		return delay_ms;
	due = uv_now(w->loop) + delay_ms;
	return delay_ms + (grid - due % grid) % grid;
}

static void schedule(struct watch *w, uint64_t delay_ms)
{
	if (!w->stopping)
		uv_timer_start(&w->timer, timer_cb, on_grid(w, delay_ms), 0);
}

/* ---- work on the worker threads ---- */

static struct watch_work *work_new(struct watch *w, enum watch_work_kind kind)
{
	struct watch_work *wk = xcalloc(1, sizeof(*wk));

	wk->w = w;
	wk->kind = kind;
	wk->gen = w->gen;
	wk->url = xstrdup(w->url);
	wk->manifest = xstrdup(w->manifest);
	strv_copy(&wk->branches, &w->branches);
	wk->build_on_start = w->build_on_start;
	wk->username = dup_or_null(w->username);
	wk->password = dup_or_null(w->password);
	wk->ssh_key_file = dup_or_null(w->ssh_key_file);
	wk->prev_fp = w->local_fp;
	wk->prev_fp_valid = w->local_fp_valid;
	wk->triggers = w->triggers;
	wk->serve = w->served != w->triggers;
	if (w->have_seen)
		strv_copy(&wk->seen_in, &w->seen);
	if (w->mirror_tips.n == w->branches.n)
		strv_copy(&wk->mirror_tips_in, &w->mirror_tips);
	wk->tips = xcalloc(wk->branches.n + 1, sizeof(git_oid));
	wk->found = xcalloc(wk->branches.n + 1, sizeof(bool));
	return wk;
}

static void work_free(struct watch_work *wk)
{
	free(wk->url);
	free(wk->manifest);
	strv_done(&wk->branches);
	free(wk->username);
	secret_free(wk->password);
	free(wk->ssh_key_file);
	strv_done(&wk->seen_in);
	free(wk->tips);
	free(wk->found);
	strv_done(&wk->seen_out);
	strv_done(&wk->mirror_tips_in);
	strv_done(&wk->mirror_tips_out);
	strv_done(&wk->notes);
	free(wk);
}

static const char *work_kind_str(enum watch_work_kind k)
{
	static const char *const names[] = {"poll", "planning", "repack"};
	return (unsigned)k < ARRAY_SIZE(names) ? names[k] : "unknown";
}

static void note(struct watch_work *wk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct watch_work *wk, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	strv_push(&wk->notes, xvasprintf(fmt, ap));
	va_end(ap);
}

/* Every branch's mirror tip has been planned (is its last-seen commit). */
static bool all_planned(const struct watch_work *wk)
{
	if (wk->seen_in.n != wk->branches.n || wk->mirror_tips_in.n != wk->branches.n)
		return false;
	for (size_t i = 0; i < wk->branches.n; i++) {
		if (strcmp(wk->seen_in.v[i], wk->mirror_tips_in.v[i]) != 0)
			return false;
	}
	return true;
}

/* The mirror, opened on first use by this work (reopened per poll). */
static int mirror_open(struct watch_work *wk)
{
	struct watch *w = wk->w;

	if (w->mirror)
		return 0;
	return repo_mirror_open(w->mirror_path, &w->mirror, &wk->err);
}

/* Worker, at the end of a poll whose last branch recorded no plan: the
 * deliveries and triggers recorded before it asked the remote (serve_upto)
 * are served (the last branch's plan marks them in its own transaction; an
 * earlier branch's may not, since a later branch may still fail).
 * Not a poll failure: at worst they cause one more poll after a restart. */
static void mark_served(struct watch_work *wk)
{
	struct kiln_err err = {0};

	if (wk->served || !wk->serve)
		return;
	if (wk->serve_upto > 0 &&
	    store_deliveries_handled(wk->w->store, wk->w->name, wk->serve_upto, &err) < 0)
		note(wk,
		     "webhook deliveries not marked handled: %s; they cause one more poll at "
		     "the next start",
		     err.msg);
	else
		wk->served = true;
}

/* Worker: ls-remote, then fetch only the branches whose tip the mirror lacks.
 * A remote on this machine whose refs files are untouched since the last
 * good poll is not even asked. */
static void fetch_work(uv_work_t *req)
{
	struct watch_work *wk = container_of(req, struct watch_work, req);
	struct repo_creds cr = {wk->username, wk->password, wk->ssh_key_file};
	const char *const *branches = (const char *const *)wk->branches.v;
	struct strv need = {0};
	char hex[GIT_OID_HEXSZ + 1];
	struct kiln_err err = {0};

	/* Before the remote is asked: a delivery committed by now was sent after
	 * its push, which the answer therefore shows. One read later is the
	 * wrong side of that order, and a clock is too coarse: a trigger
	 * recorded in the millisecond its poll began was never marked. */
	if (wk->serve &&
	    store_deliveries_bound(wk->w->store, wk->w->name, &wk->serve_upto, &err) < 0)
		note(wk,
		     "webhook deliveries cannot be read: %s; they cause one more poll at the next "
		     "start",
		     err.msg);
	/* After a reload this work asks the old URL for the old branches: the
	 * rows recorded since may be for the new ones. It serves none, and the
	 * next poll serves them all. Checked after the read: a reload that
	 * comes later finds every row up to the bound recorded before it, for
	 * the settings this work has. */
	if (atomic_load(&wk->stale)) {
		wk->serve = false;
		wk->serve_upto = 0;
	}
	wk->fp_valid = repo_local_fingerprint(wk->url, branches, wk->branches.n, &wk->fp) == 0;
	if (wk->fp_valid && wk->prev_fp_valid && wk->fp == wk->prev_fp && all_planned(wk)) {
		wk->skipped = true;
		strv_copy(&wk->mirror_tips_out, &wk->mirror_tips_in);
		goto out;
	}
	wk->r = repo_remote_heads(wk->url, &cr, branches, wk->branches.n, wk->tips, wk->found,
				  &wk->err);
	if (wk->r < 0)
		return;
	for (size_t i = 0; i < wk->branches.n; i++) {
		git_oid local;
		bool have;

		if (!wk->found[i]) {
			note(wk, "branch '%s' does not exist on the remote", wk->branches.v[i]);
			strv_push(&wk->mirror_tips_out, xstrdup(""));
			continue;
		}
		git_oid_tostr(hex, sizeof(hex), &wk->tips[i]);
		if (wk->mirror_tips_in.n == wk->branches.n) {
			have = strcmp(wk->mirror_tips_in.v[i], hex) == 0;
		} else {
			if ((wk->r = mirror_open(wk)) < 0)
				goto out;
			have = repo_branch_tip(wk->w->mirror, wk->branches.v[i], &local) == 0 &&
			       git_oid_equal(&local, &wk->tips[i]);
		}
		if (!have)
			strv_push(&need, xstrdup(wk->branches.v[i]));
		strv_push(&wk->mirror_tips_out, xstrdup(hex));
		if (wk->seen_in.n != wk->branches.n || strcmp(wk->seen_in.v[i], hex) != 0)
			wk->moved = true;
	}
	if (need.n > 0) {
		if ((wk->r = mirror_open(wk)) < 0)
			goto out;
		wk->r = repo_fetch(wk->w->mirror, wk->url, &cr, (const char *const *)need.v, need.n,
				   &wk->err);
		wk->fetched = wk->r == 0;
		if (wk->fetched && repack_count(wk->w->mirror_path, &wk->packs) < 0)
			wk->packs = 0; /* unknown: no repack this time */
	}
out:
	strv_done(&need);
	if (wk->r == 0 && !wk->moved)
		mark_served(wk); /* no plan follows */
}

/* Lines for the log: the plan's problems and its builds. */
static void note_plan(struct watch_work *wk, const char *branch, const struct plan *p)
{
	for (size_t k = 0; k < p->cs.errors.n; k++) {
		char line[1024];
		kiln_diag_format(&p->cs.errors.v[k], line, sizeof(line));
		note(wk, "branch '%s' at %.12s: %s", branch, p->to, line);
	}
	for (size_t k = 0; k < p->cs.n; k++) {
		const struct change *c = &p->cs.v[k];
		note(wk, "branch '%s' %.12s..%.12s: %s %s %s", branch,
		     p->from[0] ? p->from : "(empty)", p->to, change_kind_str(c->kind),
		     path_display(c->path), c->image ? c->image : "-");
	}
}

/* The commits plan_branch may start from: the branch's own last-seen; else
 * where an unserved webhook push moved it from (the first push's `before`);
 * for a branch other than the first, also the first branch's last-seen. */
static int read_seen(struct watch_work *wk, size_t i, char seen[STORE_SHA_LEN + 1],
		     char base[STORE_SHA_LEN + 1], char hint[STORE_SHA_LEN + 1],
		     struct plan_input *in)
{
	struct watch *w = wk->w;
	int r = store_last_seen(w->store, w->name, wk->branches.v[i], seen, &wk->err);

	if (r == 0)
		in->seen = seen;
	else if (r != -ENOENT)
		return r;
	if (in->seen)
		return 0;
	r = store_delivery_hint(w->store, w->name, wk->branches.v[i], hint, &wk->err);
	if (r == 0)
		in->hint = hint;
	else if (r != -ENOENT)
		return r;
	if (i == 0)
		return 0;
	r = store_last_seen(w->store, w->name, wk->branches.v[0], base, &wk->err);
	if (r == 0)
		in->base = base;
	return r == -ENOENT ? 0 : r;
}

/* Worker: one branch's range -> builds, recorded with its new last-seen. */
static int plan_one(struct watch_work *wk, size_t i)
{
	struct watch *w = wk->w;
	const char *branch = wk->branches.v[i];
	const struct plan_settings s = {wk->manifest, wk->build_on_start};
	char tip[GIT_OID_HEXSZ + 1], seen[STORE_SHA_LEN + 1], base[STORE_SHA_LEN + 1],
	    hint[STORE_SHA_LEN + 1];
	struct plan_input in = {.branch = branch, .head = tip};
	/* the deliveries are served once every branch is planned: only the
	 * last branch's plan marks them (else mark_served does, after it) */
	bool last = i + 1 == wk->branches.n;
	struct plan p = {0};
	uint64_t t0;
	int r;

	git_oid_tostr(tip, sizeof(tip), &wk->tips[i]);
	r = read_seen(wk, i, seen, base, hint, &in);
	if (r < 0)
		return r;
	t0 = uv_hrtime();
	r = plan_branch(w->mirror, &w->catalog, &s, &in, &p, &wk->err);
	wk->changes_ns += uv_hrtime() - t0;
	wk->manifests_read += w->catalog.nread;
	if (r < 0)
		return r;
	if (p.kind != PLAN_UNCHANGED) {
		/* the pages that show a build show what its commit says */
		char *subject = p.n > 0 ? repo_summary_of(w->mirror, p.to) : NULL;
		r = store_record_plan(w->store, w->name, branch, p.to, subject, p.items, p.n,
				      last ? wk->serve_upto : 0, &wk->err);
		free(subject);
		if (r < 0)
			goto out;
		wk->served = last && wk->serve;
		wk->queued += (unsigned)r;
		if (p.kind == PLAN_FIRST_SIGHT)
			note(wk, "branch '%s' first seen at %.12s; nothing built", branch, tip);
		else if (in.hint && strcmp(p.from, in.hint) == 0)
			note(wk,
			     "branch '%s' first seen at %.12s; planned from %.12s, where a webhook "
			     "push moved it from",
			     branch, tip, in.hint);
		note_plan(wk, branch, &p);
	}
	strv_push(&wk->seen_out, xstrdup(tip));
	r = 0;
out:
	plan_done(&p);
	return r;
}

/* Worker, after a plan: the catalog goes to its file in the mirror and out
 * of memory. Between plans (minutes to days) it would only hold RSS: 2 MiB
 * per 10,000 images; mapping it back costs a millisecond, and after a
 * restart it spares a read of every manifest. A file that cannot be written
 * leaves the catalog in memory, where it still serves. */
static void release_catalog(struct watch_work *wk)
{
	struct kiln_err err = {0};

	if (catalog_release(&wk->w->catalog, &err) < 0)
		note(wk, "the catalog was not saved (kept in memory): %s", err.msg);
}

static void plan_work(uv_work_t *req)
{
	struct watch_work *wk = container_of(req, struct watch_work, req);

	if ((wk->r = mirror_open(wk)) < 0)
		return;
	for (size_t i = 0; i < wk->branches.n && wk->r == 0; i++) {
		if (!wk->found[i]) {
			strv_push(&wk->seen_out,
				  xstrdup(i < wk->seen_in.n ? wk->seen_in.v[i] : ""));
			continue;
		}
		wk->r = plan_one(wk, i);
	}
	if (wk->r == 0)
		mark_served(wk);
	release_catalog(wk);
}

/* ---- back on the loop ---- */

static void work_failed(struct watch *w, struct watch_work *wk)
{
	uint64_t delay;

	w->mirror = repo_close(w->mirror);
	if (w->failures++ == 0)
		w->failing_since = (int64_t)time(NULL);
	w->errors++;
	snprintf(w->last_error, sizeof(w->last_error), "%s", wk->err.msg);
	delay = next_delay(w);
	log_warning("watch '%s': %s failed: %s; retrying in %" PRIu64 "s", w->name,
		    work_kind_str(wk->kind), wk->err.msg, (delay + 999) / 1000);
	w->again = false;
	set_state(w, WATCH_IDLE);
	schedule(w, delay);
}

static void succeeded(struct watch *w)
{
	w->failures = 0;
	w->failing_since = 0;
	w->last_error[0] = '\0';
	w->last_success = (int64_t)time(NULL);
}

static void go_idle(struct watch *w)
{
	/* An open repository holds config, ref and pack caches: with hundreds
	 * of repositories that is most of kilnd's memory. Reopen per poll. */
	w->mirror = repo_close(w->mirror);
	set_state(w, WATCH_IDLE);
	if (w->again && !w->stopping) {
		w->again = false;
		log_debug("watch '%s': polling again for a trigger that came while busy", w->name);
		poll_start(w);
	} else {
		schedule(w, next_delay(w));
	}
}

static void repack_after(uv_work_t *req, int status);

static void repack_work(uv_work_t *req)
{
	struct watch_work *wk = container_of(req, struct watch_work, req);

	wk->r = repack_mirror(wk->w->mirror_path, &wk->repacked, &wk->err);
}

/* The poll is over (its builds are announced): idle, or first a repack when
 * its fetch left more packs than allowed. The mirror handle is closed first,
 * so that it holds none of the packs the repack removes. */
static void poll_done(struct watch *w, const struct watch_work *done)
{
	struct watch_work *wk;

	if (w->stopping || w->repack_packs == 0 || done->packs <= w->repack_packs) {
		go_idle(w);
		return;
	}
	w->mirror = repo_close(w->mirror);
	wk = work_new(w, WATCH_WORK_REPACK);
	w->work = wk;
	set_state(w, WATCH_REPACKING);
	uv_queue_work(w->loop, &wk->req, repack_work, repack_after);
}

static void close_cb(uv_handle_t *h)
{
	struct watch *w = container_of((uv_timer_t *)h, struct watch, timer);

	w->timer_closed = true;
	set_state(w, WATCH_CLOSED);
	if (w->ops.closed)
		w->ops.closed(w, w->arg); /* the owner frees w there */
}

static void finish_stop(struct watch *w)
{
	uv_close((uv_handle_t *)&w->timer, close_cb);
}

/* Back on the loop: the work's notes are logged and cancelled work failed. */
static void work_landed(struct watch *w, struct watch_work *wk, int status)
{
	w->work = NULL;
	for (size_t i = 0; i < wk->notes.n; i++)
		log_info("watch '%s': %s", w->name, wk->notes.v[i]);
	if (status < 0 && wk->r == 0)
		wk->r = kiln_err_set(&wk->err, status, "the %s work was cancelled",
				     work_kind_str(wk->kind));
}

static void work_end(struct watch *w, struct watch_work *wk)
{
	work_free(wk);
	if (w->stopping)
		finish_stop(w);
}

/* What the work learnt of the branches, unless a reload changed them since
 * it was queued (then it describes other branches, or another URL). */
static bool work_current(const struct watch *w, const struct watch_work *wk)
{
	return wk->gen == w->gen;
}

static void plan_landed(struct watch *w, struct watch_work *wk)
{
	w->plans++;
	if (wk->r < 0) {
		w->local_fp_valid = false; /* plan again at the next poll */
		work_failed(w, wk);
		return;
	}
	if (wk->served)
		w->served = wk->triggers;
	succeeded(w);
	/* from the fetch's end to the builds recorded: what a push waits for
	 * before its builds start (worker queue included) */
	log_debug("watch '%s': planned in %.1f ms (changes %.1f ms), %u builds queued, %u "
		  "manifests read",
		  w->name, (double)(uv_hrtime() - wk->plan_queued_ns) / 1e6,
		  (double)wk->changes_ns / 1e6, wk->queued, wk->manifests_read);
	if (work_current(w, wk)) {
		strv_set(&w->seen, &wk->seen_out);
		w->have_seen = w->seen.n == w->branches.n;
	}
	if (w->ops.planned)
		w->ops.planned(w, wk->queued, w->arg);
	poll_done(w, wk);
}

static void plan_after(uv_work_t *req, int status)
{
	struct watch_work *wk = container_of(req, struct watch_work, req);
	struct watch *w = wk->w;

	assert(w->st == WATCH_PLANNING);
	work_landed(w, wk, status);
	plan_landed(w, wk);
	work_end(w, wk);
}

/* Returns true when the same work goes on to plan (it keeps the tips). */
static bool fetch_landed(struct watch *w, struct watch_work *wk)
{
	if (wk->fetched) {
		w->fetches++;
		log_info("watch '%s': fetched", w->name);
	}
	if (wk->r < 0) {
		w->local_fp_valid = false;
		strv_done(&w->mirror_tips);
		work_failed(w, wk);
		return false;
	}
	if (work_current(w, wk)) {
		w->local_fp = wk->fp;
		w->local_fp_valid = wk->fp_valid;
		strv_set(&w->mirror_tips, &wk->mirror_tips_out);
	}
	if (w->stopping || !wk->moved) {
		if (wk->served)
			w->served = wk->triggers;
		succeeded(w);
		poll_done(w, wk);
		return false;
	}
	wk->kind = WATCH_WORK_PLAN;
	wk->plan_queued_ns = uv_hrtime();
	set_state(w, WATCH_PLANNING);
	w->work = wk;
	uv_queue_work(w->loop, &wk->req, plan_work, plan_after);
	return true;
}

static void fetch_after(uv_work_t *req, int status)
{
	struct watch_work *wk = container_of(req, struct watch_work, req);
	struct watch *w = wk->w;

	assert(w->st == WATCH_FETCHING);
	work_landed(w, wk, status);
	if (!fetch_landed(w, wk))
		work_end(w, wk);
}

/* A failed repack is no failed poll: the mirror keeps its packs, still
 * usable, and the next fetch tries again. */
static void repack_after(uv_work_t *req, int status)
{
	struct watch_work *wk = container_of(req, struct watch_work, req);
	struct watch *w = wk->w;
	const struct repack_result *rp = &wk->repacked;

	assert(w->st == WATCH_REPACKING);
	work_landed(w, wk, status);
	if (wk->r < 0) {
		log_warning("watch '%s': repack failed: %s; the mirror keeps its packs, the next "
			    "fetch tries again",
			    w->name, wk->err.msg);
	} else {
		log_info("watch '%s': repacked the mirror: %u packs -> %u (%zu objects, %zu loose "
			 "removed) in %" PRIu64 " ms",
			 w->name, rp->packs_before, rp->packs_after, rp->objects, rp->loose_removed,
			 rp->ms);
	}
	go_idle(w);
	work_end(w, wk);
}

static void poll_start(struct watch *w)
{
	struct watch_work *wk;

	if (w->stopping)
		return;
	uv_timer_stop(&w->timer);
	wk = work_new(w, WATCH_WORK_FETCH);
	w->work = wk;
	w->polls++;
	set_state(w, WATCH_FETCHING);
	uv_queue_work(w->loop, &wk->req, fetch_work, fetch_after);
}

/* ---- public ---- */

int watch_new(uv_loop_t *loop, const struct config_repo *repo, const char *mirrors_dir,
	      struct store *store, const struct watch_ops *ops, void *arg, struct watch **ret,
	      struct kiln_err *err)
{
	struct watch *w = xcalloc(1, sizeof(*w));
	char *catalog_file;
	int r;

	w->loop = loop;
	w->name = xstrdup(repo->name);
	w->mirror_path = xasprintf("%s/%s.git", mirrors_dir, repo->name);
	w->store = store;
	w->ops = *ops;
	w->arg = arg;
	settings_take(w, repo);
	w->triggers = 1; /* the first poll serves what an earlier run left */
	/* in the mirror's git directory, so it goes with the mirror (a snapshot of
	 * a tree the mirror lacks is rebuilt, never trusted) */
	catalog_file = xasprintf("%s/kiln-catalog", w->mirror_path);
	catalog_init(&w->catalog, repo->manifest, catalog_file);
	free(catalog_file);
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

/* Whether a branch has no last-seen commit in the store. Such a branch's
 * first poll only records its head: the later it comes, the more pushes it
 * takes as the starting point instead of building them. A store error
 * counts as unseen (one poll early is harmless). */
static bool any_unseen(struct watch *w)
{
	char sha[STORE_SHA_LEN + 1];
	struct kiln_err err = {0};

	for (size_t i = 0; i < w->branches.n; i++) {
		if (store_last_seen(w->store, w->name, w->branches.v[i], sha, &err) < 0)
			return true;
	}
	return false;
}

void watch_start(struct watch *w)
{
	if (any_unseen(w)) {
		log_debug("watch '%s': a branch not seen yet: polling now for its baseline",
			  w->name);
		schedule(w, 0);
		return;
	}
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
	w->gen++;		   /* what work in flight learns is of the old settings */
	if (w->work)
		atomic_store(&w->work->stale, true); /* and it serves no delivery */
	if (interval_changed && w->st == WATCH_IDLE && !w->stopping)
		schedule(w, backoff_rand() % (w->interval_ms + 1));
}

void watch_trigger(struct watch *w)
{
	if (w->stopping)
		return;
	w->triggers++;
	if (w->st == WATCH_IDLE) {
		poll_start(w);
	} else {
		log_debug("watch '%s': trigger while %s, coalesced into one more poll", w->name,
			  watch_state_str(w->st));
		w->again = true; /* at most one more poll */
	}
}

void watch_stop(struct watch *w)
{
	if (w->stopping)
		return;
	w->stopping = true;
	uv_timer_stop(&w->timer);
	if (w->work == NULL)
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
