/* status.h (report): what kilnd says about itself, built from the daemon's
 * live objects at each question: the `kiln status` and `kiln health` answers,
 * GET /healthz, the sd_notify STATUS= line, and the /metrics families of the
 * builder and the watches. Reads only; owns nothing it reports on. */
#ifndef KILN_STATUS_H
#define KILN_STATUS_H

#include <jansson.h>

#include "kiln/buf.h"
#include "kiln/builder.h"
#include "kiln/config.h"
#include "kiln/metrics.h"
#include "kiln/watch.h"

struct status {
	/* all borrowed from the daemon; the watch array moves as it grows,
	 * so it is read through the daemon's own fields */
	const struct builder *builder;
	struct store *store; /* NULL: no state to report on */
	const struct config *cfg;
	struct watch **const *watches;
	const size_t *nwatches;
	const bool *stopping;
	int64_t started;    /* unix seconds */
	char notified[512]; /* the last STATUS= line sent */
};

/* Health reasons, the "what" of each (README, *Health*). */
#define STATUS_REASON_STATE	 "state"
#define STATUS_REASON_REPOSITORY "repository"
#define STATUS_REASON_ENGINE	 "engine"
#define STATUS_REASON_DISK	 "disk"
#define STATUS_REASON_MAX	 512 /* a reason's message is cut here */

void status_init(struct status *st, const struct builder *b, struct store *store,
		 const struct config *cfg, struct watch **const *watches, const size_t *nwatches,
		 const bool *stopping);
/* The "status" answer: version, uptime, repositories, queue. */
void status_json(const struct status *st, json_t *o);
/* Why kilnd is degraded, now: a JSON array (empty when healthy) of objects
 * with what, name, message, since and per-kind extras; the caller owns it.
 * Reasons: the state failing to write, a repository failing for longer than
 * health.repository_failing_after, the engine down, less free space in
 * state_dir than health.min_free_space. */
json_t *status_reasons(const struct status *st);
/* The "health" answer: status, reasons and (degraded) the first reason as
 * one line; 0 healthy, -EIO degraded. */
int status_health_json(const struct status *st, json_t *o);
/* GET /healthz: the JSON body (with the reasons); returns 200 or 503. */
int status_healthz(const struct status *st, struct buf *json);
/* Sends STATUS= when its text changed (a no-op outside systemd). */
void status_notify(struct status *st);
/* Registers the daemon's families: start time, queue, builds, durations,
 * fetches, errors, last successful poll per repository. */
void status_register_metrics(struct status *st, struct metrics *m);

#endif
