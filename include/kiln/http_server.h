/* http_server.h (trigger): a small HTTP/1.1 server on the libuv loop for kilnd's
 * webhook, /healthz and /metrics endpoints. Strict limits on everything a
 * client controls: connections, header size and count, body size, the body
 * bytes held over all connections at once, and the time to send headers and
 * body; keep-alive and pipelining work (requests on one connection are
 * answered in order). A handler may answer later (after worker-thread work):
 * reading on that connection pauses until it does. A handler may also see a
 * body as it arrives (a sink, chosen when the headers are in), e.g. to hash
 * it piece by piece, or stream its answer (Server-Sent Events). Fairness: connections are capped
 * per client address (per /64 for IPv6), a full server reclaims its oldest idle connection before
 * it refuses anyone, and an answer that ends a connection is followed by a lingering close, so a
 * client still sending sees the status rather than a reset. */
#ifndef KILN_HTTP_SERVER_H
#define KILN_HTTP_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "kiln/common.h"

#define HTTP_BODY_MAX_DEFAULT (25u << 20) /* GitHub's own cap */
#define HTTP_HEADERS_MAX      16384u	  /* bytes of all header lines */
#define HTTP_HEADER_COUNT_MAX 64u
#define HTTP_URL_MAX	      2048u

#define HTTP_BODIES_MAX_DEFAULT (64u << 20) /* body bytes held at once, all connections */
#define HTTP_RETRY_AFTER_S	5u	    /* in a 503 for want of room for a body */
#define HTTP_STREAM_QUEUE_MAX	(1u << 20)  /* a streamed answer's bytes waiting for the client */

struct http_header {
	char *name; /* lowercased */
	char *value;
};

struct http_conn;

/* What a handler does with a body as it arrives: data sees each piece once,
 * in order; free ends ctx with the request (answered or cut off). The body
 * is also kept in http_request.body. */
struct http_body_sink {
	void (*data)(void *ctx, const char *p, size_t len);
	void (*free)(void *ctx); /* NULL: nothing to free */
	void *ctx;
};

struct http_request {
	const char *method;
	char *path; /* without the query */
	char *query;
	struct http_header *headers;
	size_t nheaders;
	char *body;
	size_t body_len;
	struct http_conn *conn;	    /* NULL once the client went away */
	struct http_body_sink sink; /* set by http_server_opts.headers; zero: none */
};

/* Called for each complete request. The handler must call http_respond once,
 * now or later; it owns req until then. */
typedef void http_handler_cb(struct http_request *req, void *arg);
/* Called when a request's headers are in, before any of its body (body is
 * NULL then): may set req->sink. req stays the server's. */
typedef void http_headers_cb(struct http_request *req, void *arg);

struct http_server_opts {
	size_t body_max;
	unsigned conn_max;
	uint64_t header_timeout_ms;	/* from the first byte of a request to its last header */
	uint64_t body_timeout_ms;	/* from the headers to the end of the body */
	uint64_t idle_timeout_ms;	/* keep-alive: between requests */
	unsigned conn_per_client_max;	/* connections from one address (IPv6: one /64) */
	uint64_t first_byte_timeout_ms; /* from accepting a connection to its first byte */
	/* Body bytes held at once over all connections, a request's counted from
	 * its Content-Length when its headers are in (a chunked body as its
	 * buffer grows) until it is answered; past it, 503 with Retry-After. A
	 * body_max above it is lowered to it (413). */
	size_t bodies_max;
	http_headers_cb *headers; /* NULL: no sinks; gets the handler's arg */
};

struct http_server;

void http_server_default_opts(struct http_server_opts *o);
int http_server_new(uv_loop_t *loop, const struct http_server_opts *o, http_handler_cb *cb,
		    void *arg, struct http_server **ret);
/* "127.0.0.1:8080", "[::1]:8080" or ":8080" (all addresses). */
int http_server_listen(struct http_server *s, const char *addr, struct kiln_err *err);
/* A listening socket passed by systemd (sd_listen_fds). */
int http_server_adopt(struct http_server *s, int fd, struct kiln_err *err);
/* Stops listening, closes every connection, then, once every request handed
 * to the handler is answered, calls done(arg) and frees s. */
void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg);

const char *http_header(const struct http_request *req, const char *lname);
/* Answers and frees req. body may be NULL. */
void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
		  size_t len);
/* The same with more header lines (each ending in "\r\n"; NULL: none). An
 * answer to HEAD has the Content-Length of body, without the body. */
void http_respond_headers(struct http_request *req, int status, const char *content_type,
			  const char *headers, const char *body, size_t len);
/* A streamed answer (Server-Sent Events): http_stream_begin sends the status
 * line and headers (without Content-Length: the body ends with the
 * connection); the handler keeps req and writes pieces until
 * http_stream_end, which frees req and closes once everything is written.
 * While it streams the client's input is read and dropped, so its close is
 * seen at once: req->conn is NULL from then on, and the next write fails. */
void http_stream_begin(struct http_request *req, int status, const char *content_type,
		       const char *headers);
/* 0; -EPIPE when the client is gone (end the stream); -EAGAIN when more
 * than HTTP_STREAM_QUEUE_MAX bytes still wait for a slow client (nothing
 * written: try again later). */
int http_stream_write(struct http_request *req, const char *p, size_t len);
void http_stream_end(struct http_request *req);
unsigned http_server_conns(const struct http_server *s);
/* Body bytes held now (see bodies_max). */
size_t http_server_bodies(const struct http_server *s);

#endif
