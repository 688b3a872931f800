/* metrics.c (report): the metric registry and the only code that writes the
 * Prometheus text format. Owns the families (name, type, help), the series
 * whose values it holds, and nothing of the modules it reads from: a read
 * callback's arg is borrowed until that module unregisters. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/metrics.h"

struct metrics_series {
	char *label, *value; /* label NULL: none */
	double v;
	struct metrics_series *next;
};

struct family {
	char *name, *help;
	enum metrics_type type;
	metrics_read_cb *read; /* NULL: the series below */
	void *arg;
	struct metrics_series *series, **tail;
};

struct metrics {
	struct family **v;
	size_t n, cap;
};

struct metrics_out {
	struct buf *b;
	const struct family *f;
};

static const char *type_str(enum metrics_type t)
{
	switch (t) {
	case METRICS_COUNTER:
		return "counter";
	case METRICS_GAUGE:
		return "gauge";
	case METRICS_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

struct metrics *metrics_new(void)
{
	return xcalloc(1, sizeof(struct metrics));
}

static void family_free(struct family *f)
{
	struct metrics_series *s, *next;

	for (s = f->series; s; s = next) {
		next = s->next;
		free(s->label);
		free(s->value);
		free(s);
	}
	free(f->name);
	free(f->help);
	free(f);
}

struct metrics *metrics_free(struct metrics *m)
{
	if (m == NULL)
		return NULL;
	for (size_t i = 0; i < m->n; i++)
		family_free(m->v[i]);
	free(m->v);
	free(m);
	return NULL;
}

static struct family *family_add(struct metrics *m, const char *name, enum metrics_type type,
				 const char *help)
{
	struct family *f = xcalloc(1, sizeof(*f));

	f->name = xstrdup(name);
	f->help = xstrdup(help);
	f->type = type;
	f->tail = &f->series;
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->v = xreallocarray(m->v, m->cap, sizeof(*m->v));
	}
	m->v[m->n++] = f;
	return f;
}

void metrics_read(struct metrics *m, const char *name, enum metrics_type type, const char *help,
		  metrics_read_cb *read, void *arg)
{
	struct family *f = family_add(m, name, type, help);

	f->read = read;
	f->arg = arg;
}

void metrics_unregister(struct metrics *m, void *arg)
{
	size_t k = 0;

	for (size_t i = 0; i < m->n; i++) {
		if (m->v[i]->read && m->v[i]->arg == arg)
			family_free(m->v[i]);
		else
			m->v[k++] = m->v[i];
	}
	m->n = k;
}

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

struct metrics_series *metrics_series(struct metrics *m, const char *name, enum metrics_type type,
				      const char *help, const char *label, const char *value)
{
	struct family *f = NULL;
	struct metrics_series *s;

	for (size_t i = 0; i < m->n && f == NULL; i++) {
		if (m->v[i]->read == NULL && strcmp(m->v[i]->name, name) == 0)
			f = m->v[i];
	}
	if (f == NULL)
		f = family_add(m, name, type, help);
	for (s = f->series; s; s = s->next) {
		if (same(s->label, label) && same(s->value, label ? value : NULL))
			return s;
	}
	s = xcalloc(1, sizeof(*s));
	s->label = label ? xstrdup(label) : NULL;
	s->value = label ? xstrdup(value ? value : "") : NULL;
	*f->tail = s;
	f->tail = &s->next;
	return s;
}

void metrics_inc(struct metrics_series *s)
{
	s->v += 1;
}

void metrics_set(struct metrics_series *s, double v)
{
	s->v = v;
}

double metrics_get(const struct metrics_series *s)
{
	return s->v;
}

/* ---- the text format ---- */

/* Label values escape \, " and newline; HELP text escapes \ and newline. */
static void put_escaped(struct buf *b, const char *s, bool quotes)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_puts(b, "\\\\");
		else if (*s == '\n')
			buf_puts(b, "\\n");
		else if (*s == '"' && quotes)
			buf_puts(b, "\\\"");
		else
			buf_putc(b, *s);
	}
}

/* Whole numbers (counts, unix seconds) without a fraction, others exactly. */
static void put_value(struct buf *b, double v)
{
	char s[64];

	if (isnan(v))
		buf_puts(b, "NaN");
	else if (isinf(v))
		buf_puts(b, v > 0 ? "+Inf" : "-Inf");
	else if (v > -1e18 && v < 1e18 && v == (double)(int64_t)v)
		buf_printf(b, "%.0f", v);
	else {
		snprintf(s, sizeof(s), "%.15g", v);
		if (strtod(s, NULL) != v)
			snprintf(s, sizeof(s), "%.17g", v);
		buf_puts(b, s);
	}
}

static void put_sample(struct metrics_out *o, const char *suffix, const char *label,
		       const char *value, double v)
{
	buf_puts(o->b, o->f->name);
	buf_puts(o->b, suffix);
	if (label) {
		buf_printf(o->b, "{%s=\"", label);
		put_escaped(o->b, value ? value : "", true);
		buf_puts(o->b, "\"}");
	}
	buf_putc(o->b, ' ');
	put_value(o->b, v);
	buf_putc(o->b, '\n');
}

void metrics_put(struct metrics_out *o, const char *label, const char *value, double v)
{
	put_sample(o, "", label, value, v);
}

void metrics_put_histogram(struct metrics_out *o, const double *bounds, const uint64_t *buckets,
			   size_t n, uint64_t count, double sum)
{
	char le[32];

	for (size_t i = 0; i < n; i++) {
		snprintf(le, sizeof(le), "%g", bounds[i]);
		put_sample(o, "_bucket", "le", le, (double)buckets[i]);
	}
	put_sample(o, "_bucket", "le", "+Inf", (double)count);
	put_sample(o, "_sum", NULL, NULL, sum);
	put_sample(o, "_count", NULL, NULL, (double)count);
}

void metrics_write(struct metrics *m, struct buf *out)
{
	struct metrics_out o = {.b = out};

	for (size_t i = 0; i < m->n; i++) {
		const struct family *f = m->v[i];
		o.f = f;
		buf_printf(out, "# HELP %s ", f->name);
		put_escaped(out, f->help, false);
		buf_printf(out, "\n# TYPE %s %s\n", f->name, type_str(f->type));
		if (f->read) {
			f->read(&o, f->arg);
			continue;
		}
		for (const struct metrics_series *s = f->series; s; s = s->next)
			put_sample(&o, "", s->label, s->value, s->v);
	}
}
