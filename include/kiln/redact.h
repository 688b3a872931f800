/* redact.h (base): the one place that hides credentials written into URLs.
 * Every printer of a URL or of a text that may hold one (log lines, error
 * records, diagnostics, status answers, image labels) goes through it, so a
 * password in `http://user:pass@host/x.git` is never shown: it becomes
 * `http://user:***@host/x.git`. A userinfo without a password is a token used
 * as the user name (`https://TOKEN@host/x.git`) unless the scheme is ssh, where
 * it is the account (`ssh://git@host/x.git`): the token becomes `***`. */
#ifndef KILN_REDACT_H
#define KILN_REDACT_H

#include <stdbool.h>
#include <stddef.h>

#define REDACT_MASK "***"

/* Rewrites, in place, every URL in the NUL-terminated text s (a buffer of
 * size bytes) with its credentials masked. When the masks make the text longer
 * than size - 1, its end is cut: a secret is never what remains. Returns the
 * number of credentials masked. */
size_t redact_text(char *s, size_t size);
/* A copy of s with its credentials masked; the caller frees it. */
char *redact_dup(const char *s);
/* Whether url carries a credential that redact_text would mask. */
bool redact_has_secret(const char *url);

#endif
