/* kilnd.c (main): the daemon's wiring. Options, configuration (SIGHUP reloads it),
 * the event loop, signals, sd_notify, and the owners of everything
 * long-lived: the store, one watch per repository, the builder, the webhook
 * endpoints, the status socket and the metric registry. What it reports is
 * built in status.c and metrics.c; the delivery bookkeeping is webhook.c's. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <uv.h>

#include "kiln/backup.h"
#include "kiln/builder.h"
#include "kiln/config.h"
#include "kiln/control.h"
#include "kiln/dashboard.h"
#include "kiln/log.h"
#include "kiln/metrics.h"
#include "kiln/notify.h"
#include "kiln/outbox.h"
#include "kiln/proto.h"
#include "kiln/redact.h"
#include "kiln/repo.h"
#include "kiln/status.h"
#include "kiln/store.h"
#include "kiln/watch.h"
#include "kiln/webhook.h"

/* kilnd refused a lost state: the unit's RestartPreventExitStatus, since
 * only the operator can recover it (65 is sysexits.h's EX_DATAERR). */
#define KILND_EXIT_STATE_REFUSED 65
/* File descriptors kept out of the HTTP connection cap, so that a flood of
 * connections cannot starve what kilnd opens itself; the rest of the soft
 * RLIMIT_NOFILE is for HTTP connections. The fixed part:
 *   16  stdio, libuv's loop (epoll, eventfd, the signal pipe, the spare fd it
 *       keeps to shed connections at EMFILE), the listeners, sd_notify, the
 *       instance lock, kilnd.yaml and secret files read at a reload
 *    8  SQLite: the database, its -wal and -shm, a temporary file
 *   48  git: the REPO_PACK_FILES_MAX (32) pack files libgit2 keeps open, and a
 *       fetch on each of libuv's 4 workers (its socket, the pack it writes and
 *       its index, a ref file)
 *   24  the status socket: its listener and room for an administrator's `kiln`
 *       while HTTP is full (a flood of the socket itself meets its own cap)
 * and FD_PER_BUILD for each build at once (builds.concurrency): connections
 * to the engine (the build stream, a push, a request on the side), the
 * context's file and pipe, the build log. */
#define FD_RESERVE	 96
#define FD_PER_BUILD	 8
#define HTTP_CONNS_FLOOR 16 /* fewer and the limit is too low to serve webhooks */

struct daemon {
	uv_loop_t *loop;
	struct config cfg;
	struct store *store;
	struct backup backup; /* the store's periodic snapshot */
	char *mirrors_dir;
	struct watch **watches;
	size_t nwatches, capwatches;
	size_t closing;	    /* watches stopped but not yet closed */
	unsigned recording; /* SIGUSR1 triggers being recorded on a worker */
	struct builder builder;
	uv_signal_t sig_hup, sig_term, sig_int, sig_usr1;
	uv_timer_t watchdog, grace;
	uv_timer_t trim;	       /* malloc_trim once a burst of work is over */
	struct http_server *http;      /* NULL: no listener */
	struct http_server *dash_http; /* listen.dashboard_http; NULL: none */
	struct dashboard dashboard;
	struct control *control; /* NULL: closed */
	struct webhook webhook;
	struct metrics *metrics;
	struct outbox *outbox; /* NULL: not started, or closed */
	bool outbox_closing;   /* outbox_stop called, outbox_closed not yet */
	bool outbox_restart;   /* a reload: start it anew once it has closed */
	struct status status;  /* reads the fields above */
	rlim_t fd_limit;       /* the soft RLIMIT_NOFILE, raised at start */
	bool stopping;
	bool abandoned; /* the grace period ran out with jobs still on workers */
	int exit_code;
};

static void update_status(struct daemon *d)
{
	status_notify(&d->status);
}

/* A fetch, a plan or a build leaves its freed memory in the heap, and glibc
 * gives back only what lies at the top: with 200 repositories, trimming
 * after the first round of fetches and plans gave back 1.6 MiB of 22.
 * The burst over (no more work for TRIM_AFTER_MS), the free pages go back to
 * the system. Not after idle polls: their memory is reused by the next, and
 * trimming it would cost page faults on every one. */
#define TRIM_AFTER_MS 1000

static void trim_cb(uv_timer_t *t)
{
	(void)t;
	malloc_trim(0);
}

static void trim_later(struct daemon *d)
{
	uv_timer_start(&d->trim, trim_cb, TRIM_AFTER_MS, 0);
}

static void maybe_exit(struct daemon *d)
{
	if (!d->stopping || d->closing > 0 || d->recording > 0 || d->nwatches > 0 ||
	    d->builder.running > 0 || d->http || d->dash_http || d->control ||
	    d->backup.state != BACKUP_CLOSED || d->outbox)
		return;
	log_info("all work finished; exiting");
	uv_stop(d->loop);
}

static void on_planned(struct watch *w, unsigned queued, void *arg)
{
	struct daemon *d = arg;

	if (queued > 0) {
		log_info("watch '%s': %u build%s queued", w->name, queued, queued == 1 ? "" : "s");
		builder_planned(&d->builder, queued);
	}
	update_status(d);
	trim_later(d);
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
	trim_later(d);
	maybe_exit(d);
}

static const struct watch_ops ops = {on_planned, on_watch_changed, on_watch_closed};

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
	watch_trigger(w);
	return 0;
}

static int hook_health(struct buf *json, void *arg)
{
	struct daemon *d = arg;
	return status_healthz(&d->status, json);
}

static const struct webhook_ops hook_ops = {hook_trigger, hook_health};

/* listen.http's requests: the dashboard's paths when listen.dashboard is on
 * (read at each request, so a reload turns it on or off), else webhooks,
 * /healthz and /metrics. */
static void http_handle(struct http_request *req, void *arg)
{
	struct daemon *d = arg;

	if (d->cfg.listen_dashboard && dashboard_path(req->path))
		dashboard_handle(req, &d->dashboard);
	else
		webhook_handle(req, &d->webhook);
}

static void http_headers(struct http_request *req, void *arg)
{
	struct daemon *d = arg;
	webhook_headers(req, &d->webhook);
}

/* dashboard.auth_file into the dashboard: at start (an error stops it) and
 * at a reload (an error keeps the users in force). */
static int load_dashboard_auth(struct daemon *d, const struct config *cfg)
{
	struct dashboard_auth *a = NULL;
	struct kiln_err err = {0};

	if (cfg->dashboard_auth_file && dashboard_auth_load(cfg->dashboard_auth_file, &a, &err) < 0)
		return log_error_errno(err.code, "dashboard.auth_file: %s", err.msg);
	if (a)
		log_info("dashboard: %zu user%s from '%s'", dashboard_auth_users(a),
			 dashboard_auth_users(a) == 1 ? "" : "s", cfg->dashboard_auth_file);
	else if (cfg->listen_dashboard || cfg->listen_dashboard_http)
		log_warning("dashboard: no dashboard.auth_file, so anyone who reaches the "
			    "listener may read it");
	dashboard_set_auth(&d->dashboard, a);
	return 0;
}

/* The soft limit on open files up to the hard one: systemd's default soft
 * limit (1024) is for programs that use select(2), and kilnd does not. */
static rlim_t raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024; /* cannot happen on Linux; assume the usual default */
	was = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			log_warning("cannot raise the open files limit from %ju to %ju: %s",
				    (uintmax_t)was, (uintmax_t)rl.rlim_max, strerror(errno));
			return was;
		}
		log_debug("open files limit raised from %ju to %ju", (uintmax_t)was,
			  (uintmax_t)rl.rlim_cur);
	}
	return rl.rlim_cur;
}

/* The HTTP connection cap: what the open files limit leaves after the reserve,
 * at most the server's own cap. Logged, since it bounds who gets served. */
static unsigned http_conn_cap(const struct daemon *d, unsigned ceiling)
{
	rlim_t reserve = FD_RESERVE + (rlim_t)FD_PER_BUILD * d->cfg.concurrency;
	unsigned cap = ceiling;

	if (d->fd_limit < reserve + HTTP_CONNS_FLOOR) {
		cap = HTTP_CONNS_FLOOR;
		log_warning("the open files limit (%ju) leaves no room for HTTP connections after "
			    "the %ju kept for the status socket, the engine, git and SQLite; "
			    "allowing %u: raise LimitNOFILE",
			    (uintmax_t)d->fd_limit, (uintmax_t)reserve, cap);
	} else if (d->fd_limit - reserve < ceiling) {
		cap = (unsigned)(d->fd_limit - reserve);
	}
	log_info("HTTP connections: at most %u (open files limit %ju, %ju kept for the status "
		 "socket, the engine, git and SQLite)",
		 cap, (uintmax_t)d->fd_limit, (uintmax_t)reserve);
	return cap;
}

/* The listen section's limits, for either listener. */
static void http_opts(struct daemon *d, struct http_server_opts *o)
{
	http_server_default_opts(o);
	o->conn_max = http_conn_cap(d, o->conn_max);
	o->header_timeout_ms = d->cfg.header_timeout_ms;
	o->body_timeout_ms = d->cfg.body_timeout_ms;
	o->idle_timeout_ms = d->cfg.idle_timeout_ms;
	o->first_byte_timeout_ms = d->cfg.first_byte_timeout_ms;
	o->conn_per_client_max = d->cfg.conns_per_client;
	o->bodies_max = d->cfg.bodies_max;
}

static int start_http(struct daemon *d)
{
	struct http_server_opts o;
	struct kiln_err err = {0};
	int nfds = sd_listen_fds(1);

	if (d->cfg.listen_http.n == 0 && nfds <= 0)
		return 0;
	http_opts(d, &o);
	o.headers = http_headers;
	http_server_new(d->loop, &o, http_handle, d, &d->http);
	for (int i = 0; i < nfds; i++) {
		if (http_server_adopt(d->http, SD_LISTEN_FDS_START + i, &err) < 0)
			return log_error_errno(err.code, "%s", err.msg);
		log_info("listening on a socket from systemd (fd %d)", SD_LISTEN_FDS_START + i);
	}
	for (size_t i = 0; i < d->cfg.listen_http.n; i++) {
		if (http_server_listen(d->http, d->cfg.listen_http.v[i], &err) < 0)
			return log_error_errno(err.code, "listen.http: %s", err.msg);
		log_info("listening on http://%s", d->cfg.listen_http.v[i]);
	}
	return 0;
}

/* listen.dashboard_http: the same server code, the dashboard only, with
 * the same limits as listen.http. */
static int start_dashboard_http(struct daemon *d)
{
	struct http_server_opts o;
	struct kiln_err err = {0};

	if (d->cfg.listen_dashboard_http == NULL)
		return 0;
	http_opts(d, &o);
	o.body_max = 64u << 10; /* read-only: a body is read only to answer 405 */
	http_server_new(d->loop, &o, dashboard_handle, &d->dashboard, &d->dash_http);
	if (http_server_listen(d->dash_http, d->cfg.listen_dashboard_http, &err) < 0)
		return log_error_errno(err.code, "listen.dashboard_http: %s", err.msg);
	log_info("dashboard on http://%s", d->cfg.listen_dashboard_http);
	return 0;
}

/* ---- the status socket ---- */

static void ctl_status(json_t *o, void *arg)
{
	struct daemon *d = arg;
	json_t *repo;
	size_t i;

	status_json(&d->status, o);
	json_array_foreach(json_object_get(o, PROTO_F_REPOSITORIES), i, repo)
	{
		const char *name = json_string_value(json_object_get(repo, PROTO_F_NAME));
		if (name)
			outbox_repo_json(d->outbox, name, repo);
	}
}

/* The repository's machine when it is watched with that branch (NULL: any). */
static struct watch *find_watch_branch(struct daemon *d, const char *repo, const char *branch)
{
	struct watch *w = d->stopping ? NULL : find_watch(d, repo);
	bool found = branch == NULL;

	for (size_t k = 0; w && branch && k < w->branches.n; k++)
		found |= strcmp(w->branches.v[k], branch) == 0;
	return found ? w : NULL;
}

static int ctl_watched(const char *repo, const char *branch, void *arg)
{
	return find_watch_branch(arg, repo, branch) ? 0 : -ENOENT;
}

static int ctl_trigger(const char *repo, const char *branch, void *arg)
{
	struct watch *w = find_watch_branch(arg, repo, branch);

	if (w == NULL)
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
	return status_health_json(&d->status, o);
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

/* the dashboard reads what the status socket answers */
static const struct dashboard_ops dash_ops = {ctl_status, ctl_health, ctl_log_path};

static const struct control_ops ctl_ops = {
    .status = ctl_status,
    .watched = ctl_watched,
    .trigger = ctl_trigger,
    .changed = ctl_changed,
    .health = ctl_health,
    .log_path = ctl_log_path,
    .repo_info = ctl_repo_info,
    .cancel_running = ctl_cancel_running,
};

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
	if (control_start(d->loop, d->cfg.status_socket, status, admin, d->store, &ctl_ops, d,
			  &d->control, &err) < 0)
		return log_error_errno(err.code, "%s", err.msg);
	control_set_idle(d->control, d->cfg.status_idle_ms);
	log_info("status socket on '%s'", d->cfg.status_socket);
	return 0;
}

static void control_closed(void *arg)
{
	struct daemon *d = arg;

	d->control = NULL;
	maybe_exit(d);
}

static void backup_closed(void *arg)
{
	maybe_exit(arg);
}

static int start_outbox(struct daemon *d);

static void outbox_closed(void *arg)
{
	struct daemon *d = arg;

	d->outbox = NULL;
	d->outbox_closing = false;
	if (d->outbox_restart && !d->stopping) {
		d->outbox_restart = false;
		start_outbox(d);
	}
	maybe_exit(d);
}

static void stop_outbox(struct daemon *d)
{
	if (d->outbox && !d->outbox_closing) {
		d->outbox_closing = true;
		outbox_stop(d->outbox, outbox_closed, d);
	}
}

/* A reload: the outbox's sinks (providers, tokens, targets) are made anew
 * from the new configuration once the old outbox has closed; a transfer it
 * abandons is sent again, under the same delivery id. */
static void restart_outbox(struct daemon *d)
{
	if (!d->outbox) {
		start_outbox(d);
		return;
	}
	d->outbox_restart = true;
	stop_outbox(d);
}

static void http_closed(void *arg)
{
	struct daemon *d = arg;

	d->http = NULL;
	maybe_exit(d);
}

static void dash_http_closed(void *arg)
{
	struct daemon *d = arg;

	d->dash_http = NULL;
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

/* A credential in a repository URL is masked wherever kilnd prints it, but it
 * still sits in kilnd.yaml, readable by whoever reads the configuration: say
 * where it belongs. To stderr for --check-config, to the log otherwise. */
static void warn_url_secrets(const struct config *cfg, bool to_stderr)
{
	for (size_t i = 0; i < cfg->nrepos; i++) {
		const struct config_repo *r = &cfg->repos[i];
		char *shown;

		if (!redact_has_secret(r->url))
			continue;
		shown = redact_dup(r->url);
		if (to_stderr)
			fprintf(stderr,
				"%s: warning: repository '%s': the url '%s' holds a credential; "
				"move it to credentials.password_file (and credentials.username)\n",
				cfg->path, r->name, shown);
		else
			log_warning("%s: repository '%s': the url '%s' holds a credential; move it "
				    "to credentials.password_file (and credentials.username)",
				    cfg->path, r->name, shown);
		free(shown);
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
	warn_url_secrets(&next, false);
	if (strcmp(next.state_dir, d->cfg.state_dir) != 0)
		log_warning("state_dir changed to '%s': it takes effect at the next start",
			    next.state_dir);
	if (next.listen_http.n != d->cfg.listen_http.n)
		log_warning("listen.http changed: it takes effect at the next start");
	if (!(next.listen_dashboard_http == NULL && d->cfg.listen_dashboard_http == NULL) &&
	    (next.listen_dashboard_http == NULL || d->cfg.listen_dashboard_http == NULL ||
	     strcmp(next.listen_dashboard_http, d->cfg.listen_dashboard_http) != 0))
		log_warning("listen.dashboard_http changed: it takes effect at the next start");
	if (load_dashboard_auth(d, &next) < 0)
		log_error("dashboard.auth_file: keeping the users read before");
	if (d->control)
		control_set_idle(d->control, next.status_idle_ms);
	if (d->cfg.listen_dashboard && !next.listen_dashboard)
		dashboard_restart_streams(&d->dashboard); /* on listen.http: 404 from now */
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
	d->backup.interval_ms = next.backup_interval_ms;
	config_done(&d->cfg);
	d->cfg = next;
	restart_outbox(d);
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
	if (d->dash_http)
		http_server_close(d->dash_http, dash_http_closed, d);
	if (d->control)
		control_close(d->control, control_closed, d);
	backup_stop(&d->backup, backup_closed, d);
	stop_outbox(d);
	while (d->nwatches > 0)
		remove_watch(d, d->nwatches - 1);
	uv_timer_start(&d->grace, grace_cb, d->cfg.shutdown_grace_ms, 0);
	uv_unref((uv_handle_t *)&d->grace);
	update_status(d);
	maybe_exit(d);
}

/* SIGUSR1: a trigger per repository, recorded in the store (a worker's job)
 * before the polls, so a crash before they end leaves them to be replayed. */
struct usr1_job {
	uv_work_t req;
	struct daemon *d;
	struct strv repos;
	int r;
	struct kiln_err err;
};

static void usr1_work(uv_work_t *req)
{
	struct usr1_job *j = container_of(req, struct usr1_job, req);

	for (size_t i = 0; i < j->repos.n && j->r == 0; i++)
		j->r = store_record_trigger(j->d->store, j->repos.v[i], NULL, &j->err);
}

static void usr1_after(uv_work_t *req, int status)
{
	struct usr1_job *j = container_of(req, struct usr1_job, req);
	struct daemon *d = j->d;

	d->recording--;
	if (status < 0 || j->r < 0)
		log_error("SIGUSR1: the triggers could not be recorded (a crash before the polls "
			  "end would lose them): %s; polling anyway",
			  status < 0 ? "cancelled" : j->err.msg);
	for (size_t i = 0; i < j->repos.n; i++) {
		struct watch *w = find_watch_branch(d, j->repos.v[i], NULL);
		if (w)
			watch_trigger(w);
	}
	strv_done(&j->repos);
	free(j);
	maybe_exit(d);
}

static void trigger_all(struct daemon *d)
{
	struct usr1_job *j = xcalloc(1, sizeof(*j));

	log_info("SIGUSR1: polling every repository now");
	j->d = d;
	for (size_t i = 0; i < d->nwatches; i++)
		strv_push(&j->repos, xstrdup(d->watches[i]->name));
	d->recording++;
	uv_queue_work(d->loop, &j->req, usr1_work, usr1_after);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;

	if (signum == SIGHUP && !d->stopping) {
		reload(d);
	} else if (signum == SIGUSR1 && !d->stopping) {
		trigger_all(d);
	} else if (signum == SIGTERM || signum == SIGINT)
		stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void watchdog_cb(uv_timer_t *t)
{
	struct daemon *d = t->data;

	notify_watchdog(); /* from the loop: a stuck loop stops the pings */
	/* health reasons that come with time (a repository failing past its
	 * threshold, the disk filling) reach STATUS= at this pace */
	update_status(d);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kilnd [--config PATH] [--log-level LEVEL]\n"
		"       kilnd --check-config [--config PATH]\n"
		"       kilnd --recover [--config PATH]\n"
		"       kilnd --version | --help\n"
		"\n"
		"The kiln daemon: watches git repositories of images and builds, tests and\n"
		"pushes the images each new commit changes, through the Docker Engine API.\n"
		"\n"
		"  -c, --config PATH      configuration file (default %s)\n"
		"      --check-config     validate the configuration (and its secret files),\n"
		"                         print every error, exit 0 if valid and 1 if not\n"
		"      --recover          replace a damaged state database (kilnd refused to\n"
		"                         start on it) by its last verified snapshot, keeping\n"
		"                         the damaged file beside it; kilnd must not be running\n"
		"  -l, --log-level LEVEL  error, warning, notice, info (default) or debug\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n"
		"\n"
		"Signals: SIGHUP reloads the configuration; SIGTERM and SIGINT stop after the\n"
		"work in flight (at most shutdown_grace).\n",
		CONFIG_DEFAULT_PATH);
}

/* The snapshot's age for the operator, "" when there is none. */
static void snapshot_time(const char *path, char *buf, size_t size)
{
	struct stat sb;
	struct tm tm;

	buf[0] = '\0';
	if (stat(path, &sb) == 0 && gmtime_r(&sb.st_mtime, &tm))
		strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* kilnd will not start on a lost state (r: store_open's -EUCLEAN or
 * -ENODATA): says what is wrong and the way out. */
static void log_refusal(const struct daemon *d, int r, const char *why)
{
	const char *dir = d->cfg.state_dir;
	char *backup = xasprintf("%s/" STORE_BACKUP_FILE, dir), when[64];

	snapshot_time(backup, when, sizeof(when));
	log_error("%s", why);
	log_error("refusing to start on it: a state started over forgets each branch's last-seen "
		  "commit, and pushes made meanwhile would never be built");
	if (when[0])
		log_error(
		    "to recover: run 'kilnd --recover --config %s', then start kilnd again; it "
		    "moves '%s/" STORE_FILE "' aside as '" STORE_FILE
		    ".damaged-<unix time>' and restores the verified snapshot '%s' of %s",
		    d->cfg.path, dir, backup, when);
	else
		log_error(
		    "there is no snapshot '%s' for 'kilnd --recover' to restore: to start afresh, "
		    "move '%s/" STORE_FILE "' aside and remove '%s/mirrors' (every branch is "
		    "then seen for the first time; pushes made meanwhile are not built)",
		    backup, dir, dir);
	if (r == -ENODATA && when[0])
		log_error("or, to start afresh instead, remove '%s/mirrors' (every branch is then "
			  "seen for the first time; pushes made meanwhile are not built)",
			  dir);
	free(backup);
}

/* Lock files in the mirrors are a killed run's: nothing else writes them while
 * kilnd holds the state directory, and each would fail every fetch of its ref. */
static int unlock_mirrors(struct daemon *d)
{
	DIR *dir = opendir(d->mirrors_dir);
	struct dirent *e;
	int r = 0;

	if (dir == NULL) {
		log_error("cannot read '%s': %s", d->mirrors_dir, strerror(errno));
		return -errno;
	}
	while (r == 0 && (e = readdir(dir)) != NULL) {
		struct kiln_err err = {0};
		unsigned n = 0;
		char *path;

		if (e->d_name[0] == '.')
			continue;
		path = xasprintf("%s/%s", d->mirrors_dir, e->d_name);
		r = repo_mirror_unlock(path, &n, &err);
		if (r < 0)
			log_error("%s", err.msg);
		if (n > 0)
			log_notice("mirror '%s': removed %u lock file%s left by a run that did not "
				   "stop cleanly",
				   e->d_name, n, n == 1 ? "" : "s");
		free(path);
	}
	closedir(dir);
	return r;
}

/* The store (requeueing what the last run left running) and the mirrors. */
static int open_store(struct daemon *d)
{
	struct kiln_err err = {0};
	int r = store_open(d->cfg.state_dir, &d->store, &err);

	if (r == -EUCLEAN || r == -ENODATA) {
		log_refusal(d, r, err.msg);
		return r;
	}
	if (r == -EPROTO) {
		/* a restart cannot help: the unit must not retry (exit 65) */
		log_error("%s", err.msg);
		log_error(
		    "refusing to start on it: this kilnd is older than the one that wrote it; "
		    "install that kilnd again, or see README, \"Operations runbook\", for a "
		    "downgrade");
		return r;
	}
	if (r < 0) {
		log_error("%s", err.msg);
		return -EIO;
	}
	if (store_requeued(d->store))
		log_notice("%u build%s left running by the last run went back to the queue",
			   store_requeued(d->store), store_requeued(d->store) == 1 ? "" : "s");
	d->mirrors_dir = xasprintf("%s/mirrors", d->cfg.state_dir);
	if (mkdir(d->mirrors_dir, 0750) < 0 && errno != EEXIST) {
		log_error("cannot create '%s': %s", d->mirrors_dir, strerror(errno));
		return -errno;
	}
	return unlock_mirrors(d);
}

/* The builder, on a Docker engine client unless builds.dry_run. */
static int start_builder(struct daemon *d)
{
	struct kiln_err err = {0};
	char *logs = xasprintf("%s/logs", d->cfg.state_dir);
	struct docker *engine = NULL;
	struct docker_opts dopts = {.host = d->cfg.docker_host,
				    .cert_path = d->cfg.docker_cert_path,
				    .tls_verify = d->cfg.docker_tls_verify};

	if (!d->cfg.dry_run && docker_new(d->loop, &dopts, &engine, &err) < 0) {
		log_error("%s: %s", d->cfg.path, err.msg);
		free(logs);
		return -EINVAL;
	}
	builder_init(&d->builder, d->loop, d->store, &d->cfg, engine, d->mirrors_dir, logs,
		     on_builder_changed, d);
	free(logs);
	if (engine)
		log_info("building on docker engine %s", docker_host(engine));
	else
		log_info("builds.dry_run: builds are logged, not built");
	return 0;
}

/* What kilnd reports: status answers and the metric families, in the order
 * /metrics lists them (the daemon's, then the webhook's). */
static void start_reporting(struct daemon *d)
{
	d->metrics = metrics_new();
	status_init(&d->status, &d->builder, d->store, &d->cfg, &d->watches, &d->nwatches,
		    &d->stopping);
	status_register_metrics(&d->status, d->metrics);
	webhook_init(&d->webhook, d->loop, d->store, &d->cfg, d->metrics, &hook_ops, d);
	dashboard_init(&d->dashboard, d->loop, d->store, &dash_ops, d);
}

/* Commit statuses and notifications: the outbox's sinks are written to the
 * store before any build moves. */
static int start_outbox(struct daemon *d)
{
	struct kiln_err err = {0};

	if (outbox_new(d->loop, d->store, &d->cfg, d->metrics, &d->outbox, &err) < 0) {
		log_error("outbox: %s", err.msg);
		return -EIO;
	}
	return 0;
}

static void start_signals(struct daemon *d)
{
	uint64_t wd;

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
	d->watchdog.data = d;
	if ((wd = notify_watchdog_usec()) > 0) {
		uv_timer_start(&d->watchdog, watchdog_cb, wd / 2000, wd / 2000);
		log_debug("watchdog ping every %" PRIu64 "ms", wd / 2000);
	}
}

/* Everything started: what the last run left is taken up, systemd is told. */
static void ready(struct daemon *d)
{
	webhook_replay(&d->webhook); /* deliveries answered before a crash, not yet polled */
	builder_kick(&d->builder);   /* builds left queued by the last run */
	notify_ready();
	update_status(d);
	log_info("kilnd %s ready: %zu repositories, state in '%s'", KILN_VERSION, d->nwatches,
		 d->cfg.state_dir);
}

static int run(struct daemon *d)
{
	bool started = true;
	int r;

	d->fd_limit = raise_fd_limit();
	/* glibc gives every thread that allocates an arena of its own, and each
	 * keeps its high-water mark: the loop and 4 workers held 5.5 MiB for
	 * 2.1 in use (200 repositories, idle). kilnd's threads take turns on
	 * short allocations: webhook ingest at 64 connections used the same
	 * CPU per delivery with 1, 2 or 4 arenas (within the noise of a loaded
	 * machine), and one keeps about 0.5 MiB off the idle RSS after
	 * malloc_trim. Set before the first thread starts. */
	mallopt(M_ARENA_MAX, 1);
	repo_global_init(REPO_ROLE_DAEMON);
	d->loop = uv_default_loop();
	uv_timer_init(d->loop, &d->trim);
	uv_unref((uv_handle_t *)&d->trim); /* never what keeps kilnd up */
	r = open_store(d);
	if (r == -EUCLEAN || r == -ENODATA || r == -EPROTO)
		return KILND_EXIT_STATE_REFUSED;
	if (r < 0 || start_builder(d) < 0)
		return 1;
	backup_start(&d->backup, d->loop, d->store, d->cfg.backup_interval_ms);
	start_reporting(d);
	start_signals(d);
	started = start_outbox(d) == 0;
	for (size_t i = 0; started && i < d->cfg.nrepos; i++)
		started = add_watch(d, &d->cfg.repos[i]) == 0;
	started = started && load_dashboard_auth(d, &d->cfg) == 0 && start_http(d) == 0 &&
		  start_dashboard_http(d) == 0 && start_control(d) == 0;
	if (started) {
		ready(d);
	} else {
		/* what did start is taken down the ordinary way, so nothing is left
		 * half open (or leaked) behind the error already logged */
		d->exit_code = 1;
		stop(d, "startup failed");
	}
	uv_run(d->loop, UV_RUN_DEFAULT);
	if (d->abandoned) {
		/* Workers may still be inside a transaction: leave without closing
		 * anything under them. SQLite's journal keeps the database whole. */
		log_info("stopped");
		_exit(d->exit_code);
	}
	d->store = store_close(d->store);
	builder_done(&d->builder);
	webhook_done(&d->webhook);
	dashboard_done(&d->dashboard);
	d->metrics = metrics_free(d->metrics);
	uv_run(d->loop, UV_RUN_NOWAIT); /* the engine client's handles close */
	log_info("stopped");
	return d->exit_code;
}

/* kilnd --recover: the last verified snapshot replaces a damaged database. */
static int recover(const struct config *cfg)
{
	struct kiln_err err = {0};
	char *aside = NULL;
	int r = store_recover(cfg->state_dir, &aside, &err);

	if (r < 0) {
		fprintf(stderr, "kilnd: %s\n", err.msg);
		if (r == -ENOENT || r == -EUCLEAN)
			fprintf(
			    stderr,
			    "kilnd: nothing was changed; see \"State and crashes\" in README.md "
			    "for starting afresh\n");
		return 1;
	}
	printf("kilnd: moved the damaged database aside as '%s'\n"
	       "kilnd: restored '%s/" STORE_FILE
	       "' from the verified snapshot '%s/" STORE_BACKUP_FILE "'\n"
	       "kilnd: start kilnd again (systemctl start kilnd); pushes after the snapshot are "
	       "planned from its last-seen commits\n",
	       aside, cfg->state_dir, cfg->state_dir);
	free(aside);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", no_argument, NULL, 'k'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {"recover", no_argument, NULL, 'r'},
	    {NULL, 0, NULL, 0},
	};
	struct daemon d = {0};
	struct kiln_diags diags = {0};
	const char *path = CONFIG_DEFAULT_PATH;
	bool check = false, recovering = false;
	int c, level, rc;

	while ((c = getopt_long(argc, argv, "c:l:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'r':
			recovering = true;
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
	warn_url_secrets(&d.cfg, check);
	if (check) {
		printf("%s: valid, %zu repositor%s\n", path, d.cfg.nrepos,
		       d.cfg.nrepos == 1 ? "y" : "ies");
		config_done(&d.cfg);
		return 0;
	}
	if (recovering) {
		rc = recover(&d.cfg);
		config_done(&d.cfg);
		return rc;
	}
	signal(SIGPIPE, SIG_IGN);
	/* libcurl's global init comes with its loading, on first use (lazyload.c) */
	rc = run(&d);
	curl_global_cleanup();
	config_done(&d.cfg);
	free(d.mirrors_dir);
	free(d.watches);
	return rc;
}
