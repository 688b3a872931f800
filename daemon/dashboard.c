/* dashboard.c (report): the read-only web dashboard. Owns the auth table in
 * force and one struct page per request in flight. A request is checked on
 * the loop (method, route, a cached authorization), and what blocks (bcrypt,
 * the store, the log file) runs on a worker with the page's own copy of what
 * it needs; the loop answers. Every byte that came from a repository, a
 * manifest or a log passes dashboard_escape before it reaches HTML. */
#include <crypt.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "kiln/bktrace.h"
#include "kiln/dashboard.h"
#include "kiln/err.h"
#include "kiln/log.h"
#include "kiln/buf.h"
#include "kiln/sig.h"

/* Self only, no inline script or style: markup that slipped through
 * escaping could neither run nor call out. */
#define SECURITY_HEADERS                                                                           \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "       \
	"img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "                \
	"frame-ancestors 'none'\r\n"                                                               \
	"X-Content-Type-Options: nosniff\r\n"                                                      \
	"Referrer-Policy: no-referrer\r\n"                                                         \
	"X-Frame-Options: DENY\r\n"
#define NO_STORE "Cache-Control: no-store\r\n"
/* a stream that ends without its end event (kilnd restarting, the users
 * reloaded) is asked for again this soon, from the last event's offset */
#define RETRY_LINE "retry: 1000\n\n"
#define HTML	   "text/html; charset=utf-8"
#define TEXT	   "text/plain; charset=utf-8"

enum route {
	ROUTE_NONE,
	ROUTE_REPOS,
	ROUTE_BUILDS,
	ROUTE_BUILD,
	ROUTE_LOG,
	ROUTE_EVENTS,
	ROUTE_ENGINE,
	ROUTE_ASSET
};

struct auth_user {
	char *name, *hash;
};

struct dashboard_auth {
	unsigned refs;
	struct auth_user *v;
	size_t n;
};

/* A live log's stream: a worker reads what is new (STREAM_READING), the
 * loop writes it and waits for the next look (STREAM_WAITING), until the
 * build ended and everything was sent, or the client left (STREAM_DONE). */
enum stream_state { STREAM_NONE, STREAM_READING, STREAM_WAITING, STREAM_DONE };

/* One request in flight. The worker touches only this. */
struct page {
	uv_work_t work;
	struct dashboard *db;
	struct http_request *req;
	struct dashboard_auth *auth; /* a reference; NULL: none needed */
	char *authorization;	     /* to check on the worker; NULL: done */
	unsigned char digest[32];    /* of authorization, cached once accepted */
	bool authed;
	enum route rt;
	int64_t id;
	struct dashboard_query q;
	char *log_path;
	int status;
	const char *ctype;
	struct buf headers, body;
	/* ROUTE_EVENTS, once streaming */
	enum stream_state sst;
	uv_timer_t timer;
	LIST_ENTRY(page) entry;
	int64_t offset;	     /* the next log byte to send; -1: start from the tail */
	int64_t read_end;    /* the worker's: offset after what it read */
	char state[16];	     /* the build's state as last sent; "": none yet */
	char read_state[16]; /* the worker's */
	bool ended;	     /* the worker's: the build ended and all of its log is read */
	bool full;	     /* the worker's: the log goes on past what it read */
	uint64_t sent_ms;    /* when something last went out (the keep-alive comment) */
	unsigned gen;	     /* db->gen when it was asked for */
};

/* ---- escaping and text ---- */

void dashboard_escape(struct buf *b, const char *s, size_t len)
{
	size_t from = 0;

	for (size_t i = 0; i < len; i++) {
		const char *ref;
		switch (s[i]) {
		case '&':
			ref = "&amp;";
			break;
		case '<':
			ref = "&lt;";
			break;
		case '>':
			ref = "&gt;";
			break;
		case '"':
			ref = "&quot;";
			break;
		case '\'':
			ref = "&#39;";
			break;
		default:
			continue;
		}
		buf_append(b, s + from, i - from);
		buf_puts(b, ref);
		from = i + 1;
	}
	buf_append(b, s + from, len - from);
}

static void esc(struct buf *b, const char *s)
{
	if (s)
		dashboard_escape(b, s, strlen(s));
}

void dashboard_ansi_text(struct buf *b, const char *s, size_t len)
{
	size_t i = 0, from = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t j;

		if (c >= 0x20 && c != 0x7f) {
			i++;
			continue;
		}
		buf_append(b, s + from, i - from);
		j = i + 1;
		if (c == '\n' || c == '\t') {
			buf_putc(b, (char)c);
		} else if (c == 0x1b && j < len && s[j] == '[') {
			/* CSI: parameters and intermediates up to a final byte */
			for (j++;
			     j < len && (unsigned char)s[j] >= 0x20 && (unsigned char)s[j] < 0x40;
			     j++)
				;
			if (j < len && (unsigned char)s[j] >= 0x40 && (unsigned char)s[j] < 0x7f)
				j++;
		} else if (c == 0x1b && j < len && s[j] == ']') {
			/* OSC: up to BEL or ESC \ */
			for (j++; j < len && s[j] != '\a' && s[j] != 0x1b; j++)
				;
			if (j < len && s[j] == '\a')
				j++;
			else if (j + 1 < len && s[j + 1] == '\\')
				j += 2;
		} else if (c == 0x1b && j < len && (unsigned char)s[j] >= 0x20 &&
			   (unsigned char)s[j] < 0x7f) {
			j++; /* a two-byte sequence (ESC c, ESC =, ...) */
		}
		i = from = j;
	}
	buf_append(b, s + from, len - from);
}

/* ---- the query string ---- */

/* Percent-decodes s[0..len) into out (size bytes with the NUL). */
static int url_decode(const char *s, size_t len, char *out, size_t size, const char *key,
		      struct kiln_err *err)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			unsigned char byte;
			if (i + 2 >= len || hex_decode(s + i + 1, 2, &byte, 1) < 0)
				return kiln_err_set(err, -EINVAL, "'%s': bad %%-escape", key);
			c = (char)byte;
			i += 2;
			if (c == '\0')
				return kiln_err_set(err, -EINVAL, "'%s': contains NUL", key);
		}
		if (n + 1 >= size)
			return kiln_err_set(err, -EINVAL, "'%s': longer than %zu bytes", key,
					    size - 1);
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

static int parse_id(const char *s, int64_t *ret)
{
	char *end;
	long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end || errno || v < 0)
		return -EINVAL;
	*ret = v;
	return 0;
}

static bool valid_state(const char *s)
{
	static const char *const states[] = {"queued",	  "running",	"succeeded", "failed",
					     "cancelled", "superseded", "removed"};

	for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
		if (strcmp(s, states[i]) == 0)
			return true;
	}
	return false;
}

int dashboard_parse_query(const char *query, struct dashboard_query *ret, struct kiln_err *err)
{
	struct dashboard_query q = {.offset = -1};
	const char *p = query ? query : "";
	char num[24];

	while (*p) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		size_t klen = (size_t)((eq ? eq : end) - p);
		const char *v = eq ? eq + 1 : end;
		size_t vlen = (size_t)(end - v);
		int r = 0;

#define KEY_IS(k) (klen == strlen(k) && memcmp(p, k, klen) == 0)
		if (KEY_IS("repository"))
			r = url_decode(v, vlen, q.repo, sizeof(q.repo), "repository", err);
		else if (KEY_IS("image"))
			r = url_decode(v, vlen, q.image, sizeof(q.image), "image", err);
		else if (KEY_IS("state")) {
			r = url_decode(v, vlen, q.state, sizeof(q.state), "state", err);
			if (r == 0 && q.state[0] && !valid_state(q.state))
				r = kiln_err_set(err, -EINVAL, "'state': no state '%s'", q.state);
		} else if (KEY_IS("before") || KEY_IS("offset")) {
			bool before = KEY_IS("before");
			int64_t n;
			r = url_decode(v, vlen, num, sizeof(num), before ? "before" : "offset",
				       err);
			if (r == 0 && num[0] && (parse_id(num, &n) < 0 || (before && n == 0)))
				r = kiln_err_set(err, -EINVAL, "'%s' must be a %s number",
						 before ? "before" : "offset",
						 before ? "positive" : "non-negative");
			else if (r == 0 && num[0] && before)
				q.before = n;
			else if (r == 0 && num[0])
				q.offset = n;
		}
#undef KEY_IS
		if (r < 0)
			return r;
		p = amp ? amp + 1 : end;
	}
	*ret = q;
	return 0;
}

/* ---- authentication ---- */

static struct dashboard_auth *auth_free(struct dashboard_auth *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->v[i].name);
		free(a->v[i].hash);
	}
	free(a->v);
	free(a);
	return NULL;
}

struct dashboard_auth *dashboard_auth_ref(struct dashboard_auth *a)
{
	if (a)
		a->refs++;
	return a;
}

struct dashboard_auth *dashboard_auth_unref(struct dashboard_auth *a)
{
	if (a && --a->refs == 0)
		auth_free(a);
	return NULL;
}

size_t dashboard_auth_users(const struct dashboard_auth *a)
{
	return a ? a->n : 0;
}

#define CRYPT_ALPHABET "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/* A whole bcrypt or sha-crypt hash, by its shape: a cut or mangled one
 * would otherwise only show as a password that never matches. */
static bool supported_hash(const char *h)
{
	size_t len = strlen(h), n;
	const char *p;

	if (len == 0 || strspn(h, CRYPT_ALPHABET "$=") != len)
		return false;
	if (crypt_checksalt(h) != CRYPT_SALT_OK && crypt_checksalt(h) != CRYPT_SALT_METHOD_LEGACY)
		return false;
	if (strncmp(h, "$2b$", 4) == 0 || strncmp(h, "$2y$", 4) == 0)
		/* $2b$NN$ then 22 characters of salt and 31 of hash */
		return len == 60 && h[4] >= '0' && h[4] <= '3' && h[5] >= '0' && h[5] <= '9' &&
		       h[6] == '$' && strspn(h + 7, CRYPT_ALPHABET) == 53;
	if (strncmp(h, "$5$", 3) != 0 && strncmp(h, "$6$", 3) != 0)
		return false;
	/* $5$[rounds=N$]salt$hash: 43 characters for SHA-256, 86 for SHA-512 */
	p = h + 3;
	if (strncmp(p, "rounds=", 7) == 0) {
		n = strspn(p + 7, "0123456789");
		if (n == 0 || p[7 + n] != '$')
			return false;
		p += 7 + n + 1;
	}
	n = strspn(p, CRYPT_ALPHABET);
	if (n > 16 || p[n] != '$')
		return false;
	p += n + 1;
	return strlen(p) == (h[1] == '5' ? 43u : 86u) && strspn(p, CRYPT_ALPHABET) == strlen(p);
}

/* One line (without its newline): a user or an error naming path:line. */
static int auth_line(struct dashboard_auth *a, char *line, const char *path, unsigned lineno,
		     struct kiln_err *err)
{
	size_t len = strlen(line);
	char *colon;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	if (len == 0 || line[0] == '#')
		return 0;
	colon = strchr(line, ':');
	if (colon == NULL || colon == line)
		return kiln_err_set(err, -EINVAL, "%s:%u: not a 'user:hash' line", path, lineno);
	*colon = '\0';
	if (!supported_hash(colon + 1))
		return kiln_err_set(err, -EINVAL,
				    "%s:%u: user '%s': not a bcrypt ($2b$, $2y$) or sha-crypt "
				    "($5$, $6$) hash",
				    path, lineno, line);
	for (size_t i = 0; i < a->n; i++) {
		if (strcmp(a->v[i].name, line) == 0)
			return kiln_err_set(err, -EINVAL, "%s:%u: user '%s' is there twice", path,
					    lineno, line);
	}
	if (a->n >= DASHBOARD_AUTH_USERS_MAX)
		return kiln_err_set(err, -E2BIG, "%s:%u: more than %u users", path, lineno,
				    DASHBOARD_AUTH_USERS_MAX);
	a->v = xreallocarray(a->v, a->n + 1, sizeof(*a->v));
	a->v[a->n].name = xstrdup(line);
	a->v[a->n].hash = xstrdup(colon + 1);
	a->n++;
	return 0;
}

int dashboard_auth_parse(const char *text, size_t len, const char *path,
			 struct dashboard_auth **ret, struct kiln_err *err)
{
	struct dashboard_auth *a = xcalloc(1, sizeof(*a));
	unsigned lineno = 0;
	size_t at = 0;
	int r = 0;

	a->refs = 1;
	while (r == 0 && at < len) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
		char *line = xstrndup(text + at, n);

		lineno++;
		if (strlen(line) != n)
			r = kiln_err_set(err, -EINVAL, "%s:%u: contains a NUL byte", path, lineno);
		else
			r = auth_line(a, line, path, lineno, err);
		free(line);
		at += n + 1;
	}
	if (r == 0 && a->n == 0)
		r = kiln_err_set(err, -EINVAL, "%s: no users", path);
	if (r < 0) {
		auth_free(a);
		return r;
	}
	*ret = a;
	return 0;
}

int dashboard_auth_load(const char *path, struct dashboard_auth **ret, struct kiln_err *err)
{
	FILE *f = fopen(path, "re");
	char *text;
	size_t n;
	int r;

	if (f == NULL)
		return kiln_err_set(err, -errno, "cannot read '%s': %s", path, strerror(errno));
	text = xmalloc(DASHBOARD_AUTH_FILE_MAX + 1);
	n = fread(text, 1, DASHBOARD_AUTH_FILE_MAX + 1, f);
	if (ferror(f))
		r = kiln_err_set(err, -EIO, "cannot read '%s'", path);
	else if (n > DASHBOARD_AUTH_FILE_MAX)
		r = kiln_err_set(err, -EFBIG, "'%s' is larger than %u bytes", path,
				 DASHBOARD_AUTH_FILE_MAX);
	else
		r = dashboard_auth_parse(text, n, path, ret, err);
	fclose(f);
	free(text);
	return r;
}

/* crypt(3) of password under hash's setting, compared in constant time. */
static bool hash_matches(const char *password, const char *hash)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *out = crypt_rn(password, hash, cd, (int)sizeof(*cd));
	bool ok = out && out[0] != '*' && sig_str_equal(out, hash);

	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

bool dashboard_auth_check(const struct dashboard_auth *a, const char *authorization)
{
	char cred[1024];
	unsigned char raw[768];
	const char *b64, *user = NULL;
	ssize_t n;
	char *colon;
	bool ok = false;

	if (a == NULL || a->n == 0 || authorization == NULL ||
	    strncasecmp(authorization, "Basic ", 6) != 0)
		return false;
	for (b64 = authorization + 6; *b64 == ' '; b64++)
		;
	if (strlen(b64) > 4 * sizeof(raw) / 3)
		return false;
	n = bktrace_base64_decode(b64, strlen(b64), raw);
	if (n <= 0 || (size_t)n >= sizeof(cred) || memchr(raw, '\0', (size_t)n))
		return false;
	memcpy(cred, raw, (size_t)n);
	cred[n] = '\0';
	colon = strchr(cred, ':');
	if (colon) {
		*colon = '\0';
		for (size_t i = 0; i < a->n && user == NULL; i++) {
			if (strcmp(a->v[i].name, cred) == 0)
				user = a->v[i].hash;
		}
		/* an unknown user costs one hash too, so timing does not tell */
		ok = hash_matches(colon + 1, user ? user : a->v[0].hash) && user != NULL;
	}
	explicit_bzero(cred, sizeof(cred));
	explicit_bzero(raw, sizeof(raw));
	return ok;
}

/* ---- rendering ---- */

static void page_begin(struct buf *b, const char *title, const char *current)
{
	static const char *const nav[][2] = {
	    {"/", "repositories"}, {"/builds", "builds"}, {"/engine", "engine"}};

	buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		    "<meta name=\"viewport\" content=\"width=device-width\">"
		    "<link rel=\"stylesheet\" href=\"/static/dashboard.css\">"
		    "<link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">"
		    "<script src=\"/static/dashboard.js\" defer></script><title>");
	esc(b, title);
	buf_puts(b, " · kiln</title></head><body><header><span class=\"brand\">kiln</span><nav>");
	for (size_t i = 0; i < ARRAY_SIZE(nav); i++)
		buf_printf(b, "<a href=\"%s\"%s>%s</a>", nav[i][0],
			   strcmp(current, nav[i][1]) == 0 ? " class=\"current\"" : "", nav[i][1]);
	buf_puts(b, "</nav></header><main><h1>");
	esc(b, title);
	buf_puts(b, "</h1>\n");
}

static void page_end(struct buf *b)
{
	buf_puts(b, "</main></body></html>\n");
}

static void time_cell(struct buf *b, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	char iso[32], s[32];

	if (t <= 0 || gmtime_r(&tt, &tm) == NULL) {
		buf_puts(b, "<td>–</td>");
		return;
	}
	strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
	strftime(s, sizeof(s), "%Y-%m-%d %H:%M:%SZ", &tm);
	buf_printf(b, "<td><time datetime=\"%s\">%s</time></td>", iso, s);
}

static void duration(struct buf *b, int64_t s)
{
	if (s < 0)
		buf_puts(b, "–");
	else if (s < 120)
		buf_printf(b, "%" PRId64 "s", s);
	else if (s < 7200)
		buf_printf(b, "%" PRId64 "m %02" PRId64 "s", s / 60, s % 60);
	else
		buf_printf(b, "%" PRId64 "h %02" PRId64 "m", s / 3600, s / 60 % 60);
}

/* Percent-encodes s for a query value: what is left needs no HTML escaping. */
static void url_value(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~' || c == '/')
			buf_putc(b, (char)c);
		else
			buf_printf(b, "%%%02X", c);
	}
}

static void state_span(struct buf *b, const char *state)
{
	buf_puts(b, "<span class=\"state s-");
	esc(b, state);
	buf_puts(b, "\">");
	esc(b, state);
	buf_puts(b, "</span>");
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void render_repos(struct buf *b, const json_t *st)
{
	const json_t *repos = json_object_get(st, "repositories"), *r;
	size_t i;

	page_begin(b, "Repositories", "repositories");
	if (json_array_size(repos) == 0)
		buf_puts(b, "<p>No repositories are watched.</p>");
	else
		buf_puts(b,
			 "<table id=\"repositories\"><thead><tr><th>repository</th><th>state</th>"
			 "<th>branch</th><th>head</th><th>last seen</th><th>next poll</th>"
			 "<th>last error</th></tr></thead><tbody>\n");
	json_array_foreach(repos, i, r)
	{
		const json_t *branches = json_object_get(r, "branches"), *br;
		const json_t *next = json_object_get(r, "next_poll_in_ms");
		size_t k, nb = json_array_size(branches);

		json_array_foreach(branches, k, br)
		{
			buf_puts(b, "<tr>");
			if (k == 0) {
				buf_printf(b,
					   "<td rowspan=\"%zu\"><a href=\"/builds?repository=", nb);
				url_value(b, jstr(r, "name"));
				buf_puts(b, "\">");
				esc(b, jstr(r, "name"));
				buf_puts(b, "</a><div class=\"url\">");
				esc(b, jstr(r, "url"));
				buf_printf(b, "</div></td><td rowspan=\"%zu\">", nb);
				esc(b, jstr(r, "state"));
				buf_puts(b, "</td>");
			}
			buf_puts(b, "<td>");
			esc(b, jstr(br, "name"));
			buf_puts(b, "</td><td class=\"sha\">");
			esc(b, jstr(br, "head") ? jstr(br, "head") : "–");
			buf_puts(b, "</td><td class=\"sha\">");
			esc(b, jstr(br, "last_seen") ? jstr(br, "last_seen") : "–");
			buf_puts(b, "</td>");
			if (k == 0) {
				buf_printf(b, "<td rowspan=\"%zu\">", nb);
				if (json_is_integer(next)) {
					buf_puts(b, "in ");
					duration(b, (json_integer_value(next) + 999) / 1000);
				} else {
					buf_puts(b, "–");
				}
				buf_printf(b, "</td><td rowspan=\"%zu\" class=\"error\">", nb);
				esc(b, jstr(r, "last_error"));
				buf_puts(b, "</td>");
			}
			buf_puts(b, "</tr>\n");
		}
	}
	if (json_array_size(repos))
		buf_puts(b, "</tbody></table>\n");
	buf_printf(
	    b, "<p>Queued builds: %" JSON_INTEGER_FORMAT ", running: %" JSON_INTEGER_FORMAT ".</p>",
	    json_integer_value(json_object_get(st, "queued")),
	    json_integer_value(json_object_get(st, "running")));
	page_end(b);
}

static void render_engine(struct buf *b, const json_t *st, const json_t *health)
{
	const json_t *engine = json_object_get(st, "engine"), *reasons, *r;
	size_t i;

	page_begin(b, "Engine", "engine");
	buf_puts(b, "<table id=\"engine\" class=\"fields\"><tbody>");
	if (json_is_object(engine)) {
		buf_puts(b, "<tr><th>host</th><td>");
		esc(b, jstr(engine, "host"));
		buf_puts(b, "</td></tr><tr><th>engine</th><td>");
		esc(b, jstr(engine, "engine") ? jstr(engine, "engine") : "not reached yet");
		buf_puts(b, "</td></tr><tr><th>state</th><td>");
		esc(b, jstr(engine, "state"));
		buf_puts(b, "</td></tr>");
	} else {
		buf_puts(b, "<tr><th>engine</th><td>none: builds.dry_run</td></tr>");
	}
	buf_printf(b,
		   "<tr><th>builds queued</th><td>%" JSON_INTEGER_FORMAT "</td></tr>"
		   "<tr><th>builds running</th><td>%" JSON_INTEGER_FORMAT "</td></tr>"
		   "<tr><th>kilnd</th><td>",
		   json_integer_value(json_object_get(st, "queued")),
		   json_integer_value(json_object_get(st, "running")));
	esc(b, jstr(st, "version"));
	buf_puts(b, ", up ");
	duration(b, json_integer_value(json_object_get(st, "uptime_s")));
	buf_puts(b, "</td></tr><tr><th>health</th><td>");
	esc(b, jstr(health, "status") ? jstr(health, "status") : "unknown");
	buf_puts(b, "</td></tr></tbody></table>\n");
	reasons = json_object_get(health, "reasons");
	if (json_array_size(reasons)) {
		buf_puts(b, "<h2>Why degraded</h2><ul id=\"reasons\">");
		json_array_foreach(reasons, i, r)
		{
			buf_puts(b, "<li>");
			esc(b, jstr(r, "what"));
			buf_puts(b, " ");
			esc(b, jstr(r, "name"));
			buf_puts(b, ": ");
			esc(b, jstr(r, "message"));
			buf_puts(b, "</li>");
		}
		buf_puts(b, "</ul>\n");
	}
	page_end(b);
}

/* The filter form, its values as given. */
static void filter_form(struct buf *b, const struct dashboard_query *q)
{
	static const char *const states[] = {"queued",	  "running",	"succeeded", "failed",
					     "cancelled", "superseded", "removed"};

	buf_puts(b, "<form id=\"filters\" method=\"get\" action=\"/builds\">"
		    "<label>repository <input name=\"repository\" value=\"");
	esc(b, q->repo);
	buf_puts(b, "\"></label> <label>image <input name=\"image\" value=\"");
	esc(b, q->image);
	buf_puts(b,
		 "\"></label> <label>state <select name=\"state\"><option value=\"\">any</option>");
	for (size_t i = 0; i < ARRAY_SIZE(states); i++)
		buf_printf(b, "<option%s>%s</option>",
			   strcmp(q->state, states[i]) == 0 ? " selected" : "", states[i]);
	buf_puts(b, "</select></label> <button type=\"submit\">filter</button></form>\n");
}

/* The builds page with q's filters and a cursor (0: none), for an href. */
static void filter_link(struct buf *b, const struct dashboard_query *q, int64_t before)
{
	const char *sep = "?";

	buf_puts(b, "/builds");
	if (q->repo[0]) {
		buf_printf(b, "%srepository=", sep);
		url_value(b, q->repo);
		sep = "&amp;";
	}
	if (q->image[0]) {
		buf_printf(b, "%simage=", sep);
		url_value(b, q->image);
		sep = "&amp;";
	}
	if (q->state[0]) {
		buf_printf(b, "%sstate=%s", sep, q->state); /* one of valid_state's */
		sep = "&amp;";
	}
	if (before)
		buf_printf(b, "%sbefore=%" PRId64, sep, before);
}

static void build_row(struct buf *b, const struct store_build_row *r)
{
	buf_printf(b, "<tr><td><a href=\"/builds/%" PRId64 "\">%" PRId64 "</a></td><td>", r->id,
		   r->id);
	esc(b, r->repo);
	buf_puts(b, "</td><td>");
	esc(b, r->branch);
	buf_puts(b, "</td><td class=\"image\">");
	esc(b, r->image ? r->image : r->path);
	buf_puts(b, "<div class=\"path\">");
	esc(b, r->path[0] ? r->path : ".");
	buf_puts(b, "</div></td><td class=\"sha\">");
	if (r->commit)
		dashboard_escape(b, r->commit, strnlen(r->commit, 12));
	buf_puts(b, "</td><td>");
	state_span(b, r->state);
	buf_puts(b, "</td>");
	time_cell(b, r->created_at);
	buf_puts(b, "<td>");
	if (r->started_at)
		duration(b,
			 (r->finished_at ? r->finished_at : (int64_t)time(NULL)) - r->started_at);
	buf_puts(b, "</td><td class=\"error\">");
	esc(b, r->error);
	buf_puts(b, "</td></tr>\n");
}

static int render_builds(struct page *pg, struct kiln_err *err)
{
	struct store_build_filter f = {0};
	struct store_build_row *rows = NULL;
	struct buf *b = &pg->body;
	size_t n = 0, shown;
	int r;

	f.repo = pg->q.repo[0] ? pg->q.repo : NULL;
	f.state = pg->q.state[0] ? pg->q.state : NULL;
	/* a folder ("." the root) or a reference: references hold a ':' */
	if (strchr(pg->q.image, ':'))
		f.image = pg->q.image;
	else if (pg->q.image[0])
		f.path = strcmp(pg->q.image, ".") == 0 ? "" : pg->q.image;
	f.before = pg->q.before;
	f.limit = DASHBOARD_PAGE_SIZE + 1; /* one more: is there a next page? */
	r = store_list_builds(pg->db->store, &f, &rows, &n, err);
	if (r < 0)
		return r;
	shown = n > DASHBOARD_PAGE_SIZE ? DASHBOARD_PAGE_SIZE : n;
	page_begin(b, "Builds", "builds");
	filter_form(b, &pg->q);
	if (n == 0) {
		buf_puts(b, "<p id=\"none\">No builds.</p>");
	} else {
		buf_puts(b, "<table id=\"builds\"><thead><tr><th>id</th><th>repository</th>"
			    "<th>branch</th><th>image</th><th>commit</th><th>state</th>"
			    "<th>created</th><th>took</th><th>error</th></tr></thead><tbody>\n");
		for (size_t i = 0; i < shown; i++)
			build_row(b, &rows[i]);
		buf_puts(b, "</tbody></table>\n");
	}
	buf_puts(b, "<p class=\"pages\">");
	if (pg->q.before) {
		buf_puts(b, "<a id=\"newest\" href=\"");
		filter_link(b, &pg->q, 0);
		buf_puts(b, "\">newest</a> ");
	}
	if (n > DASHBOARD_PAGE_SIZE) {
		buf_puts(b, "<a id=\"older\" rel=\"next\" href=\"");
		filter_link(b, &pg->q, rows[shown - 1].id);
		buf_puts(b, "\">older</a>");
	}
	buf_puts(b, "</p>\n");
	page_end(b);
	store_build_rows_free(rows, n);
	return 0;
}

/* queued or running: its log may still grow */
static bool live_state(const char *state)
{
	return strcmp(state, "queued") == 0 || strcmp(state, "running") == 0;
}

/* How much of p[0..len) ends on a UTF-8 character's end: without a last
 * character whose bytes go on past len. */
static size_t utf8_whole(const char *p, size_t len)
{
	for (size_t i = 1; i <= 3 && i <= len; i++) {
		unsigned char c = (unsigned char)p[len - i];
		if ((c & 0xC0) == 0x80)
			continue; /* a continuation byte: its lead is further back */
		if (c >= 0xC0 && (size_t)(c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2) > i)
			return len - i;
		break;
	}
	return len;
}

/* The last max bytes of the log from offset on (offset < 0: the tail), cut
 * after its last newline when more may follow; *ret_end: the file offset
 * after what was read; *ret_more (NULL: not wanted): the file went on past
 * what was read, read again at once. A missing log is empty. */
static int read_log(const char *path, int64_t offset, size_t max, bool cut, struct buf *out,
		    int64_t *ret_end, bool *ret_more, struct kiln_err *err)
{
	FILE *f = path ? fopen(path, "re") : NULL;
	int64_t size, from;
	size_t want, got, keep;
	bool more;
	char *chunk;
	int r = 0;

	*ret_end = offset > 0 ? offset : 0;
	if (ret_more)
		*ret_more = false;
	if (f == NULL) {
		if (path == NULL || errno == ENOENT)
			return 0;
		return kiln_err_set(err, -errno, "cannot read log '%s': %s", path, strerror(errno));
	}
	if (fseeko(f, 0, SEEK_END) < 0 || (size = ftello(f)) < 0) {
		r = kiln_err_set(err, -errno, "cannot seek in log '%s': %s", path, strerror(errno));
		goto out;
	}
	from = offset < 0 ? (size > (int64_t)max ? size - (int64_t)max : 0)
			  : (offset > size ? size : offset);
	if (fseeko(f, from, SEEK_SET) < 0) {
		r = kiln_err_set(err, -errno, "cannot seek in log '%s': %s", path, strerror(errno));
		goto out;
	}
	/* only what is there: a live log's look usually finds a few lines */
	want = size - from < (int64_t)max ? (size_t)(size - from) : max;
	chunk = xmalloc(want + 1);
	got = fread(chunk, 1, want, f);
	keep = got;
	more = from + (int64_t)got < size;
	/* a line still being written waits for its end; a piece with more
	 * after it ends with a line too, so that no character or colour
	 * code is split between two pieces (each is decoded alone) */
	if (cut || more) {
		while (keep > 0 && chunk[keep - 1] != '\n')
			keep--;
		if (keep == 0 && got == max) /* one line longer than a chunk */
			keep = utf8_whole(chunk, got);
	}
	dashboard_ansi_text(out, chunk, keep);
	*ret_end = from + (int64_t)keep;
	if (ret_more)
		*ret_more = more;
	free(chunk);
out:
	fclose(f);
	return r;
}

static void link_list(struct buf *b, const char *what, const int64_t *v, size_t n)
{
	buf_printf(b, "<tr><th>%s</th><td>", what);
	for (size_t i = 0; i < n; i++)
		buf_printf(b, "%s<a href=\"/builds/%" PRId64 "\">%" PRId64 "</a>", i ? ", " : "",
			   v[i], v[i]);
	if (n == 0)
		buf_puts(b, "–");
	buf_puts(b, "</td></tr>");
}

static void field(struct buf *b, const char *name, const char *value)
{
	buf_printf(b, "<tr><th>%s</th><td id=\"f-%s\">", name, name);
	esc(b, value && value[0] ? value : "–");
	buf_puts(b, "</td></tr>");
}

static int render_build(struct page *pg, struct kiln_err *err)
{
	struct store_build_filter f = {.id = pg->id, .limit = 1};
	struct store_build_row *row = NULL;
	int64_t *bases = NULL, *deps = NULL, end = 0;
	size_t n = 0, nb = 0, nd = 0;
	struct buf *b = &pg->body, log = {0};
	char title[64], *attempts;
	bool live;
	int r;

	r = store_list_builds(pg->db->store, &f, &row, &n, err);
	if (r == 0 && n == 0)
		r = kiln_err_set(err, -ENOENT, "no build %" PRId64, pg->id);
	if (r == 0)
		r = store_build_links(pg->db->store, pg->id, &bases, &nb, &deps, &nd, err);
	if (r == 0)
		r = read_log(pg->log_path, -1, DASHBOARD_LOG_PAGE_MAX, false, &log, &end, NULL,
			     err);
	if (r < 0)
		goto out;
	live = live_state(row->state);
	snprintf(title, sizeof(title), "Build %" PRId64, row->id);
	page_begin(b, title, "builds");
	buf_puts(b, "<table id=\"build\" class=\"fields\"><tbody>");
	field(b, "repository", row->repo);
	field(b, "branch", row->branch);
	field(b, "path", row->path[0] ? row->path : ".");
	field(b, "image", row->image);
	field(b, "commit", row->commit);
	field(b, "message", row->subject);
	field(b, "change", row->change);
	buf_puts(b, "<tr><th>state</th><td id=\"f-state\">");
	state_span(b, row->state);
	buf_puts(b, "</td></tr>");
	attempts = xasprintf("%d", row->attempts);
	field(b, "attempts", attempts);
	free(attempts);
	field(b, "builder", row->builder);
	field(b, "digest", row->digest);
	field(b, "error", row->error);
	buf_puts(b, "<tr><th>created</th>");
	time_cell(b, row->created_at);
	buf_puts(b, "</tr><tr><th>started</th>");
	time_cell(b, row->started_at);
	buf_puts(b, "</tr><tr><th>finished</th>");
	time_cell(b, row->finished_at);
	buf_puts(b, "</tr><tr><th>queued for</th><td>");
	if (row->started_at)
		duration(b, row->started_at - row->created_at);
	else
		buf_puts(b, "–");
	buf_puts(b, "</td></tr><tr><th>built in</th><td>");
	if (row->started_at && row->finished_at)
		duration(b, row->finished_at - row->started_at);
	else
		buf_puts(b, "–");
	buf_puts(b, "</td></tr>");
	link_list(b, "waits for", bases, nb);
	link_list(b, "needed by", deps, nd);
	buf_puts(b, "</tbody></table>\n<h2>Log</h2>");
	if (end > (int64_t)DASHBOARD_LOG_PAGE_MAX)
		buf_printf(b,
			   "<p class=\"cut\">The last %u KiB; <code>kiln logs %" PRId64
			   "</code> shows more.</p>",
			   DASHBOARD_LOG_PAGE_MAX >> 10, row->id);
	buf_printf(b,
		   "<pre id=\"log\" data-build=\"%" PRId64 "\" data-offset=\"%" PRId64
		   "\" data-state=\"",
		   row->id, end);
	esc(b, row->state);
	buf_printf(b, "\"%s>", live ? " class=\"live\"" : "");
	dashboard_escape(b, log.p ? log.p : "", log.len);
	buf_puts(b, "</pre>\n");
	if (live)
		buf_puts(b, "<noscript><p>Reload the page to see more of the log.</p></noscript>");
	page_end(b);
out:
	buf_done(&log);
	free(bases);
	free(deps);
	store_build_rows_free(row, n);
	return r;
}

/* The build's state (a worker's read); *ret_live: it is queued or running,
 * so its log may grow. */
static int build_state(struct page *pg, char state[16], bool *ret_live, struct kiln_err *err)
{
	struct store_build_filter f = {.id = pg->id, .limit = 1};
	struct store_build_row *row = NULL;
	size_t n = 0;
	int r;

	r = store_list_builds(pg->db->store, &f, &row, &n, err);
	if (r == 0 && n == 0)
		r = kiln_err_set(err, -ENOENT, "no build %" PRId64, pg->id);
	if (r == 0) {
		snprintf(state, 16, "%s", row->state);
		*ret_live = live_state(state);
	}
	store_build_rows_free(row, n);
	return r;
}

/* The live log: what follows offset, as plain text; the new offset and the
 * build's state in headers, so the script knows where to go on and when to
 * stop. */
static int render_log(struct page *pg, struct kiln_err *err)
{
	char state[16];
	int64_t end = 0;
	bool live;
	int r;

	r = build_state(pg, state, &live, err);
	if (r < 0)
		return r;
	r = read_log(pg->log_path, pg->q.offset,
		     pg->q.offset < 0 ? DASHBOARD_LOG_PAGE_MAX : DASHBOARD_LOG_CHUNK_MAX,
		     pg->q.offset >= 0 && live, &pg->body, &end, NULL, err);
	if (r == 0) {
		pg->ctype = TEXT;
		buf_printf(&pg->headers, "X-Kiln-Offset: %" PRId64 "\r\nX-Kiln-State: %s\r\n", end,
			   state);
	}
	return r;
}

void dashboard_sse_event(struct buf *b, const char *event, int64_t id, const char *text, size_t len)
{
	const char *p = text, *end = text + len, *nl;

	if (event)
		buf_printf(b, "event: %s\n", event);
	if (id >= 0)
		buf_printf(b, "id: %" PRId64 "\n", id);
	/* a client joins data lines with newlines and drops the last one, so
	 * text ending in a newline sends an empty line after it */
	for (;;) {
		nl = memchr(p, '\n', (size_t)(end - p));
		buf_puts(b, "data: ");
		buf_append(b, p, (size_t)((nl ? nl : end) - p));
		buf_puts(b, "\n");
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	buf_puts(b, "\n");
}

/* Worker: the build's state, then the log bytes from pg->offset on (the
 * tail when it is -1), as the events to send; the state first, so that a
 * build seen ended has its whole log in the file already. */
/* The log from pg->offset on (the tail when it is -1) into text. */
static int look(struct page *pg, bool live, struct buf *text, struct kiln_err *err)
{
	text->len = 0;
	return read_log(pg->log_path, pg->offset,
			pg->offset < 0 ? DASHBOARD_LOG_PAGE_MAX : DASHBOARD_LOG_CHUNK_MAX, live,
			text, &pg->read_end, &pg->full, err);
}

static int render_events(struct page *pg, struct kiln_err *err)
{
	struct buf text = {0};
	bool live = live_state(pg->state);
	int r = 0;

	pg->body.len = 0;
	snprintf(pg->read_state, sizeof(pg->read_state), "%s", pg->state);
	/* While its log grows a build runs: the state is asked for only when a
	 * look finds nothing new, so a busy log costs no query. Otherwise the
	 * state first: a build seen ended has its whole log in the file. */
	if (live && pg->offset >= 0) {
		if ((r = look(pg, true, &text, err)) < 0)
			goto out;
		if (pg->read_end > pg->offset)
			goto send;
	}
	r = build_state(pg, pg->read_state, &live, err);
	if (r < 0)
		goto out;
	if (strcmp(pg->read_state, pg->state) != 0)
		dashboard_sse_event(&pg->body, "state", -1, pg->read_state, strlen(pg->read_state));
	/* still running after a look that found nothing: no second look */
	if ((!live || pg->offset < 0 || strcmp(pg->state, pg->read_state) != 0) &&
	    (r = look(pg, live, &text, err)) < 0)
		goto out;
send:
	/* an ended build's last piece may be a line without its newline:
	 * read_log keeps it, as a page does */
	if (pg->read_end != (pg->offset < 0 ? 0 : pg->offset) || text.len > 0)
		dashboard_sse_event(&pg->body, NULL, pg->read_end, text.p ? text.p : "", text.len);
	pg->ended = !live && !pg->full;
	if (pg->ended)
		dashboard_sse_event(&pg->body, "end", -1, pg->read_state, strlen(pg->read_state));
out:
	buf_done(&text);
	return r;
}

/* ---- requests ---- */

static enum route route_of(const char *path, int64_t *ret_id)
{
	const char *rest;
	char num[24];
	size_t n;

	if (strcmp(path, "/") == 0)
		return ROUTE_REPOS;
	if (strcmp(path, "/builds") == 0 || strcmp(path, "/builds/") == 0)
		return ROUTE_BUILDS;
	if (strcmp(path, "/engine") == 0)
		return ROUTE_ENGINE;
	for (size_t i = 0; i < dashboard_nassets; i++) {
		if (strcmp(path, dashboard_assets[i].path) == 0) {
			*ret_id = (int64_t)i;
			return ROUTE_ASSET;
		}
	}
	if (strncmp(path, "/builds/", 8) != 0)
		return ROUTE_NONE;
	rest = path + 8;
	n = strspn(rest, "0123456789");
	if (n == 0 || n >= sizeof(num))
		return ROUTE_NONE;
	memcpy(num, rest, n);
	num[n] = '\0';
	if (parse_id(num, ret_id) < 0 || *ret_id == 0)
		return ROUTE_NONE;
	if (rest[n] == '\0')
		return ROUTE_BUILD;
	if (strcmp(rest + n, "/log") == 0)
		return ROUTE_LOG;
	if (strcmp(rest + n, "/events") == 0)
		return ROUTE_EVENTS;
	return ROUTE_NONE;
}

bool dashboard_path(const char *path)
{
	int64_t id;
	return route_of(path, &id) != ROUTE_NONE;
}

void dashboard_init(struct dashboard *db, uv_loop_t *loop, struct store *store,
		    const struct dashboard_ops *ops, void *arg)
{
	memset(db, 0, sizeof(*db));
	db->loop = loop;
	db->store = store;
	db->ops = *ops;
	db->arg = arg;
}

void dashboard_done(struct dashboard *db)
{
	db->auth = dashboard_auth_unref(db->auth);
	explicit_bzero(db->ok, sizeof(db->ok));
	db->nok = 0;
}

void dashboard_restart_streams(struct dashboard *db)
{
	db->gen++;
}

void dashboard_set_auth(struct dashboard *db, struct dashboard_auth *a)
{
	if (db->auth || a) /* the users may have changed */
		db->gen++;
	dashboard_auth_unref(db->auth);
	db->auth = a;
	explicit_bzero(db->ok, sizeof(db->ok));
	db->nok = db->next_ok = 0;
}

static void digest_of(const char *s, unsigned char out[32])
{
	unsigned int len = 32;
	EVP_Digest(s, strlen(s), out, &len, EVP_sha256(), NULL);
}

static bool cached_ok(const struct dashboard *db, const unsigned char d[32])
{
	bool hit = false;

	for (unsigned i = 0; i < db->nok; i++)
		hit |= sig_equal(db->ok[i], d, 32);
	return hit;
}

static void page_free(struct page *pg)
{
	dashboard_auth_unref(pg->auth);
	if (pg->authorization) {
		explicit_bzero(pg->authorization, strlen(pg->authorization));
		free(pg->authorization);
	}
	free(pg->log_path);
	buf_done(&pg->headers);
	buf_done(&pg->body);
	free(pg);
}

static void page_answer(struct page *pg)
{
	buf_puts(&pg->headers, SECURITY_HEADERS);
	if (pg->status == 401)
		buf_puts(&pg->headers,
			 "WWW-Authenticate: Basic realm=\"kiln\", charset=\"UTF-8\"\r\n");
	if (pg->rt == ROUTE_ASSET && pg->status == 200)
		buf_puts(&pg->headers, "Cache-Control: no-cache\r\n");
	else
		buf_puts(&pg->headers, NO_STORE);
	http_respond_headers(pg->req, pg->status, pg->ctype, pg->headers.p, pg->body.p,
			     pg->body.len);
	pg->req = NULL;
	page_free(pg);
}

static void page_error(struct page *pg, int status, const char *msg)
{
	pg->status = status;
	pg->ctype = TEXT;
	pg->body.len = 0;
	buf_printf(&pg->body, "%s\n", msg);
}

/* Worker: the password, then whatever the page reads. */
static void page_work(uv_work_t *w)
{
	struct page *pg = container_of(w, struct page, work);
	struct kiln_err err = {0};
	int r = 0;

	if (pg->authorization) {
		pg->authed = dashboard_auth_check(pg->auth, pg->authorization);
		if (!pg->authed) {
			page_error(pg, 401, "authentication required");
			return;
		}
	}
	if (pg->rt == ROUTE_BUILDS)
		r = render_builds(pg, &err);
	else if (pg->rt == ROUTE_BUILD)
		r = render_build(pg, &err);
	else if (pg->rt == ROUTE_LOG)
		r = render_log(pg, &err);
	else if (pg->rt == ROUTE_EVENTS)
		r = render_events(pg, &err);
	if (r == -ENOENT) {
		page_error(pg, 404, err.msg);
	} else if (r < 0) {
		log_warning("dashboard: %s", err.msg);
		page_error(pg, 500, "the state cannot be read now; see kilnd's log");
	}
}

static void stream_start(struct page *pg);
static void stream_after(struct page *pg);

static void page_after(uv_work_t *w, int status)
{
	struct page *pg = container_of(w, struct page, work);
	struct dashboard *db = pg->db;

	(void)status;
	if (pg->sst != STREAM_NONE) {
		stream_after(pg);
		return;
	}
	if (pg->authorization)
		db->checking--;
	/* accepted under the table still in force: remembered */
	if (pg->authorization && pg->authed && pg->auth == db->auth) {
		memcpy(db->ok[db->next_ok], pg->digest, 32);
		db->next_ok = (db->next_ok + 1) % DASHBOARD_AUTH_CACHE;
		if (db->nok < DASHBOARD_AUTH_CACHE)
			db->nok++;
	}
	if (pg->rt == ROUTE_EVENTS && pg->status == 200 && strcmp(pg->req->method, "HEAD") != 0)
		stream_start(pg);
	else {
		if (pg->rt == ROUTE_EVENTS)
			db->nstreams--; /* counted at the request: not a stream after all */
		page_answer(pg);
	}
}

/* ---- the live log's stream ---- */

static void stream_closed(uv_handle_t *h)
{
	struct page *pg = container_of((uv_timer_t *)h, struct page, timer);
	page_free(pg);
}

static void stream_end(struct page *pg, const char *why)
{
	struct dashboard *db = pg->db;

	log_debug("dashboard: live log of build %" PRId64 " ends: %s", pg->id, why);
	pg->sst = STREAM_DONE;
	http_stream_end(pg->req);
	pg->req = NULL;
	LIST_REMOVE(pg, entry);
	db->nstreams--;
	uv_close((uv_handle_t *)&pg->timer, stream_closed);
}

static void stream_tick(uv_timer_t *t)
{
	struct page *pg = container_of(t, struct page, timer);
	struct dashboard *db = pg->db;
	int r;

	if (pg->req->conn == NULL) {
		stream_end(pg, "the client left");
		return;
	}
	if (pg->gen != db->gen) {
		/* without an end event the browser asks again, as the new
		 * configuration has it */
		stream_end(pg, "the dashboard's users or listeners changed");
		return;
	}
	if (uv_now(db->loop) - pg->sent_ms >= DASHBOARD_KEEPALIVE_MS &&
	    http_stream_write(pg->req, ":\n", 2) == 0) /* a comment line */
		pg->sent_ms = uv_now(db->loop);
	pg->sst = STREAM_READING;
	r = uv_queue_work(db->loop, &pg->work, page_work, page_after);
	if (r < 0)
		stream_end(pg, uv_strerror(r));
}

/* What the worker made goes out; the offset and state move on only once
 * it is written (a slow client gets it again, from where it was). */
static void stream_after(struct page *pg)
{
	struct dashboard *db = pg->db;
	uint64_t wait = DASHBOARD_FOLLOW_MS;
	int r = 0;

	if (pg->status != 200) {
		stream_end(pg, "the build cannot be read");
		return;
	}
	if (pg->body.len > 0)
		r = http_stream_write(pg->req, pg->body.p, pg->body.len);
	if (r == -EPIPE) {
		stream_end(pg, "the client left");
		return;
	}
	/* it would hold its place (and a worker's read each look) for good;
	 * a client that reads again asks again, from where it stopped */
	if (r == -EAGAIN && uv_now(db->loop) - pg->sent_ms >= DASHBOARD_STALL_MS) {
		stream_end(pg, "the client reads nothing");
		return;
	}
	if (r == 0) {
		if (pg->body.len > 0)
			pg->sent_ms = uv_now(db->loop);
		pg->offset = pg->read_end;
		snprintf(pg->state, sizeof(pg->state), "%s", pg->read_state);
		if (pg->ended) {
			stream_end(pg, "the build ended");
			return;
		}
		if (pg->full)
			wait = 0;
	}
	pg->sst = STREAM_WAITING;
	uv_timer_start(&pg->timer, stream_tick, wait, 0);
}

/* The first read is done (and the password checked): the headers go out,
 * then what it read. */
static void stream_start(struct page *pg)
{
	struct dashboard *db = pg->db;

	if (pg->authorization) { /* checked once: the stream is this client's */
		explicit_bzero(pg->authorization, strlen(pg->authorization));
		free(pg->authorization);
		pg->authorization = NULL;
	}
	pg->auth = dashboard_auth_unref(pg->auth);
	buf_puts(&pg->headers, SECURITY_HEADERS NO_STORE "X-Accel-Buffering: no\r\n");
	http_stream_begin(pg->req, 200, pg->ctype, pg->headers.p);
	http_stream_write(pg->req, RETRY_LINE, strlen(RETRY_LINE));
	pg->sst = STREAM_WAITING;
	uv_timer_init(db->loop, &pg->timer);
	LIST_INSERT_HEAD(&db->streams, pg, entry);
	pg->sent_ms = uv_now(db->loop);
	stream_after(pg);
}

/* What the loop renders itself: the pages made of live daemon state. */
static void render_on_loop(struct page *pg)
{
	json_t *st = json_object(), *health = json_object();

	pg->db->ops.status(st, pg->db->arg);
	if (pg->rt == ROUTE_ENGINE) {
		pg->db->ops.health(health, pg->db->arg);
		render_engine(&pg->body, st, health);
	} else {
		render_repos(&pg->body, st);
	}
	json_decref(st);
	json_decref(health);
}

/* Where a stream starts: after the last event a reconnecting client saw
 * (Last-Event-ID, the byte offset it carries), else ?offset=, else the tail. */
static int stream_offset(const struct http_request *req, const struct dashboard_query *q,
			 int64_t *ret, struct kiln_err *err)
{
	const char *last = http_header(req, "last-event-id");

	*ret = q->offset;
	if (last && last[0] && parse_id(last, ret) < 0)
		return kiln_err_set(err, -EINVAL, "Last-Event-ID must be a byte offset");
	return 0;
}

void dashboard_handle(struct http_request *req, void *arg)
{
	struct dashboard *db = arg;
	struct page *pg = xcalloc(1, sizeof(*pg));
	struct kiln_err err = {0};
	const char *authz = http_header(req, "authorization");
	int r;

	pg->db = db;
	pg->req = req;
	pg->gen = db->gen; /* a stream is checked against the users of now */
	pg->status = 200;
	pg->ctype = HTML;
	pg->rt = route_of(req->path, &pg->id);
	if (pg->rt == ROUTE_EVENTS)
		pg->ctype = "text/event-stream; charset=utf-8";
	if (pg->rt == ROUTE_NONE) {
		page_error(pg, 404, "not found");
		page_answer(pg);
		return;
	}
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		buf_puts(&pg->headers, "Allow: GET, HEAD\r\n");
		page_error(pg, 405, "the dashboard is read-only: use GET");
		page_answer(pg);
		return;
	}
	if (dashboard_parse_query(req->query, &pg->q, &err) < 0) {
		page_error(pg, 400, err.msg);
		page_answer(pg);
		return;
	}
	if (db->auth) {
		if (authz == NULL) {
			page_error(pg, 401, "authentication required");
			page_answer(pg);
			return;
		}
		digest_of(authz, pg->digest);
		if (!cached_ok(db, pg->digest) && db->checking >= DASHBOARD_CHECKS_MAX) {
			buf_puts(&pg->headers, "Retry-After: 1\r\n");
			page_error(pg, 503, "too many password checks at once: try again");
			page_answer(pg);
			return;
		}
		if (!cached_ok(db, pg->digest)) {
			pg->auth = dashboard_auth_ref(db->auth);
			pg->authorization = xstrdup(authz);
		}
	}
	if (pg->rt == ROUTE_EVENTS && db->nstreams >= DASHBOARD_STREAMS_MAX) {
		buf_puts(&pg->headers, "Retry-After: 5\r\n");
		page_error(pg, 503, "too many live logs at once: try again");
		page_answer(pg);
		return;
	}
	if (pg->rt == ROUTE_EVENTS && (r = stream_offset(req, &pg->q, &pg->offset, &err)) < 0) {
		page_error(pg, 400, err.msg);
		page_answer(pg);
		return;
	}
	if (pg->rt == ROUTE_ASSET) {
		const struct dashboard_asset *a = &dashboard_assets[pg->id];
		pg->ctype = a->type;
		buf_append(&pg->body, a->data, a->len);
	} else if (pg->rt == ROUTE_REPOS || pg->rt == ROUTE_ENGINE) {
		render_on_loop(pg);
	} else {
		pg->log_path = pg->rt == ROUTE_BUILDS ? NULL : db->ops.log_path(pg->id, db->arg);
	}
	if (pg->authorization == NULL &&
	    (pg->rt == ROUTE_ASSET || pg->rt == ROUTE_REPOS || pg->rt == ROUTE_ENGINE)) {
		page_answer(pg);
		return;
	}
	r = uv_queue_work(db->loop, &pg->work, page_work, page_after);
	if (r < 0) {
		page_error(pg, 503, "busy");
		page_answer(pg);
		return;
	}
	if (pg->authorization)
		db->checking++;
	/* counted now, not at its first read: a burst of requests would all
	 * pass the cap before any of them streams */
	if (pg->rt == ROUTE_EVENTS)
		db->nstreams++;
}
