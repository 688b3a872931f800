/* http_server.c (trigger): HTTP/1.1 on libuv with Debian's http-parser. Owns
 * the listeners and every connection; a request handed to the handler is the
 * handler's until http_respond. One timer per connection enforces the
 * first-byte, header, body, keep-alive and lingering deadlines, so no slow
 * client holds a slot. Slots are shared fairly: each client address (an IPv6
 * client's /64, which one subscriber usually holds whole) has its own cap,
 * and a full server, or a client at its cap, gives up its oldest idle
 * connection (one that sent nothing yet, waits between requests, or lingers)
 * before it refuses a newcomer. Every connection ends in conn_close(c, why),
 * which logs why at debug. Body memory is counted over all requests alive (bodies_max): a body is
 * sized from its Content-Length, or grows by doubling when chunked, and its
 * bytes go to the handler's sink as they are read. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>

#include "kiln/buf.h"
#include "kiln/err.h"
#include "kiln/http_server.h"
#include "kiln/log.h"
#include "kiln/map.h"

/* The lingering close: how long, and how much, input is read and dropped
 * after an answer that ends the connection. The size is past the body cap,
 * so that a client that sends a whole body just over it before reading (as
 * Python's http.client does) gets to read the 413. */
#define LINGER_MS	   2000u
#define LINGER_SLACK_BYTES (1u << 20)
#define CLIENT_BUCKETS	   256u /* a power of two */
#define CLIENT_KEY_LEN	   9u	/* family tag + an IPv4 address or an IPv6 /64 */

/* CONN_STREAMING: a streamed answer is going out (http_stream_begin); input
 * is read and dropped so that the client's close is seen at once. */
enum conn_state { CONN_READING, CONN_HANDLING, CONN_STREAMING, CONN_CLOSING, CONN_LINGERING };

/* The connections from one client address, for the per-client cap. Lives
 * while it has connections. */
struct client {
	LIST_ENTRY(client) entry;
	uint8_t key[CLIENT_KEY_LEN];
	unsigned nconns;
	bool warned; /* the cap was reached since this client's first connection */
	char name[INET6_ADDRSTRLEN + 4];
};

/* One read. libuv reads a busy connection up to 32 times in a row, and each
 * body byte is copied, hashed and, in a new buffer, faulted in: 256 KiB per
 * connection per loop turn keeps a fast sender from stalling everyone else. */
#define READ_SIZE (8u << 10)
/* A chunked body's first buffer; it doubles from there. */
#define BODY_ROOM_MIN (64u << 10)
/* Freeing a body this big gives the memory back to the system at once
 * (malloc_trim): glibc keeps it otherwise, and a burst of bodies would
 * leave the next ones beside it rather than in it. */
#define BODY_TRIM_MIN (1u << 20)

/* A request and what the server counts for it. */
struct request {
	struct http_request pub;
	struct http_server *s;
	size_t room; /* bytes reserved in s->bodies: the body buffer, allocated or to be */
};

struct listener {
	uv_tcp_t tcp;
	struct http_server *s;
	SLIST_ENTRY(listener) entry;
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	int handles_open;
	struct http_server *s;
	TAILQ_ENTRY(http_conn) entry;
	unsigned id; /* for the log */
	http_parser parser;
	enum conn_state st;
	struct http_request *req; /* being parsed */
	struct buf url, hname, hval;
	bool in_value;
	size_t header_bytes;
	int reject;	    /* status for a request the callbacks refused; 0: 400 */
	struct buf pending; /* bytes read past a request whose answer is pending */
	bool keep_alive;
	bool reading;
	struct http_request *inflight; /* held by the handler */
	struct client *cl;	       /* NULL once closed */
	TAILQ_ENTRY(http_conn) idle_entry;
	bool idle;		/* listed in s->idle: may be reclaimed */
	bool used;		/* a request was begun on it */
	uv_shutdown_t shutdown; /* the lingering close's */
	uint64_t linger_left;	/* bytes still dropped before closing */
};

struct http_server {
	uv_loop_t *loop;
	struct http_server_opts o;
	http_handler_cb *cb;
	void *arg;
	http_parser_settings settings;
	SLIST_HEAD(, listener) listeners;
	TAILQ_HEAD(, http_conn) conns;
	unsigned nconns, nlisteners_open;
	unsigned next_id;
	bool closing;
	void (*done)(void *);
	void *done_arg;
	unsigned nactive;	      /* connections not yet closing */
	TAILQ_HEAD(, http_conn) idle; /* oldest idle first */
	LIST_HEAD(, client) clients[CLIENT_BUCKETS];
	size_t bodies;	    /* bytes reserved by every request's body */
	unsigned nrequests; /* alive: being read or with the handler */
};

struct write_req {
	uv_write_t w;
	char *data;
	struct http_conn *c;
	const char *close_why; /* NULL: the connection stays open */
};

static void conn_close(struct http_conn *c, const char *why);
static void client_detach(struct http_conn *c);
static void server_maybe_done(struct http_server *s);
static void conn_feed(struct http_conn *c, const char *data, size_t len);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

void http_server_default_opts(struct http_server_opts *o)
{
	o->body_max = HTTP_BODY_MAX_DEFAULT;
	o->conn_max = 1024;
	o->header_timeout_ms = 10000;
	o->body_timeout_ms = 30000;
	o->idle_timeout_ms = 15000;
	o->conn_per_client_max = 64;
	o->first_byte_timeout_ms = 3000;
	o->bodies_max = HTTP_BODIES_MAX_DEFAULT;
	o->headers = NULL;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 202:
		return "Accepted";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}

static struct http_request *request_new(struct http_server *s)
{
	struct request *rq = xcalloc(1, sizeof(*rq));

	rq->s = s;
	s->nrequests++;
	return &rq->pub;
}

static void request_free(struct http_request *r)
{
	struct request *rq;

	if (r == NULL)
		return;
	rq = container_of(r, struct request, pub);
	if (r->sink.free)
		r->sink.free(r->sink.ctx);
	for (size_t i = 0; i < r->nheaders; i++) {
		free(r->headers[i].name);
		free(r->headers[i].value);
	}
	free(r->headers);
	free(r->path);
	free(r->query);
	free(r->body);
	rq->s->bodies -= rq->room;
	rq->s->nrequests--;
	if (rq->room >= BODY_TRIM_MIN)
		malloc_trim(0);
	free(rq);
}

/* Counts n more body bytes for rq; false when bodies_max leaves no room. */
static bool request_reserve(struct request *rq, size_t n)
{
	if (n > rq->s->o.bodies_max - rq->s->bodies)
		return false;
	rq->s->bodies += n;
	rq->room += n;
	return true;
}

const char *http_header(const struct http_request *req, const char *lname)
{
	for (size_t i = 0; i < req->nheaders; i++) {
		if (strcmp(req->headers[i].name, lname) == 0)
			return req->headers[i].value;
	}
	return NULL;
}

unsigned http_server_conns(const struct http_server *s)
{
	return s->nconns;
}

size_t http_server_bodies(const struct http_server *s)
{
	return s->bodies;
}

/* ---- deadlines and reading ---- */

static void timer_cb(uv_timer_t *t)
{
	struct http_conn *c = container_of(t, struct http_conn, timer);
	const char *why = "request deadline passed";

	if (c->st == CONN_LINGERING)
		why = "lingering close: time is up";
	else if (c->st == CONN_READING && c->req == NULL)
		why = c->used ? "idle timeout" : "nothing sent in time";
	conn_close(c, why);
}

static void deadline(struct http_conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, timer_cb, ms, 0);
}

/* Idle: no request under way, so closing it loses nothing a client cannot
 * retry. Listed by when it became idle, so the oldest goes first. */
static void conn_idle(struct http_conn *c, bool on)
{
	if (on == c->idle)
		return;
	if (c->idle)
		TAILQ_REMOVE(&c->s->idle, c, idle_entry);
	c->idle = on;
	if (on)
		TAILQ_INSERT_TAIL(&c->s->idle, c, idle_entry);
}

static void reading(struct http_conn *c, bool on)
{
	if (on == c->reading || c->st == CONN_CLOSING)
		return;
	c->reading = on;
	if (on)
		uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	else
		uv_read_stop((uv_stream_t *)&c->tcp);
}

/* ---- writing ---- */

static void after_shutdown(uv_shutdown_t *req, int status)
{
	struct http_conn *c = container_of(req, struct http_conn, shutdown);

	if (status < 0 && status != UV_ECANCELED) /* canceled: closed meanwhile */
		conn_close(c, uv_strerror(status));
}

/* The answer is out and the connection ends, but the client may still be
 * sending (a body we refused, pipelined requests): closing with unread input
 * makes the kernel answer with a reset, which can destroy our answer before
 * the client reads it. So our side is shut (the client reads the answer and
 * then EOF) and input is dropped until the client closes, or for at most
 * LINGER_MS and body_max + LINGER_SLACK_BYTES. A server that is closing
 * skips this: shutdown does not wait for clients. */
static void conn_linger(struct http_conn *c, const char *why)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (c->s->closing ||
	    uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, after_shutdown) < 0) {
		conn_close(c, why);
		return;
	}
	log_debug("http connection %u: %s; lingering", c->id, why);
	c->st = CONN_LINGERING;
	c->linger_left = (uint64_t)c->s->o.body_max + LINGER_SLACK_BYTES;
	deadline(c, LINGER_MS);
	conn_idle(c, true);
	reading(c, true);
}

static void after_write(uv_write_t *w, int status)
{
	struct write_req *wr = container_of(w, struct write_req, w);

	free(wr->data);
	if (status < 0)
		conn_close(wr->c, uv_strerror(status));
	else if (wr->close_why)
		conn_linger(wr->c, wr->close_why);
	free(wr);
}

/* Writes data (malloc'ed, taken). close_why: close once written, saying
 * why; NULL: the connection stays open. */
static void write_owned(struct http_conn *c, char *data, size_t len, const char *close_why)
{
	struct write_req *wr = xcalloc(1, sizeof(*wr));
	uv_buf_t ub = uv_buf_init(data, (unsigned)len);

	wr->c = c;
	wr->data = data;
	wr->close_why = close_why;
	if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &ub, 1, after_write) < 0) {
		free(wr->data);
		free(wr);
		conn_close(c, "cannot write");
	}
}

/* close_why: close once written, saying why; NULL: keep the connection.
 * extra: more header lines, each ending in CRLF (NULL: none); no_body: a
 * HEAD's answer, which says the body's length but leaves it out. */
static void send_response(struct http_conn *c, int status, const char *ctype, const char *extra,
			  const char *body, size_t len, bool no_body, const char *close_why)
{
	struct buf b = {0};

	buf_printf(&b,
		   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		   "Connection: %s\r\n",
		   status, reason(status), ctype ? ctype : "text/plain; charset=utf-8", len,
		   close_why ? "close" : "keep-alive");
	if (status == 503 && c->reject == 503) /* no room for the body now: come back */
		buf_printf(&b, "Retry-After: %u\r\n", HTTP_RETRY_AFTER_S);
	if (extra)
		buf_puts(&b, extra);
	buf_puts(&b, "\r\n");
	if (len && !no_body)
		buf_append(&b, body, len);
	write_owned(c, b.p, b.len, close_why);
}

/* An error answer that ends the connection. */
static void reject(struct http_conn *c, int status, const char *msg)
{
	if (c->st == CONN_CLOSING)
		return;
	reading(c, false);
	uv_timer_stop(&c->timer);
	c->st = CONN_CLOSING; /* read nothing more; closed once written */
	send_response(c, status, NULL, NULL, msg, strlen(msg), false, "request refused");
}

void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
		  size_t len)
{
	http_respond_headers(req, status, content_type, NULL, body, len);
}

void http_respond_headers(struct http_request *req, int status, const char *content_type,
			  const char *headers, const char *body, size_t len)
{
	struct http_conn *c = req->conn;
	const char *close_why;

	if (c == NULL || c->st == CONN_CLOSING) {
		struct http_server *s = container_of(req, struct request, pub)->s;
		request_free(req); /* the client went away meanwhile */
		server_maybe_done(s);
		return;
	}
	assert(c->st == CONN_HANDLING);
	c->inflight = NULL;
	close_why = c->s->closing    ? "server closing"
		    : !c->keep_alive ? "answered, not keep-alive"
				     : NULL;
	/* body may point into req (an echo): send before freeing */
	send_response(c, status, content_type, headers, body, len,
		      req->method && strcmp(req->method, "HEAD") == 0, close_why);
	request_free(req);
	if (close_why) {
		c->st = CONN_CLOSING;
		return;
	}
	/* The next request: first what was already read, then the socket. When
	 * the handler answered at once we are still inside the parser, which
	 * simply goes on with the bytes after this request. */
	c->st = CONN_READING;
	http_parser_pause(&c->parser, 0);
	deadline(c, c->s->o.idle_timeout_ms);
	conn_idle(c, true);
	if (c->pending.len) {
		struct buf p = c->pending;
		memset(&c->pending, 0, sizeof(c->pending));
		conn_feed(c, p.p, p.len);
		buf_done(&p);
	}
	if (c->st == CONN_READING)
		reading(c, true);
}

/* ---- streamed answers ---- */

/* The headers of a streamed answer, without Content-Length: its body ends
 * with the connection (HTTP/1.1 allows that, and an event stream needs no
 * chunk framing). No pipelined request after it is answered. */
void http_stream_begin(struct http_request *req, int status, const char *content_type,
		       const char *headers)
{
	struct http_conn *c = req->conn;
	struct buf b = {0};

	if (c == NULL || c->st != CONN_HANDLING)
		return; /* gone: the next write says so */
	if (c->s->closing) {
		/* it would stream on after the close passed it by (it was
		 * being handled then), keeping the server from closing */
		conn_close(c, "server closing");
		return;
	}
	buf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nConnection: close\r\n", status,
		   reason(status), content_type);
	if (headers)
		buf_puts(&b, headers);
	buf_puts(&b, "\r\n");
	c->st = CONN_STREAMING;
	c->keep_alive = false;
	buf_done(&c->pending); /* requests pipelined after this one go unanswered */
	c->linger_left = LINGER_SLACK_BYTES;
	write_owned(c, b.p, b.len, NULL);
	reading(c, true);
}

int http_stream_write(struct http_request *req, const char *p, size_t len)
{
	struct http_conn *c = req->conn;

	if (c == NULL || c->st != CONN_STREAMING)
		return -EPIPE;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > HTTP_STREAM_QUEUE_MAX)
		return -EAGAIN;
	if (len > 0) {
		char *copy = xmalloc(len);
		memcpy(copy, p, len);
		write_owned(c, copy, len, NULL);
	}
	return c->st == CONN_STREAMING ? 0 : -EPIPE;
}

void http_stream_end(struct http_request *req)
{
	struct http_conn *c = req->conn;
	struct http_server *s = container_of(req, struct request, pub)->s;

	if (c != NULL && c->st == CONN_STREAMING) {
		c->inflight = NULL;
		/* the shutdown waits for what is queued */
		conn_linger(c, "stream ended");
	} else if (c != NULL) {
		c->inflight = NULL;
		conn_close(c, "stream ended");
	}
	request_free(req);
	server_maybe_done(s);
}

/* ---- parsing ---- */

static int on_message_begin(http_parser *p)
{
	struct http_conn *c = p->data;

	conn_idle(c, false);
	c->used = true;
	request_free(c->req);
	c->req = request_new(c->s);
	c->url.len = c->hname.len = c->hval.len = 0;
	c->in_value = false;
	c->header_bytes = 0;
	deadline(c, c->s->o.header_timeout_ms);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (c->url.len + len > HTTP_URL_MAX) {
		c->reject = 414;
		return -1;
	}
	buf_append(&c->url, at, len);
	return 0;
}

static int commit_header(struct http_conn *c)
{
	struct http_request *r = c->req;

	if (c->hname.len == 0)
		return 0;
	if (r->nheaders >= HTTP_HEADER_COUNT_MAX) {
		c->reject = 431;
		return -1;
	}
	r->headers = xreallocarray(r->headers, r->nheaders + 1, sizeof(*r->headers));
	for (size_t i = 0; i < c->hname.len; i++)
		c->hname.p[i] = (char)tolower((unsigned char)c->hname.p[i]);
	r->headers[r->nheaders].name = xstrndup(c->hname.p, c->hname.len);
	r->headers[r->nheaders].value = xstrndup(c->hval.p ? c->hval.p : "", c->hval.len);
	r->nheaders++;
	c->hname.len = c->hval.len = 0;
	return 0;
}

static int count_header_bytes(struct http_conn *c, size_t len)
{
	c->header_bytes += len;
	if (c->header_bytes > HTTP_HEADERS_MAX) {
		c->reject = 431;
		return -1;
	}
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (count_header_bytes(c, len) < 0)
		return -1;
	if (c->in_value) {
		if (commit_header(c) < 0)
			return -1;
		c->in_value = false;
	}
	buf_append(&c->hname, at, len);
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (count_header_bytes(c, len) < 0)
		return -1;
	c->in_value = true;
	buf_append(&c->hval, at, len);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_conn *c = p->data;
	struct http_request *r = c->req;
	struct http_parser_url u;
	const char *url = c->url.p ? c->url.p : "";

	if (commit_header(c) < 0)
		return -1;
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, c->url.len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
		c->reject = 400;
		return -1;
	}
	r->path = xstrndup(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	if (u.field_set & (1 << UF_QUERY))
		r->query = xstrndup(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
	r->method = http_method_str((enum http_method)p->method);
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->s->o.body_max) {
		c->reject = 413;
		return -1;
	}
	/* the whole body is counted now, before a byte of it is read */
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > 0 &&
	    !request_reserve(container_of(r, struct request, pub), p->content_length + 1)) {
		c->reject = 503;
		return -1;
	}
	if (c->s->o.headers)
		c->s->o.headers(r, c->s->arg);
	deadline(c, c->s->o.body_timeout_ms);
	return 0;
}

/* Room in the body buffer for len more bytes and the NUL: the Content-Length
 * was counted at the headers and is allocated at the first byte; a chunked
 * body doubles its buffer, counting what each step adds. */
static int body_room(struct http_conn *c, struct request *rq, size_t len)
{
	struct http_request *r = &rq->pub;
	size_t need = r->body_len + len + 1, room = rq->room;

	if (need > c->s->o.body_max + 1) {
		c->reject = 413;
		return -1;
	}
	if (need > room) {
		room = room < BODY_ROOM_MIN / 2 ? BODY_ROOM_MIN : 2 * room;
		if (room < need)
			room = need;
		if (room > c->s->o.body_max + 1)
			room = c->s->o.body_max + 1;
		if (!request_reserve(rq, room - rq->room)) {
			c->reject = 503;
			return -1;
		}
		r->body = xreallocarray(r->body, rq->room, 1);
	} else if (r->body == NULL) {
		r->body = xmalloc(rq->room);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	struct http_request *r = c->req;

	if (body_room(c, container_of(r, struct request, pub), len) < 0)
		return -1;
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	if (r->sink.data)
		r->sink.data(r->sink.ctx, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_conn *c = p->data;
	struct http_request *r = c->req;

	c->req = NULL;
	if (r->body == NULL)
		r->body = xstrdup("");
	r->conn = c;
	c->inflight = r;
	c->keep_alive = http_should_keep_alive(p);
	c->st = CONN_HANDLING;
	uv_timer_stop(&c->timer);
	/* answers go out in order: nothing more is parsed until this one's */
	http_parser_pause(p, 1);
	c->s->cb(r, c->s->arg);
	return 0;
}

static void conn_feed(struct http_conn *c, const char *data, size_t len)
{
	size_t n = http_parser_execute(&c->parser, &c->s->settings, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
	char msg[160];
	int status;

	if (c->st == CONN_CLOSING)
		return;
	if (e == HPE_PAUSED) {
		/* a request is being answered: keep what follows it for later */
		if (c->st == CONN_HANDLING) {
			reading(c, false);
			buf_append(&c->pending, data + n, len - n);
		}
		return;
	}
	if (e == HPE_OK)
		return;
	status = c->reject ? c->reject : e == HPE_HEADER_OVERFLOW ? 431 : 400;
	snprintf(msg, sizeof(msg), "%s\n", c->reject ? reason(status) : http_errno_description(e));
	reject(c, status, msg);
}

/* ---- connections ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	(void)suggested;
	b->base = xmalloc(READ_SIZE);
	b->len = READ_SIZE;
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct http_conn *c = container_of((uv_tcp_t *)st, struct http_conn, tcp);

	if (nread > 0 && c->st == CONN_READING)
		conn_feed(c, b->base, (size_t)nread);
	else if (nread > 0 && c->st == CONN_HANDLING) {
		/* kept for after the answer; one read at most, or a client
		 * pipelining into a slow handler would grow it without end */
		buf_append(&c->pending, b->base, (size_t)nread);
		reading(c, false);
	} else if (nread > 0 && (c->st == CONN_LINGERING || c->st == CONN_STREAMING) &&
		   (uint64_t)nread >= c->linger_left)
		conn_close(c, "too much input while answering");
	else if (nread > 0 && (c->st == CONN_LINGERING || c->st == CONN_STREAMING))
		c->linger_left -= (uint64_t)nread; /* dropped */
	else if (nread < 0)
		conn_close(c, nread == UV_EOF ? "closed by the client" : uv_strerror((int)nread));
	free(b->base);
}

static void server_maybe_done(struct http_server *s)
{
	if (!s->closing || s->nconns > 0 || s->nlisteners_open > 0 || s->nrequests > 0)
		return;
	if (s->done)
		s->done(s->done_arg);
	free(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	struct http_server *s = c->s;

	if (--c->handles_open > 0)
		return;
	TAILQ_REMOVE(&s->conns, c, entry);
	s->nconns--;
	request_free(c->req);
	buf_done(&c->url);
	buf_done(&c->hname);
	buf_done(&c->hval);
	buf_done(&c->pending);
	free(c);
	server_maybe_done(s);
}

static void conn_close(struct http_conn *c, const char *why)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	log_debug("http connection %u closed: %s", c->id, why);
	reading(c, false);
	c->st = CONN_CLOSING;
	conn_idle(c, false);
	client_detach(c);
	c->s->nactive--;
	if (c->inflight) { /* the handler's answer will go nowhere */
		c->inflight->conn = NULL;
		c->inflight = NULL;
	}
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

/* ---- fairness between clients ---- */

/* A client is an IPv4 address or an IPv6 /64 (an IPv4-mapped IPv6 address is
 * its IPv4 address); a peer without an address (getpeername failed) shares
 * one key with every other such peer. */
static void client_key(const struct sockaddr_storage *ss, uint8_t key[CLIENT_KEY_LEN], char *name,
		       size_t namelen)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	struct in6_addr prefix;

	memset(key, 0, CLIENT_KEY_LEN);
	snprintf(name, namelen, "an unknown address");
	if (ss->ss_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &sin->sin_addr, 4);
		inet_ntop(AF_INET, &sin->sin_addr, name, (socklen_t)namelen);
	} else if (ss->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		key[0] = 4;
		memcpy(key + 1, sin6->sin6_addr.s6_addr + 12, 4);
		inet_ntop(AF_INET, sin6->sin6_addr.s6_addr + 12, name, (socklen_t)namelen);
	} else if (ss->ss_family == AF_INET6) {
		key[0] = 6;
		memcpy(key + 1, sin6->sin6_addr.s6_addr, 8);
		memset(&prefix, 0, sizeof(prefix));
		memcpy(prefix.s6_addr, sin6->sin6_addr.s6_addr, 8);
		if (inet_ntop(AF_INET6, &prefix, name, (socklen_t)namelen - 3))
			strcat(name, "/64");
	}
}

static void client_attach(struct http_conn *c)
{
	struct http_server *s = c->s;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uint8_t key[CLIENT_KEY_LEN];
	char name[INET6_ADDRSTRLEN + 4];
	struct client *cl;
	unsigned b;

	memset(&ss, 0, sizeof(ss));
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
		ss.ss_family = AF_UNSPEC;
	client_key(&ss, key, name, sizeof(name));
	b = (unsigned)strmap_hash(key, sizeof(key)) & (CLIENT_BUCKETS - 1);
	LIST_FOREACH(cl, &s->clients[b], entry)
	{
		if (memcmp(cl->key, key, sizeof(key)) == 0)
			break;
	}
	if (cl == NULL) {
		cl = xcalloc(1, sizeof(*cl));
		memcpy(cl->key, key, sizeof(key));
		memcpy(cl->name, name, sizeof(name));
		LIST_INSERT_HEAD(&s->clients[b], cl, entry);
	}
	cl->nconns++;
	c->cl = cl;
}

static void client_detach(struct http_conn *c)
{
	struct client *cl = c->cl;

	if (cl == NULL)
		return;
	c->cl = NULL;
	if (--cl->nconns > 0)
		return;
	LIST_REMOVE(cl, entry);
	free(cl);
}

/* The oldest idle connection, of client cl or (NULL) of anyone. */
static struct http_conn *oldest_idle(struct http_server *s, const struct client *cl)
{
	struct http_conn *c;

	TAILQ_FOREACH(c, &s->idle, idle_entry)
	{
		if (cl == NULL || c->cl == cl)
			return c;
	}
	return NULL;
}

/* Makes room for the new connection c (already counted), closing an idle one
 * where needed; false, with why, when there is none to close. A client at its
 * cap with every connection busy (a slow loris) is refused, whatever room the
 * server has: that is what keeps the others' slots free. */
static bool conn_admit(struct http_conn *c, const char **ret_why)
{
	struct http_server *s = c->s;
	struct client *cl = c->cl;
	struct http_conn *old;

	if (cl->nconns > s->o.conn_per_client_max) {
		old = oldest_idle(s, cl);
		if (old == NULL) {
			if (!cl->warned)
				log_warning("HTTP client %s has %u connections, none idle: "
					    "refusing more (listen.connections_per_client)",
					    cl->name, cl->nconns - 1);
			cl->warned = true;
			*ret_why = "the client is at its connection cap";
			return false;
		}
		conn_close(old, "reclaimed: its client is at its connection cap");
	}
	if (s->nactive > s->o.conn_max) {
		old = oldest_idle(s, NULL);
		if (old == NULL) {
			*ret_why = "too many connections, none idle";
			return false;
		}
		conn_close(old, "reclaimed: the server is full");
	}
	return true;
}

static void on_connection(uv_stream_t *ls, int status)
{
	struct listener *l = container_of((uv_tcp_t *)ls, struct listener, tcp);
	struct http_server *s = l->s;
	struct http_conn *c;
	const char *why;

	if (status < 0)
		return;
	c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->id = ++s->next_id;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles_open = 2;
	TAILQ_INSERT_TAIL(&s->conns, c, entry);
	s->nconns++;
	s->nactive++;
	if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c, "accept failed");
		return;
	}
	client_attach(c);
	if (s->closing || !conn_admit(c, &why)) {
		/* accepted and closed at once: cheaper than an answer, and a
		 * client over its cap is told nothing it could use */
		conn_close(c, s->closing ? "server closing" : why);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->st = CONN_READING;
	/* an honest client sends its request right after connecting */
	deadline(c, s->o.first_byte_timeout_ms);
	conn_idle(c, true);
	reading(c, true);
}

/* ---- the server ---- */

int http_server_new(uv_loop_t *loop, const struct http_server_opts *o, http_handler_cb *cb,
		    void *arg, struct http_server **ret)
{
	struct http_server *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->o = *o;
	/* a larger body (and its NUL) could never be held: 413, not 503 forever */
	if (s->o.body_max >= s->o.bodies_max)
		s->o.body_max = s->o.bodies_max ? s->o.bodies_max - 1 : 0;
	s->cb = cb;
	s->arg = arg;
	SLIST_INIT(&s->listeners);
	TAILQ_INIT(&s->conns);
	TAILQ_INIT(&s->idle);
	for (unsigned i = 0; i < CLIENT_BUCKETS; i++)
		LIST_INIT(&s->clients[i]);
	http_parser_settings_init(&s->settings);
	s->settings.on_message_begin = on_message_begin;
	s->settings.on_url = on_url;
	s->settings.on_header_field = on_header_field;
	s->settings.on_header_value = on_header_value;
	s->settings.on_headers_complete = on_headers_complete;
	s->settings.on_body = on_body;
	s->settings.on_message_complete = on_message_complete;
	*ret = s;
	return 0;
}

static void listener_free_cb(uv_handle_t *h)
{
	free(container_of((uv_tcp_t *)h, struct listener, tcp));
}

static int listen_on(struct http_server *s, struct listener *l, const char *what,
		     struct kiln_err *err)
{
	/* the kernel's largest backlog (net.core.somaxconn): a burst of
	 * connections waits there rather than have its SYNs dropped and
	 * retried a second later, as a short queue would under a flood */
	int r = uv_listen((uv_stream_t *)&l->tcp, SOMAXCONN, on_connection);

	if (r < 0) {
		uv_close((uv_handle_t *)&l->tcp, listener_free_cb);
		return kiln_err_set(err, r, "cannot listen on %s: %s", what, uv_strerror(r));
	}
	SLIST_INSERT_HEAD(&s->listeners, l, entry);
	s->nlisteners_open++;
	return 0;
}

/* A listener on fd: bound here, or listening already (from systemd). */
static int listener_open(struct http_server *s, int fd, const char *what, struct kiln_err *err)
{
	struct listener *l = xcalloc(1, sizeof(*l));
	int r;

	l->s = s;
	uv_tcp_init(s->loop, &l->tcp);
	r = uv_tcp_open(&l->tcp, fd);
	if (r < 0) {
		close(fd); /* not adopted: closing the handle would leave it open */
		uv_close((uv_handle_t *)&l->tcp, listener_free_cb);
		return kiln_err_set(err, r, "cannot use %s (fd %d): %s", what, fd, uv_strerror(r));
	}
	return listen_on(s, l, what, err);
}

/* socket(2) and bind(2) here, not uv_tcp_bind: libuv reports EAFNOSUPPORT (no
 * IPv6 here) as EINVAL and an address in use only later, at listen; this
 * says what went wrong where it went wrong. */
static int bind_tcp(const struct sockaddr *sa, int *ret_fd)
{
	socklen_t len =
	    sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int one = 1, r, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* as uv_tcp_bind: a restart need not wait out the last run's TIME_WAIT */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, sa, len) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int http_server_listen(struct http_server *s, const char *addr, struct kiln_err *err)
{
	struct sockaddr_storage ss;
	char host[256];
	const char *colon = strrchr(addr, ':');
	long port;
	char *end;
	int fd = -1, r;

	if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
		return kiln_err_set(err, -EINVAL, "listen address '%s' is not host:port", addr);
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end || port < 1 || port > 65535)
		return kiln_err_set(err, -EINVAL, "listen address '%s' has no valid port", addr);
	if (addr[0] == '[') {
		if (colon == addr || colon[-1] != ']')
			return kiln_err_set(err, -EINVAL, "listen address '%s' is not [v6]:port",
					    addr);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr - 2), addr + 1);
		r = uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss);
	} else {
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
		r = uv_ip4_addr(host[0] ? host : "0.0.0.0", (int)port, (struct sockaddr_in *)&ss);
	}
	if (r < 0)
		return kiln_err_set(err, -EINVAL, "listen address '%s': bad host '%s'", addr, host);
	r = bind_tcp((const struct sockaddr *)&ss, &fd);
	if (r < 0)
		return kiln_err_set(err, r, "cannot bind %s: %s", addr, strerror(-r));
	return listener_open(s, fd, addr, err);
}

int http_server_adopt(struct http_server *s, int fd, struct kiln_err *err)
{
	return listener_open(s, fd, "a socket from systemd", err);
}

static void listener_closed(uv_handle_t *h)
{
	struct listener *l = container_of((uv_tcp_t *)h, struct listener, tcp);
	struct http_server *s = l->s;

	free(l);
	s->nlisteners_open--;
	server_maybe_done(s);
}

void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg)
{
	struct listener *l;
	struct http_conn *c;

	s->closing = true;
	s->done = done;
	s->done_arg = arg;
	while ((l = SLIST_FIRST(&s->listeners)) != NULL) {
		SLIST_REMOVE_HEAD(&s->listeners, entry);
		uv_close((uv_handle_t *)&l->tcp, listener_closed);
	}
	/* a closed connection stays listed until its handles are closed */
	TAILQ_FOREACH(c, &s->conns, entry)
	{
		if (c->st != CONN_HANDLING) /* those close after their answer */
			conn_close(c, "server closing");
	}
	server_maybe_done(s);
}
