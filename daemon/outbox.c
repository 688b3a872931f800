/* outbox.c (report): one machine per sink, in the manner of job.c:
 *
 *   idle -> loading (worker: the oldest unsent row) -> sending (libcurl on the
 *        loop) -> saving (worker: settle the row) -> loading ...
 *   loading -> waiting (the row's retry time) -> loading (it may have been
 *        superseded meanwhile)
 *
 * Owns the sinks (their secrets are the config's), the curl multi and the
 * wake-up handle the store's commits ring. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "kiln/backoff.h"
#include "kiln/curl_loop.h"
#include "kiln/forge.h"
#include "kiln/log.h"
#include "kiln/outbox.h"
#include "kiln/proto.h"
#include "kiln/sig.h"

enum sink_state {
	SINK_IDLE,
	SINK_LOADING,
	SINK_WAITING,
	SINK_SENDING,
	SINK_SAVING,
	SINK_STOPPED,
};

static const char *const sink_state_names[] = {"idle",	  "loading", "waiting",
					       "sending", "saving",  "stopped"};

/* The metrics' provider label: the forges, and "notify". */
enum { PROVIDER_NOTIFY = FORGE_GITEA + 1, PROVIDERS };
static const char *const provider_labels[PROVIDERS] = {"github", "gitlab", "gitea", "notify"};

struct sink {
	struct outbox *o;
	char *name;   /* the store's: "status:<repo>", "notify:<repo or *>:<hash of url>" */
	char *repo;   /* NULL: every repository (a global notification target) */
	char *what;   /* for messages: "commit statuses of 'r' (github)", never a secret */
	int provider; /* a forge, or PROVIDER_NOTIFY */
	struct forge_status status;
	struct forge_notify notify;
	char *states; /* ",succeeded,failed," */
	/* owned copies behind status and notify: a reload frees the config
	 * while this outbox may still be closing */
	char *project, *url, *api_url, *dashboard_url;
	char *secret; /* the token or the signing secret, wiped when freed */
	enum sink_state state;
	bool woken; /* a commit came while loading: look again */
	uv_work_t work;
	uv_timer_t timer;
	/* the row in hand, and what its send made of it */
	struct store_outbox_row row;
	bool have_row;
	CURL *easy;
	struct curl_slist *hdrs;
	struct forge_request rq;
	struct forge_reply reply;
	struct buf body;
	char curl_err[CURL_ERROR_SIZE];
	const char *settle; /* "sent", "failed", NULL: retry at not_before */
	int64_t not_before;
	unsigned backlog;      /* the loop's: metrics and kiln status read it */
	unsigned backlog_read; /* the worker's, published in work_after */
	char error[512];       /* the last refusal; "" none */
	bool error_logged;
	int r;
	struct kiln_err err;
};

struct outbox {
	uv_loop_t *loop;
	struct store *store;
	struct metrics *metrics;
	struct curl_loop *cl;
	uv_async_t wake;
	struct sink *sinks;
	size_t nsinks;
	unsigned open; /* handles not yet closed, worker jobs in flight */
	bool stopping;
	outbox_closed_cb *closed;
	void *closed_arg;
	uint64_t sent[PROVIDERS], failed[PROVIDERS];
};

static void next_state(struct sink *s);
static void save_work(uv_work_t *req);

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_state(struct sink *s, enum sink_state st)
{
	log_debug("outbox %s: %s -> %s", s->name, sink_state_names[s->state], sink_state_names[st]);
	s->state = st;
}

/* ---- the end of it all ---- */

static void release(struct outbox *o)
{
	for (size_t i = 0; i < o->nsinks; i++) {
		struct sink *s = &o->sinks[i];
		store_outbox_row_done(&s->row);
		forge_request_done(&s->rq);
		buf_done(&s->body);
		free(s->name);
		free(s->repo);
		free(s->what);
		free(s->states);
		free(s->project);
		free(s->url);
		free(s->api_url);
		free(s->dashboard_url);
		if (s->secret)
			explicit_bzero(s->secret, strlen(s->secret));
		free(s->secret);
	}
	free(o->sinks);
	if (o->closed)
		o->closed(o->closed_arg);
	free(o);
}

static void put_one(struct outbox *o)
{
	if (--o->open == 0)
		release(o);
}

static void handle_closed(uv_handle_t *h)
{
	put_one(h->data);
}

/* ---- loading ---- */

static void load_work(uv_work_t *req)
{
	struct sink *s = container_of(req, struct sink, work);
	struct store *st = s->o->store;

	store_outbox_row_done(&s->row);
	s->have_row = false;
	s->err.msg[0] = '\0';
	s->r = store_outbox_next(st, s->name, &s->row, &s->err);
	s->have_row = s->r == 0;
	if (s->r == 0 || s->r == -ENOENT) {
		int r = store_outbox_backlog(st, s->name, &s->backlog_read, &s->err);
		if (r < 0)
			s->r = r;
	}
}

static void work_after(uv_work_t *req, int status)
{
	struct sink *s = container_of(req, struct sink, work);

	(void)status;
	s->backlog = s->backlog_read;
	if (s->o->stopping) {
		set_state(s, SINK_STOPPED);
		put_one(s->o);
		return;
	}
	s->o->open--; /* the job's hold; the outbox is not stopping */
	next_state(s);
}

/* The request's headers hold the token: wiped before curl frees them. */
static void free_headers(struct sink *s)
{
	for (struct curl_slist *h = s->hdrs; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(s->hdrs);
	s->hdrs = NULL;
}

static void start_work(struct sink *s, enum sink_state st, uv_work_cb work)
{
	set_state(s, st);
	s->o->open++;
	uv_queue_work(s->o->loop, &s->work, work, work_after);
}

/* ---- sending ---- */

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = size * n;

	if (s->body.len < OUTBOX_REPLY_MAX)
		buf_append(&s->body, data,
			   len < OUTBOX_REPLY_MAX - s->body.len ? len
								: OUTBOX_REPLY_MAX - s->body.len);
	return len;
}

static size_t header_cb(char *data, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;

	forge_reply_header(&s->reply, data, size * n);
	return size * n;
}

static void send_row(struct sink *s)
{
	struct kiln_err err = {0};
	int r;

	forge_request_done(&s->rq);
	if (s->provider == PROVIDER_NOTIFY)
		r = forge_notify_request(&s->notify, &s->row, &s->rq, &s->err);
	else
		r = forge_status_request(&s->status, &s->row, &s->rq, &s->err);
	if (r < 0) {
		/* nothing the forge shows (-ENODATA), or a row no forge would take */
		if (r != -ENODATA)
			log_warning("outbox %s: row %" PRId64 " not sent: %s", s->what, s->row.id,
				    s->err.msg);
		s->settle = r == -ENODATA ? "sent" : "failed";
		start_work(s, SINK_SAVING, save_work);
		return;
	}
	memset(&s->reply, 0, sizeof(s->reply));
	buf_done(&s->body);
	s->curl_err[0] = '\0';
	s->easy = curl_easy_init();
	for (size_t i = 0; i < s->rq.headers.n; i++)
		s->hdrs = curl_slist_append(s->hdrs, s->rq.headers.v[i]);
	curl_easy_setopt(s->easy, CURLOPT_URL, s->rq.url);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->rq.body);
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->hdrs);
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
	curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->curl_err);
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)OUTBOX_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)OUTBOX_TIMEOUT_MS);
	curl_easy_setopt(s->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	/* GitHub answers 307 for a renamed repository: the POST is repeated
	 * there, as POST (curl does not carry the token to another host) */
	curl_easy_setopt(s->easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(s->easy, CURLOPT_MAXREDIRS, 3L);
	curl_easy_setopt(s->easy, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
	curl_easy_setopt(s->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	set_state(s, SINK_SENDING);
	if (curl_loop_add(s->o->cl, s->easy, &err) < 0) {
		snprintf(s->curl_err, sizeof(s->curl_err), "%.*s", (int)sizeof(s->curl_err) - 1,
			 err.msg);
		s->reply.status = 0;
		curl_easy_cleanup(s->easy);
		s->easy = NULL;
		free_headers(s);
		s->settle = NULL;
		s->not_before = now_ms() + OUTBOX_RETRY_BASE_MS;
		start_work(s, SINK_SAVING, save_work);
	}
}

/* The answer's message, printable and short: GitHub's and GitLab's JSON
 * "message", else the start of the body. */
static void reply_message(const struct sink *s, char *dst, size_t size)
{
	json_t *j = json_loadb(s->body.p ? s->body.p : "", s->body.len, 0, NULL);
	const char *m = json_is_object(j) ? json_string_value(json_object_get(j, "message")) : NULL;

	snprintf(dst, size, "%.200s", m ? m : s->body.p ? s->body.p : "");
	/* printable ASCII only: the cut may split a character, and the text
	 * goes into JSON (kiln status), which carries only UTF-8 */
	for (char *p = dst; *p; p++) {
		if ((unsigned char)*p < 0x20)
			*p = ' ';
		else if ((unsigned char)*p >= 0x7f)
			*p = '?';
	}
	json_decref(j);
}

static void refused(struct sink *s)
{
	char msg[256];

	reply_message(s, msg, sizeof(msg));
	snprintf(s->error, sizeof(s->error), "HTTP %ld%s%s", s->reply.status, msg[0] ? ": " : "",
		 msg);
	/* once per sink: every row would say the same (a token revoked) */
	if (!s->error_logged)
		log_error("outbox %s: refused with %s; build %" PRId64
			  "'s %s dropped, and the next "
			  "ones are tried as they come",
			  s->what, s->error, s->row.b.id, s->row.state);
	s->error_logged = true;
	s->o->failed[s->provider]++;
}

static void sent(struct sink *s)
{
	if (s->error_logged)
		log_notice("outbox %s: sending works again", s->what);
	s->error[0] = '\0';
	s->error_logged = false;
	s->o->sent[s->provider]++;
}

/* GitLab refuses a status it cannot move to from the one it has ("Cannot
 * transition status via :enqueue from :pending"): a requeued build's
 * pending, or a send repeated after a restart. The commit shows that state
 * or a later one already: done, not an error to report. */
static bool already_there(const struct sink *s)
{
	return s->provider == FORGE_GITLAB && s->reply.status == 400 && s->body.p &&
	       memmem(s->body.p, s->body.len, "Cannot transition status", 24) != NULL;
}

static void transfer_done(CURL *easy, CURLcode result, void *arg)
{
	struct outbox *o = arg;
	struct sink *s = NULL;
	uint64_t wait_ms = 0;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&s);
	curl_loop_remove(o->cl, easy);
	if (result == CURLE_OK)
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &s->reply.status);
	else
		s->reply.status = 0;
	curl_easy_cleanup(easy);
	s->easy = NULL;
	free_headers(s);
	switch (forge_verdict(&s->reply, now_ms() / 1000, &wait_ms)) {
	case FORGE_SENT:
		s->settle = "sent";
		sent(s);
		break;
	case FORGE_REFUSED:
		if (already_there(s)) {
			s->settle = "sent";
			sent(s);
			break;
		}
		s->settle = "failed";
		refused(s);
		break;
	case FORGE_RETRY:
		if (wait_ms == 0)
			wait_ms = backoff_ms(OUTBOX_RETRY_BASE_MS, (unsigned)s->row.attempts + 1,
					     BACKOFF_RETRY_MAX_MS);
		s->settle = NULL;
		s->not_before = now_ms() + (int64_t)wait_ms;
		if (s->reply.status)
			log_warning("outbox %s: HTTP %ld for build %" PRId64
				    "'s %s, retry in %" PRIu64 " ms",
				    s->what, s->reply.status, s->row.b.id, s->row.state, wait_ms);
		else
			log_warning("outbox %s: %s, retry in %" PRIu64 " ms", s->what,
				    s->curl_err[0] ? s->curl_err : curl_easy_strerror(result),
				    wait_ms);
	}
	start_work(s, SINK_SAVING, save_work);
}

/* ---- saving ---- */

static void save_work(uv_work_t *req)
{
	struct sink *s = container_of(req, struct sink, work);

	s->r = store_outbox_settle(s->o->store, s->row.id, s->settle, s->not_before, &s->err);
}

/* ---- the machine ---- */

static void timer_cb(uv_timer_t *t)
{
	struct sink *s = t->data;

	assert(s->state == SINK_WAITING);
	/* read again: a newer status may have superseded the row meanwhile */
	start_work(s, SINK_LOADING, load_work);
}

/* Decides the move after each step. */
static void next_state(struct sink *s)
{
	int64_t wait;

	switch (s->state) {
	case SINK_IDLE:
		s->woken = false;
		start_work(s, SINK_LOADING, load_work);
		break;
	case SINK_LOADING:
		if (s->r < 0 && s->r != -ENOENT) {
			/* the store failing is health's to report; look again later */
			log_warning("outbox %s: %s", s->what, s->err.msg);
			set_state(s, SINK_WAITING);
			s->have_row = false;
			uv_timer_start(&s->timer, timer_cb, OUTBOX_RETRY_BASE_MS * 5, 0);
			break;
		}
		if (!s->have_row) {
			set_state(s, SINK_IDLE);
			if (s->woken)
				next_state(s);
			break;
		}
		wait = s->row.not_before - now_ms();
		if (wait <= 0) {
			send_row(s);
			break;
		}
		set_state(s, SINK_WAITING);
		uv_timer_start(&s->timer, timer_cb, (uint64_t)wait, 0);
		break;
	case SINK_SAVING:
		if (s->r < 0) {
			/* the row is still unsettled (a full disk?): reading it
			 * at once would send it again at once, and again */
			log_warning("outbox %s: %s", s->what, s->err.msg);
			set_state(s, SINK_WAITING);
			uv_timer_start(&s->timer, timer_cb, OUTBOX_RETRY_BASE_MS * 5, 0);
			break;
		}
		start_work(s, SINK_LOADING, load_work);
		break;
	default:
		break;
	}
}

static void wake_cb(uv_async_t *a)
{
	struct outbox *o = a->data;

	for (size_t i = 0; i < o->nsinks && !o->stopping; i++) {
		struct sink *s = &o->sinks[i];
		if (s->state == SINK_IDLE)
			next_state(s);
		else
			s->woken = true;
	}
}

/* Any thread: a commit may have written rows. */
static void committed(void *arg)
{
	struct outbox *o = arg;

	uv_async_send(&o->wake);
}

/* ---- setting up ---- */

static char *states_of(const struct strv *events)
{
	struct buf b = {0};

	buf_printf(&b, ",");
	for (size_t i = 0; i < events->n; i++)
		buf_printf(&b, "%s,", events->v[i]);
	return buf_steal(&b);
}

static void add_notify(struct outbox *o, const struct config_notify *n, const char *repo,
		       const char *dashboard, size_t index)
{
	struct sink *s = &o->sinks[o->nsinks++];
	unsigned char h[SIG_SHA256_LEN];
	char host[128] = "", hex[17];
	const char *p = strstr(n->url, "://");

	/* the URL may be a credential (Slack's are): the state keeps a hash */
	sig_hmac_sha256("kiln-notify", 11, n->url, strlen(n->url), h);
	for (size_t i = 0; i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	if (p) {
		/* the host only: user:password@ before it is a credential */
		size_t len = strcspn(p + 3, "/?#");
		const char *at = memrchr(p + 3, '@', len);
		const char *hp = at ? at + 1 : p + 3;

		len -= (size_t)(hp - (p + 3));
		snprintf(host, sizeof(host), "%.*s", (int)len, hp);
	}
	s->name = xasprintf("notify:%s:%s", repo ? repo : "*", hex);
	s->repo = repo ? xstrdup(repo) : NULL;
	s->what = xasprintf("notification target %zu (%s)%s%s", index + 1, host, repo ? " of " : "",
			    repo ? repo : "");
	s->provider = PROVIDER_NOTIFY;
	s->url = xstrdup(n->url);
	s->secret = n->secret ? xstrdup(n->secret) : NULL;
	s->dashboard_url = dashboard ? xstrdup(dashboard) : NULL;
	s->notify.url = s->url;
	s->notify.secret = s->secret;
	s->notify.dashboard_url = s->dashboard_url;
	s->states = states_of(&n->events);
}

static void add_status(struct outbox *o, const struct config_repo *r, const char *dashboard)
{
	struct sink *s = &o->sinks[o->nsinks++];
	enum forge_provider p = FORGE_GITHUB;
	const char *api;

	forge_provider_parse(r->status_provider, &p);
	s->name = xasprintf("status:%s", r->name);
	s->repo = xstrdup(r->name);
	s->what = xasprintf("commit statuses of '%s' (%s)", r->name, r->status_provider);
	s->provider = (int)p;
	s->project = config_status_project(r);
	s->status.provider = p;
	api = r->status_api_url ? r->status_api_url : forge_default_api(p);
	s->api_url = xstrdup(api ? api : ""); /* gitea has none: the config refused that */
	s->secret = r->status_token ? xstrdup(r->status_token) : NULL;
	s->dashboard_url = dashboard ? xstrdup(dashboard) : NULL;
	s->status.api_url = s->api_url;
	s->status.project = s->project ? s->project : "";
	s->status.token = s->secret;
	s->status.dashboard_url = s->dashboard_url;
	s->states = xstrdup(forge_sink_states(p));
}

static void sink_metrics(struct metrics_out *mo, struct outbox *o, int what)
{
	for (int p = 0; p < PROVIDERS; p++) {
		double v = 0;
		if (what == 0)
			v = (double)o->sent[p];
		else if (what == 1)
			v = (double)o->failed[p];
		else
			for (size_t i = 0; i < o->nsinks; i++)
				v += o->sinks[i].provider == p ? o->sinks[i].backlog : 0;
		metrics_put(mo, "provider", provider_labels[p], v);
	}
}

static void read_sent(struct metrics_out *mo, void *arg)
{
	sink_metrics(mo, arg, 0);
}

static void read_failed(struct metrics_out *mo, void *arg)
{
	sink_metrics(mo, arg, 1);
}

static void read_pending(struct metrics_out *mo, void *arg)
{
	sink_metrics(mo, arg, 2);
}

int outbox_new(uv_loop_t *loop, struct store *store, const struct config *cfg, struct metrics *m,
	       struct outbox **ret, struct kiln_err *err)
{
	struct outbox *o = xcalloc(1, sizeof(*o));
	struct store_outbox_sink *v;
	size_t cap = cfg->notify.n;
	int r;

	for (size_t i = 0; i < cfg->nrepos; i++)
		cap += cfg->repos[i].notify.n + (cfg->repos[i].status_provider != NULL);
	o->sinks = xcalloc(cap + 1, sizeof(*o->sinks));
	for (size_t i = 0; i < cfg->notify.n; i++)
		add_notify(o, &cfg->notify.v[i], NULL, cfg->dashboard_url, i);
	for (size_t i = 0; i < cfg->nrepos; i++) {
		const struct config_repo *rp = &cfg->repos[i];
		if (rp->status_provider)
			add_status(o, rp, cfg->dashboard_url);
		for (size_t j = 0; j < rp->notify.n; j++)
			add_notify(o, &rp->notify.v[j], rp->name, cfg->dashboard_url, j);
	}
	v = xcalloc(o->nsinks + 1, sizeof(*v));
	for (size_t i = 0; i < o->nsinks; i++) {
		struct sink *s = &o->sinks[i];
		v[i] = (struct store_outbox_sink){
		    s->name, s->repo, s->provider == PROVIDER_NOTIFY ? "notify" : "status",
		    s->states};
	}
	r = store_outbox_sinks(store, v, o->nsinks, err);
	free(v);
	if (r == 0)
		r = curl_loop_new(loop, transfer_done, o, &o->cl, err);
	if (r < 0) {
		o->open = 1;
		put_one(o);
		return r;
	}
	o->loop = loop;
	o->store = store;
	o->metrics = m;
	uv_async_init(loop, &o->wake, wake_cb);
	o->wake.data = o;
	o->open = 1;
	for (size_t i = 0; i < o->nsinks; i++) {
		struct sink *s = &o->sinks[i];
		s->o = o;
		uv_timer_init(loop, &s->timer);
		s->timer.data = s;
		o->open++;
	}
	metrics_read(m, "kiln_outbox_sent_total", METRICS_COUNTER,
		     "Commit statuses and notifications delivered, by provider", read_sent, o);
	metrics_read(m, "kiln_outbox_failed_total", METRICS_COUNTER,
		     "Commit statuses and notifications refused for good (401, 403, 404), by "
		     "provider",
		     read_failed, o);
	metrics_read(m, "kiln_outbox_pending", METRICS_GAUGE,
		     "Commit statuses and notifications not yet delivered, by provider",
		     read_pending, o);
	store_on_commit(store, committed, o);
	for (size_t i = 0; i < o->nsinks; i++) {
		log_info("outbox: %s", o->sinks[i].what);
		next_state(&o->sinks[i]);
	}
	*ret = o;
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	struct sink *s = h->data;

	put_one(s->o);
}

void outbox_stop(struct outbox *o, outbox_closed_cb *closed, void *arg)
{
	o->stopping = true;
	o->closed = closed;
	o->closed_arg = arg;
	store_on_commit(o->store, NULL, NULL);
	metrics_unregister(o->metrics, o);
	for (size_t i = 0; i < o->nsinks; i++) {
		struct sink *s = &o->sinks[i];
		if (s->easy) {
			/* abandoned: the row stays unsent, sent again next time */
			curl_loop_remove(o->cl, s->easy);
			curl_easy_cleanup(s->easy);
			s->easy = NULL;
			free_headers(s);
		}
		if (s->state != SINK_LOADING && s->state != SINK_SAVING)
			set_state(s, SINK_STOPPED);
		uv_timer_stop(&s->timer);
		uv_close((uv_handle_t *)&s->timer, timer_closed);
	}
	o->cl = curl_loop_free(o->cl);
	uv_close((uv_handle_t *)&o->wake, handle_closed);
}

void outbox_repo_json(const struct outbox *o, const char *repo, json_t *r)
{
	unsigned backlog = 0;
	const char *error = NULL;

	for (size_t i = 0; o && i < o->nsinks; i++) {
		const struct sink *s = &o->sinks[i];
		if (!s->repo || strcmp(s->repo, repo) != 0)
			continue;
		backlog += s->backlog;
		if (s->error[0] && (!error || s->provider != PROVIDER_NOTIFY))
			error = s->error;
	}
	json_object_set_new(r, PROTO_F_OUTBOX, json_integer(backlog));
	json_object_set_new(r, PROTO_F_REPORTING_ERROR, error ? json_string(error) : json_null());
}
