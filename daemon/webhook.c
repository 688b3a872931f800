/* webhook.c (trigger): push notifications in, poll triggers out. Signatures
 * are checked over the raw body before anything is parsed, with the HMAC
 * computed piece by piece as the body arrives (webhook_headers sets it up
 * when the headers are in, so no body is hashed in one go); the delivery id is
 * recorded durably (on a worker) before the answer, so a crash right after a
 * 202 still ends in a poll at the next start. Owns the delivery bookkeeping:
 * the ids seen, the push's `before` kept with the id (watch.c's hint for a
 * branch not seen yet), and the replay of deliveries and triggers no poll
 * served (the poll that serves them marks them handled: watch.c, with its
 * plan). Also routes GET
 * /healthz and GET /metrics, whose text metrics.c writes. */
#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/jsonscan.h"
#include "kiln/log.h"
#include "kiln/sig.h"
#include "kiln/webhook.h"

#define ZERO_SHA "0000000000000000000000000000000000000000"

/* One delivery waiting for its batch's commit. */
struct hook_delivery {
	struct http_request *http;
	char *repo, *id, *branch;
	char *before; /* the pushed branch's previous commit, NULL: unknown or new */
};

/* Group commit: the deliveries that arrive while one batch is being
 * committed (on a worker) wait in the next, committed as one transaction
 * (one fsync) as soon as the one in flight is done; each is answered when
 * its batch is durable. A lone delivery is committed at once. */
struct hook_batch {
	uv_work_t req;
	struct webhook *wh;
	struct hook_delivery *v;
	struct store_delivery *rec; /* filled from v on the loop, before the work */
	size_t n, cap;
	int r;
	struct kiln_err err;
};

const char *webhook_result_str(enum webhook_result r)
{
	static const char *const names[] = {"accepted",	    "duplicate", "ignored",
					    "unauthorized", "rejected",	 "failed"};
	return (unsigned)r < ARRAY_SIZE(names) ? names[r] : "unknown";
}

void webhook_init(struct webhook *wh, uv_loop_t *loop, struct store *store,
		  const struct config *cfg, struct metrics *metrics, const struct webhook_ops *ops,
		  void *arg)
{
	memset(wh, 0, sizeof(*wh));
	wh->loop = loop;
	wh->store = store;
	wh->cfg = cfg;
	wh->metrics = metrics;
	wh->ops = *ops;
	wh->arg = arg;
	for (int i = 0; i < HOOK_NRESULTS; i++)
		wh->results[i] =
		    metrics_series(metrics, "kiln_webhook_deliveries_total", METRICS_COUNTER,
				   "Webhook requests by result.", "result",
				   webhook_result_str((enum webhook_result)i));
	wh->commits = metrics_series(metrics, "kiln_webhook_commits_total", METRICS_COUNTER,
				     "Transactions (each one fsync) that recorded webhook "
				     "deliveries; a batch holds those that arrived during "
				     "the previous one.",
				     NULL, NULL);
	uv_timer_init(loop, &wh->trim);
	uv_unref((uv_handle_t *)&wh->trim); /* never what keeps kilnd running */
}

void webhook_done(struct webhook *wh)
{
	/* the loop ran until the last batch was answered (its work kept it alive) */
	uv_close((uv_handle_t *)&wh->trim, NULL);
	for (int g = 0; g < 2; g++) {
		strmap_done(&wh->seen[g].map);
		strv_done(&wh->seen[g].keys);
	}
}

/* "repository\nid": neither part can hold a newline (names are checked,
 * ids come from one header line). */
static char *seen_key(const char *repo, const char *id)
{
	return xasprintf("%s\n%s", repo, id);
}

static bool seen_has(struct webhook *wh, const char *key)
{
	return strmap_get(&wh->seen[0].map, key, strlen(key)) ||
	       strmap_get(&wh->seen[1].map, key, strlen(key));
}

static void seen_add(struct webhook *wh, char *key)
{
	if (seen_has(wh, key)) {
		free(key);
		return;
	}
	if (wh->seen[0].keys.n >= WEBHOOK_SEEN_MAX) { /* a new generation */
		strmap_done(&wh->seen[1].map);
		strv_done(&wh->seen[1].keys);
		wh->seen[1] = wh->seen[0];
		memset(&wh->seen[0], 0, sizeof(wh->seen[0]));
	}
	strv_push(&wh->seen[0].keys, key);
	*strmap_put(&wh->seen[0].map, key, strlen(key)) = (void *)1;
}

static void answer(struct webhook *wh, struct http_request *req, enum webhook_result res,
		   int status, const char *msg)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "{\"result\":\"%s\",\"message\":\"%s\"}\n",
			 webhook_result_str(res), msg);

	metrics_inc(wh->results[res]);
	http_respond(req, status, "application/json", body, (size_t)n);
}

/* Decodes application/x-www-form-urlencoded "payload=<json>" in place. */
static char *form_payload(const char *body, size_t len, size_t *ret_len)
{
	const char *p = body, *end = body + len;
	struct buf out = {0};

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp ? amp : end;
		if ((size_t)(e - p) > 8 && memcmp(p, "payload=", 8) == 0) {
			for (const char *q = p + 8; q < e; q++) {
				if (*q == '+') {
					buf_putc(&out, ' ');
				} else if (*q == '%' && e - q > 2 &&
					   isxdigit((unsigned char)q[1]) &&
					   isxdigit((unsigned char)q[2])) {
					char hex[3] = {q[1], q[2], 0};
					buf_putc(&out, (char)strtol(hex, NULL, 16));
					q += 2;
				} else {
					buf_putc(&out, *q);
				}
			}
			*ret_len = out.len;
			return buf_steal(&out);
		}
		p = amp ? amp + 1 : end;
	}
	return NULL;
}

static void record_work(uv_work_t *r)
{
	struct hook_batch *b = container_of(r, struct hook_batch, req);
	b->r = store_record_deliveries(b->wh->store, b->rec, b->n, &b->err);
}

/* Answers one delivery of a batch that is committed (or failed: r < 0). */
static void record_answer(struct webhook *wh, struct hook_delivery *d, bool fresh, int r,
			  const char *why)
{
	if (r < 0) {
		log_error("webhook '%s': cannot record delivery %s: %s", d->repo, d->id, why);
		answer(wh, d->http, HOOK_FAILED, 503, "the delivery could not be recorded");
		return;
	}
	seen_add(wh, seen_key(d->repo, d->id)); /* recorded now, or before */
	if (!fresh) {
		log_debug("webhook '%s': delivery %s seen before, not triggered again", d->repo,
			  d->id);
		answer(wh, d->http, HOOK_DUPLICATE, 200, "already received");
	} else if (wh->ops.trigger(d->repo, wh->arg) < 0) {
		answer(wh, d->http, HOOK_REJECTED, 404, "repository no longer watched");
	} else {
		log_info("webhook '%s': push to '%s', polling now", d->repo, d->branch);
		answer(wh, d->http, HOOK_ACCEPTED, 202, "poll triggered");
	}
}

static void batch_commit(struct webhook *wh);

/* A burst of deliveries leaves freed bodies, JSON and SQLite pages in the
 * loop's and the workers' malloc arenas, which glibc keeps: once deliveries
 * stop for a while, they go back to the system. */
static void trim_cb(uv_timer_t *t)
{
	(void)t;
	malloc_trim(0);
}

static void record_after(uv_work_t *r, int status)
{
	struct hook_batch *b = container_of(r, struct hook_batch, req);
	struct webhook *wh = b->wh;

	for (size_t i = 0; i < b->n; i++) {
		struct hook_delivery *d = &b->v[i];
		record_answer(wh, d, b->rec[i].fresh, status < 0 ? status : b->r,
			      status < 0 ? "cancelled" : b->err.msg);
		free(d->repo);
		free(d->id);
		free(d->branch);
		free(d->before);
	}
	free(b->v);
	free(b->rec);
	free(b);
	wh->committing = NULL;
	if (wh->filling)
		batch_commit(wh);
	else
		uv_timer_start(&wh->trim, trim_cb, WEBHOOK_TRIM_MS, 0); /* again: later */
}

/* Sends the filling batch to a worker: it becomes the one in flight. */
static void batch_commit(struct webhook *wh)
{
	struct hook_batch *b = wh->filling;

	wh->filling = NULL;
	wh->committing = b;
	b->rec = xcalloc(b->n, sizeof(*b->rec));
	for (size_t i = 0; i < b->n; i++)
		b->rec[i] = (struct store_delivery){b->v[i].repo, b->v[i].id, b->v[i].branch,
						    b->v[i].before, false};
	metrics_inc(wh->commits);
	log_debug("webhook: recording %zu deliver%s in one transaction", b->n,
		  b->n == 1 ? "y" : "ies");
	uv_queue_work(wh->loop, &b->req, record_work, record_after);
}

/* Takes the strings; the delivery is answered when its batch is durable. */
static void batch_add(struct webhook *wh, struct http_request *http, char *repo, char *id,
		      char *branch, char *before)
{
	struct hook_batch *b = wh->filling;

	if (b == NULL) {
		b = wh->filling = xcalloc(1, sizeof(*b));
		b->wh = wh;
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 8;
		b->v = xreallocarray(b->v, b->cap, sizeof(*b->v));
	}
	b->v[b->n++] = (struct hook_delivery){http, repo, id, branch, before};
	if (wh->committing == NULL)
		batch_commit(wh);
}

static bool follows(const struct config_repo *repo, const char *branch)
{
	for (size_t i = 0; i < repo->branches.n; i++) {
		if (strcmp(repo->branches.v[i], branch) == 0)
			return true;
	}
	return false;
}

/* GitLab sends the secret itself; every other provider an HMAC of the body. */
static bool signs_body(const char *provider)
{
	return strcmp(provider, "gitlab") != 0;
}

static void body_hmac_data(void *ctx, const char *p, size_t len)
{
	sig_hmac_update(ctx, p, len);
}

static void body_hmac_free(void *ctx)
{
	sig_hmac_free(ctx);
}

/* "/hooks/<name>" -> name, else NULL. */
static const char *hook_name(const char *path)
{
	if (strncmp(path, "/hooks/", 7) != 0 || path[7] == '\0' || strchr(path + 7, '/'))
		return NULL;
	return path + 7;
}

void webhook_headers(struct http_request *req, void *arg)
{
	struct webhook *wh = arg;
	const char *name = hook_name(req->path);
	const struct config_repo *repo = name ? config_repo(wh->cfg, name) : NULL;
	struct sig_hmac *h;

	if (repo == NULL || repo->webhook_provider == NULL || strcmp(req->method, "POST") != 0 ||
	    !signs_body(repo->webhook_provider))
		return;
	/* keyed now: a reload before the last byte does not change the key */
	h = sig_hmac_new(repo->webhook_secret, strlen(repo->webhook_secret));
	if (h == NULL)
		return; /* then no HMAC, and the delivery is refused as unsigned */
	req->sink = (struct http_body_sink){body_hmac_data, body_hmac_free, h};
}

/* Checks the signature or token of the provider; true when authentic. The
 * HMAC is the one computed as the body arrived: there is none when the
 * repository had no HMAC provider at the headers (a reload since). */
static bool authentic(const struct config_repo *repo, const struct http_request *req)
{
	const char *p = repo->webhook_provider;
	unsigned char mac[SIG_SHA256_LEN];

	if (!signs_body(p)) {
		const char *t = http_header(req, "x-gitlab-token");
		return t && sig_str_equal(t, repo->webhook_secret);
	}
	if (req->sink.data != body_hmac_data || !sig_hmac_final(req->sink.ctx, mac))
		return false;
	if (strcmp(p, "github") == 0)
		return sig_check_mac("sha256=", http_header(req, "x-hub-signature-256"), mac);
	if (strcmp(p, "gitea") == 0)
		return sig_check_mac("", http_header(req, "x-gitea-signature"), mac);
	/* generic: HMAC in the configured header, with or without "sha256=" */
	{
		char lname[128];
		const char *h;
		size_t i;
		for (i = 0;
		     repo->webhook_header && repo->webhook_header[i] && i + 1 < sizeof(lname); i++)
			lname[i] = (char)tolower((unsigned char)repo->webhook_header[i]);
		lname[i] = '\0';
		h = http_header(req, i ? lname : "x-hub-signature-256");
		return sig_check_mac("sha256=", h, mac) || sig_check_mac("", h, mac);
	}
}

/* The event name, and whether it is a branch push we care about. */
static const char *event_of(const char *provider, const struct http_request *req)
{
	if (strcmp(provider, "github") == 0)
		return http_header(req, "x-github-event");
	if (strcmp(provider, "gitea") == 0)
		return http_header(req, "x-gitea-event");
	if (strcmp(provider, "gitlab") == 0)
		return http_header(req, "x-gitlab-event");
	return "push";
}

static const char *delivery_of(const char *provider, const struct http_request *req)
{
	if (strcmp(provider, "github") == 0)
		return http_header(req, "x-github-delivery");
	if (strcmp(provider, "gitea") == 0)
		return http_header(req, "x-gitea-delivery");
	if (strcmp(provider, "gitlab") == 0)
		return http_header(req, "idempotency-key");
	return http_header(req, "x-delivery");
}

/* What every request to /hooks/<name> passes before its payload is read: a
 * repository with a webhook, POST, an authentic signature (over the raw
 * bytes, before any parsing) and a push event. NULL when it did not pass,
 * and then it is answered. */
static const struct config_repo *hook_screen(struct webhook *wh, struct http_request *req,
					     const char *name)
{
	const struct config_repo *repo = config_repo(wh->cfg, name);
	const char *event;

	if (repo == NULL || repo->webhook_provider == NULL) {
		answer(wh, req, HOOK_REJECTED, 404, "no such repository or no webhook configured");
		return NULL;
	}
	if (strcmp(req->method, "POST") != 0) {
		answer(wh, req, HOOK_REJECTED, 405, "use POST");
		return NULL;
	}
	if (!authentic(repo, req)) {
		log_warning("webhook '%s': bad or missing signature, ignored", name);
		answer(wh, req, HOOK_UNAUTHORIZED, 401, "bad or missing signature");
		return NULL;
	}
	event = event_of(repo->webhook_provider, req);
	if (event && (strcmp(event, "ping") == 0 || strcmp(event, "System Hook") == 0)) {
		answer(wh, req, HOOK_IGNORED, 200, "pong");
		return NULL;
	}
	if (event == NULL || (strcmp(event, "push") != 0 && strcmp(event, "Push Hook") != 0)) {
		log_debug("webhook '%s': event '%s' ignored", name, event ? event : "(none)");
		answer(wh, req, HOOK_IGNORED, 202, "event ignored");
		return NULL;
	}
	return repo;
}

/* A redelivery of an id recorded since the start: answered from memory. */
static bool hook_seen(struct webhook *wh, struct http_request *req, const char *name,
		      const char *id)
{
	char *key;
	bool known;

	if (id == NULL || id[0] == '\0' || strlen(id) > 200)
		return false;
	key = seen_key(name, id);
	known = seen_has(wh, key);
	free(key);
	if (known)
		answer(wh, req, HOOK_DUPLICATE, 200, "already received");
	return known;
}

/* A commit id as the payload gives it: 40 hex digits, not all zeros (a new
 * branch); else NULL. */
static char *commit_of(const char *s)
{
	if (s == NULL || strlen(s) != 40 || strspn(s, "0123456789abcdef") != 40 ||
	    strcmp(s, ZERO_SHA) == 0)
		return NULL;
	return xstrdup(s);
}

/* The followed branch the payload pushed to (JSON, or GitHub's form with
 * payload=<json>), as a new string, and in *ret_before where the push moved
 * it from (see commit_of); NULL when answered: not JSON, another branch, a
 * tag, a deletion. The payload is checked whole but only these three
 * strings are kept (jsonscan.h: a tree of the 7 KB was half the CPU). */
static char *hook_branch(struct webhook *wh, struct http_request *req,
			 const struct config_repo *repo, char **ret_before)
{
	const char *ctype = http_header(req, "content-type"), *json = req->body;
	size_t json_len = req->body_len;
	char *form = NULL, *branch = NULL;
	struct jsonscan_field f[] = {{"ref", NULL}, {"after", NULL}, {"before", NULL}};
	const char *ref, *after;

	if (ctype && strncmp(ctype, "application/x-www-form-urlencoded", 33) == 0) {
		if (strcmp(repo->webhook_provider, "github") != 0 ||
		    (form = form_payload(req->body, req->body_len, &json_len)) == NULL) {
			answer(wh, req, HOOK_REJECTED, 415, "send application/json");
			return NULL;
		}
		json = form;
	}
	jsonscan_object(json, json_len, f, ARRAY_SIZE(f), NULL); /* on failure all NULL */
	free(form);
	ref = f[0].value;
	after = f[1].value;
	if (ref == NULL) {
		answer(wh, req, HOOK_REJECTED, 400, "malformed JSON: no ref");
	} else if (strncmp(ref, "refs/heads/", 11) != 0 || !follows(repo, ref + 11) ||
		   (after && strcmp(after, ZERO_SHA) == 0)) {
		log_debug("webhook '%s': %s ignored (not a followed branch, or deleted)",
			  repo->name, ref);
		answer(wh, req, HOOK_IGNORED, 202, "not a followed branch");
	} else {
		branch = xstrdup(ref + 11);
		*ret_before = commit_of(f[2].value);
	}
	for (size_t i = 0; i < ARRAY_SIZE(f); i++)
		free(f[i].value);
	return branch;
}

static void handle_hook(struct webhook *wh, struct http_request *req, const char *name)
{
	const struct config_repo *repo = hook_screen(wh, req, name);
	const char *id;
	char idbuf[64], *branch, *before = NULL;

	if (repo == NULL)
		return;
	id = delivery_of(repo->webhook_provider, req);
	if (hook_seen(wh, req, name, id) || (branch = hook_branch(wh, req, repo, &before)) == NULL)
		return;
	if (id == NULL || id[0] == '\0' || strlen(id) > 200) {
		/* no id to deduplicate by: still recorded, so a crash leads to a poll */
		snprintf(idbuf, sizeof(idbuf), "kiln-%llu-%llu",
			 (unsigned long long)uv_now(wh->loop), (unsigned long long)++wh->seq);
		id = idbuf;
	}
	batch_add(wh, req, xstrdup(name), xstrdup(id), branch, before);
}

/* ---- deliveries no poll served ---- */

void webhook_replay(struct webhook *wh)
{
	struct strv pending = {0};
	struct kiln_err err = {0};

	if (store_pending_deliveries(wh->store, &pending, &err) < 0)
		log_warning("webhook deliveries and triggers from before the restart cannot be "
			    "read: %s; those "
			    "repositories are polled on their usual schedule",
			    err.msg);
	for (size_t i = 0; i < pending.n; i++) {
		if (wh->ops.trigger(pending.v[i], wh->arg) == 0)
			log_notice("repository '%s' has webhook deliveries or triggers from before "
				   "the restart: polling now",
				   pending.v[i]);
	}
	strv_done(&pending);
}

void webhook_handle(struct http_request *req, void *arg)
{
	struct webhook *wh = arg;
	const char *hook = hook_name(req->path);
	struct buf b = {0};

	if (hook) {
		char *name = xstrdup(hook);
		handle_hook(wh, req, name);
		free(name);
	} else if (strcmp(req->path, "/healthz") == 0 && strcmp(req->method, "GET") == 0) {
		int status = wh->ops.health(&b, wh->arg);
		http_respond(req, status, "application/json", b.p, b.len);
	} else if (strcmp(req->path, "/metrics") == 0 && strcmp(req->method, "GET") == 0) {
		metrics_write(wh->metrics, &b);
		http_respond(req, 200, METRICS_CONTENT_TYPE, b.p, b.len);
	} else if (strcmp(req->path, "/healthz") == 0 || strcmp(req->path, "/metrics") == 0) {
		http_respond(req, 405, NULL, "use GET\n", 8);
	} else {
		http_respond(req, 404, NULL, "not found\n", 10);
	}
	buf_done(&b);
}
