/* metrics.h (report): the one registry of kilnd's Prometheus metrics and the
 * one writer of the text exposition format (version 0.0.4) for GET /metrics.
 *
 * A module registers each metric family once, in the order /metrics lists
 * them, in one of two ways:
 *  - values the registry holds: metrics_series() returns a handle the module
 *    bumps with metrics_inc() or sets with metrics_set();
 *  - values the module already keeps: metrics_read() takes a callback that,
 *    at each scrape, puts every sample with metrics_put() (or
 *    metrics_put_histogram()).
 * Everything runs on the loop thread. */
#ifndef KILN_METRICS_H
#define KILN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/buf.h"

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics;
struct metrics_series;
struct metrics_out; /* one scrape being written */

/* At a scrape: put the family's samples with metrics_put*(o, ...). */
typedef void metrics_read_cb(struct metrics_out *o, void *arg);

struct metrics *metrics_new(void);
/* NULL-safe; every handle metrics_series() returned dies with it. */
struct metrics *metrics_free(struct metrics *m);

/* A family whose samples read(o, arg) puts at each scrape. name and help are
 * copied; arg is borrowed until metrics_unregister(m, arg) or metrics_free. */
void metrics_read(struct metrics *m, const char *name, enum metrics_type type, const char *help,
		  metrics_read_cb *read, void *arg);
/* Removes every family registered with arg (a module that goes away). */
void metrics_unregister(struct metrics *m, void *arg);

/* A counter or gauge sample the registry holds, starting at 0: the series
 * name{label="value"} (label NULL: no label). A family registered again
 * (same name) gains a series; the same series twice is the same handle.
 * The handle is owned by m. */
struct metrics_series *metrics_series(struct metrics *m, const char *name, enum metrics_type type,
				      const char *help, const char *label, const char *value);
void metrics_inc(struct metrics_series *s);
void metrics_set(struct metrics_series *s, double v);
double metrics_get(const struct metrics_series *s);

/* One sample of the family being read: name{label="value"} v. label may be
 * NULL; the value is escaped. Whole numbers are written without a fraction. */
void metrics_put(struct metrics_out *o, const char *label, const char *value, double v);
/* A whole histogram: buckets[i] counts observations <= bounds[i]
 * (cumulative), count is the +Inf bucket. */
void metrics_put_histogram(struct metrics_out *o, const double *bounds, const uint64_t *buckets,
			   size_t n, uint64_t count, double sum);

/* The exposition text of every family, in registration order. */
void metrics_write(struct metrics *m, struct buf *out);
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4"

#endif
