/* jsonscan.c (base): a checking pass over untrusted JSON (webhook payloads)
 * that keeps a few top-level strings and allocates nothing else. Recursive
 * descent over RFC 8259's grammar, depth-bounded; what it accepts is what
 * jansson accepts (no NUL, no lone surrogate, no invalid UTF-8). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/jsonscan.h"

struct scan {
	const unsigned char *start, *p, *end;
	struct kiln_err *err;
};

static int bad(struct scan *s, const char *what)
{
	return kiln_err_set(s->err, -EINVAL, "malformed JSON at byte %zu: %s",
			    (size_t)(s->p - s->start), what);
}

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

size_t jsonscan_utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0];
	size_t n;
	uint32_t cp;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
	    cp > 0x10ffff)
		return 0;
	return n;
}

static int hex4(struct scan *s, uint32_t *ret)
{
	uint32_t v = 0;

	if (s->end - s->p < 4)
		return bad(s, "short \\u escape");
	for (int i = 0; i < 4; i++) {
		unsigned c = *s->p++;
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return bad(s, "bad \\u escape");
	}
	*ret = v;
	return 0;
}

static void put_utf8(struct buf *out, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp, n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12), b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18), b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (char)(0x80 | (cp >> 6 & 0x3f)), b[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
	}
	buf_append(out, b, n);
}

/* A \u escape (the "\u" read): one code point, or a surrogate pair. */
static int unicode_escape(struct scan *s, struct buf *out)
{
	uint32_t cp, lo;
	int r = hex4(s, &cp);

	if (r < 0)
		return r;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return bad(s, "lone low surrogate");
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
			return bad(s, "lone high surrogate");
		s->p += 2;
		if ((r = hex4(s, &lo)) < 0)
			return r;
		if (lo < 0xdc00 || lo > 0xdfff)
			return bad(s, "bad surrogate pair");
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (cp == 0)
		return bad(s, "\\u0000 in a string");
	if (out)
		put_utf8(out, cp);
	return 0;
}

/* A string at s->p ('"'), decoded into out unless out is NULL. */
static int string(struct scan *s, struct buf *out)
{
	static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";

	s->p++;
	while (s->p < s->end) {
		const unsigned char *run = s->p;
		unsigned c;

		/* the plain bytes up to the next quote, backslash, control or
		 * non-ASCII byte, copied at once */
		while (s->p < s->end && *s->p >= 0x20 && *s->p < 0x80 && *s->p != '"' &&
		       *s->p != '\\')
			s->p++;
		if (out && s->p > run)
			buf_append(out, run, (size_t)(s->p - run));
		if (s->p == s->end)
			break;
		c = *s->p;
		if (c == '"') {
			s->p++;
			return 0;
		}
		if (c < 0x20)
			return bad(s, "control character in a string");
		if (c >= 0x80) {
			size_t n = jsonscan_utf8_len(s->p, s->end);
			if (n == 0)
				return bad(s, "invalid UTF-8");
			if (out)
				buf_append(out, s->p, n);
			s->p += n;
			continue;
		}
		/* a backslash */
		if (++s->p == s->end)
			break;
		c = *s->p++;
		if (c == 'u') {
			int r = unicode_escape(s, out);
			if (r < 0)
				return r;
		} else {
			const char *e = c ? strchr(esc_in, (int)c) : NULL;
			if (e == NULL)
				return bad(s, "bad escape");
			if (out)
				buf_putc(out, esc_out[e - esc_in]);
		}
	}
	return bad(s, "unterminated string");
}

static bool digit(const struct scan *s)
{
	return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

static int number(struct scan *s)
{
	if (*s->p == '-')
		s->p++;
	if (!digit(s))
		return bad(s, "bad number");
	if (*s->p == '0')
		s->p++;
	else
		while (digit(s))
			s->p++;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!digit(s))
			return bad(s, "bad number");
		while (digit(s))
			s->p++;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!digit(s))
			return bad(s, "bad number");
		while (digit(s))
			s->p++;
	}
	return 0;
}

static int literal(struct scan *s, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return bad(s, "unexpected character");
	s->p += n;
	return 0;
}

static int value(struct scan *s, unsigned depth);

/* An object at s->p ('{'); at the top (fields != NULL) the wanted members'
 * string values are kept, and seen has a bit per wanted key met. */
static int object(struct scan *s, unsigned depth, struct jsonscan_field *fields, size_t n,
		  uint32_t *seen)
{
	struct buf key = {0};
	int r = 0;

	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		struct jsonscan_field *f = NULL;
		size_t fi = 0;

		skip_ws(s);
		if (s->p == s->end || *s->p != '"') {
			r = bad(s, "expected a member name");
			break;
		}
		key.len = 0;
		if ((r = string(s, fields ? &key : NULL)) < 0)
			break;
		for (size_t i = 0; fields && i < n && f == NULL; i++) {
			if (key.p && strlen(key.p) == key.len && strcmp(key.p, fields[i].key) == 0)
				f = &fields[i], fi = i;
		}
		skip_ws(s);
		if (s->p == s->end || *s->p != ':') {
			r = bad(s, "expected ':'");
			break;
		}
		s->p++;
		skip_ws(s);
		if (f && (*seen & 1u << fi)) {
			r = bad(s, "duplicate member");
			break;
		}
		if (f)
			*seen |= 1u << fi;
		if (f && s->p < s->end && *s->p == '"') {
			struct buf v = {0};
			if ((r = string(s, &v)) < 0) {
				buf_done(&v);
				break;
			}
			f->value = buf_steal(&v); /* "" for an empty string, not NULL */
		} else if ((r = value(s, depth)) < 0) {
			break;
		}
		skip_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == '}') {
			s->p++;
			break;
		}
		r = bad(s, "expected ',' or '}'");
		break;
	}
	buf_done(&key);
	return r;
}

static int array(struct scan *s, unsigned depth)
{
	int r;

	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		skip_ws(s);
		if ((r = value(s, depth)) < 0)
			return r;
		skip_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == ']') {
			s->p++;
			return 0;
		}
		return bad(s, "expected ',' or ']'");
	}
}

static int value(struct scan *s, unsigned depth)
{
	if (s->p == s->end)
		return bad(s, "unexpected end");
	switch (*s->p) {
	case '{':
	case '[':
		if (depth >= JSONSCAN_DEPTH_MAX)
			return bad(s, "nested too deep");
		return *s->p == '{' ? object(s, depth + 1, NULL, 0, NULL) : array(s, depth + 1);
	case '"':
		return string(s, NULL);
	case 't':
		return literal(s, "true");
	case 'f':
		return literal(s, "false");
	case 'n':
		return literal(s, "null");
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return number(s);
		return bad(s, "unexpected character");
	}
}

int jsonscan_object(const char *p, size_t len, struct jsonscan_field *fields, size_t n,
		    struct kiln_err *err)
{
	struct scan s = {(const unsigned char *)p, (const unsigned char *)p,
			 (const unsigned char *)p + len, err};
	uint32_t seen = 0; /* bit per field: its key came */
	int r;

	for (size_t i = 0; i < n; i++)
		fields[i].value = NULL;
	if (n > 32)
		return kiln_err_set(err, -E2BIG, "at most 32 fields");
	skip_ws(&s);
	if (s.p == s.end || *s.p != '{')
		r = bad(&s, "not an object");
	else
		r = object(&s, 1, fields, n, &seen);
	if (r == 0) {
		skip_ws(&s);
		if (s.p != s.end)
			r = bad(&s, "data after the object");
	}
	if (r < 0) {
		for (size_t i = 0; i < n; i++) {
			free(fields[i].value);
			fields[i].value = NULL;
		}
	}
	return r;
}
