/* redact.c (base): masks the credentials written into URLs, in URLs and in any
 * text that quotes one (libgit2's messages quote the remote URL). Owns nothing;
 * log.c, err.c, status.c, builder.c and the mains call it before they print. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kiln/buf.h"
#include "kiln/redact.h"

/* Where a URL's authority (userinfo@host:port) ends: RFC 3986's delimiters,
 * plus what ends a URL quoted in a message. */
#define AUTHORITY_END "/?#'\"<>()[] \t\r\n"

static bool scheme_is_ssh(const char *text, const char *sep)
{
	const char *b = sep;
	size_t n;

	while (b > text && (isalnum((unsigned char)b[-1]) || strchr("+-.", b[-1])))
		b--;
	n = (size_t)(sep - b);
	return (n == 3 && strncasecmp(b, "ssh", 3) == 0) ||
	       (n == 7 && (strncasecmp(b, "git+ssh", 7) == 0 || strncasecmp(b, "ssh+git", 7) == 0));
}

/* Appends s to out with every URL's credentials masked; returns how many.
 * maybe_cut: s may end inside a URL (a message cut to its buffer), so an
 * authority that runs to the end of s may be a userinfo whose '@' was cut off:
 * it is masked whole. */
static size_t redact_into(struct buf *out, const char *s, bool maybe_cut)
{
	const char *p = s, *sep;
	size_t n = 0;

	while ((sep = strstr(p, "://")) != NULL) {
		const char *a = sep + 3, *e = a + strcspn(a, AUTHORITY_END), *at = NULL, *colon;

		for (const char *q = a; q < e; q++) {
			if (*q == '@')
				at = q; /* the last one: an unencoded '@' belongs to the password */
		}
		buf_append(out, p, (size_t)(a - p));
		p = a;
		if (at != NULL) {
			colon = memchr(a, ':', (size_t)(at - a));
			if (colon != NULL)
				buf_append(out, a, (size_t)(colon + 1 - a));
			else if (scheme_is_ssh(s, sep)) /* ssh://git@host: an account name */
				continue;
			buf_puts(out, REDACT_MASK);
			p = at;
			n++;
		} else if (maybe_cut && *e == '\0' && e > a) {
			buf_puts(out, REDACT_MASK);
			p = e;
			n++;
		}
	}
	buf_puts(out, p);
	return n;
}

size_t redact_text(char *s, size_t size)
{
	struct buf out = {0};
	size_t n;

	if (size == 0 || strstr(s, "://") == NULL)
		return 0;
	/* a text that fills its buffer was probably cut there */
	n = redact_into(&out, s, strlen(s) + 1 >= size);
	if (n > 0)
		snprintf(s, size, "%s", out.p);
	buf_done(&out);
	return n;
}

char *redact_dup(const char *s)
{
	struct buf out = {0};

	redact_into(&out, s, false);
	return buf_steal(&out);
}

bool redact_has_secret(const char *url)
{
	struct buf out = {0};
	size_t n = redact_into(&out, url, false);

	buf_done(&out);
	return n > 0;
}
