/* err.h (base): filling struct kiln_err, and lists of located diagnostics
 * (path:line:col: message) for inputs that report every error at once. */
#ifndef KILN_ERR_H
#define KILN_ERR_H

#include <stdarg.h>

#include "kiln/common.h"

/* Each returns `code` (a negative errno) so callers can `return kiln_err_set(...)`. */
int kiln_err_set(struct kiln_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kiln_err_vset(struct kiln_err *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Appends libgit2's last error text (": <text>") to the message. */
int kiln_err_git(struct kiln_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One error located in an input file; line and column are 1-based, 0 when unknown. */
struct kiln_diag {
	char *path;
	unsigned line, column;
	char *message;
};

struct kiln_diags {
	struct kiln_diag *v;
	size_t n, cap;
};

void kiln_diags_add(struct kiln_diags *d, const char *path, unsigned line, unsigned column,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Moves every entry of `from` to the end of `to`; `from` is left empty. */
void kiln_diags_move(struct kiln_diags *to, struct kiln_diags *from);
void kiln_diags_done(struct kiln_diags *d);
/* "path:line:col: message" into buf (truncated to size). */
void kiln_diag_format(const struct kiln_diag *dg, char *buf, size_t size);

#endif
