/* http_server.h (trigger): a small HTTP/1.1 server on the libuv loop for kilnd's
 * webhook, /healthz and /metrics endpoints. Strict limits on everything a
 * client controls: connections, header size and count, body size, and the
 * time to send headers and body; keep-alive and pipelining work (requests on
 * one connection are answered in order). A handler may answer later (after
 * worker-thread work): reading on that connection pauses until it does.
 * Fairness: connections are capped per client address (per /64 for IPv6), a
 * full server reclaims its oldest idle connection before it refuses anyone,
 * and an answer that ends a connection is followed by a lingering close, so
 * a client still sending sees the status rather than a reset. */
#ifndef KILN_HTTP_SERVER_H
#define KILN_HTTP_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "kiln/common.h"

#define HTTP_BODY_MAX_DEFAULT (25u << 20) /* GitHub's own cap */
#define HTTP_HEADERS_MAX      16384u	  /* bytes of all header lines */
#define HTTP_HEADER_COUNT_MAX 64u
#define HTTP_URL_MAX	      2048u

struct http_header {
	char *name; /* lowercased */
	char *value;
};

struct http_conn;

struct http_request {
	const char *method;
	char *path; /* without the query */
	char *query;
	struct http_header *headers;
	size_t nheaders;
	char *body;
	size_t body_len;
	struct http_conn *conn; /* NULL once the client went away */
};

/* Called for each complete request. The handler must call http_respond once,
 * now or later; it owns req until then. */
typedef void http_handler_cb(struct http_request *req, void *arg);

struct http_server_opts {
	size_t body_max;
	unsigned conn_max;
	uint64_t header_timeout_ms;	/* from the first byte of a request to its last header */
	uint64_t body_timeout_ms;	/* from the headers to the end of the body */
	uint64_t idle_timeout_ms;	/* keep-alive: between requests */
	unsigned conn_per_client_max;	/* connections from one address (IPv6: one /64) */
	uint64_t first_byte_timeout_ms; /* from accepting a connection to its first byte */
};

struct http_server;

void http_server_default_opts(struct http_server_opts *o);
int http_server_new(uv_loop_t *loop, const struct http_server_opts *o, http_handler_cb *cb,
		    void *arg, struct http_server **ret);
/* "127.0.0.1:8080", "[::1]:8080" or ":8080" (all addresses). */
int http_server_listen(struct http_server *s, const char *addr, struct kiln_err *err);
/* A listening socket passed by systemd (sd_listen_fds). */
int http_server_adopt(struct http_server *s, int fd, struct kiln_err *err);
/* Stops listening, closes every connection, then calls done(arg) and frees s. */
void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg);

const char *http_header(const struct http_request *req, const char *lname);
/* Answers and frees req. body may be NULL. */
void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
		  size_t len);
unsigned http_server_conns(const struct http_server *s);

#endif
