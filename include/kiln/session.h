/* session.h (build): the BuildKit session of one build. kiln opens POST /session
 * on the engine, the engine answers 101 and the connection becomes HTTP/2 with
 * the engine as the client and kiln as the server of a few gRPC methods:
 *
 *   /grpc.health.v1.Health/Check                 SERVING
 *   /moby.filesync.v1.Auth/Credentials           registry host -> user, secret
 *   /moby.buildkit.secrets.v1.Secrets/GetSecret  secret id -> its bytes
 *
 * Anything else is gRPC status 12 (Unimplemented), which BuildKit reads as
 * "not offered" (Auth/GetTokenAuthority: it then asks Credentials); a secret
 * the build may not see is status 5 (NotFound).
 *
 * Two layers: session_h2 is the HTTP/2 + gRPC server on bytes in memory (the
 * unit tests and the fuzzer drive it), session the connection on the loop.
 * Everything runs on the loop; nothing blocks but the connect of a tcp://
 * engine (curl's CONNECT_ONLY; a unix socket connects at once). */
#ifndef KILN_SESSION_H
#define KILN_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kiln/buf.h"
#include "kiln/common.h"

#define SESSION_SECRET_MAX (500u << 10) /* BuildKit's own cap on a secret */

struct session_cred {
	char *host; /* "registry.example.com:5000" */
	char *username;
	char *secret; /* a password, or an identity token with an empty username */
};

struct session_secret {
	char *id;
	unsigned char *data;
	size_t len;
};

/* What one build's session may hand out. Holds secrets: wiped by
 * session_data_done, never logged. */
struct session_data {
	struct session_cred *creds;
	size_t ncreds;
	struct session_secret *secrets;
	size_t nsecrets;
};

void session_data_add_cred(struct session_data *sd, const char *host, const char *username,
			   const char *secret);
/* Takes data (len bytes from xmalloc). */
void session_data_add_secret(struct session_data *sd, const char *id, unsigned char *data,
			     size_t len);
/* Wipes and frees every value. */
void session_data_done(struct session_data *sd);

/* ---- the server on bytes ---- */

struct session_h2;
struct session_h2_stats {
	unsigned calls;	      /* gRPC calls answered */
	char missing[128];    /* the first secret id asked for and not granted, "" if none */
	char cred_hosts[256]; /* registry hosts given credentials, comma-separated */
	char anon_hosts[256]; /* asked for, but kiln has none */
};

/* sd must outlive the server. NULL: nghttp2 could not make one (out of
 * memory; in kilnd also libnghttp2 not loadable, errno ELIBACC). */
struct session_h2 *session_h2_new(const struct session_data *sd);
struct session_h2 *session_h2_free(struct session_h2 *h);
/* Bytes from the client. A protocol error is -EPROTO: close the connection. */
int session_h2_recv(struct session_h2 *h, const void *p, size_t n);
/* Appends what is to be sent to out (at most about max bytes beyond what out
 * holds). -EPROTO: close. */
int session_h2_send(struct session_h2 *h, struct buf *out, size_t max);
/* The peer said goodbye (GOAWAY) or nothing is left to do. */
bool session_h2_done(const struct session_h2 *h);
const struct session_h2_stats *session_h2_stats(const struct session_h2 *h);

/* ---- the connection ---- */

struct docker;
struct session;
/* The session ended without session_stop: code is -ECONNRESET (the engine
 * closed it), -EPROTO (bad HTTP/2 or a refused upgrade), other errnos; why
 * says it in words. Called once, on the loop. */
typedef void session_dead_cb(struct session *s, int code, const char *why, void *arg);

/* Opens the session: a new connection to d's engine (its unix socket, tcp or
 * TLS settings), POST /session upgraded to h2c. Returns at once after the
 * connect; the build may start then (the engine waits for the session's
 * id). sd must outlive the session. */
int session_start(uv_loop_t *loop, struct docker *d, const struct session_data *sd,
		  session_dead_cb *dead, void *arg, struct session **ret, struct kiln_err *err);
/* "kiln-<32 hex>", for POST /build?session=. */
const char *session_id(const struct session *s);
const struct session_h2_stats *session_stats(const struct session *s);
/* Closes the connection; the memory goes when the loop has closed the poll
 * handle. The dead callback is not called after this. NULL-safe. */
void session_stop(struct session *s);

#endif
