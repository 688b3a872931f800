/* err_git.c (base): kiln_err_git, apart from err.c so that a program that
 * fills a struct kiln_err without libgit2 (kiln's front) does not link it. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <git2.h>

#include "kiln/err.h"
#include "kiln/redact.h"

int kiln_err_git(struct kiln_err *err, int code, const char *fmt, ...)
{
	const git_error *ge = git_error_last();
	va_list ap;
	size_t n;

	if (err == NULL)
		return code;
	va_start(ap, fmt);
	kiln_err_vset(err, code, fmt, ap);
	va_end(ap);
	n = strlen(err->msg);
	if (ge != NULL && ge->message != NULL && n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", ge->message);
	redact_text(err->msg, sizeof(err->msg));
	return code;
}
