/* log.h (base): leveled logging to stderr. Lines carry the sd-daemon "<N>" priority
 * prefix unless stderr is a terminal, so journald keeps each line's level.
 * Only the owners of decisions log (watch, plan, kilnd.c); libraries fill a
 * struct kiln_err instead. Never pass a secret to these functions. */
#ifndef KILN_LOG_H
#define KILN_LOG_H

enum {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARNING = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

void log_set_level(int level);
int log_get_level(void);
/* "error", "warning", "notice", "info", "debug" -> level, or -EINVAL. */
int log_parse_level(const char *s);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs at error level and returns r (a negative errno), for `return log_error_errno(...)`. */
int log_error_errno(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...)	 log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_notice(...)	 log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...)	 log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	 log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
