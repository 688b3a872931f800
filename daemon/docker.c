/* docker.c (build): the Engine API client. One CURLM per client, on the loop through
 * curl_loop.c. The client owns its calls; each call is freed right after its
 * done callback. */
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "kiln/buf.h"
#include "kiln/curl_loop.h"
#include "kiln/docker.h"
#include "kiln/err.h"

#define LINE_MAX_BYTES (1u << 20)

struct docker_call {
	struct docker *d;
	TAILQ_ENTRY(docker_call) link; /* d->calls */
	CURL *h;
	struct curl_slist *hdrs;
	char *method, *path, *json, *content_type, *registry_auth, *registry_config;
	bool unversioned;
	docker_body_cb *body;
	docker_line_cb *line;
	docker_done_cb *done;
	void *arg;
	struct buf reply;   /* collected reply, or an error reply of a streamed call */
	struct buf partial; /* the unfinished line of a streamed reply */
	bool in_multi, paused, aborting, ping;
	bool probe; /* a GET /_ping: its headers say what the engine is */
	int early;  /* a failure before curl had it, reported from the defer timer */
	long status;
	int result;
	char curl_err[CURL_ERROR_SIZE];
	char error[1024];
	char api_header[16];	/* a ping's Api-Version */
	char libpod_header[32]; /* a ping's Libpod-Api-Version: Podman */
	char server_header[64]; /* a ping's Server: "Docker/20.10.24 (linux)" */
};

struct docker {
	uv_loop_t *loop;
	struct curl_loop *cl; /* its multi handle on the loop */
	uv_timer_t defer;     /* aborts run here, outside curl's callbacks */
	int open_handles;
	char *host, *unix_path, *base;
	char *ca, *cert, *key;
	bool tls, verify;
	char api[16];
	bool negotiated;
	enum docker_engine_kind kind;
	char engine[96];		 /* docker_engine_str */
	struct docker_call *ping;	 /* in flight */
	TAILQ_HEAD(, docker_call) calls; /* every call not yet finished */
};

static void call_begin(struct docker_call *c);
static void note_engine(struct docker *d, const struct docker_call *p);
static int negotiate(struct docker *d, const struct docker_call *p, char *why, size_t size);

/* ---- calls ---- */

static void call_free(struct docker_call *c)
{
	if (c->h)
		curl_easy_cleanup(c->h);
	curl_slist_free_all(c->hdrs);
	free(c->method);
	free(c->path);
	free(c->json);
	free(c->content_type);
	free(c->registry_auth);
	free(c->registry_config);
	buf_done(&c->reply);
	buf_done(&c->partial);
	free(c);
}

static void set_error(struct docker_call *c)
{
	json_t *j;
	const char *m;

	if (c->error[0])
		return; /* said already */
	if (c->result < 0) {
		if (c->result == -ECANCELED)
			snprintf(c->error, sizeof(c->error), "aborted");
		else if (c->result == -ECONNREFUSED)
			snprintf(
			    c->error, sizeof(c->error),
			    "cannot connect to the docker engine at %s (is it running, and may "
			    "this user open its socket?)",
			    c->d->host);
		else
			snprintf(c->error, sizeof(c->error), "%s %s: %s", c->method, c->path,
				 c->curl_err[0] ? c->curl_err : strerror(-c->result));
		return;
	}
	if (c->status < 300)
		return;
	j = json_loadb(c->reply.p ? c->reply.p : "", c->reply.len, 0, NULL);
	m = json_is_object(j) ? json_string_value(json_object_get(j, "message")) : NULL;
	if (m)
		snprintf(c->error, sizeof(c->error), "%s", m);
	else
		snprintf(c->error, sizeof(c->error), "HTTP %ld: %.200s", c->status,
			 c->reply.p ? c->reply.p : "");
	json_decref(j);
}

/* Ends a call: unhooks it, tells its owner, frees it. */
static void call_finish(struct docker_call *c, int result)
{
	struct docker *d = c->d;

	if (c->in_multi) {
		curl_loop_remove(d->cl, c->h);
		c->in_multi = false;
	}
	if (c->aborting)
		result = -ECANCELED;
	c->result = result;
	set_error(c);
	if (c->probe && result == 0 && c->status == 200) {
		char why[128];
		note_engine(d, c);
		/* any ping negotiates (the one that versioned calls wait for
		 * does so in ping_done, where a failure fails them) */
		if (!c->ping)
			negotiate(d, c, why, sizeof(why));
	}
	if (c->line && c->partial.len > 0 && result == 0 && c->status < 300)
		c->line(c, c->partial.p, c->partial.len, c->arg);
	TAILQ_REMOVE(&d->calls, c, link);
	if (c->done)
		c->done(c, c->arg);
	call_free(c);
}

static int map_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return -ECONNREFUSED;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_ABORTED_BY_CALLBACK:
	case CURLE_READ_ERROR:
	case CURLE_WRITE_ERROR:
		return -ECANCELED;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
		return -EPROTO;
	default:
		return -EIO;
	}
}

static void transfer_done(CURL *easy, CURLcode result, void *arg)
{
	struct docker_call *c = NULL;

	(void)arg;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
	call_finish(c, map_curl(result));
}

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct docker_call *c = arg;
	size_t len = size * n, start = 0;

	if (c->aborting)
		return 0;
	if (c->status == 0)
		curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
	if (!c->line || c->status >= 300) {
		if (c->reply.len + len <= DOCKER_REPLY_MAX)
			buf_append(&c->reply, data, len);
		return len;
	}
	for (size_t i = 0; i < len; i++) {
		if (data[i] != '\n')
			continue;
		if (c->partial.len > 0) {
			buf_append(&c->partial, data + start, i - start);
			c->line(c, c->partial.p, c->partial.len, c->arg);
			c->partial.len = 0;
		} else {
			c->line(c, data + start, i - start, c->arg);
		}
		if (c->aborting)
			return 0;
		start = i + 1;
	}
	if (start < len) {
		if (c->partial.len + (len - start) > LINE_MAX_BYTES) {
			/* one absurd line: deliver what fits, drop the rest of it */
			c->line(c, c->partial.p ? c->partial.p : "", c->partial.len, c->arg);
			c->partial.len = 0;
		} else {
			buf_append(&c->partial, data + start, len - start);
		}
	}
	return len;
}

/* Copies a header's value (up to the first character not in `ok`) into dst. */
static void header_value(const char *data, size_t len, size_t name_len, const char *ok, char *dst,
			 size_t size)
{
	size_t i = name_len, k = 0;

	while (i < len && (data[i] == ' ' || data[i] == '\t'))
		i++;
	while (i < len && k + 1 < size && data[i] != '\r' && data[i] != '\n' &&
	       (!ok || strchr(ok, data[i])))
		dst[k++] = data[i++];
	dst[k] = '\0';
}

static bool header_is(const char *data, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && strncasecmp(data, name, n) == 0;
}

static size_t header_cb(char *data, size_t size, size_t n, void *arg)
{
	struct docker_call *c = arg;
	size_t len = size * n;
	static const char digits[] = "0123456789.";

	if (!c->probe)
		return len;
	if (header_is(data, len, "api-version:"))
		header_value(data, len, 12, digits, c->api_header, sizeof(c->api_header));
	else if (header_is(data, len, "libpod-api-version:"))
		header_value(data, len, 19, digits, c->libpod_header, sizeof(c->libpod_header));
	else if (header_is(data, len, "server:"))
		header_value(data, len, 7, NULL, c->server_header, sizeof(c->server_header));
	return len;
}

/* A ping answered: what engine is this? Only the headers are trusted, and
 * only as far as they are digits (a version) or a short text (Server). */
static void note_engine(struct docker *d, const struct docker_call *p)
{
	const char *api = p->api_header[0] ? p->api_header : "?";
	char ver[64] = "";

	if (p->libpod_header[0]) {
		d->kind = DOCKER_ENGINE_PODMAN;
		snprintf(d->engine, sizeof(d->engine), "Podman %s (Docker API %s)",
			 p->libpod_header, api);
		return;
	}
	d->kind = DOCKER_ENGINE_DOCKER;
	/* "Docker/20.10.24 (linux)" */
	if (strncasecmp(p->server_header, "Docker/", 7) == 0)
		sscanf(p->server_header + 7, "%63[0-9A-Za-z.+~-]", ver);
	snprintf(d->engine, sizeof(d->engine), "Docker%s%s (API %s)", ver[0] ? " " : "", ver, api);
}

static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct docker_call *c = arg;
	ssize_t r;

	if (c->aborting)
		return CURL_READFUNC_ABORT;
	r = c->body(c, buf, size * n, c->arg);
	if (r == -EAGAIN) {
		c->paused = true;
		return CURL_READFUNC_PAUSE;
	}
	if (r < 0)
		return CURL_READFUNC_ABORT;
	return (size_t)r;
}

static void abort_deferred_cb(uv_timer_t *t)
{
	struct docker *d = t->data;
	struct docker_call *c, *next;

	for (c = TAILQ_FIRST(&d->calls); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->early && !c->in_multi)
			call_finish(c, c->early);
		else if (c->aborting && c != d->ping)
			call_finish(c, -ECANCELED);
	}
}

/* 1.41 vs 1.47: <0, 0, >0 */
static int api_cmp(const char *a, const char *b)
{
	unsigned amaj = 0, amin = 0, bmaj = 0, bmin = 0;

	sscanf(a, "%u.%u", &amaj, &amin);
	sscanf(b, "%u.%u", &bmaj, &bmin);
	if (amaj != bmaj)
		return amaj < bmaj ? -1 : 1;
	return amin < bmin ? -1 : amin > bmin;
}

/* The version from a ping's Api-Version: the lower of it and kiln's newest.
 * An engine older than kiln's oldest is -EPROTO, said in why. */
static int negotiate(struct docker *d, const struct docker_call *p, char *why, size_t size)
{
	char api[sizeof(d->api)];

	/* no (or no readable) version: assume the oldest, as the docker CLI does */
	if (!p->api_header[0] || !isdigit((unsigned char)p->api_header[0]))
		snprintf(api, sizeof(api), "%s", DOCKER_API_OLDEST);
	else if (api_cmp(p->api_header, DOCKER_API_NEWEST) < 0)
		snprintf(api, sizeof(api), "%s", p->api_header);
	else
		snprintf(api, sizeof(api), "%s", DOCKER_API_NEWEST);
	if (api_cmp(api, DOCKER_API_OLDEST) < 0) {
		snprintf(why, size, "the engine speaks API %s; kiln needs at least %s", api,
			 DOCKER_API_OLDEST);
		return -EPROTO;
	}
	memcpy(d->api, api, sizeof(api));
	d->negotiated = true;
	return 0;
}

static void ping_done(struct docker_call *p, void *arg)
{
	struct docker *d = arg;
	struct docker_call *c, *next;
	int r = docker_call_result(p);

	d->ping = NULL;
	if (r == 0 && p->status == 200) {
		r = negotiate(d, p, p->error, sizeof(p->error));
	} else if (r == 0) {
		r = -EPROTO;
	}
	/* the calls that waited for the version go now, or fail as the ping did */
	for (c = TAILQ_FIRST(&d->calls); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c == p || c->in_multi || c->ping)
			continue;
		if (r == 0 && !c->aborting) {
			call_begin(c);
		} else {
			c->status = 0;
			snprintf(c->error, sizeof(c->error), "engine %s: %.900s", d->host,
				 p->error[0] ? p->error : "no reply to /_ping");
			call_finish(c, r < 0 ? r : -EPROTO);
		}
	}
}

static struct docker_call *call_new(struct docker *d, const struct docker_request *rq,
				    docker_done_cb *done, void *arg)
{
	struct docker_call *c = xcalloc(1, sizeof(*c));

	c->d = d;
	c->method = xstrdup(rq->method);
	c->path = xstrdup(rq->path);
	c->unversioned = rq->unversioned;
	c->json = rq->json ? xstrdup(rq->json) : NULL;
	c->content_type = rq->content_type ? xstrdup(rq->content_type) : NULL;
	c->registry_auth = rq->registry_auth ? xstrdup(rq->registry_auth) : NULL;
	c->registry_config = rq->registry_config ? xstrdup(rq->registry_config) : NULL;
	c->body = rq->body;
	c->line = rq->line;
	c->done = done;
	c->arg = arg;
	c->probe = rq->unversioned && strcmp(rq->path, "/_ping") == 0;
	TAILQ_INSERT_HEAD(&d->calls, c, link);
	return c;
}

static void add_header(struct docker_call *c, const char *fmt, const char *v)
{
	char *h = xasprintf(fmt, v);
	c->hdrs = curl_slist_append(c->hdrs, h);
	free(h);
}

/* A call never ends inside docker_call_start: its owner has not seen it yet. */
static void fail_early(struct docker_call *c, int code)
{
	c->early = code;
	uv_timer_start(&c->d->defer, abort_deferred_cb, 0, 0);
}

void docker_easy_connection(const struct docker *d, CURL *h, const char *path)
{
	if (path) {
		char *url = xasprintf("%s%s", d->base, path);
		curl_easy_setopt(h, CURLOPT_URL, url);
		free(url);
	}
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
	if (d->unix_path)
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, d->unix_path);
	if (d->tls) {
		if (d->cert)
			curl_easy_setopt(h, CURLOPT_SSLCERT, d->cert);
		if (d->key)
			curl_easy_setopt(h, CURLOPT_SSLKEY, d->key);
		if (d->ca)
			curl_easy_setopt(h, CURLOPT_CAINFO, d->ca);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, d->verify ? 1L : 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, d->verify ? 2L : 0L);
	}
}

/* Hands the call to curl. */
static void call_begin(struct docker_call *c)
{
	struct docker *d = c->d;
	struct kiln_err err = {0};
	char *url;

	url = c->unversioned ? xasprintf("%s%s", d->base, c->path)
			     : xasprintf("%s/v%s%s", d->base, d->api, c->path);
	c->h = curl_easy_init();
	if (!c->h) {
		free(url);
		fail_early(c, curl_loop_init_error());
		return;
	}
	curl_easy_setopt(c->h, CURLOPT_URL, url);
	free(url);
	docker_easy_connection(d, c->h, NULL);
	curl_easy_setopt(c->h, CURLOPT_PRIVATE, (char *)c);
	curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c->h, CURLOPT_HEADERDATA, c);
	/* no round trip for 100-continue on unknown sizes */
	c->hdrs = curl_slist_append(c->hdrs, "Expect:");
	if (strcmp(c->method, "POST") == 0) {
		curl_easy_setopt(c->h, CURLOPT_POST, 1L);
		if (c->json) {
			c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
			curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->json);
		} else if (c->body) {
			add_header(c, "Content-Type: %s",
				   c->content_type ? c->content_type : "application/octet-stream");
			c->hdrs = curl_slist_append(c->hdrs, "Transfer-Encoding: chunked");
			curl_easy_setopt(c->h, CURLOPT_READFUNCTION, read_cb);
			curl_easy_setopt(c->h, CURLOPT_READDATA, c);
		} else {
			curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, 0L);
			curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, "");
		}
	} else if (strcmp(c->method, "GET") != 0) {
		curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, c->method);
	}
	if (c->registry_auth)
		add_header(c, "X-Registry-Auth: %s", c->registry_auth);
	if (c->registry_config)
		add_header(c, "X-Registry-Config: %s", c->registry_config);
	curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
	if (curl_loop_add(d->cl, c->h, &err) < 0) {
		fail_early(c, err.code);
		return;
	}
	c->in_multi = true;
}

struct docker_call *docker_call_start(struct docker *d, const struct docker_request *rq,
				      docker_done_cb *done, void *arg)
{
	struct docker_call *c = call_new(d, rq, done, arg);

	if (rq->unversioned || d->negotiated) {
		call_begin(c);
		return c;
	}
	if (!d->ping) {
		struct docker_request p = {.method = "GET", .path = "/_ping", .unversioned = true};
		d->ping = call_new(d, &p, ping_done, d);
		d->ping->ping = true;
		call_begin(d->ping);
	}
	return c;
}

void docker_call_resume(struct docker_call *c)
{
	if (c->paused && c->in_multi) {
		c->paused = false;
		curl_easy_pause(c->h, CURLPAUSE_CONT);
	}
}

void docker_call_abort(struct docker_call *c)
{
	if (c->aborting)
		return;
	c->aborting = true;
	if (c->paused && c->in_multi) {
		/* a paused transfer never calls back: wake it so it sees the abort */
		c->paused = false;
		curl_easy_pause(c->h, CURLPAUSE_CONT);
	}
	uv_timer_start(&c->d->defer, abort_deferred_cb, 0, 0);
}

int docker_call_result(const struct docker_call *c)
{
	return c->result;
}

long docker_call_status(const struct docker_call *c)
{
	return c->status;
}

const char *docker_call_reply(const struct docker_call *c, size_t *ret_len)
{
	if (ret_len)
		*ret_len = c->reply.len;
	return c->reply.p ? c->reply.p : "";
}

const char *docker_call_error(const struct docker_call *c)
{
	return c->error;
}

bool docker_call_transient(const struct docker_call *c)
{
	switch (c->result) {
	case 0:
		return c->status == 502 || c->status == 503 || c->status == 504;
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ETIMEDOUT:
	case -EIO:
		return true;
	default:
		return false;
	}
}

bool docker_error_transient(const char *msg)
{
	static const char *const marks[] = {
	    "connection refused",  "connection reset",
	    "i/o timeout",	   "TLS handshake timeout",
	    "unexpected EOF",	   "500 Internal Server Error",
	    "502 Bad Gateway",	   "503 Service Unavailable",
	    "504 Gateway Timeout", "received unexpected HTTP status: 5",
	    "no such host",	   "net/http: request canceled",
	};
	for (size_t i = 0; i < ARRAY_SIZE(marks); i++)
		if (strcasestr(msg, marks[i]))
			return true;
	return false;
}

void docker_demux_logs(const void *data, size_t len, struct buf *out)
{
	const unsigned char *p = data;
	size_t off = 0;

	while (off + 8 <= len) {
		size_t n = (size_t)p[off + 4] << 24 | (size_t)p[off + 5] << 16 |
			   (size_t)p[off + 6] << 8 | p[off + 7];
		if (n > len - off - 8)
			n = len - off - 8; /* cut short: keep what arrived */
		buf_append(out, p + off + 8, n);
		off += 8 + n;
	}
}

char *docker_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	struct buf b = {0};

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			buf_putc(&b, (char)ch);
		} else {
			buf_putc(&b, '%');
			buf_putc(&b, hex[ch >> 4]);
			buf_putc(&b, hex[ch & 15]);
		}
	}
	return buf_steal(&b);
}

/* ---- builders ---- */

const char *docker_builder_str(enum docker_builder b)
{
	static const char *const names[] = {"auto", "classic", "buildkit"};
	return (unsigned)b < ARRAY_SIZE(names) ? names[b] : "?";
}

int docker_builder_parse(const char *s, enum docker_builder *ret)
{
	for (enum docker_builder b = DOCKER_BUILDER_AUTO; b <= DOCKER_BUILDER_BUILDKIT; b++) {
		if (strcmp(s, docker_builder_str(b)) == 0) {
			*ret = b;
			return 0;
		}
	}
	return -EINVAL;
}

enum docker_builder docker_builder_auto(const struct docker *d)
{
	/* Podman says API 1.41 but builds with buildah whatever `version` says */
	if (!d->negotiated || d->kind == DOCKER_ENGINE_PODMAN)
		return DOCKER_BUILDER_CLASSIC;
	return api_cmp(d->api, DOCKER_BUILDKIT_API_MIN) >= 0 ? DOCKER_BUILDER_BUILDKIT
							     : DOCKER_BUILDER_CLASSIC;
}

/* ---- the client ---- */

static int cert_file(const char *dir, const char *name, char **ret, struct kiln_err *err)
{
	char *p = xasprintf("%s/%s", dir, name);

	if (access(p, R_OK) < 0) {
		int e = errno;
		kiln_err_set(err, -EINVAL, "docker TLS: cannot read '%s': %s", p, strerror(e));
		free(p);
		return -EINVAL;
	}
	*ret = p;
	return 0;
}

static int parse_host(struct docker *d, const char *cert_path, struct kiln_err *err)
{
	const char *h = d->host;

	if (strncmp(h, "unix://", 7) == 0) {
		if (h[7] != '/')
			return kiln_err_set(
			    err, -EINVAL, "docker host '%s': a unix socket needs an absolute path",
			    h);
		d->unix_path = xstrdup(h + 7);
		d->base = xstrdup("http://localhost");
		return 0;
	}
	if (strncmp(h, "tcp://", 6) == 0) {
		const char *hp = h + 6;
		size_t n = strcspn(hp, "/");
		int r;
		if (n == 0)
			return kiln_err_set(err, -EINVAL, "docker host '%s': no address", h);
		d->tls = d->verify || cert_path;
		d->base = xasprintf("%s://%.*s", d->tls ? "https" : "http", (int)n, hp);
		if (!strchr(d->base + (d->tls ? 8 : 7), ':')) {
			char *b = xasprintf("%s:%d", d->base, d->tls ? 2376 : 2375);
			free(d->base);
			d->base = b;
		}
		if (d->tls && cert_path) {
			if ((r = cert_file(cert_path, "cert.pem", &d->cert, err)) < 0 ||
			    (r = cert_file(cert_path, "key.pem", &d->key, err)) < 0)
				return r;
			if (d->verify && (r = cert_file(cert_path, "ca.pem", &d->ca, err)) < 0)
				return r;
		}
		return 0;
	}
	return kiln_err_set(err, -EINVAL,
			    "docker host '%s': expected unix:///path or tcp://host:port", h);
}

/* Frees the client's memory; its handles are closed (or never opened). */
static void release(struct docker *d)
{
	free(d->host);
	free(d->unix_path);
	free(d->base);
	free(d->ca);
	free(d->cert);
	free(d->key);
	free(d);
}

int docker_new(uv_loop_t *loop, const struct docker_opts *o, struct docker **ret,
	       struct kiln_err *err)
{
	struct docker *d = xcalloc(1, sizeof(*d));
	const char *host = o->host, *cert_path = o->cert_path, *v;
	char *home_certs = NULL;
	int r;

	if (!host || !*host)
		host = getenv("DOCKER_HOST");
	if (!host || !*host)
		host = "unix:///var/run/docker.sock";
	if (!cert_path || !*cert_path)
		cert_path = getenv("DOCKER_CERT_PATH");
	if (cert_path && !*cert_path)
		cert_path = NULL;
	if (o->tls_verify >= 0)
		d->verify = o->tls_verify;
	else
		d->verify = (v = getenv("DOCKER_TLS_VERIFY")) != NULL && *v && strcmp(v, "0") != 0;
	d->host = xstrdup(host);
	/* as the docker CLI: verifying without a path means ~/.docker */
	if (!cert_path && d->verify && (v = getenv("HOME")) != NULL && *v)
		cert_path = home_certs = xasprintf("%s/.docker", v);
	r = parse_host(d, cert_path, err);
	free(home_certs);
	if (r < 0)
		goto fail;
	r = curl_loop_new(loop, transfer_done, d, &d->cl, err);
	if (r < 0)
		goto fail;
	d->loop = loop;
	TAILQ_INIT(&d->calls);
	uv_timer_init(loop, &d->defer);
	d->defer.data = d;
	d->open_handles = 1;
	*ret = d;
	return 0;
fail:
	release(d);
	return r;
}

static void handle_closed(uv_handle_t *h)
{
	struct docker *d = h->data;

	if (--d->open_handles == 0)
		release(d);
}

struct docker *docker_free(struct docker *d)
{
	if (!d)
		return NULL;
	while (!TAILQ_EMPTY(&d->calls)) {
		struct docker_call *c = TAILQ_FIRST(&d->calls);
		c->aborting = true;
		call_finish(c, -ECANCELED);
	}
	d->cl = curl_loop_free(d->cl);
	uv_close((uv_handle_t *)&d->defer, handle_closed);
	return NULL;
}

const char *docker_host(const struct docker *d)
{
	return d->host;
}

const char *docker_api_version(const struct docker *d)
{
	return d->negotiated ? d->api : NULL;
}

void docker_renegotiate(struct docker *d)
{
	d->negotiated = false;
}

enum docker_engine_kind docker_engine_kind(const struct docker *d)
{
	return d->kind;
}

const char *docker_engine_str(const struct docker *d)
{
	return d->engine;
}

struct docker_call *docker_identify(struct docker *d, docker_done_cb *done, void *arg)
{
	struct docker_request rq = {.method = "GET", .path = "/_ping", .unversioned = true};

	return docker_call_start(d, &rq, done, arg);
}
