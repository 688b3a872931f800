/* buf.h (base): allocation that cannot fail (kiln aborts on out-of-memory, as Redis
 * and OpenBSD daemons do: there is no useful recovery), a growable byte buffer
 * and a growable vector of strings. */
#ifndef KILN_BUF_H
#define KILN_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

/* Always NUL-terminated after any append; p may be NULL while len == 0. */
struct buf {
	char *p;
	size_t len, cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t n);
void buf_putc(struct buf *b, char c);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the string and leaves b empty; the caller frees it. Never NULL. */
char *buf_steal(struct buf *b);
void buf_done(struct buf *b);

/* A line consumer (a build's log, a test's collector), and a printf into it. */
typedef void buf_line_cb(const char *line, size_t len, void *arg);
void buf_line_printf(buf_line_cb *cb, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* true when s[0..n) are lowercase hex digits (object ids as git writes them) */
bool hex_is_lower(const char *s, size_t n);
/* Exactly 2*n hex digits, either case -> n bytes; -EINVAL otherwise. */
int hex_decode(const char *hex, size_t hex_len, unsigned char *out, size_t n);

struct strv {
	char **v;
	size_t n, cap;
};

/* strv_push takes ownership of s. */
void strv_push(struct strv *sv, char *s);
void strv_done(struct strv *sv);

#endif
