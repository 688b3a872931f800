/* notify.h (report): the service manager protocol (sd_notify). Every call is a no-op
 * when kilnd does not run under systemd (no $NOTIFY_SOCKET). */
#ifndef KILN_NOTIFY_H
#define KILN_NOTIFY_H

#include <stdint.h>

void notify_ready(void);
void notify_reloading(void); /* RELOADING=1 with MONOTONIC_USEC */
void notify_stopping(void);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_watchdog(void);
/* The watchdog period in microseconds, 0 when the watchdog is off. */
uint64_t notify_watchdog_usec(void);

#endif
