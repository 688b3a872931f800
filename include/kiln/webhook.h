/* webhook.h (trigger): kilnd's HTTP endpoints: POST /hooks/<repository>
 * (GitHub, GitLab, Gitea/Forgejo and generic HMAC pushes), GET /healthz and
 * GET /metrics. A push only triggers a poll of the repository: the payload's
 * commits are hints, never trusted for what to build. The delivery
 * bookkeeping is here too: a delivery is recorded before its answer; the
 * first poll that began after it marks it handled (watch.c, in the plan's
 * transaction when there is one); deliveries (and triggers, recorded the
 * same way by the status socket and SIGUSR1) left unhandled by a crash are
 * replayed (as polls) at the next start. */
#ifndef KILN_WEBHOOK_H
#define KILN_WEBHOOK_H

#include <uv.h>

#include "kiln/buf.h"
#include "kiln/config.h"
#include "kiln/http_server.h"
#include "kiln/map.h"
#include "kiln/metrics.h"
#include "kiln/store.h"

enum webhook_result {
	HOOK_ACCEPTED,	   /* 202, poll triggered */
	HOOK_DUPLICATE,	   /* 200, a redelivery */
	HOOK_IGNORED,	   /* 200/202, another branch, a deletion, another event, a ping */
	HOOK_UNAUTHORIZED, /* 401 */
	HOOK_REJECTED,	   /* 400/404/405/413/415 */
	HOOK_FAILED,	   /* 503: the state could not record it */
	HOOK_NRESULTS
};

struct webhook_ops {
	/* poll the repository now; -ENOENT when it is not watched */
	int (*trigger)(const char *repo, void *arg);
	/* 200 or 503 and a JSON body */
	int (*health)(struct buf *json, void *arg);
};

/* Delivery ids known to be recorded, so a redelivery is answered without a
 * database round trip: two generations of WEBHOOK_SEEN_MAX ids each; a miss
 * falls back to the database, which is the authority. 4096 kept about 1 MiB
 * (a twentieth of kilnd's resident size) after a burst of new ids. */
#define WEBHOOK_SEEN_MAX 1024
#define WEBHOOK_TRIM_MS	 1000

struct hook_batch;
struct webhook_seen {
	struct strmap map;
	struct strv keys;
};

struct webhook {
	uv_loop_t *loop;
	struct store *store;	  /* borrowed */
	const struct config *cfg; /* borrowed; kilnd swaps it on reload */
	struct metrics *metrics;  /* borrowed; GET /metrics writes all of it */
	struct webhook_ops ops;
	void *arg;
	struct metrics_series *results[HOOK_NRESULTS]; /* kiln_webhook_deliveries_total */
	struct metrics_series *commits;		       /* kiln_webhook_commits_total */
	/* group commit (webhook.c): the batch on a worker, and the one filling
	 * meanwhile; filling is NULL whenever committing is */
	struct hook_batch *committing, *filling;
	uv_timer_t trim; /* WEBHOOK_TRIM_MS after the last batch: malloc_trim */
	uint64_t seq;
	struct webhook_seen seen[2]; /* [0] current, [1] previous */
};

/* Registers kiln_webhook_deliveries_total in metrics (all results at 0). */
void webhook_init(struct webhook *wh, uv_loop_t *loop, struct store *store,
		  const struct config *cfg, struct metrics *metrics, const struct webhook_ops *ops,
		  void *arg);
void webhook_done(struct webhook *wh);
/* At start: polls every repository with deliveries or triggers received
 * before a crash and not yet followed by a poll. Logs what it does; a store error is logged
 * once (those repositories are then polled on their usual schedule). */
void webhook_replay(struct webhook *wh);
/* The http_headers_cb for kilnd's server (arg: struct webhook *): a POST to
 * a repository whose provider signs the body gets a sink that hashes it as
 * it arrives; webhook_handle checks the signature against that HMAC. */
void webhook_headers(struct http_request *req, void *arg);
/* The http_handler_cb for kilnd's server (arg: struct webhook *). */
void webhook_handle(struct http_request *req, void *arg);
const char *webhook_result_str(enum webhook_result r);

#endif
