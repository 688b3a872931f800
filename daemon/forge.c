/* forge.c (report): the commit status and notification requests the outbox
 * sends, and the reading of the answers. GitHub: POST
 * {api}/repos/{owner}/{repo}/statuses/{sha}, Bearer token, states
 * pending/success/failure/error, description <= 140 characters. GitLab: POST
 * {api}/projects/{url-encoded path}/statuses/{sha}, PRIVATE-TOKEN, states
 * pending/running/success/failed/canceled, the context in `name`. Gitea:
 * POST {api}/repos/{owner}/{repo}/statuses/{sha}, "Authorization: token",
 * GitHub's states. Owns nothing past a call. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kiln/common.h"
#include "kiln/forge.h"
#include "kiln/sig.h"

static const char *const provider_names[] = {"github", "gitlab", "gitea"};

int forge_provider_parse(const char *s, enum forge_provider *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(provider_names); i++) {
		if (strcmp(s, provider_names[i]) == 0) {
			*ret = (enum forge_provider)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *forge_provider_str(enum forge_provider p)
{
	return (unsigned)p < ARRAY_SIZE(provider_names) ? provider_names[p] : "unknown";
}

const char *forge_default_api(enum forge_provider p)
{
	switch (p) {
	case FORGE_GITHUB:
		return "https://api.github.com";
	case FORGE_GITLAB:
		return "https://gitlab.com/api/v4";
	default:
		return NULL;
	}
}

char *forge_project_from_url(const char *url)
{
	const char *p = NULL, *scheme = strstr(url, "://");
	size_t len;

	if (scheme) {
		if (strncmp(url, "file://", 7) == 0)
			return NULL;
		p = strchr(scheme + 3, '/'); /* after host[:port] */
	} else if (url[0] != '/' && url[0] != '.' && strchr(url, ':')) {
		p = strchr(url, ':'); /* scp-like user@host:owner/name */
	}
	if (!p)
		return NULL;
	while (*p == '/' || *p == ':')
		p++;
	len = strcspn(p, "?#");
	while (len > 0 && p[len - 1] == '/')
		len--;
	if (len > 4 && strncmp(p + len - 4, ".git", 4) == 0)
		len -= 4;
	if (len == 0 || !memchr(p, '/', len))
		return NULL; /* a project is owner/name at least */
	return xasprintf("%.*s", (int)len, p);
}

const char *forge_state(enum forge_provider p, const char *st, const char *error)
{
	bool gitlab = p == FORGE_GITLAB;
	bool gave_up =
	    error && strncmp(error, STORE_ERROR_GAVE_UP, strlen(STORE_ERROR_GAVE_UP)) == 0;

	if (strcmp(st, "queued") == 0)
		return "pending";
	if (strcmp(st, "running") == 0)
		return gitlab ? "running" : NULL;
	if (strcmp(st, "succeeded") == 0)
		return "success";
	if (strcmp(st, "failed") == 0)
		return gitlab ? "failed" : gave_up ? "error" : "failure";
	if (strcmp(st, "cancelled") == 0 || strcmp(st, "superseded") == 0)
		return gitlab ? "canceled" : "error";
	return NULL;
}

const char *forge_sink_states(enum forge_provider p)
{
	return p == FORGE_GITLAB ? ",queued,running,succeeded,failed,cancelled,superseded,"
				 : ",queued,succeeded,failed,cancelled,superseded,";
}

/* GitHub refuses more than 140 (422); GitLab and Gitea document no limit,
 * and 255 keeps a long error a short status line there. */
unsigned forge_description_max(enum forge_provider p)
{
	return p == FORGE_GITHUB ? 140 : 255;
}

char *forge_cut(char *s, unsigned max)
{
	static const char ellipsis[] = "\xe2\x80\xa6";
	size_t i = 0, keep = 0;
	unsigned chars = 0;

	for (; s[i]; i++) {
		if (((unsigned char)s[i] & 0xc0) == 0x80)
			continue; /* a continuation byte */
		if (chars == max - 1)
			keep = i; /* where "…" goes if the text is longer */
		if (chars++ == max) {
			/* "…" may be longer than what it replaces */
			s = xreallocarray(s, keep + sizeof(ellipsis), 1);
			memcpy(s + keep, ellipsis, sizeof(ellipsis));
			break;
		}
	}
	return s;
}

void forge_request_done(struct forge_request *rq)
{
	free(rq->url);
	free(rq->body);
	/* the headers hold the credential */
	for (size_t i = 0; i < rq->headers.n; i++)
		explicit_bzero(rq->headers.v[i], strlen(rq->headers.v[i]));
	strv_done(&rq->headers);
	memset(rq, 0, sizeof(*rq));
}

/* A JSON string of s: a build's error or a folder's name may hold bytes
 * that are not UTF-8, which JSON cannot carry: those become '?'. */
static json_t *text(const char *s)
{
	json_t *j = json_string(s);
	char *t;

	if (j)
		return j;
	t = xstrdup(s);
	for (unsigned char *p = (unsigned char *)t; *p; p++)
		if (*p >= 0x80)
			*p = '?';
	j = json_string(t);
	free(t);
	return j;
}

/* "kiln/<image folder>", the root's "kiln/." */
static char *context_of(const struct store_outbox_row *row)
{
	return xasprintf("kiln/%s", row->b.path && row->b.path[0] ? row->b.path : ".");
}

static char *description_of(const struct store_outbox_row *row)
{
	const char *st = row->state, *e = row->error && row->error[0] ? row->error : NULL;

	if (strcmp(st, "queued") == 0)
		return xstrdup(row->attempts || row->b.attempts ? "queued again" : "queued");
	if (strcmp(st, "running") == 0)
		return xstrdup("building");
	if (strcmp(st, "succeeded") == 0)
		return xasprintf("built %s", row->b.image ? row->b.image : "");
	if (strcmp(st, "superseded") == 0)
		return xstrdup("superseded by a newer commit");
	if (strcmp(st, "cancelled") == 0)
		return e ? xasprintf("cancelled: %s", e) : xstrdup("cancelled");
	return e ? xstrdup(e) : xstrdup("failed");
}

static void add_header(struct forge_request *rq, const char *name, const char *v)
{
	strv_push(&rq->headers, xasprintf("%s: %s", name, v));
}

/* GitLab's :id is the project's path with every '/' encoded. */
static char *gitlab_id(const char *project)
{
	struct buf b = {0};

	for (const char *p = project; *p; p++) {
		if (isalnum((unsigned char)*p) || strchr("-._~", *p))
			buf_append(&b, p, 1);
		else
			buf_printf(&b, "%%%02X", (unsigned char)*p);
	}
	return buf_steal(&b);
}

static char *dump(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	char *r = xstrdup(s ? s : "{}");

	free(s);
	json_decref(o);
	return r;
}

int forge_status_request(const struct forge_status *fs, const struct store_outbox_row *row,
			 struct forge_request *ret, struct kiln_err *err)
{
	const char *state = forge_state(fs->provider, row->state, row->error);
	char *ctx, *desc, *id = NULL;
	json_t *o;

	if (!state)
		return -ENODATA;
	if (!row->b.commit || strlen(row->b.commit) != STORE_SHA_LEN)
		return kiln_err_set(err, -EINVAL, "build %lld has no commit", (long long)row->b.id);
	memset(ret, 0, sizeof(*ret));
	ctx = context_of(row);
	desc = description_of(row);
	desc = forge_cut(desc, forge_description_max(fs->provider));
	o = json_object();
	json_object_set_new(o, "state", json_string(state));
	json_object_set_new(o, "description", text(desc));
	json_object_set_new(o, fs->provider == FORGE_GITLAB ? "name" : "context", text(ctx));
	if (fs->dashboard_url) {
		char *target = xasprintf("%s/builds/%lld", fs->dashboard_url, (long long)row->b.id);
		json_object_set_new(o, "target_url", json_string(target));
		free(target);
	}
	ret->body = dump(o);
	switch (fs->provider) {
	case FORGE_GITLAB:
		id = gitlab_id(fs->project);
		ret->url = xasprintf("%s/projects/%s/statuses/%s", fs->api_url, id, row->b.commit);
		add_header(ret, "PRIVATE-TOKEN", fs->token);
		break;
	case FORGE_GITEA:
		ret->url =
		    xasprintf("%s/repos/%s/statuses/%s", fs->api_url, fs->project, row->b.commit);
		strv_push(&ret->headers, xasprintf("Authorization: token %s", fs->token));
		add_header(ret, "Accept", "application/json");
		break;
	default:
		ret->url =
		    xasprintf("%s/repos/%s/statuses/%s", fs->api_url, fs->project, row->b.commit);
		strv_push(&ret->headers, xasprintf("Authorization: Bearer %s", fs->token));
		add_header(ret, "Accept", "application/vnd.github+json");
		add_header(ret, "X-GitHub-Api-Version", "2022-11-28");
	}
	add_header(ret, "Content-Type", "application/json");
	add_header(ret, "User-Agent", "kiln/" KILN_VERSION);
	free(id);
	free(ctx);
	free(desc);
	return 0;
}

static json_t *str_or_null(const char *s)
{
	return s && s[0] ? text(s) : json_null();
}

int forge_notify_request(const struct forge_notify *fn, const struct store_outbox_row *row,
			 struct forge_request *ret, struct kiln_err *err)
{
	const struct store_build_row *b = &row->b;
	char short_sha[8], *msg, *log_url = NULL, *delivery;
	int64_t duration =
	    b->started_at && b->finished_at >= b->started_at ? b->finished_at - b->started_at : 0;
	json_t *o;

	(void)err;
	memset(ret, 0, sizeof(*ret));
	snprintf(short_sha, sizeof(short_sha), "%s", b->commit ? b->commit : "");
	if (fn->dashboard_url)
		log_url = xasprintf("%s/builds/%lld", fn->dashboard_url, (long long)b->id);
	msg =
	    xasprintf("kiln: %s %s (%s, %s@%s)%s%s%s%s", b->image ? b->image : b->path, row->state,
		      b->repo, b->branch, short_sha, row->error && row->error[0] ? ": " : "",
		      row->error ? row->error : "", log_url ? " " : "", log_url ? log_url : "");
	o = json_object();
	json_object_set_new(o, "delivery", json_integer(row->id));
	json_object_set_new(o, "build", json_integer(b->id));
	json_object_set_new(o, "repository", str_or_null(b->repo));
	json_object_set_new(o, "branch", str_or_null(b->branch));
	json_object_set_new(o, "commit", str_or_null(b->commit));
	json_object_set_new(o, "image", str_or_null(b->image));
	json_object_set_new(o, "path", text(b->path ? b->path : ""));
	json_object_set_new(o, "state", json_string(row->state));
	json_object_set_new(o, "error", str_or_null(row->error));
	json_object_set_new(o, "duration_seconds", json_integer(duration));
	json_object_set_new(o, "digest", str_or_null(b->digest));
	json_object_set_new(o, "log_url", str_or_null(log_url));
	json_object_set_new(o, "text", text(msg));
	ret->body = dump(o);
	ret->url = xstrdup(fn->url);
	add_header(ret, "Content-Type", "application/json");
	add_header(ret, "User-Agent", "kiln/" KILN_VERSION);
	delivery = xasprintf("%lld", (long long)row->id);
	add_header(ret, "X-Kiln-Delivery", delivery);
	add_header(ret, "X-Kiln-Event", row->state);
	if (fn->secret) {
		unsigned char mac[SIG_SHA256_LEN];
		char hex[2 * SIG_SHA256_LEN + 1];
		sig_hmac_sha256(fn->secret, strlen(fn->secret), ret->body, strlen(ret->body), mac);
		for (size_t i = 0; i < SIG_SHA256_LEN; i++)
			snprintf(hex + 2 * i, 3, "%02x", mac[i]);
		strv_push(&ret->headers, xasprintf("X-Kiln-Signature-256: sha256=%s", hex));
	}
	free(delivery);
	free(log_url);
	free(msg);
	return 0;
}

int forge_retry_after(const char *v, int64_t now, uint64_t *ret_ms)
{
	struct tm tm = {0};
	char *end;
	const char *rest;

	while (*v == ' ')
		v++;
	if (isdigit((unsigned char)*v)) {
		unsigned long long s;
		errno = 0;
		s = strtoull(v, &end, 10);
		if (errno || (*end && *end != ' ') || s > 86400ull * 365 * 100)
			return -EINVAL;
		*ret_ms = s * 1000;
		return 0;
	}
	/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
	rest = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!rest || *rest) {
		return -EINVAL;
	} else {
		int64_t at = (int64_t)timegm(&tm);
		*ret_ms = at > now ? (uint64_t)(at - now) * 1000 : 0;
	}
	return 0;
}

/* "Name: value\r\n" into dst when the header is name. */
static void header_value(const char *data, size_t len, const char *name, char *dst, size_t size)
{
	size_t nl = strlen(name), vl;

	if (len <= nl || strncasecmp(data, name, nl) != 0 || data[nl] != ':')
		return;
	data += nl + 1;
	len -= nl + 1;
	while (len > 0 && (*data == ' ' || *data == '\t'))
		data++, len--;
	while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n' || data[len - 1] == ' '))
		len--;
	vl = len < size - 1 ? len : size - 1;
	memcpy(dst, data, vl);
	dst[vl] = '\0';
	if (memchr(dst, '\0', vl))
		dst[0] = '\0'; /* a NUL inside: not a value */
}

void forge_reply_header(struct forge_reply *rp, const char *line, size_t len)
{
	header_value(line, len, "Retry-After", rp->retry_after, sizeof(rp->retry_after));
	header_value(line, len, "X-RateLimit-Reset", rp->ratelimit_reset,
		     sizeof(rp->ratelimit_reset));
	header_value(line, len, "X-RateLimit-Remaining", rp->ratelimit_remaining,
		     sizeof(rp->ratelimit_remaining));
}

static bool header_number(const char *v, int64_t *ret)
{
	char *end;
	long long n;

	if (!isdigit((unsigned char)v[0]))
		return false;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || *end)
		return false;
	*ret = n;
	return true;
}

enum forge_verdict forge_verdict(const struct forge_reply *rp, int64_t now, uint64_t *ret_wait_ms)
{
	int64_t reset, remaining;
	bool said = rp->retry_after[0] && forge_retry_after(rp->retry_after, now, ret_wait_ms) == 0;
	bool limited =
	    said || (header_number(rp->ratelimit_remaining, &remaining) && remaining == 0);

	if (!said)
		*ret_wait_ms = 0;
	if (!said && limited && header_number(rp->ratelimit_reset, &reset))
		*ret_wait_ms = reset <= now ? 0
			       : reset - now > (int64_t)(FORGE_WAIT_MAX_MS / 1000)
				   ? FORGE_WAIT_MAX_MS
				   : (uint64_t)(reset - now) * 1000;
	/* a forge's word, but not a sink stopped for days */
	if (*ret_wait_ms > FORGE_WAIT_MAX_MS)
		*ret_wait_ms = FORGE_WAIT_MAX_MS;
	if (rp->status >= 200 && rp->status < 300)
		return FORGE_SENT;
	if (rp->status == 0 || rp->status >= 500 || rp->status == 408 || rp->status == 429)
		return FORGE_RETRY;
	/* GitHub's rate limits answer 403 (secondary: with Retry-After) */
	if (rp->status == 403 && limited)
		return FORGE_RETRY;
	return FORGE_REFUSED;
}
