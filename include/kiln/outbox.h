/* outbox.h (report): the sender of the outbox (store.h): one machine per sink
 * (a repository's commit statuses, a notification target) sends that sink's
 * rows oldest first, one at a time, with libcurl on the loop, and settles each
 * in the store: sent, refused for good (401, 404: the sink's error, logged
 * once), or retried later (5xx, timeouts, rate limits) at the time the forge
 * asked for, else with backoff. A row is settled only after its answer, so a
 * crash sends it again; the notification's X-Kiln-Delivery lets a receiver
 * see that. */
#ifndef KILN_OUTBOX_H
#define KILN_OUTBOX_H

#include <jansson.h>
#include <uv.h>

#include "kiln/config.h"
#include "kiln/metrics.h"
#include "kiln/store.h"

/* A send's time limits, and the first retry's delay (doubling to 10 min). */
#define OUTBOX_CONNECT_TIMEOUT_MS 10000
#define OUTBOX_TIMEOUT_MS	  30000
#define OUTBOX_RETRY_BASE_MS	  1000
#define OUTBOX_REPLY_MAX	  4096 /* of an answer's body, kept for its message */

struct outbox;
typedef void outbox_closed_cb(void *arg);

/* Writes the configured sinks to the store (blocking: at startup), registers
 * the metric families and starts sending. cfg and store are borrowed for the
 * outbox's life. */
int outbox_new(uv_loop_t *loop, struct store *store, const struct config *cfg, struct metrics *m,
	       struct outbox **ret, struct kiln_err *err);
/* Sends nothing more (a transfer in flight is abandoned: its row is sent
 * again at the next start); closed(arg) once no worker job is left and the
 * handles are closed, so the store may be closed after it. Frees o. */
void outbox_stop(struct outbox *o, outbox_closed_cb *closed, void *arg);
/* Adds the repository's reporting to its `kiln status` object: "outbox"
 * (unsent rows of its sinks) and "reporting_error" (the last refusal, null
 * when none). */
void outbox_repo_json(const struct outbox *o, const char *repo, json_t *r);

#endif
