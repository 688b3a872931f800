/* err.c (base): setters for struct kiln_err and the located-diagnostics list.
 * What they record is redacted (redact.h) as it is recorded: error texts are
 * printed by many (logs, status answers, /healthz, sd_notify). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/err.h"
#include "kiln/redact.h"

int kiln_err_vset(struct kiln_err *err, int code, const char *fmt, va_list ap)
{
	if (err == NULL)
		return code;
	err->code = code;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	redact_text(err->msg, sizeof(err->msg));
	return code;
}

int kiln_err_set(struct kiln_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kiln_err_vset(err, code, fmt, ap);
	va_end(ap);
	return code;
}

void kiln_diags_add(struct kiln_diags *d, const char *path, unsigned line, unsigned column,
		    const char *fmt, ...)
{
	struct kiln_diag *dg;
	char *msg;
	va_list ap;

	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 4;
		d->v = xreallocarray(d->v, d->cap, sizeof(*d->v));
	}
	dg = &d->v[d->n++];
	dg->path = xstrdup(path ? path : "");
	dg->line = line;
	dg->column = column;
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	dg->message = redact_dup(msg);
	free(msg);
}

void kiln_diags_move(struct kiln_diags *to, struct kiln_diags *from)
{
	for (size_t i = 0; i < from->n; i++) {
		if (to->n == to->cap) {
			to->cap = to->cap ? to->cap * 2 : 4;
			to->v = xreallocarray(to->v, to->cap, sizeof(*to->v));
		}
		to->v[to->n++] = from->v[i];
	}
	free(from->v);
	memset(from, 0, sizeof(*from));
}

void kiln_diags_done(struct kiln_diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].path);
		free(d->v[i].message);
	}
	free(d->v);
	memset(d, 0, sizeof(*d));
}

void kiln_diag_format(const struct kiln_diag *dg, char *buf, size_t size)
{
	if (dg->line > 0)
		snprintf(buf, size, "%s:%u:%u: %s", dg->path, dg->line, dg->column, dg->message);
	else
		snprintf(buf, size, "%s: %s", dg->path, dg->message);
}
