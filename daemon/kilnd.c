/* kilnd.c: the daemon. Options, configuration (SIGHUP reloads it), the event
 * loop, signals, sd_notify, and the owners of everything long-lived: the
 * state, one watch per repository, the builder. */
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <uv.h>

#include "kiln/builder.h"
#include "kiln/config.h"
#include "kiln/control.h"
#include "kiln/log.h"
#include "kiln/notify.h"
#include "kiln/repo.h"
#include "kiln/store.h"
#include "kiln/watch.h"
#include "kiln/webhook.h"

struct daemon {
	uv_loop_t *loop;
	struct config cfg;
	struct store *store;
	char *mirrors_dir;
	struct watch **watches;
	size_t nwatches, capwatches;
	size_t closing; /* watches stopped but not yet closed */
	struct builder builder;
	uv_signal_t sig_hup, sig_term, sig_int, sig_usr1;
	uv_timer_t watchdog, grace;
	struct http_server *http; /* NULL: no listener */
	struct control *control;  /* NULL: closed */
	struct webhook webhook;
	int64_t started;
	bool stopping;
	bool abandoned; /* the grace period ran out with jobs still on workers */
	int exit_code;
};

/* STATUS= only when its text changes: hundreds of watches change state all
 * the time, the summary rarely. */
static void update_status(struct daemon *d)
{
	static char last[512];
	char line[512];
	const char *err = d->builder.last_error;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	for (size_t i = 0; i < d->nwatches; i++) {
		if (d->watches[i]->last_error[0])
			err = d->watches[i]->last_error;
	}
	snprintf(line, sizeof(line),
		 "%s%zu repositories watched; builds: %u queued, %u running%s%.300s",
		 d->stopping ? "stopping; " : "", d->nwatches, d->builder.queued, d->builder.active,
		 err[0] ? "; last error: " : "", err);
	if (strcmp(line, last) == 0)
		return;
	memcpy(last, line, sizeof(last));
	notify_status("%s", line);
}

static void maybe_exit(struct daemon *d)
{
	if (!d->stopping || d->closing > 0 || d->nwatches > 0 || d->builder.running > 0 ||
	    d->http || d->control)
		return;
	log_info("all work finished; exiting");
	uv_stop(d->loop);
}

static void on_planned(struct watch *w, unsigned queued, void *arg)
{
	struct daemon *d = arg;

	if (queued > 0) {
		log_info("watch '%s': %u build%s queued", w->name, queued, queued == 1 ? "" : "s");
		d->builder.queued += queued;
		builder_kick(&d->builder);
	}
	update_status(d);
}

static void on_watch_changed(struct watch *w, void *arg)
{
	(void)w;
	update_status(arg);
}

static void on_watch_closed(struct watch *w, void *arg)
{
	struct daemon *d = arg;

	watch_free(w);
	d->closing--;
	maybe_exit(d);
}

static void on_builder_changed(struct builder *b, void *arg)
{
	struct daemon *d = arg;

	(void)b;
	update_status(d);
	maybe_exit(d);
}

struct mark_job {
	uv_work_t req;
	struct store *store;
	char *repo;
	int64_t until;
};

static void mark_work(uv_work_t *r)
{
	struct mark_job *j = container_of(r, struct mark_job, req);
	struct kiln_err err = {0};

	if (store_deliveries_handled(j->store, j->repo, j->until, &err) < 0)
		log_warning("webhook deliveries of '%s' not marked handled: %s", j->repo, err.msg);
}

static void mark_after(uv_work_t *r, int status)
{
	struct mark_job *j = container_of(r, struct mark_job, req);

	(void)status;
	free(j->repo);
	free(j);
}

/* A poll that a webhook asked for is done: its deliveries need no replay. */
static void on_polled(struct watch *w, void *arg)
{
	struct daemon *d = arg;
	struct mark_job *j;

	if (!w->deliveries_pending)
		return;
	w->deliveries_pending = false;
	j = xcalloc(1, sizeof(*j));
	j->store = d->store;
	j->repo = xstrdup(w->name);
	/* a delivery recorded in the very millisecond the poll began stays
	 * pending: at worst one more poll after a restart */
	j->until = w->poll_started_ms - 1;
	uv_queue_work(d->loop, &j->req, mark_work, mark_after);
}

static const struct watch_ops ops = {on_planned, on_watch_changed, on_watch_closed, on_polled};

static struct watch *find_watch(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->nwatches; i++) {
		if (strcmp(d->watches[i]->name, name) == 0)
			return d->watches[i];
	}
	return NULL;
}

/* ---- the HTTP endpoints ---- */

static int hook_trigger(const char *repo, void *arg)
{
	struct daemon *d = arg;
	struct watch *w = find_watch(d, repo);

	if (w == NULL || d->stopping)
		return -ENOENT;
	w->deliveries_pending = true;
	watch_trigger(w);
	return 0;
}

static int hook_health(struct buf *json, void *arg)
{
	struct daemon *d = arg;
	bool ok = d->builder.last_error[0] == '\0';

	buf_printf(json,
		   "{\"status\":\"%s\",\"version\":\"%s\",\"uptime_s\":%lld,"
		   "\"repositories\":%zu,\"queued\":%u,\"running\":%u,\"dry_run\":%s}\n",
		   ok ? "ok" : "degraded", KILN_VERSION, (long long)(time(NULL) - d->started),
		   d->nwatches, d->builder.queued, d->builder.active,
		   d->cfg.dry_run ? "true" : "false");
	return ok ? 200 : 503;
}

static void metric(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hook_metrics(struct buf *b, void *arg)
{
	struct daemon *d = arg;
	uint64_t fetches = 0, errors = 0;

	for (size_t i = 0; i < d->nwatches; i++) {
		fetches += d->watches[i]->fetches;
		errors += d->watches[i]->errors;
	}
	metric(b, "kiln_process_start_time_seconds", "gauge", "Start time of kilnd, unix seconds.");
	buf_printf(b, "kiln_process_start_time_seconds %lld\n", (long long)d->started);
	metric(b, "kiln_queue_depth", "gauge", "Builds waiting.");
	buf_printf(b, "kiln_queue_depth %u\n", d->builder.queued);
	metric(b, "kiln_running_builds", "gauge", "Builds running.");
	buf_printf(b, "kiln_running_builds %u\n", d->builder.active);
	metric(b, "kiln_builds_total", "counter", "Builds finished since start, by result.");
	buf_printf(b, "kiln_builds_total{result=\"succeeded\"} %llu\n",
		   (unsigned long long)d->builder.done);
	buf_printf(b, "kiln_builds_total{result=\"failed\"} %llu\n",
		   (unsigned long long)d->builder.failed);
	buf_printf(b, "kiln_builds_total{result=\"cancelled\"} %llu\n",
		   (unsigned long long)d->builder.cancelled);
	buf_printf(b, "kiln_builds_total{result=\"retried\"} %llu\n",
		   (unsigned long long)d->builder.retried);
	metric(b, "kiln_build_duration_seconds", "histogram", "How long builds took.");
	for (int k = 0; k < BUILD_DURATION_BUCKETS; k++)
		buf_printf(b, "kiln_build_duration_seconds_bucket{le=\"%g\"} %llu\n",
			   build_duration_bounds[k], (unsigned long long)d->builder.dur_buckets[k]);
	buf_printf(b, "kiln_build_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
		   (unsigned long long)d->builder.dur_count);
	buf_printf(b, "kiln_build_duration_seconds_sum %.6f\n", d->builder.dur_sum);
	buf_printf(b, "kiln_build_duration_seconds_count %llu\n",
		   (unsigned long long)d->builder.dur_count);
	metric(b, "kiln_fetches_total", "counter", "Fetches that brought new commits.");
	buf_printf(b, "kiln_fetches_total %llu\n", (unsigned long long)fetches);
	metric(b, "kiln_fetch_errors_total", "counter", "Polls or plans that failed.");
	buf_printf(b, "kiln_fetch_errors_total %llu\n", (unsigned long long)errors);
	metric(b, "kiln_last_successful_poll_timestamp_seconds", "gauge",
	       "Last successful poll per repository, unix seconds.");
	for (size_t i = 0; i < d->nwatches; i++)
		buf_printf(b,
			   "kiln_last_successful_poll_timestamp_seconds{repository=\"%s\"} %lld\n",
			   d->watches[i]->name, (long long)d->watches[i]->last_success);
}

static const struct webhook_ops hook_ops = {hook_trigger, hook_health, hook_metrics};

static int start_http(struct daemon *d)
{
	struct http_server_opts o;
	struct kiln_err err = {0};
	int nfds = sd_listen_fds(1);

	if (d->cfg.listen_http.n == 0 && nfds <= 0)
		return 0;
	webhook_init(&d->webhook, d->loop, d->store, &d->cfg, &hook_ops, d);
	http_server_default_opts(&o);
	o.header_timeout_ms = d->cfg.header_timeout_ms;
	o.body_timeout_ms = d->cfg.body_timeout_ms;
	o.idle_timeout_ms = d->cfg.idle_timeout_ms;
	http_server_new(d->loop, &o, webhook_handle, &d->webhook, &d->http);
	for (int i = 0; i < nfds; i++) {
		if (http_server_adopt(d->http, SD_LISTEN_FDS_START + i, &err) < 0)
			return log_error_errno(-EINVAL, "%s", err.msg);
		log_info("listening on a socket from systemd (fd %d)", SD_LISTEN_FDS_START + i);
	}
	for (size_t i = 0; i < d->cfg.listen_http.n; i++) {
		if (http_server_listen(d->http, d->cfg.listen_http.v[i], &err) < 0)
			return log_error_errno(-EINVAL, "listen.http: %s", err.msg);
		log_info("listening on http://%s", d->cfg.listen_http.v[i]);
	}
	return 0;
}

/* ---- the status socket ---- */

static void ctl_status(json_t *o, void *arg)
{
	struct daemon *d = arg;
	json_t *repos = json_array();

	json_object_set_new(o, "version", json_string(KILN_VERSION));
	json_object_set_new(o, "uptime_s", json_integer(time(NULL) - d->started));
	for (size_t i = 0; i < d->nwatches; i++) {
		struct watch *w = d->watches[i];
		json_t *r = json_object(), *branches = json_array();
		for (size_t k = 0; k < w->branches.n; k++) {
			const char *head = k < w->mirror_tips.n ? w->mirror_tips.v[k] : "";
			const char *seen = w->have_seen && k < w->seen.n ? w->seen.v[k] : "";
			json_array_append_new(
			    branches,
			    json_pack("{s:s, s:o, s:o}", "name", w->branches.v[k], "head",
				      head[0] ? json_string(head) : json_null(), "last_seen",
				      seen[0] ? json_string(seen) : json_null()));
		}
		json_object_set_new(r, "name", json_string(w->name));
		json_object_set_new(r, "url", json_string(w->url));
		json_object_set_new(r, "state", json_string(watch_state_str(w->st)));
		json_object_set_new(r, "last_error",
				    w->last_error[0] ? json_string(w->last_error) : json_null());
		json_object_set_new(r, "branches", branches);
		json_array_append_new(repos, r);
	}
	json_object_set_new(o, "repositories", repos);
	json_object_set_new(o, "queued", json_integer(d->builder.queued));
	json_object_set_new(o, "running", json_integer(d->builder.active));
}

static int ctl_trigger(const char *repo, const char *branch, void *arg)
{
	struct daemon *d = arg;
	struct watch *w = find_watch(d, repo);
	bool found = branch == NULL;

	for (size_t k = 0; w && branch && k < w->branches.n; k++)
		found |= strcmp(w->branches.v[k], branch) == 0;
	if (w == NULL || !found || d->stopping)
		return -ENOENT;
	log_info("status socket: poll of '%s' requested", repo);
	watch_trigger(w);
	return 0;
}

static void ctl_changed(void *arg)
{
	struct daemon *d = arg;
	builder_kick(&d->builder); /* refreshes the counts */
	update_status(d);
}

static int ctl_health(json_t *o, void *arg)
{
	struct daemon *d = arg;
	bool ok = d->builder.last_error[0] == '\0';

	json_object_set_new(o, "status", json_string(ok ? "ok" : "degraded"));
	if (!ok)
		json_object_set_new(o, "reason", json_string(d->builder.last_error));
	return ok ? 0 : -EIO;
}

static char *ctl_log_path(int64_t id, void *arg)
{
	struct daemon *d = arg;
	return builder_log_path(&d->builder, id);
}

static int ctl_repo_info(const char *repo, char **mirror, char **manifest, char **branch, void *arg)
{
	struct daemon *d = arg;
	struct watch *w = find_watch(d, repo);

	if (w == NULL)
		return -ENOENT;
	*mirror = xstrdup(w->mirror_path);
	*manifest = xstrdup(w->manifest);
	*branch = xstrdup(w->branches.v[0]);
	return 0;
}

static int ctl_cancel_running(int64_t id, void *arg)
{
	struct daemon *d = arg;
	return builder_cancel(&d->builder, id);
}

static const struct control_ops ctl_ops = {ctl_status,	      ctl_trigger,  ctl_changed,
					   ctl_health,	      ctl_log_path, ctl_repo_info,
					   ctl_cancel_running};

static gid_t group_id(const char *name)
{
	struct group *g = name ? getgrnam(name) : NULL;
	return g ? g->gr_gid : (gid_t)-1;
}

static int start_control(struct daemon *d)
{
	struct kiln_err err = {0};
	gid_t status = group_id(d->cfg.status_group), admin = group_id(d->cfg.admin_group);

	if (d->cfg.status_socket[0] == '\0')
		return 0; /* status_socket: "" turns it off */
	if (control_start(d->loop, d->cfg.status_socket, status != (gid_t)-1 ? status : admin,
			  status, admin, d->store, &ctl_ops, d, &d->control, &err) < 0)
		return log_error_errno(-EIO, "%s", err.msg);
	log_info("status socket on '%s'", d->cfg.status_socket);
	return 0;
}

static void control_closed(void *arg)
{
	struct daemon *d = arg;

	d->control = NULL;
	maybe_exit(d);
}

static void http_closed(void *arg)
{
	struct daemon *d = arg;

	d->http = NULL;
	webhook_done(&d->webhook);
	maybe_exit(d);
}

static int add_watch(struct daemon *d, const struct config_repo *repo)
{
	struct watch *w;
	struct kiln_err err = {0};
	int r = watch_new(d->loop, repo, d->mirrors_dir, d->store, &ops, d, &w, &err);

	if (r < 0)
		return log_error_errno(r, "repository '%s': %s", repo->name, err.msg);
	if (d->nwatches == d->capwatches) {
		d->capwatches = d->capwatches ? d->capwatches * 2 : 8;
		d->watches = xreallocarray(d->watches, d->capwatches, sizeof(*d->watches));
	}
	d->watches[d->nwatches++] = w;
	watch_start(w);
	log_info("watching '%s' (%s), branches:%s%s, every %" PRIu64 "ms", repo->name, repo->url,
		 repo->branches.n ? " " : "", repo->branches.v[0], repo->poll_interval_ms);
	return 0;
}

static void remove_watch(struct daemon *d, size_t i)
{
	struct watch *w = d->watches[i];

	d->watches[i] = d->watches[--d->nwatches];
	d->closing++;
	watch_stop(w);
}

static void log_diags(const struct kiln_diags *diags)
{
	char line[1024];

	for (size_t i = 0; i < diags->n; i++) {
		kiln_diag_format(&diags->v[i], line, sizeof(line));
		log_error("%s", line);
	}
}

/* SIGHUP: a valid new configuration replaces the old one without losing
 * anything queued; an invalid one is reported and the old one stays. */
static void reload(struct daemon *d)
{
	struct config next;
	struct kiln_diags diags = {0};

	notify_reloading();
	log_info("reloading '%s'", d->cfg.path);
	if (config_load(d->cfg.path, &next, &diags) < 0) {
		log_diags(&diags);
		log_error("the new configuration is invalid; keeping the old one");
		kiln_diags_done(&diags);
		notify_ready();
		update_status(d);
		return;
	}
	if (strcmp(next.state_dir, d->cfg.state_dir) != 0)
		log_warning("state_dir changed to '%s': it takes effect at the next start",
			    next.state_dir);
	if (next.listen_http.n != d->cfg.listen_http.n)
		log_warning("listen.http changed: it takes effect at the next start");
	for (size_t i = d->nwatches; i-- > 0;) {
		if (config_repo(&next, d->watches[i]->name) == NULL) {
			log_info("no longer watching '%s'", d->watches[i]->name);
			remove_watch(d, i);
		}
	}
	for (size_t k = 0; k < next.nrepos; k++) {
		struct watch *w = find_watch(d, next.repos[k].name);
		if (w)
			watch_reconfigure(w, &next.repos[k]);
		else
			add_watch(d, &next.repos[k]);
	}
	d->builder.concurrency = next.concurrency;
	config_done(&d->cfg);
	d->cfg = next;
	log_info("configuration reloaded: %zu repositories", d->nwatches);
	notify_ready();
	update_status(d);
	builder_kick(&d->builder);
}

static void grace_cb(uv_timer_t *t)
{
	struct daemon *d = container_of(t, struct daemon, grace);

	log_warning("shutdown grace period over with work still running; exiting (running "
		    "builds go back to the queue at the next start)");
	d->abandoned = true;
	uv_stop(d->loop);
}

static void stop(struct daemon *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	notify_stopping();
	log_info("%s: stopping (grace period %" PRIu64 "ms)", why, d->cfg.shutdown_grace_ms);
	builder_drain(&d->builder);
	if (d->http)
		http_server_close(d->http, http_closed, d);
	if (d->control)
		control_close(d->control, control_closed, d);
	while (d->nwatches > 0)
		remove_watch(d, d->nwatches - 1);
	uv_timer_start(&d->grace, grace_cb, d->cfg.shutdown_grace_ms, 0);
	uv_unref((uv_handle_t *)&d->grace);
	update_status(d);
	maybe_exit(d);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;

	if (signum == SIGHUP && !d->stopping) {
		reload(d);
	} else if (signum == SIGUSR1 && !d->stopping) {
		log_info("SIGUSR1: polling every repository now");
		for (size_t i = 0; i < d->nwatches; i++)
			watch_trigger(d->watches[i]);
	} else if (signum == SIGTERM || signum == SIGINT)
		stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void watchdog_cb(uv_timer_t *t)
{
	(void)t;
	notify_watchdog(); /* from the loop: a stuck loop stops the pings */
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kilnd [--config PATH] [--log-level LEVEL]\n"
		"       kilnd --check-config [--config PATH]\n"
		"       kilnd --version | --help\n"
		"\n"
		"The kiln daemon: watches git repositories of images and builds, tests and\n"
		"pushes the images each new commit changes, through the Docker Engine API.\n"
		"\n"
		"  -c, --config PATH      configuration file (default %s)\n"
		"      --check-config     validate the configuration (and its secret files),\n"
		"                         print every error, exit 0 if valid and 1 if not\n"
		"  -l, --log-level LEVEL  error, warning, notice, info (default) or debug\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n"
		"\n"
		"Signals: SIGHUP reloads the configuration; SIGTERM and SIGINT stop after the\n"
		"work in flight (at most shutdown_grace).\n",
		CONFIG_DEFAULT_PATH);
}

static int run(struct daemon *d)
{
	struct kiln_err err = {0};
	uint64_t wd;
	int r;

	repo_global_init();
	r = store_open(d->cfg.state_dir, &d->store, &err);
	if (r < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	if (store_requeued(d->store))
		log_notice("%u build%s left running by the last run went back to the queue",
			   store_requeued(d->store), store_requeued(d->store) == 1 ? "" : "s");
	d->mirrors_dir = xasprintf("%s/mirrors", d->cfg.state_dir);
	if (mkdir(d->mirrors_dir, 0750) < 0 && errno != EEXIST) {
		log_error("cannot create '%s': %s", d->mirrors_dir, strerror(errno));
		return 1;
	}
	d->loop = uv_default_loop();
	d->started = (int64_t)time(NULL);
	{
		char *logs = xasprintf("%s/logs", d->cfg.state_dir);
		struct docker *engine = NULL;
		struct docker_opts dopts = {.host = d->cfg.docker_host,
					    .cert_path = d->cfg.docker_cert_path,
					    .tls_verify = d->cfg.docker_tls_verify};
		if (!d->cfg.dry_run && docker_new(d->loop, &dopts, &engine, &err) < 0) {
			log_error("%s: %s", d->cfg.path, err.msg);
			free(logs);
			return 1;
		}
		builder_init(&d->builder, d->loop, d->store, &d->cfg, engine, d->mirrors_dir, logs,
			     on_builder_changed, d);
		free(logs);
		if (engine)
			log_info("building on docker engine %s", docker_host(engine));
		else
			log_info("builds.dry_run: builds are logged, not built");
	}
	for (size_t i = 0; i < d->cfg.nrepos; i++) {
		if (add_watch(d, &d->cfg.repos[i]) < 0)
			return 1;
	}
	uv_signal_init(d->loop, &d->sig_hup);
	uv_signal_init(d->loop, &d->sig_term);
	uv_signal_init(d->loop, &d->sig_int);
	uv_signal_init(d->loop, &d->sig_usr1);
	d->sig_hup.data = d->sig_term.data = d->sig_int.data = d->sig_usr1.data = d;
	uv_signal_start(&d->sig_hup, signal_cb, SIGHUP);
	uv_signal_start(&d->sig_term, signal_cb, SIGTERM);
	uv_signal_start(&d->sig_int, signal_cb, SIGINT);
	uv_signal_start(&d->sig_usr1, signal_cb, SIGUSR1);
	uv_timer_init(d->loop, &d->grace);
	uv_timer_init(d->loop, &d->watchdog);
	if ((wd = notify_watchdog_usec()) > 0) {
		uv_timer_start(&d->watchdog, watchdog_cb, wd / 2000, wd / 2000);
		log_debug("watchdog ping every %" PRIu64 "ms", wd / 2000);
	}
	if (start_http(d) < 0 || start_control(d) < 0)
		return 1;
	{
		/* deliveries answered before a crash but not yet followed by a poll */
		struct strv pending = {0};
		store_pending_deliveries(d->store, &pending, NULL);
		for (size_t i = 0; i < pending.n; i++) {
			if (hook_trigger(pending.v[i], d) == 0)
				log_notice("repository '%s' has webhook deliveries from before the "
					   "restart: polling now",
					   pending.v[i]);
		}
		strv_done(&pending);
	}
	builder_kick(&d->builder); /* builds left queued by the last run */
	notify_ready();
	update_status(d);
	log_info("kilnd %s ready: %zu repositories, state in '%s'", KILN_VERSION, d->nwatches,
		 d->cfg.state_dir);
	uv_run(d->loop, UV_RUN_DEFAULT);
	if (d->abandoned) {
		/* Workers may still be inside a transaction: leave without closing
		 * anything under them. SQLite's journal keeps the database whole. */
		log_info("stopped");
		_exit(d->exit_code);
	}
	d->store = store_close(d->store);
	builder_done(&d->builder);
	uv_run(d->loop, UV_RUN_NOWAIT); /* the engine client's handles close */
	log_info("stopped");
	return d->exit_code;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},	 {"check-config", no_argument, NULL, 'k'},
	    {"log-level", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},	 {NULL, 0, NULL, 0},
	};
	struct daemon d = {0};
	struct kiln_diags diags = {0};
	const char *path = CONFIG_DEFAULT_PATH;
	bool check = false;
	int c, level, rc;

	while ((c = getopt_long(argc, argv, "c:l:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'l':
			if ((level = log_parse_level(optarg)) < 0) {
				fprintf(stderr,
					"kilnd: unknown log level '%s' (error, warning, notice, "
					"info, debug)\n",
					optarg);
				return 2;
			}
			log_set_level(level);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("kilnd %s\n", KILN_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kilnd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (config_load(path, &d.cfg, &diags) < 0) {
		char line[1024];
		for (size_t i = 0; i < diags.n; i++) {
			kiln_diag_format(&diags.v[i], line, sizeof(line));
			if (check)
				fprintf(stderr, "%s\n", line);
			else
				log_error("%s", line);
		}
		if (check)
			fprintf(stderr, "%s: %zu error%s\n", path, diags.n,
				diags.n == 1 ? "" : "s");
		kiln_diags_done(&diags);
		return 1;
	}
	if (check) {
		printf("%s: valid, %zu repositor%s\n", path, d.cfg.nrepos,
		       d.cfg.nrepos == 1 ? "y" : "ies");
		config_done(&d.cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = run(&d);
	curl_global_cleanup();
	config_done(&d.cfg);
	free(d.mirrors_dir);
	free(d.watches);
	return rc;
}
