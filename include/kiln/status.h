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
	const struct config *cfg;
	struct watch **const *watches;
	const size_t *nwatches;
	const bool *stopping;
	int64_t started;    /* unix seconds */
	char notified[512]; /* the last STATUS= line sent */
};

void status_init(struct status *st, const struct builder *b, const struct config *cfg,
		 struct watch **const *watches, const size_t *nwatches, const bool *stopping);
/* The "status" answer: version, uptime, repositories, queue. */
void status_json(const struct status *st, json_t *o);
/* The "health" answer: 0 healthy, -EIO degraded (with a reason). */
int status_health_json(const struct status *st, json_t *o);
/* GET /healthz: the JSON body; returns 200 or 503. */
int status_healthz(const struct status *st, struct buf *json);
/* Sends STATUS= when its text changed (a no-op outside systemd). */
void status_notify(struct status *st);
/* Registers the daemon's families: start time, queue, builds, durations,
 * fetches, errors, last successful poll per repository. */
void status_register_metrics(struct status *st, struct metrics *m);

#endif
