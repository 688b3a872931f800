/* dashboard.h (report): the read-only web dashboard on kilnd's HTTP
 * listener: repositories (/), builds (/builds, filtered and paged),
 * one build with its log (/builds/<id>, the log followed live as
 * Server-Sent Events from /builds/<id>/events, or read piece by piece from
 * /builds/<id>/log?offset=N), the engine (/engine) and the embedded
 * stylesheet and script (/static/...). Optional HTTP Basic authentication
 * against an htpasswd-style file (bcrypt, sha-crypt through libxcrypt).
 * Everything that came from a repository, a manifest or a log goes through
 * dashboard_escape. */
#ifndef KILN_DASHBOARD_H
#define KILN_DASHBOARD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "kiln/buf.h"
#include "kiln/common.h"
#include "kiln/http_server.h"
#include "kiln/store.h"

#define DASHBOARD_PAGE_SIZE	 50u	      /* builds per page */
#define DASHBOARD_LOG_PAGE_MAX	 (1u << 20)   /* a build page shows this much of the log's tail */
#define DASHBOARD_LOG_CHUNK_MAX	 (256u << 10) /* one answer of the live log */
#define DASHBOARD_AUTH_FILE_MAX	 (1u << 20)
#define DASHBOARD_AUTH_USERS_MAX 10000u
#define DASHBOARD_AUTH_CACHE	 16u	/* Authorization values recently accepted */
#define DASHBOARD_FOLLOW_MS	 500u	/* the live log's pace: kiln logs -f's */
#define DASHBOARD_STREAMS_MAX	 64u	/* live logs streamed at once; past it, 503 */
#define DASHBOARD_KEEPALIVE_MS	 15000u /* a comment on a quiet stream, so proxies keep it */
/* a stream whose client has left HTTP_STREAM_QUEUE_MAX unread this long ends */
#define DASHBOARD_STALL_MS 10000u
/* Password checks on workers at once: each costs a bcrypt, and libuv's 4
 * workers also fetch and write the state; past it, 503 */
#define DASHBOARD_CHECKS_MAX 2u

/* Files embedded at build time (dashboard_assets.c, made by CMake). */
struct dashboard_asset {
	const char *path; /* "/static/dashboard.css" */
	const char *type;
	const unsigned char *data;
	size_t len;
};
extern const struct dashboard_asset dashboard_assets[];
extern const size_t dashboard_nassets;

/* The filters and cursors of a query string; strings "" when absent. */
struct dashboard_query {
	char repo[256];
	char image[1024]; /* image folder or image reference */
	char state[16];
	int64_t before; /* 0: the newest page */
	int64_t offset; /* the live log's byte offset; -1: absent */
};

/* The users of an auth file. Shared by requests on workers: reference
 * counted on the loop thread. */
struct dashboard_auth;

struct dashboard_ops {
	/* status_json's answer (repositories, queue, engine) into o */
	void (*status)(json_t *o, void *arg);
	/* status_health_json's answer into o */
	int (*health)(json_t *o, void *arg);
	/* the build's log file; the caller frees it */
	char *(*log_path)(int64_t id, void *arg);
};

struct dashboard {
	uv_loop_t *loop;
	struct store *store; /* borrowed */
	struct dashboard_ops ops;
	void *arg;
	struct dashboard_auth *auth; /* NULL: no authentication */
	/* SHA-256 of Authorization values accepted under auth, so a page's
	 * requests (and the live log's every 500 ms) do not each pay bcrypt */
	unsigned char ok[DASHBOARD_AUTH_CACHE][32];
	unsigned nok, next_ok;
	unsigned checking;	   /* password checks queued or on a worker */
	LIST_HEAD(, page) streams; /* live logs being streamed */
	unsigned nstreams;	   /* and requests for one not yet answered */
	unsigned gen; /* bumped when the users change: streams end, clients ask again */
};

void dashboard_init(struct dashboard *db, uv_loop_t *loop, struct store *store,
		    const struct dashboard_ops *ops, void *arg);
void dashboard_done(struct dashboard *db);
/* Replaces the users (NULL: no authentication); takes a; forgets every
 * value accepted before. */
void dashboard_set_auth(struct dashboard *db, struct dashboard_auth *a);
/* Ends every stream at its next look, without its end event, so that
 * browsers ask again under the configuration now in force (a reload that
 * turned listen.dashboard off). */
void dashboard_restart_streams(struct dashboard *db);
/* Whether path is one of the dashboard's. */
bool dashboard_path(const char *path);
/* An http_handler_cb for a dashboard path (arg: struct dashboard *); 404
 * for any other. */
void dashboard_handle(struct http_request *req, void *arg);

/* ---- the pieces, unit-tested ---- */

/* Appends s[0..len) with & < > " ' as character references. */
void dashboard_escape(struct buf *b, const char *s, size_t len);
/* Appends s[0..len) as plain text: ANSI escape sequences (CSI, OSC, and
 * two-byte ESC sequences) and control characters other than newline and
 * tab dropped, a carriage return too. Not escaped for HTML. */
void dashboard_ansi_text(struct buf *b, const char *s, size_t len);
/* Appends one Server-Sent Event: `event: <event>` unless event is NULL,
 * `id: <id>` unless id < 0, and text[0..len) as data lines (each line one
 * `data:` line, so the client's event data is text exactly). */
void dashboard_sse_event(struct buf *b, const char *event, int64_t id, const char *text,
			 size_t len);
/* Parses a query string (NULL: none): repository, image, state, before,
 * offset; other keys are ignored, empty values mean absent. -EINVAL with the
 * reason for a bad escape, a value too long, an unknown state or a number
 * out of range. */
int dashboard_parse_query(const char *query, struct dashboard_query *ret, struct kiln_err *err);
/* Parses an auth file's text: `user:hash` lines, blank lines and `#`
 * comments; errors say path:line. */
int dashboard_auth_parse(const char *text, size_t len, const char *path,
			 struct dashboard_auth **ret, struct kiln_err *err);
/* Reads and parses the file at path. */
int dashboard_auth_load(const char *path, struct dashboard_auth **ret, struct kiln_err *err);
struct dashboard_auth *dashboard_auth_ref(struct dashboard_auth *a);
struct dashboard_auth *dashboard_auth_unref(struct dashboard_auth *a); /* NULL-safe, returns NULL */
size_t dashboard_auth_users(const struct dashboard_auth *a);
/* Whether an Authorization header value ("Basic <base64 user:password>")
 * names a user of a with the right password. Slow by design (the hash's
 * cost): call it on a worker. Takes the same time for an unknown user. */
bool dashboard_auth_check(const struct dashboard_auth *a, const char *authorization);

#endif
