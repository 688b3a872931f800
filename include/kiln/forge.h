/* forge.h (report): what the outbox sends, built from an outbox row: a commit
 * status for GitHub, GitLab or Gitea, or a signed notification; and what a
 * forge's answer means (sent, retry when, refused). Pure: no I/O, no loop;
 * unit-tested. */
#ifndef KILN_FORGE_H
#define KILN_FORGE_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/buf.h"
#include "kiln/err.h"
#include "kiln/store.h"

enum forge_provider { FORGE_GITHUB, FORGE_GITLAB, FORGE_GITEA };

/* github, gitlab, gitea: 0, else -EINVAL. */
int forge_provider_parse(const char *s, enum forge_provider *ret);
const char *forge_provider_str(enum forge_provider p);
/* The public service's API; NULL for Gitea (no public default). */
const char *forge_default_api(enum forge_provider p);
/* The project a repository URL names, "owner/name" (GitLab: with its
 * subgroups): https://host/owner/name.git, ssh://git@host:22/owner/name,
 * git@host:owner/name.git. NULL when the URL names none (a local path). The
 * caller frees it. */
char *forge_project_from_url(const char *url);
/* The forge's state for a build state and its error (a failure the engine
 * caused on every attempt is an error, on GitLab failed too); NULL when it
 * has none (running on GitHub and Gitea: the status stays pending). */
const char *forge_state(enum forge_provider p, const char *build_state, const char *error);
/* The build states a status sink reports (",queued,...,"). */
const char *forge_sink_states(enum forge_provider p);
/* A status description's limit, in characters. */
unsigned forge_description_max(enum forge_provider p);
/* Cuts s (allocated) after max characters (UTF-8 code points), never inside
 * one; a cut text ends in "…" within the limit. Returns s, reallocated. */
char *forge_cut(char *s, unsigned max);

/* One HTTP request. headers hold the credential: never log them. */
struct forge_request {
	char *url;
	char *body; /* JSON */
	struct strv headers;
};
void forge_request_done(struct forge_request *rq);

struct forge_status {
	enum forge_provider provider;
	const char *api_url;	   /* without a trailing slash */
	const char *project;	   /* owner/name */
	const char *token;	   /* secret */
	const char *dashboard_url; /* NULL: no target_url */
};
/* The status request for row: -ENODATA when the forge shows nothing for
 * the row's state (it is settled as sent). */
int forge_status_request(const struct forge_status *fs, const struct store_outbox_row *row,
			 struct forge_request *ret, struct kiln_err *err);

struct forge_notify {
	const char *url;
	const char *secret;	   /* signs the body; NULL: unsigned */
	const char *dashboard_url; /* NULL: no log_url */
};
/* The notification of a build's end; X-Kiln-Delivery is the row's id. */
int forge_notify_request(const struct forge_notify *fn, const struct store_outbox_row *row,
			 struct forge_request *ret, struct kiln_err *err);

/* What the answer's headers say about waiting. */
struct forge_reply {
	long status;		  /* 0: no answer (connection error, timeout) */
	char retry_after[64];	  /* Retry-After: seconds or an HTTP date */
	char ratelimit_reset[32]; /* X-RateLimit-Reset: unix seconds */
	char ratelimit_remaining[32];
};
/* One header line of the answer ("Name: value\r\n", any case), kept when
 * it is one of the above. Hostile input: never more than the fields hold. */
void forge_reply_header(struct forge_reply *rp, const char *line, size_t len);
enum forge_verdict { FORGE_SENT, FORGE_RETRY, FORGE_REFUSED };
/* The longest wait an answer may ask for (more is cut to this). */
#define FORGE_WAIT_MAX_MS (3600ull * 1000)
/* 2xx: sent; no answer, 5xx, 408, 429 and a rate-limited 403 (GitHub):
 * retry, *ret_wait_ms being what the headers ask (0: not said, back off);
 * other 4xx: refused for good. now: unix seconds. */
enum forge_verdict forge_verdict(const struct forge_reply *rp, int64_t now, uint64_t *ret_wait_ms);
/* Retry-After's value, delta-seconds or an IMF-fixdate: 0 and the wait in
 * ms (a past date: 0), else -EINVAL. */
int forge_retry_after(const char *v, int64_t now, uint64_t *ret_ms);

#endif
