/* docker.h (build): a Docker Engine API client on libcurl's multi interface, driven
 * by a libuv loop (curl_multi_socket_action): requests never block the loop.
 * The engine is a unix socket or tcp:// with optional TLS client
 * certificates. The API version is negotiated once from GET /_ping: the
 * lower of the engine's and DOCKER_API_NEWEST.
 *
 * A call streams its response to a line callback (the engine's NDJSON
 * progress) or collects it (small JSON replies, capped), and may stream its
 * request body from a pull callback that can pause until data is ready. */
#ifndef KILN_DOCKER_H
#define KILN_DOCKER_H

#include <curl/curl.h>
#include <sys/types.h>
#include <uv.h>

#include "kiln/buf.h"
#include "kiln/common.h"

#define DOCKER_API_NEWEST "1.47"
#define DOCKER_API_OLDEST "1.24"
#define DOCKER_REPLY_MAX  (1u << 20) /* collected replies larger than this are cut */

struct docker_opts {
	const char
	    *host; /* unix:///path, tcp://host:port; NULL: $DOCKER_HOST or the default socket */
	const char *cert_path; /* ca.pem, cert.pem, key.pem; NULL: $DOCKER_CERT_PATH */
	int tls_verify;	       /* 1 on, 0 off, -1: $DOCKER_TLS_VERIFY */
};

struct docker;
struct docker_call;

/* A chunk of the response body that ends a line (without the '\n'). */
typedef void docker_line_cb(struct docker_call *c, const char *line, size_t len, void *arg);
/* Fills up to size bytes of the request body: the count, 0 at its end,
 * -EAGAIN when nothing is ready yet (call docker_call_resume later), or
 * another negative errno to abort the request. */
typedef ssize_t docker_body_cb(struct docker_call *c, char *buf, size_t size, void *arg);
/* Called once per call, on the loop; the call is freed when it returns. */
typedef void docker_done_cb(struct docker_call *c, void *arg);

struct docker_request {
	const char *method;	     /* GET, POST, DELETE */
	const char *path;	     /* "/build?t=...", after the version prefix; query escaped */
	bool unversioned;	     /* /_ping has no /vX.Y prefix */
	const char *json;	     /* a JSON body, or NULL */
	docker_body_cb *body;	     /* a streamed body (Content-Type content_type), or NULL */
	const char *content_type;    /* for body */
	const char *registry_auth;   /* X-Registry-Auth value, or NULL */
	const char *registry_config; /* X-Registry-Config value, or NULL */
	docker_line_cb *line;	     /* stream the reply line by line; NULL: collect it */
};

/* Reads the options (and the environment where they leave things unset).
 * Errors (a bad host, missing certificate files) are -EINVAL with err. */
int docker_new(uv_loop_t *loop, const struct docker_opts *o, struct docker **ret,
	       struct kiln_err *err);
/* Aborts calls still running (their done callbacks run first) and closes
 * the loop handles; the memory goes once the loop has run their closes. */
struct docker *docker_free(struct docker *d);
/* The engine as configured, for messages: "unix:///var/run/docker.sock". */
const char *docker_host(const struct docker *d);
/* "1.41" once negotiated, else NULL. */
const char *docker_api_version(const struct docker *d);
/* Forgets the negotiated version (after the engine restarted). */
void docker_renegotiate(struct docker *d);

/* What answers behind docker.host, as its last /_ping said: Podman's
 * Docker-compatible service sends Libpod-Api-Version (and builds with
 * buildah: no BuildKit, no /distribution, no /build/cancel). */
enum docker_engine_kind { DOCKER_ENGINE_UNKNOWN, DOCKER_ENGINE_DOCKER, DOCKER_ENGINE_PODMAN };
enum docker_engine_kind docker_engine_kind(const struct docker *d);
/* "Podman 4.3.1 (Docker API 1.41)", "Docker 20.10.24 (API 1.41)"; "" until
 * a ping answered. */
const char *docker_engine_str(const struct docker *d);
/* GET /_ping: learns what the engine is (and nothing else; no negotiation). */
struct docker_call *docker_identify(struct docker *d, docker_done_cb *done, void *arg);

/* Sets how easy handle h reaches the engine (unix socket, TLS files,
 * timeouts), and its URL to the engine's base + path unless path is NULL:
 * for a connection kiln drives itself (the BuildKit session). */
void docker_easy_connection(const struct docker *d, CURL *h, const char *path);

/* The image builder a build uses. AUTO is resolved per engine by
 * docker_builder_auto once the API version is negotiated. */
enum docker_builder { DOCKER_BUILDER_AUTO, DOCKER_BUILDER_CLASSIC, DOCKER_BUILDER_BUILDKIT };
#define DOCKER_BUILDKIT_API_MIN "1.39" /* BuildKit through /build?version=2, non-experimental */

const char *docker_builder_str(enum docker_builder b); /* "auto", "classic", "buildkit" */
/* "auto", "classic" or "buildkit" -> ret; -EINVAL otherwise. */
int docker_builder_parse(const char *s, enum docker_builder *ret);
/* What auto means on this engine: BuildKit on a Docker engine speaking API
 * >= DOCKER_BUILDKIT_API_MIN, the classic builder otherwise (Podman's
 * compat build, buildah, included) (and while the
 * version is not negotiated yet). The one place that decides it. */
enum docker_builder docker_builder_auto(const struct docker *d);

/* Starts a call. The request's strings are copied. Before the version is
 * negotiated, a versioned call is preceded by GET /_ping. */
struct docker_call *docker_call_start(struct docker *d, const struct docker_request *rq,
				      docker_done_cb *done, void *arg);
/* The body callback has data again. */
void docker_call_resume(struct docker_call *c);
/* Ends the call as soon as it is safe (never inside a curl callback); the
 * done callback sees -ECANCELED. Closing the connection is what stops an
 * engine's build. */
void docker_call_abort(struct docker_call *c);

/* Results, valid in the done callback: */
/* 0 when an HTTP reply arrived (any status), else a negative errno:
 * -ECONNREFUSED (engine unreachable), -ECONNRESET (the connection broke),
 * -ETIMEDOUT, -ECANCELED (aborted), -EPROTO, -EIO. */
int docker_call_result(const struct docker_call *c);
long docker_call_status(const struct docker_call *c);
/* The collected reply (NUL-terminated; "" for streamed calls). */
const char *docker_call_reply(const struct docker_call *c, size_t *ret_len);
/* A human description of a failure: curl's text, or the engine's "message". */
const char *docker_call_error(const struct docker_call *c);
/* Whether a failure is worth retrying: unreachable engine, broken
 * connection, 5xx other than a build's own error. */
bool docker_call_transient(const struct docker_call *c);

/* Joins the payloads of a container's log read without a TTY: frames of
 * an 8-byte header [stream, 0, 0, 0, length (u32 big-endian)] then the
 * data. A frame cut short keeps what arrived; a partial header is dropped. */
void docker_demux_logs(const void *data, size_t len, struct buf *out);

/* URL-escapes s for a query value into a new string the caller frees. */
char *docker_escape(const char *s);
/* Whether an error text from an engine stream (push or pull) names a
 * transient registry problem: 5xx, refused or reset connections, timeouts. */
bool docker_error_transient(const char *msg);

#endif
