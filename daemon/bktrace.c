/* bktrace.c (build): BuildKit's StatusResponse messages -> plain progress lines.
 * A minimal protobuf reader for the few fields kiln shows (numbers from
 * moby/buildkit api/services/control/control.proto, stable since 0.3: later
 * additions are skipped as unknown fields). Owns the steps it has seen. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "kiln/bktrace.h"
#include "kiln/buf.h"
#include "kiln/map.h"

#define NAME_MAX_BYTES	1024 /* a step's name (its Dockerfile line) is cut here */
#define ERROR_MAX_BYTES 2048
#define TAIL_LINE_MAX	(BKTRACE_TAIL_BYTES / BKTRACE_TAIL_LINES)
#define STATUSES_MAX	BKTRACE_VERTICES_MAX
#define CANCELED_MARK	"context canceled"

/* StatusResponse and its parts (control.proto) */
enum { SR_VERTEXES = 1, SR_STATUSES = 2, SR_LOGS = 3, SR_WARNINGS = 4 };
enum { VX_DIGEST = 1, VX_NAME = 3, VX_CACHED = 4, VX_STARTED = 5, VX_COMPLETED = 6, VX_ERROR = 7 };
enum { VS_ID = 1, VS_VERTEX = 2, VS_NAME = 3, VS_COMPLETED = 8 };
enum { VL_VERTEX = 1, VL_MSG = 4 };
enum { VW_VERTEX = 1, VW_SHORT = 3 };
enum { TS_SECONDS = 1, TS_NANOS = 2 };
enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

struct vertex {
	char *digest; /* the key in t->by_digest */
	char *name;
	char *error;
	unsigned num; /* #N; 0 until shown */
	bool done;    /* DONE, CACHED or ERROR said */
	double started;
	struct buf partial; /* output not yet ended by a newline */
	char tail[BKTRACE_TAIL_LINES][TAIL_LINE_MAX];
	unsigned ntail; /* lines written into tail, ever */
};

struct bktrace {
	struct strmap by_digest;
	struct vertex **v;
	size_t n;
	unsigned shown;		/* the last #N */
	struct vertex *failed;	/* the first step with an error (not a mere cancel) */
	struct strmap statuses; /* "vertex id" said done */
	char **status_keys;
	size_t nstatus;
};

/* ---- protobuf ---- */

struct pb {
	const unsigned char *p, *end;
};

static int pb_varint(struct pb *b, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (b->p >= b->end)
			return -EINVAL;
		v |= (uint64_t)(*b->p & 0x7f) << shift;
		if ((*b->p++ & 0x80) == 0) {
			*ret = v;
			return 0;
		}
	}
	return -EINVAL;
}

/* The next field: its number, and its value (varint) or its bytes (len).
 * 0 at a field, 1 at the end, -EINVAL on malformed input. Fixed-size fields
 * are skipped over and reported with no value. */
static int pb_next(struct pb *b, uint32_t *ret_field, uint64_t *ret_v, struct pb *ret_sub)
{
	uint64_t key, n;

	if (b->p == b->end)
		return 1;
	if (pb_varint(b, &key) < 0 || key >> 3 == 0 || key >> 3 > UINT32_MAX)
		return -EINVAL;
	*ret_field = (uint32_t)(key >> 3);
	*ret_v = 0;
	*ret_sub = (struct pb){NULL, NULL};
	switch (key & 7) {
	case WIRE_VARINT:
		return pb_varint(b, ret_v);
	case WIRE_FIXED64:
	case WIRE_FIXED32:
		n = (key & 7) == WIRE_FIXED64 ? 8 : 4;
		if ((uint64_t)(b->end - b->p) < n)
			return -EINVAL;
		b->p += n;
		*ret_field = 0; /* nothing kiln reads is fixed-size */
		return 0;
	case WIRE_LEN:
		if (pb_varint(b, &n) < 0 || n > (uint64_t)(b->end - b->p))
			return -EINVAL;
		*ret_sub = (struct pb){b->p, b->p + n};
		b->p += n;
		return 0;
	default: /* groups are long deprecated; nothing here sends them */
		return -EINVAL;
	}
}

static bool pb_is_len(const struct pb *s)
{
	return s->p != NULL;
}

/* A length-delimited field as a new string, cut at max bytes. */
static char *pb_str(const struct pb *s, size_t max)
{
	size_t n = (size_t)(s->end - s->p);

	return xstrndup((const char *)s->p, n < max ? n : max);
}

/* google.protobuf.Timestamp -> seconds */
static int pb_time(struct pb s, double *ret)
{
	uint32_t f;
	uint64_t v;
	struct pb sub;
	double secs = 0, nanos = 0;
	int r;

	while ((r = pb_next(&s, &f, &v, &sub)) == 0) {
		if (f == TS_SECONDS)
			secs = (double)(int64_t)v;
		else if (f == TS_NANOS)
			nanos = (double)(int32_t)v;
	}
	if (r < 0)
		return r;
	*ret = secs + nanos / 1e9;
	return 0;
}

/* ---- steps ---- */

/* The step of a digest, created when new; NULL past BKTRACE_VERTICES_MAX. */
static struct vertex *vertex_get(struct bktrace *t, const struct pb *digest)
{
	size_t len = (size_t)(digest->end - digest->p);
	struct vertex *x = strmap_get(&t->by_digest, (const char *)digest->p, len);
	void **slot;

	if (x || t->n >= BKTRACE_VERTICES_MAX || len == 0 || len > NAME_MAX_BYTES)
		return x;
	x = xcalloc(1, sizeof(*x));
	x->digest = xstrndup((const char *)digest->p, len);
	if (t->n % 64 == 0)
		t->v = xreallocarray(t->v, t->n + 64, sizeof(*t->v));
	t->v[t->n++] = x;
	slot = strmap_put(&t->by_digest, x->digest, len);
	*slot = x;
	return x;
}

/* Numbers the step the first time it shows anything. */
static void vertex_show(struct bktrace *t, struct vertex *x, bktrace_show_cb *show, void *arg)
{
	if (x->num)
		return;
	x->num = ++t->shown;
	buf_line_printf(show, arg, "#%u %s", x->num, x->name ? x->name : x->digest);
}

static void tail_add(struct vertex *x, const char *line, size_t len)
{
	char *slot = x->tail[x->ntail++ % BKTRACE_TAIL_LINES];

	snprintf(slot, TAIL_LINE_MAX, "%.*s", (int)(len < TAIL_LINE_MAX ? len : TAIL_LINE_MAX - 1),
		 line);
}

static void output_line(struct vertex *x, const char *line, size_t len, bktrace_show_cb *show,
			void *arg)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > BKTRACE_LINE_MAX)
		len = BKTRACE_LINE_MAX;
	tail_add(x, line, len);
	buf_line_printf(show, arg, "#%u %.*s", x->num, (int)len, line);
}

static void vertex_flush(struct vertex *x, bktrace_show_cb *show, void *arg)
{
	if (x->partial.len) {
		output_line(x, x->partial.p, x->partial.len, show, arg);
		x->partial.len = 0;
	}
}

/* A step's output: whole lines shown, the rest kept for the next piece. */
static void vertex_output(struct vertex *x, const unsigned char *p, size_t len,
			  bktrace_show_cb *show, void *arg)
{
	const char *s = (const char *)p;

	while (len > 0) {
		const char *nl = memchr(s, '\n', len);
		size_t n = nl ? (size_t)(nl - s) : len;
		if (x->partial.len + n > BKTRACE_LINE_MAX) {
			/* one absurd line: show it in pieces */
			size_t room = BKTRACE_LINE_MAX - x->partial.len;
			buf_append(&x->partial, s, room);
			vertex_flush(x, show, arg);
			s += room;
			len -= room;
			continue;
		}
		buf_append(&x->partial, s, n);
		if (!nl)
			break;
		output_line(x, x->partial.p ? x->partial.p : "", x->partial.len, show, arg);
		x->partial.len = 0;
		s += n + 1;
		len -= n + 1;
	}
}

/* ---- the messages ---- */

static int on_vertex(struct bktrace *t, struct pb s, bktrace_show_cb *show, void *arg)
{
	struct pb digest = {NULL, NULL}, name = {NULL, NULL}, error = {NULL, NULL}, sub;
	bool cached = false, started = false, completed = false;
	double t_started = 0, t_completed = 0;
	struct vertex *x;
	uint32_t f;
	uint64_t v;
	int r;

	while ((r = pb_next(&s, &f, &v, &sub)) == 0) {
		if (f == VX_DIGEST && pb_is_len(&sub))
			digest = sub;
		else if (f == VX_NAME && pb_is_len(&sub))
			name = sub;
		else if (f == VX_CACHED)
			cached = v != 0;
		else if (f == VX_STARTED && pb_is_len(&sub))
			started = pb_time(sub, &t_started) == 0;
		else if (f == VX_COMPLETED && pb_is_len(&sub))
			completed = pb_time(sub, &t_completed) == 0;
		else if (f == VX_ERROR && pb_is_len(&sub))
			error = sub;
	}
	if (r < 0 || !pb_is_len(&digest) || !(x = vertex_get(t, &digest)))
		return r < 0 ? r : 0;
	if (pb_is_len(&name) && !x->name)
		x->name = pb_str(&name, NAME_MAX_BYTES);
	if (started && !x->started)
		x->started = t_started;
	if (x->done || !(started || cached || completed))
		return 0; /* queued: said when it starts */
	vertex_show(t, x, show, arg);
	if (cached) {
		x->done = true;
		buf_line_printf(show, arg, "#%u CACHED", x->num);
		return 0;
	}
	if (!completed)
		return 0;
	vertex_flush(x, show, arg);
	x->done = true;
	if (pb_is_len(&error) && error.end > error.p) {
		x->error = pb_str(&error, ERROR_MAX_BYTES);
		buf_line_printf(show, arg, "#%u ERROR: %s", x->num, x->error);
		/* the failed step stops the others with "context canceled":
		 * the first real error is the one to name */
		if (!t->failed ||
		    (strstr(t->failed->error, CANCELED_MARK) && !strstr(x->error, CANCELED_MARK)))
			t->failed = x;
	} else {
		double d =
		    x->started > 0 && t_completed >= x->started ? t_completed - x->started : 0;
		buf_line_printf(show, arg, "#%u DONE %.1fs", x->num, d);
	}
	return 0;
}

/* A step's sub-status ("writing image sha256:...", "naming to ..."): said once, done. */
static int on_status(struct bktrace *t, struct pb s, bktrace_show_cb *show, void *arg)
{
	struct pb id = {NULL, NULL}, vertex = {NULL, NULL}, sub;
	bool completed = false;
	struct vertex *x;
	char *key;
	void **slot;
	uint32_t f;
	uint64_t v;
	int r;

	while ((r = pb_next(&s, &f, &v, &sub)) == 0) {
		if (f == VS_ID && pb_is_len(&sub))
			id = sub;
		else if (f == VS_VERTEX && pb_is_len(&sub))
			vertex = sub;
		else if (f == VS_COMPLETED && pb_is_len(&sub))
			completed = true;
	}
	if (r < 0 || !completed || !pb_is_len(&id) || !pb_is_len(&vertex) ||
	    t->nstatus >= STATUSES_MAX || !(x = vertex_get(t, &vertex)))
		return r < 0 ? r : 0;
	key = xasprintf("%.*s %.*s", (int)(vertex.end - vertex.p), (const char *)vertex.p,
			(int)(id.end - id.p < NAME_MAX_BYTES ? id.end - id.p : NAME_MAX_BYTES),
			(const char *)id.p);
	slot = strmap_put(&t->statuses, key, strlen(key));
	if (*slot) {
		free(key);
		return 0;
	}
	*slot = key;
	if (t->nstatus % 64 == 0)
		t->status_keys = xreallocarray(t->status_keys, t->nstatus + 64, sizeof(char *));
	t->status_keys[t->nstatus++] = key;
	vertex_show(t, x, show, arg);
	buf_line_printf(show, arg, "#%u %.*s done", x->num,
			(int)(id.end - id.p < NAME_MAX_BYTES ? id.end - id.p : NAME_MAX_BYTES),
			(const char *)id.p);
	return 0;
}

static int on_log(struct bktrace *t, struct pb s, bktrace_show_cb *show, void *arg)
{
	struct pb vertex = {NULL, NULL}, msg = {NULL, NULL}, sub;
	struct vertex *x;
	uint32_t f;
	uint64_t v;
	int r;

	while ((r = pb_next(&s, &f, &v, &sub)) == 0) {
		if (f == VL_VERTEX && pb_is_len(&sub))
			vertex = sub;
		else if (f == VL_MSG && pb_is_len(&sub))
			msg = sub;
	}
	if (r < 0 || !pb_is_len(&vertex) || !pb_is_len(&msg) || !(x = vertex_get(t, &vertex)))
		return r < 0 ? r : 0;
	vertex_show(t, x, show, arg);
	vertex_output(x, msg.p, (size_t)(msg.end - msg.p), show, arg);
	return 0;
}

static int on_warning(struct bktrace *t, struct pb s, bktrace_show_cb *show, void *arg)
{
	struct pb vertex = {NULL, NULL}, text = {NULL, NULL}, sub;
	struct vertex *x = NULL;
	uint32_t f;
	uint64_t v;
	int r;

	while ((r = pb_next(&s, &f, &v, &sub)) == 0) {
		if (f == VW_VERTEX && pb_is_len(&sub))
			vertex = sub;
		else if (f == VW_SHORT && pb_is_len(&sub))
			text = sub;
	}
	if (r < 0 || !pb_is_len(&text))
		return r < 0 ? r : 0;
	if (pb_is_len(&vertex))
		x = vertex_get(t, &vertex);
	if (x && x->num)
		buf_line_printf(show, arg, "#%u WARNING: %.*s", x->num,
				(int)(text.end - text.p < BKTRACE_LINE_MAX ? text.end - text.p
									   : BKTRACE_LINE_MAX),
				(const char *)text.p);
	else
		buf_line_printf(show, arg, "WARNING: %.*s",
				(int)(text.end - text.p < BKTRACE_LINE_MAX ? text.end - text.p
									   : BKTRACE_LINE_MAX),
				(const char *)text.p);
	return 0;
}

int bktrace_feed_raw(struct bktrace *t, const unsigned char *p, size_t len, bktrace_show_cb *show,
		     void *arg)
{
	struct pb s = {p, p + len}, sub;
	uint32_t f;
	uint64_t v;
	int r;

	while ((r = pb_next(&s, &f, &v, &sub)) == 0) {
		if (!pb_is_len(&sub))
			continue;
		switch (f) {
		case SR_VERTEXES:
			r = on_vertex(t, sub, show, arg);
			break;
		case SR_STATUSES:
			r = on_status(t, sub, show, arg);
			break;
		case SR_LOGS:
			r = on_log(t, sub, show, arg);
			break;
		case SR_WARNINGS:
			r = on_warning(t, sub, show, arg);
			break;
		default:
			break;
		}
		if (r < 0)
			return r;
	}
	return r < 0 ? r : 0;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t bktrace_base64_decode(const char *in, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	size_t n = 0, bits = 0, i;

	while (len > 0 && in[len - 1] == '=')
		len--;
	for (i = 0; i < len; i++) {
		int v = b64_value((unsigned char)in[i]);
		if (v < 0)
			return -EINVAL;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	if (bits >= 6) /* one lone character: not base64 */
		return -EINVAL;
	return (ssize_t)n;
}

int bktrace_feed(struct bktrace *t, const char *b64, size_t len, bktrace_show_cb *show, void *arg)
{
	unsigned char *raw;
	ssize_t n;
	int r;

	if (len / 4 * 3 > BKTRACE_MSG_MAX)
		return -EINVAL;
	raw = xmalloc(len / 4 * 3 + 3);
	n = bktrace_base64_decode(b64, len, raw);
	r = n < 0 ? (int)n : bktrace_feed_raw(t, raw, (size_t)n, show, arg);
	free(raw);
	return r;
}

void bktrace_flush(struct bktrace *t, bktrace_show_cb *show, void *arg)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i]->num)
			vertex_flush(t->v[i], show, arg);
}

bool bktrace_failure(const struct bktrace *t, char *buf, size_t size)
{
	const struct vertex *x = t->failed;
	struct buf b = {0};
	unsigned first, n;

	if (!x)
		return false;
	buf_printf(&b, "step '%s' failed: %s", x->name ? x->name : x->digest, x->error);
	n = x->ntail < BKTRACE_TAIL_LINES ? x->ntail : BKTRACE_TAIL_LINES;
	first = x->ntail - n;
	for (unsigned i = 0; i < n; i++)
		buf_printf(&b, "%s%s", i ? " | " : "; last output: ",
			   x->tail[(first + i) % BKTRACE_TAIL_LINES]);
	snprintf(buf, size, "%s", b.p);
	buf_done(&b);
	return true;
}

struct bktrace *bktrace_new(void)
{
	return xcalloc(1, sizeof(struct bktrace));
}

struct bktrace *bktrace_free(struct bktrace *t)
{
	if (!t)
		return NULL;
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i]->digest);
		free(t->v[i]->name);
		free(t->v[i]->error);
		buf_done(&t->v[i]->partial);
		free(t->v[i]);
	}
	free(t->v);
	for (size_t i = 0; i < t->nstatus; i++)
		free(t->status_keys[i]);
	free(t->status_keys);
	strmap_done(&t->by_digest);
	strmap_done(&t->statuses);
	free(t);
	return NULL;
}
