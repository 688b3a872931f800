/* log.c (base): one line per call, written whole with a single write(2) so lines
 * from threads never interleave. Every line goes through redact_text, so no
 * caller can print a URL's password by quoting it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kiln/log.h"
#include "kiln/redact.h"

static int max_level = LOG_LVL_INFO;
static int prefix = -1; /* -1: not decided yet */

void log_set_level(int level)
{
	max_level = level;
}

int log_get_level(void)
{
	return max_level;
}

int log_parse_level(const char *s)
{
	static const char *const names[] = {"error", "warning", "notice", "info", "debug"};

	for (int i = 0; i < 5; i++) {
		if (strcmp(s, names[i]) == 0)
			return LOG_LVL_ERR + i;
	}
	return -EINVAL;
}

static void emit(int level, const char *fmt, va_list ap)
{
	char line[2048];
	int n = 0, m;

	if (prefix < 0)
		prefix = !isatty(STDERR_FILENO);
	if (prefix)
		n = snprintf(line, sizeof(line), "<%d>", level);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return;
	redact_text(line + n, sizeof(line) - (size_t)n - 1);
	n += (int)strlen(line + n);
	/* one line per message: a newline inside would forge a journal entry */
	for (int i = 0; i < n; i++) {
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	}
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	emit(level, fmt, ap);
	va_end(ap);
}

int log_error_errno(int r, const char *fmt, ...)
{
	va_list ap;

	if (LOG_LVL_ERR <= max_level) {
		va_start(ap, fmt);
		emit(LOG_LVL_ERR, fmt, ap);
		va_end(ap);
	}
	return r;
}
