/* session.c (build): the BuildKit session, an h2c gRPC server on the hijacked
 * POST /session. session_h2 owns the nghttp2 server and its streams; session
 * owns the curl handle that holds the connection and the poll on its socket.
 * Protobuf is hand-written: five string/bytes fields do not need a generator. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <nghttp2/nghttp2.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "kiln/curl_loop.h"
#include "kiln/docker.h"
#include "kiln/err.h"
#include "kiln/log.h"
#include "kiln/session.h"

#define PATH_MAX_LEN	 128
#define REQUEST_MAX	 (64u << 10) /* a gRPC request here is a host or an id */
#define STREAMS_MAX	 32
#define UPGRADE_MAX	 (16u << 10) /* the 101 reply's head */
#define SEND_CHUNK	 (64u << 10)
#define GRPC_OK		 0
#define GRPC_INVALID_ARG 3
#define GRPC_NOT_FOUND	 5
#define GRPC_UNIMPL	 12
#define GRPC_INTERNAL	 13

/* ---- session_data ---- */

void session_data_add_cred(struct session_data *sd, const char *host, const char *username,
			   const char *secret)
{
	struct session_cred *c;

	sd->creds = xreallocarray(sd->creds, sd->ncreds + 1, sizeof(*sd->creds));
	c = &sd->creds[sd->ncreds++];
	c->host = xstrdup(host);
	c->username = xstrdup(username ? username : "");
	c->secret = xstrdup(secret ? secret : "");
}

void session_data_add_secret(struct session_data *sd, const char *id, unsigned char *data,
			     size_t len)
{
	sd->secrets = xreallocarray(sd->secrets, sd->nsecrets + 1, sizeof(*sd->secrets));
	sd->secrets[sd->nsecrets++] = (struct session_secret){xstrdup(id), data, len};
}

static void wipe_str(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void session_data_done(struct session_data *sd)
{
	for (size_t i = 0; i < sd->ncreds; i++) {
		free(sd->creds[i].host);
		free(sd->creds[i].username);
		wipe_str(sd->creds[i].secret);
	}
	for (size_t i = 0; i < sd->nsecrets; i++) {
		free(sd->secrets[i].id);
		if (sd->secrets[i].data)
			explicit_bzero(sd->secrets[i].data, sd->secrets[i].len);
		free(sd->secrets[i].data);
	}
	free(sd->creds);
	free(sd->secrets);
	memset(sd, 0, sizeof(*sd));
}

/* ---- protobuf, the few fields needed ---- */

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -EPROTO;
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
	}
	return -EPROTO;
}

/* The last occurrence of length-delimited field `want` (proto3: last wins);
 * *ret_len 0 and *ret NULL when absent. */
static int pb_field(const uint8_t *p, size_t n, unsigned want, const uint8_t **ret, size_t *ret_len)
{
	const uint8_t *end = p + n;

	*ret = NULL;
	*ret_len = 0;
	while (p < end) {
		uint64_t key, v;
		if (pb_varint(&p, end, &key) < 0)
			return -EPROTO;
		switch (key & 7) {
		case 0:
			if (pb_varint(&p, end, &v) < 0)
				return -EPROTO;
			break;
		case 1:
			if (end - p < 8)
				return -EPROTO;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return -EPROTO;
			p += 4;
			break;
		case 2:
			if (pb_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
				return -EPROTO;
			if ((key >> 3) == want) {
				*ret = p;
				*ret_len = (size_t)v;
			}
			p += v;
			break;
		default:
			return -EPROTO;
		}
	}
	return 0;
}

static void pb_put_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		buf_putc(b, (char)(v | 0x80));
		v >>= 7;
	}
	buf_putc(b, (char)v);
}

static void pb_put_bytes(struct buf *b, unsigned field, const void *p, size_t n)
{
	if (n == 0)
		return; /* proto3 leaves defaults out */
	pb_put_varint(b, (uint64_t)field << 3 | 2);
	pb_put_varint(b, n);
	buf_append(b, p, n);
}

/* ---- the HTTP/2 server ---- */

struct h2_stream {
	LIST_ENTRY(h2_stream) link; /* h->streams */
	int32_t id;
	char path[PATH_MAX_LEN];
	bool path_too_long, too_big, answered;
	struct buf req;	 /* the request body: gRPC frames */
	struct buf resp; /* the response body: one gRPC frame; may hold a secret */
	size_t sent;
};

struct session_h2 {
	nghttp2_session *ng;
	const struct session_data *sd;
	struct session_h2_stats stats;
	bool failed;
	/* every stream kiln allocated: nghttp2 does not report the close of a
	 * stream whose headers it refused, so the free cannot rely on it */
	LIST_HEAD(, h2_stream) streams;
};

static void stream_free(struct h2_stream *st)
{
	LIST_REMOVE(st, link);
	buf_done(&st->req);
	if (st->resp.p)
		explicit_bzero(st->resp.p, st->resp.len);
	buf_done(&st->resp);
	free(st);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
	struct session_h2 *h = arg;
	struct h2_stream *st;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = xcalloc(1, sizeof(*st));
	st->id = f->hd.stream_id;
	LIST_INSERT_HEAD(&h->streams, st, link);
	if (nghttp2_session_set_stream_user_data(ng, st->id, st) != 0) {
		stream_free(st);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *arg)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

	(void)flags;
	(void)arg;
	if (!st || f->hd.type != NGHTTP2_HEADERS || namelen != 5 || memcmp(name, ":path", 5) != 0)
		return 0;
	if (valuelen >= sizeof(st->path)) {
		st->path_too_long = true;
		return 0;
	}
	memcpy(st->path, value, valuelen);
	st->path[valuelen] = '\0';
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
			 size_t len, void *arg)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);

	(void)flags;
	(void)arg;
	if (!st)
		return 0;
	if (st->req.len + len > REQUEST_MAX)
		st->too_big = true;
	else
		buf_append(&st->req, data, len);
	return 0;
}

static ssize_t resp_read(nghttp2_session *ng, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *arg)
{
	struct h2_stream *st = src->ptr;
	size_t n = st->resp.len - st->sent;
	nghttp2_nv trailer[] = {
	    {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
	};

	(void)arg;
	if (n > len)
		n = len;
	memcpy(out, st->resp.p + st->sent, n);
	st->sent += n;
	if (st->sent == st->resp.len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(ng, id, trailer, ARRAY_SIZE(trailer)) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return (ssize_t)n;
}

/* Trailers-only: one HEADERS frame with the status, as gRPC does for errors. */
static int answer_status(struct session_h2 *h, struct h2_stream *st, int code, const char *msg)
{
	char c[12];
	nghttp2_nv nv[] = {
	    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
	     NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"grpc-status", (uint8_t *)c, 11, 0, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, strlen(msg), NGHTTP2_NV_FLAG_NONE},
	};

	nv[2].valuelen = (size_t)snprintf(c, sizeof(c), "%d", code);
	return nghttp2_submit_response(h->ng, st->id, nv, ARRAY_SIZE(nv), NULL) == 0 ? 0 : -EPROTO;
}

static int answer_message(struct session_h2 *h, struct h2_stream *st, struct buf *msg)
{
	uint8_t prefix[5] = {0, (uint8_t)(msg->len >> 24), (uint8_t)(msg->len >> 16),
			     (uint8_t)(msg->len >> 8), (uint8_t)msg->len};
	nghttp2_nv nv[] = {
	    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
	     NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_data_provider prd = {.source.ptr = st, .read_callback = resp_read};

	buf_append(&st->resp, prefix, sizeof(prefix));
	buf_append(&st->resp, msg->p ? msg->p : "", msg->len);
	if (msg->p)
		explicit_bzero(msg->p, msg->len);
	buf_done(msg);
	return nghttp2_submit_response(h->ng, st->id, nv, ARRAY_SIZE(nv), &prd) == 0 ? 0 : -EPROTO;
}

/* Adds host to a comma-separated list once; a full list stays as it is. */
static void note_host(char *list, size_t size, const uint8_t *host, size_t n)
{
	size_t used = strlen(list);

	for (const char *p = list; *p;) {
		size_t k = strcspn(p, ",");
		if (k == n && memcmp(p, host, n) == 0)
			return;
		p += k + (p[k] == ',');
	}
	if (used + n + 2 >= size)
		return;
	snprintf(list + used, size - used, "%s%.*s", used ? "," : "", (int)n, (const char *)host);
}

static int call_credentials(struct session_h2 *h, struct h2_stream *st, const uint8_t *m, size_t n)
{
	const uint8_t *host;
	size_t hn;
	struct buf out = {0};

	if (pb_field(m, n, 1, &host, &hn) < 0)
		return answer_status(h, st, GRPC_INVALID_ARG, "bad CredentialsRequest");
	for (size_t i = 0; i < h->sd->ncreds; i++) {
		const struct session_cred *c = &h->sd->creds[i];
		if (strlen(c->host) != hn || memcmp(c->host, host, hn) != 0)
			continue;
		pb_put_bytes(&out, 1, c->username, strlen(c->username));
		pb_put_bytes(&out, 2, c->secret, strlen(c->secret));
		break;
	}
	if (out.len > 0)
		note_host(h->stats.cred_hosts, sizeof(h->stats.cred_hosts), host, hn);
	else
		note_host(h->stats.anon_hosts, sizeof(h->stats.anon_hosts), host, hn);
	/* an unknown host gets empty credentials: BuildKit pulls anonymously */
	return answer_message(h, st, &out);
}

static int call_get_secret(struct session_h2 *h, struct h2_stream *st, const uint8_t *m, size_t n)
{
	const uint8_t *id;
	size_t idn;
	struct buf out = {0};
	char msg[200];

	if (pb_field(m, n, 1, &id, &idn) < 0)
		return answer_status(h, st, GRPC_INVALID_ARG, "bad GetSecretRequest");
	for (size_t i = 0; i < h->sd->nsecrets; i++) {
		const struct session_secret *s = &h->sd->secrets[i];
		if (strlen(s->id) != idn || memcmp(s->id, id, idn) != 0)
			continue;
		pb_put_bytes(&out, 1, s->data, s->len);
		return answer_message(h, st, &out);
	}
	if (!h->stats.missing[0])
		snprintf(h->stats.missing, sizeof(h->stats.missing), "%.*s",
			 (int)(idn < 100 ? idn : 100), (const char *)id);
	snprintf(msg, sizeof(msg), "secret %.*s not found", (int)(idn < 100 ? idn : 100),
		 (const char *)id);
	/* a header value may not hold control characters */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return answer_status(h, st, GRPC_NOT_FOUND, msg);
}

static int answer(struct session_h2 *h, struct h2_stream *st)
{
	const uint8_t *p = (const uint8_t *)st->req.p;
	uint32_t len;
	struct buf out = {0};

	st->answered = true;
	h->stats.calls++;
	if (st->path_too_long)
		return answer_status(h, st, GRPC_UNIMPL, "unknown method");
	if (st->too_big)
		return answer_status(h, st, GRPC_INVALID_ARG, "request too large");
	if (st->req.len < 5)
		return answer_status(h, st, GRPC_INVALID_ARG, "no request message");
	len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
	if (p[0] != 0)
		return answer_status(h, st, GRPC_UNIMPL, "compressed messages are not supported");
	if (len != st->req.len - 5)
		return answer_status(h, st, GRPC_INVALID_ARG, "one request message expected");
	if (strcmp(st->path, "/grpc.health.v1.Health/Check") == 0) {
		pb_put_varint(&out, 1 << 3 | 0);
		pb_put_varint(&out, 1); /* SERVING */
		return answer_message(h, st, &out);
	}
	if (strcmp(st->path, "/moby.filesync.v1.Auth/Credentials") == 0)
		return call_credentials(h, st, p + 5, len);
	if (strcmp(st->path, "/moby.buildkit.secrets.v1.Secrets/GetSecret") == 0)
		return call_get_secret(h, st, p + 5, len);
	return answer_status(h, st, GRPC_UNIMPL, "not served by kiln");
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
	struct session_h2 *h = arg;
	struct h2_stream *st;

	if (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
	if (!st || st->answered)
		return 0;
	if (answer(h, st) < 0) {
		h->failed = true;
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);

	(void)code;
	(void)arg;
	if (st) {
		nghttp2_session_set_stream_user_data(ng, id, NULL);
		stream_free(st);
	}
	return 0;
}

struct session_h2 *session_h2_new(const struct session_data *sd)
{
	struct session_h2 *h = xcalloc(1, sizeof(*h));
	nghttp2_session_callbacks *cbs;
	int r;
	nghttp2_settings_entry set[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, STREAMS_MAX},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384},
	};

	h->sd = sd;
	LIST_INIT(&h->streams);
	/* out of memory, or (kilnd) libnghttp2 not loadable: lazyload.c */
	if (nghttp2_session_callbacks_new(&cbs) != 0) {
		free(h);
		return NULL;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	r = nghttp2_session_server_new(&h->ng, cbs, h);
	nghttp2_session_callbacks_del(cbs);
	if (r != 0) {
		free(h);
		return NULL;
	}
	/* the server's SETTINGS go first, with the first bytes sent */
	nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, set, ARRAY_SIZE(set));
	return h;
}

struct session_h2 *session_h2_free(struct session_h2 *h)
{
	if (!h)
		return NULL;
	nghttp2_session_del(h->ng);
	while (!LIST_EMPTY(&h->streams))
		stream_free(LIST_FIRST(&h->streams));
	free(h);
	return NULL;
}

int session_h2_recv(struct session_h2 *h, const void *p, size_t n)
{
	ssize_t r = nghttp2_session_mem_recv(h->ng, p, n);

	if (r < 0 || h->failed)
		return -EPROTO;
	return 0;
}

int session_h2_send(struct session_h2 *h, struct buf *out, size_t max)
{
	size_t start = out->len;

	while (out->len - start < max) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(h->ng, &data);
		if (n < 0 || h->failed)
			return -EPROTO;
		if (n == 0)
			break;
		buf_append(out, data, (size_t)n);
	}
	return 0;
}

bool session_h2_done(const struct session_h2 *h)
{
	return !nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng);
}

const struct session_h2_stats *session_h2_stats(const struct session_h2 *h)
{
	return &h->stats;
}

/* ---- the connection ---- */

enum session_state {
	SESSION_UPGRADING, /* POST /session sent, waiting for 101 */
	SESSION_OPEN,	   /* HTTP/2 */
	SESSION_CLOSED,
};

struct session {
	uv_loop_t *loop;
	CURL *h;
	curl_socket_t fd;
	uv_poll_t poll;
	bool poll_started;
	enum session_state state;
	const struct session_data *sd;
	struct session_h2 *h2;
	struct buf head; /* the 101 reply while upgrading */
	struct buf out;	 /* bytes not yet sent */
	size_t out_off;
	session_dead_cb *dead;
	void *arg;
	uint64_t t0; /* uv_hrtime() at the start, for the debug log */
	char id[40];
	char curl_err[CURL_ERROR_SIZE];
};

static const char *session_state_str(enum session_state s)
{
	static const char *const names[] = {"upgrading", "open", "closed"};
	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "?";
}

static void set_state(struct session *s, enum session_state st)
{
	log_debug("session %s: %s -> %s", s->id, session_state_str(s->state),
		  session_state_str(st));
	s->state = st;
}

static void session_free_cb(uv_handle_t *hd)
{
	struct session *s = hd->data;

	s->h2 = session_h2_free(s->h2);
	if (s->h)
		curl_easy_cleanup(s->h); /* closes the socket, now that no poll holds it */
	buf_done(&s->head);
	if (s->out.p)
		explicit_bzero(s->out.p, s->out.len);
	buf_done(&s->out);
	free(s);
}

static void session_close(struct session *s)
{
	set_state(s, SESSION_CLOSED);
	if (s->poll_started) {
		uv_poll_stop(&s->poll);
		uv_close((uv_handle_t *)&s->poll, session_free_cb);
	} else {
		session_free_cb((uv_handle_t *)&s->poll);
	}
}

static void die(struct session *s, int code, const char *why)
{
	session_dead_cb *dead = s->dead;

	if (s->state == SESSION_CLOSED)
		return;
	log_debug("session %s died: %s", s->id, why);
	/* the memory stays until the close callback: the owner may read it */
	s->dead = NULL;
	session_close(s);
	if (dead)
		dead(s, code, why, s->arg);
}

static void poll_cb(uv_poll_t *p, int status, int events);

static void watch(struct session *s)
{
	int ev = UV_READABLE;

	if (s->out_off < s->out.len)
		ev |= UV_WRITABLE;
	uv_poll_start(&s->poll, ev, poll_cb);
}

/* Sends what is buffered; the rest waits for the socket to be writable. */
static int flush(struct session *s)
{
	while (s->out_off < s->out.len) {
		size_t n = 0;
		CURLcode rc =
		    curl_easy_send(s->h, s->out.p + s->out_off, s->out.len - s->out_off, &n);
		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK)
			return -ECONNRESET;
		s->out_off += n;
	}
	if (s->out_off == s->out.len) {
		explicit_bzero(s->out.p, s->out.len);
		s->out.len = s->out_off = 0;
	}
	return 0;
}

static int pump(struct session *s)
{
	if (s->state == SESSION_OPEN && s->out.len - s->out_off < SEND_CHUNK &&
	    session_h2_send(s->h2, &s->out, SEND_CHUNK) < 0)
		return -EPROTO;
	return flush(s);
}

/* The 101 reply's head: 1 and its length once whole, 0 while it is not, or
 * -EPROTO (-ELIBACC, -ENOMEM: no HTTP/2 server to hand it to). What follows
 * it is HTTP/2 already. */
static int upgraded(struct session *s, size_t *ret_len, char *why, size_t whylen)
{
	char *end = memmem(s->head.p, s->head.len, "\r\n\r\n", 4);
	size_t hl, line;

	if (!end) {
		if (s->head.len > UPGRADE_MAX) {
			snprintf(why, whylen, "the engine's reply to POST /session is too long");
			return -EPROTO;
		}
		return 0;
	}
	hl = (size_t)(end - s->head.p) + 4;
	line = strcspn(s->head.p, "\r\n");
	if (line < 12 || strncmp(s->head.p, "HTTP/1.", 7) != 0 ||
	    strncmp(s->head.p + 8, " 101", 4) != 0) {
		/* the engine's refusal: its status line and the start of its body */
		snprintf(why, whylen, "the engine refused POST /session: %.*s %.200s",
			 (int)(line < 100 ? line : 100), s->head.p, s->head.p + hl);
		for (char *p = why; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
		return -EPROTO;
	}
	s->h2 = session_h2_new(s->sd);
	if (!s->h2) {
		snprintf(why, whylen, "cannot start the HTTP/2 server: %s",
			 errno == ELIBACC ? "libnghttp2 could not be loaded" : "out of memory");
		return errno == ELIBACC ? -ELIBACC : -ENOMEM;
	}
	set_state(s, SESSION_OPEN);
	log_debug("session %s: upgraded %.2f ms after the start", s->id,
		  (double)(uv_hrtime() - s->t0) / 1e6);
	*ret_len = hl;
	return 1;
}

static void on_readable(struct session *s)
{
	char buf[16384], why[400];

	for (;;) {
		size_t n = 0;
		CURLcode rc = curl_easy_recv(s->h, buf, sizeof(buf), &n);
		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK || n == 0) {
			die(s, -ECONNRESET,
			    rc != CURLE_OK && s->curl_err[0] ? s->curl_err
							     : "the engine closed the session");
			return;
		}
		if (s->state == SESSION_UPGRADING) {
			size_t hl = 0;
			int r;
			buf_append(&s->head, buf, n);
			r = upgraded(s, &hl, why, sizeof(why));
			if (r < 0) {
				die(s, r, why);
				return;
			}
			if (r > 0) {
				if (session_h2_recv(s->h2, s->head.p + hl, s->head.len - hl) < 0) {
					die(s, -EPROTO, "bad HTTP/2 from the engine");
					return;
				}
				buf_done(&s->head);
			}
		} else if (session_h2_recv(s->h2, buf, n) < 0) {
			die(s, -EPROTO, "bad HTTP/2 from the engine");
			return;
		}
	}
	if (s->state == SESSION_OPEN && session_h2_done(s->h2)) {
		die(s, -ECONNRESET, "the engine ended the session");
		return;
	}
	if (pump(s) < 0) {
		die(s, -ECONNRESET, "cannot write to the engine");
		return;
	}
	watch(s);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	struct session *s = container_of(p, struct session, poll);

	if (s->state == SESSION_CLOSED)
		return;
	if (status < 0) {
		die(s, -ECONNRESET, uv_strerror(status));
		return;
	}
	if (events & UV_READABLE) {
		on_readable(s);
		return;
	}
	if (pump(s) < 0) {
		die(s, -ECONNRESET, "cannot write to the engine");
		return;
	}
	watch(s);
}

int session_start(uv_loop_t *loop, struct docker *d, const struct session_data *sd,
		  session_dead_cb *dead, void *arg, struct session **ret, struct kiln_err *err)
{
	struct session *s = xcalloc(1, sizeof(*s));
	unsigned char rnd[16];
	char key[65];
	const char *api = docker_api_version(d);
	curl_socket_t fd = CURL_SOCKET_BAD;
	CURLcode rc;
	int r;

	s->loop = loop;
	s->t0 = uv_hrtime();
	s->dead = dead;
	s->arg = arg;
	s->poll.data = s;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		free(s);
		return kiln_err_set(err, -EIO, "no random bytes for a session id");
	}
	memcpy(s->id, "kiln-", 5);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(s->id + 5 + 2 * i, 3, "%02x", rnd[i]);
	/* the shared key names the client's state for BuildKit's caches; one
	 * per build is what a fresh docker CLI sends */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		free(s);
		return kiln_err_set(err, -EIO, "no random bytes for a session key");
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(key + 2 * i, 3, "%02x", rnd[i]);
	s->h = curl_easy_init();
	if (!s->h) {
		r = curl_loop_init_error();
		r = kiln_err_set(err, r, "cannot open a curl handle for the session: %s",
				 strerror(-r));
		goto fail;
	}
	docker_easy_connection(d, s->h, "/_ping");
	curl_easy_setopt(s->h, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(s->h, CURLOPT_ERRORBUFFER, s->curl_err);
	rc = curl_easy_perform(s->h);
	if (rc == CURLE_OK)
		rc = curl_easy_getinfo(s->h, CURLINFO_ACTIVESOCKET, &fd);
	if (rc != CURLE_OK || fd == CURL_SOCKET_BAD) {
		r = kiln_err_set(err, -ECONNREFUSED, "session: cannot connect to the engine %s: %s",
				 docker_host(d),
				 s->curl_err[0] ? s->curl_err : curl_easy_strerror(rc));
		goto fail;
	}
	s->fd = fd;
	buf_printf(&s->out,
		   "POST %s%s/session HTTP/1.1\r\n"
		   "Host: docker\r\n"
		   "User-Agent: kiln/" KILN_VERSION "\r\n"
		   "Content-Length: 0\r\n"
		   "Connection: Upgrade\r\n"
		   "Upgrade: h2c\r\n"
		   "X-Docker-Expose-Session-Uuid: %s\r\n"
		   "X-Docker-Expose-Session-Name: kiln\r\n"
		   "X-Docker-Expose-Session-Sharedkey: %s\r\n"
		   "X-Docker-Expose-Session-Grpc-Method: /grpc.health.v1.Health/Check\r\n"
		   "X-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.Auth/Credentials\r\n"
		   "X-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.Auth/FetchToken\r\n"
		   "X-Docker-Expose-Session-Grpc-Method: "
		   "/moby.filesync.v1.Auth/GetTokenAuthority\r\n"
		   "X-Docker-Expose-Session-Grpc-Method: "
		   "/moby.filesync.v1.Auth/VerifyTokenAuthority\r\n"
		   "X-Docker-Expose-Session-Grpc-Method: "
		   "/moby.buildkit.secrets.v1.Secrets/GetSecret\r\n"
		   "\r\n",
		   api ? "/v" : "", api ? api : "", s->id, key);
	s->sd = sd;
	if ((r = uv_poll_init_socket(loop, &s->poll, s->fd)) < 0) {
		r = kiln_err_set(err, r, "session: cannot watch the socket: %s", uv_strerror(r));
		goto fail;
	}
	s->poll_started = true;
	if (flush(s) < 0) {
		r = kiln_err_set(err, -ECONNRESET, "session: cannot write to the engine %s",
				 docker_host(d));
		session_close(s);
		return r;
	}
	watch(s);
	*ret = s;
	return 0;
fail:
	session_free_cb((uv_handle_t *)&s->poll);
	return r;
}

const char *session_id(const struct session *s)
{
	return s->id;
}

const struct session_h2_stats *session_stats(const struct session *s)
{
	static const struct session_h2_stats none;
	return s->h2 ? session_h2_stats(s->h2) : &none;
}

void session_stop(struct session *s)
{
	if (!s || s->state == SESSION_CLOSED)
		return;
	s->dead = NULL;
	session_close(s);
}
