/* job.c (build -> push): the state machine of one image's build. Each state starts one
 * engine call; its done callback decides the next state. The job owns its
 * spec, its context producer and its one call in flight. */
#include <git2.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <sys/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/auth.h"
#include "kiln/buf.h"
#include "kiln/context.h"
#include "kiln/err.h"
#include "kiln/job.h"
#include "kiln/log.h"
#include "kiln/path.h"
#include "kiln/redact.h"
#include "kiln/repo.h"
#include "kiln/store.h"

struct job {
	uv_loop_t *loop;
	struct docker *d;
	struct job_spec spec;
	job_log_cb *log;
	job_done_cb *done;
	void *arg;
	enum job_state state;
	enum docker_builder builder; /* the one this build uses (never AUTO once it starts) */
	struct job_result res;
	struct job_reply reply;	  /* the build's or the current push's stream */
	struct docker_call *call; /* in flight, or NULL */
	struct context *cx;
	char *dockerfile_in_tar;
	char *podman_secrets; /* the `secrets` query (names, never values), or NULL */
	char *ref;	      /* <registry>/<name>:<version> */
	char *repo_ref;	      /* <registry>/<name> */
	char container[80];   /* the smoke test's, "" when none */
	int exit_code;
	size_t push_index; /* 0: the version, then the extra tags */
	bool cancelled, finished;
	struct session *session;	       /* the BuildKit build's, while it runs */
	struct session_h2_stats session_stats; /* what the engine asked it */
	struct kiln_err cx_err;		       /* the context producer's failure */
	bool cx_failed;
	uv_timer_t timer; /* the smoke test's time limit */
	bool timer_closed;
};

static void next_state(struct job *j);

const char *job_state_str(enum job_state s)
{
	static const char *const names[] = {"check", "build", "test", "push", "cleanup", "done"};
	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "?";
}

static void say(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct job *j, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	j->log(j, s, strlen(s), j->arg);
	free(s);
}

/* Engine output may hold several lines, or end in one newline. */
static void show_text(const char *s, job_show_cb *show, void *arg)
{
	while (*s) {
		size_t n = strcspn(s, "\n");
		if (n > 0 || s[n] == '\0')
			show(s, n, arg);
		s += n;
		if (*s == '\n')
			s++;
	}
}

static void show_line(const char *line, size_t len, void *arg)
{
	struct job *j = arg;

	j->log(j, line, len, j->arg);
}

static void say_text(struct job *j, const char *s)
{
	show_text(s, show_line, j);
}

static void fail(struct job *j, int code, bool transient, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct job *j, int code, bool transient, const char *fmt, ...)
{
	va_list ap;

	if (j->res.code < 0)
		return; /* the first failure is the one that counts */
	va_start(ap, fmt);
	vsnprintf(j->res.error, sizeof(j->res.error), fmt, ap);
	va_end(ap);
	j->res.code = code;
	j->res.transient = transient;
}

static void set_state(struct job *j, enum job_state s)
{
	log_debug("job %" PRId64 " %s: %s -> %s", j->spec.id, j->ref, job_state_str(j->state),
		  job_state_str(s));
	j->state = s;
}

/* ---- the BuildKit session ---- */

static void end_session(struct job *j)
{
	if (!j->session)
		return;
	j->session_stats = *session_stats(j->session);
	session_stop(j->session);
	j->session = NULL;
}

static void session_dead(struct session *se, int code, const char *why, void *arg)
{
	struct job *j = arg;

	j->session_stats = *session_stats(se);
	j->session = NULL;
	if (j->state != JOB_BUILD || !j->call)
		return;
	/* the engine or the connection failed, not the Dockerfile: retry */
	fail(j, code, true, "the BuildKit session with the engine %s ended mid-build: %s",
	     docker_host(j->d), why);
	docker_call_abort(j->call);
}

/* A pull the registry refused: which credentials BuildKit got from kiln. */
static void explain_refused_pull(struct job *j)
{
	const struct session_h2_stats *st = &j->session_stats;
	size_t n = strlen(j->res.error);

	if (j->res.code >= 0 ||
	    (!strstr(j->res.error, "401 Unauthorized") && !strstr(j->res.error, "403 Forbidden")))
		return;
	if (st->cred_hosts[0])
		snprintf(j->res.error + n, sizeof(j->res.error) - n,
			 " (the registry refused the credentials kiln has for %s)", st->cred_hosts);
	else if (st->anon_hosts[0])
		snprintf(j->res.error + n, sizeof(j->res.error) - n,
			 " (kiln has no credentials for %s: add them to kilnd.yaml's registries or "
			 "the service user's ~/.docker/config.json)",
			 st->anon_hosts);
}

/* A build that asked for a secret it may not see fails with the engine's
 * "secret X not found": say what to change instead. A build whose
 * Dockerfile mounts it without required=true goes on without it. */
static void explain_missing_secret(struct job *j)
{
	const char *id = j->session_stats.missing, *p;
	char podman_id[128] = "";

	/* buildah (Podman) says "secret required but no secret with id X found" */
	if (!id[0] && j->res.code < 0 && (p = strstr(j->res.error, "no secret with id ")) != NULL &&
	    sscanf(p + strlen("no secret with id "), "%127[A-Za-z0-9._-]", podman_id) == 1)
		id = podman_id;
	if (!id[0])
		return;
	if (j->res.code >= 0) {
		say(j,
		    "kiln: warning: the Dockerfile asked for secret '%s', which this build may not "
		    "see (%s does not grant it); the RUN went on without it",
		    id, j->spec.manifest_file);
		return;
	}
	snprintf(j->res.error, sizeof(j->res.error),
		 "build failed: the Dockerfile mounts secret '%s', which this build may not see: "
		 "grant it in %s (secrets: [%s]) and define it for the repository (kilnd.yaml "
		 "repositories[].secrets, or kiln build --secret id=%s,src=FILE)",
		 id, j->spec.manifest_file, id, id);
	j->res.transient = false;
}

static void finish_cb(uv_timer_t *t)
{
	struct job *j = t->data;

	j->done(j, j->arg);
}

/* The owner hears of the end from the loop, never from inside job_start or
 * one of its own calls into the job. */
static void finish(struct job *j)
{
	if (j->finished)
		return;
	j->finished = true;
	end_session(j);
	set_state(j, JOB_DONE);
	if (j->cancelled && j->res.code == 0)
		fail(j, -ECANCELED, false, "cancelled");
	j->cx = context_free(j->cx);
	uv_timer_stop(&j->timer);
	uv_timer_start(&j->timer, finish_cb, 0, 0);
}

static struct docker_call *start_call(struct job *j, const struct docker_request *rq,
				      docker_done_cb *done)
{
	j->call = docker_call_start(j->d, rq, done, j);
	return j->call;
}

/* A failed call: the engine's own words, and whether to try again. */
static void call_failed(struct job *j, struct docker_call *c, const char *what)
{
	if (docker_call_result(c) == -ECANCELED && j->cancelled)
		return;
	fail(j, docker_call_result(c) < 0 ? docker_call_result(c) : -EIO, docker_call_transient(c),
	     "%s: %s", what, docker_call_error(c));
}

/* ---- check ---- */

enum check_answer { CHECK_PRESENT, CHECK_ABSENT, CHECK_UNKNOWN };

/* What the registry said about the version's tag, from either engine. */
static void check_concluded(struct job *j, enum check_answer a, bool transient, const char *why)
{
	if (a == CHECK_PRESENT) {
		if (j->spec.pushed_before) {
			say(j,
			    "kiln: %s is in the registry, pushed by kiln from this commit; "
			    "building it again",
			    j->ref);
		} else {
			fail(j, -EEXIST, false,
			     "%s already exists in the registry and tags are immutable: bump "
			     "`version` in %s (or set overwrite_tags: true for the repository)",
			     j->ref, j->spec.manifest_file);
		}
	} else if (a == CHECK_ABSENT) {
		say(j, "kiln: %s is not in the registry yet", j->ref);
	} else if (transient) {
		/* pushing without knowing could overwrite a version: retry */
		fail(j, -EAGAIN, true,
		     "cannot tell whether %s already exists in the registry (tags are "
		     "immutable): %s",
		     j->ref, why);
	} else {
		/* a refusal ("no basic auth credentials", a 401 that some registries
		 * give for a repository that does not exist yet): the push decides */
		say(j, "kiln: the registry would not say whether %s exists (%s); going on", j->ref,
		    why);
	}
	next_state(j);
}

static void check_done(struct docker_call *c, void *arg)
{
	struct job *j = arg;
	long st = docker_call_status(c);

	j->call = NULL;
	if (docker_call_result(c) < 0) {
		call_failed(j, c, "asking the engine for the registry's tags");
		next_state(j);
	} else {
		check_concluded(j,
				st == 200   ? CHECK_PRESENT
				: st == 404 ? CHECK_ABSENT
					    : CHECK_UNKNOWN,
				docker_call_transient(c) ||
				    docker_error_transient(docker_call_error(c)),
				docker_call_error(c));
	}
}

/* Podman has no GET /distribution (podman 4.3 to 5.x answer it "unsupported"),
 * so the tag is pulled: a tag that is not there costs one manifest request;
 * one that is (a rebuild, or a refused overwrite) is downloaded. The pull's
 * error line tells an absent tag from a refusal. */
static void pull_check_line(struct docker_call *c, const char *line, size_t len, void *arg)
{
	struct job *j = arg;
	json_t *o = json_loadb(line, len, 0, NULL);
	const char *e = json_string_value(json_object_get(o, "error"));

	(void)c;
	if (e && !j->reply.error[0])
		snprintf(j->reply.error, sizeof(j->reply.error), "%s", e);
	json_decref(o);
}

static void pull_check_done(struct docker_call *c, void *arg)
{
	struct job *j = arg;
	const char *e = j->reply.error;

	j->call = NULL;
	if (docker_call_result(c) < 0) {
		call_failed(j, c, "asking the engine for the registry's tags");
		next_state(j);
	} else if (docker_call_status(c) != 200) {
		check_concluded(j, CHECK_UNKNOWN, docker_call_transient(c), docker_call_error(c));
	} else if (!e[0]) {
		check_concluded(j, CHECK_PRESENT, false, "");
	} else if (strcasestr(e, "manifest unknown") || strcasestr(e, "name unknown")) {
		check_concluded(j, CHECK_ABSENT, false, e);
	} else {
		check_concluded(j, CHECK_UNKNOWN, docker_error_transient(e), e);
	}
}

static void start_check(struct job *j)
{
	char *path;
	struct docker_request rq = {.registry_auth = j->spec.registry_auth};

	if (docker_engine_kind(j->d) == DOCKER_ENGINE_PODMAN) {
		char *repo = docker_escape(j->repo_ref), *tag = docker_escape(j->spec.m.version);
		path = xasprintf("/images/create?fromImage=%s&tag=%s", repo, tag);
		free(repo);
		free(tag);
		rq.method = "POST";
		rq.line = pull_check_line;
		j->reply = (struct job_reply){.kind = JOB_STREAM_PUSH};
		rq.path = path;
		start_call(j, &rq, pull_check_done);
	} else {
		path = xasprintf("/distribution/%s/json", j->ref);
		rq.method = "GET";
		rq.path = path;
		start_call(j, &rq, check_done);
	}
	free(path);
}

/* ---- build ---- */

static void json_kv(json_t *o, const struct kv *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, v[i].key, json_string(v[i].value));
}

static void add_query(struct buf *q, const char *key, const char *value)
{
	char *e = docker_escape(value);
	buf_printf(q, "%c%s=%s", q->len ? '&' : '?', key, e);
	free(e);
}

static void add_query_json(struct buf *q, const char *key, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	add_query(q, key, s);
	free(s);
	json_decref(o);
}

/* ---- the progress streams ---- */

/* The digest in a push's closing status line, as the docker CLI prints it. */
static void digest_from_status(const char *s, char *dst, size_t size)
{
	const char *p = strstr(s, ": digest: sha256:");
	size_t n;

	if (!p)
		return;
	p += strlen(": digest: ");
	n = 7 + strspn(p + 7, "0123456789abcdef");
	if (n != 7 + 64 || n >= size)
		return;
	memcpy(dst, p, n);
	dst[n] = '\0';
}

/* BuildKit's objects: the trace, and the image id, which only
 * moby.image.id carries (never a "Successfully tagged" line, gone in 24). */
static void buildkit_line(struct job_reply *rp, json_t *o, job_show_cb *show, void *arg)
{
	const char *id = json_string_value(json_object_get(o, "id"));
	json_t *aux = json_object_get(o, "aux");
	const char *s;

	if (!id || !aux)
		return;
	if (strcmp(id, "moby.buildkit.trace") == 0 && (s = json_string_value(aux)) && rp->trace) {
		/* a malformed message is skipped: the build's result does not
		 * depend on its progress */
		bktrace_feed(rp->trace, s, json_string_length(aux), show, arg);
		return;
	}
	if (strcmp(id, "moby.image.id") == 0 &&
	    (s = json_string_value(json_object_get(aux, "ID"))) != NULL)
		snprintf(rp->id, sizeof(rp->id), "%s", s);
}

bool job_reply_line(struct job_reply *rp, const char *line, size_t len, job_show_cb *show,
		    void *arg)
{
	json_t *o = json_loadb(line, len, 0, NULL), *v;
	const char *s, *id_key = rp->kind == JOB_STREAM_PUSH ? "Digest" : "ID";
	bool failed = false;

	if (!json_is_object(o)) {
		/* a builder's plain lines; a push says nothing worth it */
		if (rp->kind != JOB_STREAM_PUSH)
			buf_line_printf(show, arg, "%.*s", (int)len, line);
		json_decref(o);
		return false;
	}
	if (rp->kind != JOB_STREAM_PUSH && (s = json_string_value(json_object_get(o, "stream"))))
		show_text(s, show, arg);
	if (rp->kind == JOB_STREAM_BUILDKIT) {
		buildkit_line(rp, o, show, arg);
		goto error;
	}
	if ((s = json_string_value(json_object_get(o, "status"))) != NULL) {
		const char *id = json_string_value(json_object_get(o, "id"));
		/* progress bars repeat: only the lines that say something new */
		v = json_object_get(o, "progressDetail");
		if (!v || json_object_size(v) == 0)
			buf_line_printf(show, arg, "%s%s%s", id ? id : "", id ? ": " : "", s);
		/* Podman's push has no aux line: "1: digest: sha256:... size: 737" */
		if (rp->kind == JOB_STREAM_PUSH && !rp->id[0])
			digest_from_status(s, rp->id, sizeof(rp->id));
	}
	if ((v = json_object_get(o, "aux")) && (s = json_string_value(json_object_get(v, id_key))))
		snprintf(rp->id, sizeof(rp->id), "%s", s);
error:
	if ((s = json_string_value(json_object_get(o, "error"))) != NULL) {
		show_text(s, show, arg);
		snprintf(rp->error, sizeof(rp->error), "%s", s);
		failed = true;
	}
	json_decref(o);
	return failed;
}

/* An engine started with --bridge=none (as kiln's tests start theirs) has no
 * network for BuildKit's RUN steps, which the classic builder did without. */
#define NO_BRIDGE_MARK "network bridge not found"
#define NO_BRIDGE_HINT                                                                             \
	"the engine has no bridge network: set `network: none` in the manifest (or "               \
	"builds.network in kilnd.yaml), or give the engine a bridge"

/* A failed BuildKit build: the failing step and its last output, which the
 * engine's final error line leaves out. */
static void buildkit_failed(struct job *j)
{
	char step[sizeof(j->res.error)];
	const char *what = j->reply.error;

	bktrace_flush(j->reply.trace, show_line, j);
	if (bktrace_failure(j->reply.trace, step, sizeof(step)))
		what = step;
	/* transient or not by the engine's words only: the step's output is
	 * the Dockerfile's business ("connection refused" from its curl) */
	if (strstr(what, NO_BRIDGE_MARK))
		fail(j, -EIO, false, "build failed: %s (%s)", NO_BRIDGE_HINT, what);
	else
		fail(j, -EIO, docker_error_transient(j->reply.error), "build failed: %s", what);
}

static void build_line(struct docker_call *c, const char *line, size_t len, void *arg)
{
	struct job *j = arg;

	(void)c;
	if (job_reply_line(&j->reply, line, len, show_line, j)) {
		if (j->reply.kind == JOB_STREAM_BUILDKIT)
			buildkit_failed(j);
		else
			fail(j, -EIO, docker_error_transient(j->reply.error), "build failed: %s",
			     j->reply.error);
	}
	snprintf(j->res.image_id, sizeof(j->res.image_id), "%s", j->reply.id);
}

static ssize_t build_body(struct docker_call *c, char *buf, size_t size, void *arg)
{
	struct job *j = arg;
	ssize_t n;

	(void)c;
	n = context_read(j->cx, buf, size, &j->cx_err);
	if (n < 0 && n != -EAGAIN)
		j->cx_failed = true;
	return n;
}

static void context_ready(struct context *cx, void *arg)
{
	struct job *j = arg;

	(void)cx;
	if (j->call)
		docker_call_resume(j->call);
}

static void build_done(struct docker_call *c, void *arg)
{
	struct job *j = arg;

	j->call = NULL;
	if (j->reply.trace) {
		bktrace_flush(j->reply.trace, show_line, j);
		j->reply.trace = bktrace_free(j->reply.trace);
	}
	if (j->session) {
		end_session(j);
		/* which registries BuildKit asked credentials for: the one place a
		 * pull's authentication shows (names only, never a value) */
		if (j->session_stats.cred_hosts[0])
			say(j, "kiln: the BuildKit session gave credentials for: %s",
			    j->session_stats.cred_hosts);
		if (j->session_stats.anon_hosts[0])
			say(j, "kiln: the BuildKit session had no credentials for: %s",
			    j->session_stats.anon_hosts);
	}
	if (j->cx_failed) {
		fail(j, j->cx_err.code ? j->cx_err.code : -EIO, false, "build context: %s",
		     j->cx_err.msg);
	} else if (docker_call_result(c) < 0) {
		/* an error line, then a broken connection: the engine went away
		 * mid-build, and the error was its, not the Dockerfile's */
		if (j->res.code < 0 && docker_call_transient(c))
			j->res.transient = true;
		call_failed(j, c, "build");
	} else if (docker_call_status(c) != 200) {
		/* errors before the stream: a bad Dockerfile name, a bad parameter */
		fail(j, -EIO, docker_call_transient(c), "build: %s", docker_call_error(c));
	} else if (j->res.code == 0 && !j->res.image_id[0]) {
		fail(j, -EPROTO, true, "build: the engine's reply ended without an image id");
	}
	explain_missing_secret(j);
	explain_refused_pull(j);
	if (j->res.code == 0)
		say(j, "kiln: built %s (%s); context %" PRIu64 " bytes in %u entries", j->ref,
		    j->res.image_id, context_bytes(j->cx), context_files(j->cx));
	j->cx = context_free(j->cx);
	next_state(j);
}

/* The query both builders share: tags, Dockerfile, build args, labels
 * (with the OCI ones), target, platform, network, pull, nocache. */
static void common_query(struct job *j, struct buf *q)
{
	const struct manifest *m = &j->spec.m;
	json_t *labels = json_object();
	char created[32];
	time_t now = time(NULL);
	struct tm tm;

	add_query(q, "t", j->ref);
	for (size_t i = 0; i < m->ntags; i++) {
		char *t = manifest_ref(m, m->tags[i]);
		add_query(q, "t", t);
		free(t);
	}
	add_query(q, "dockerfile", j->dockerfile_in_tar);
	if (m->nbuild_args > 0) {
		json_t *a = json_object();
		json_kv(a, m->build_args, m->nbuild_args);
		add_query_json(q, "buildargs", a);
	}
	json_kv(labels, m->labels, m->nlabels);
	gmtime_r(&now, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(labels, "org.opencontainers.image.revision",
			    json_string(j->spec.commit));
	if (j->spec.source_url)
		json_object_set_new(labels, "org.opencontainers.image.source",
				    json_string(j->spec.source_url));
	json_object_set_new(labels, "org.opencontainers.image.created", json_string(created));
	add_query_json(q, "labels", labels);
	if (m->target)
		add_query(q, "target", m->target);
	if (m->platform)
		add_query(q, "platform", m->platform);
	if (j->spec.network)
		add_query(q, "networkmode", j->spec.network);
	if (j->spec.pull)
		add_query(q, "pull", "1");
	if (j->spec.no_cache)
		add_query(q, "nocache", "1");
}

/* The classic builder: its stream is documented, closing the connection
 * cancels it, and forcerm leaves no container behind a failed step. */
static void classic_query(struct job *j, struct buf *q)
{
	if (j->podman_secrets)
		add_query(q, "secrets", j->podman_secrets);
	add_query(q, "version", "1");
	add_query(q, "rm", "1");
	add_query(q, "forcerm", "1");
}

/* BuildKit with the context tar as the body (no session: the engine serves
 * the body to BuildKit). Closing the connection cancels the build on 20.10
 * as on later engines; rm/forcerm mean nothing to it. */
static void buildkit_query(struct job *j, struct buf *q)
{
	add_query(q, "version", "2");
	if (j->session)
		add_query(q, "session", session_id(j->session));
}

/* "/build?..." for the builder chosen: the one place the query is made. */
static char *build_path(struct job *j)
{
	struct buf q = {0};
	char *path;

	common_query(j, &q);
	if (j->builder == DOCKER_BUILDER_BUILDKIT)
		buildkit_query(j, &q);
	else
		classic_query(j, &q);
	path = xasprintf("/build%s", q.p);
	buf_done(&q);
	return path;
}

/* Podman takes build secrets from the context tar: each granted secret goes
 * in under a random name and `secrets` (["id=ID,src=NAME", ...]) says whose
 * it is. Podman moves those files out of the context directory before the
 * build starts (pkg/api/handlers/compat/images_build.go, 4.3.1 to 5.x), so
 * no COPY or ADD sees them; they are deleted with the build's directory. */
static void podman_secrets(struct job *j, struct context_spec *cs)
{
	const struct session_data *sd = &j->spec.session;
	struct context_file *f = xcalloc(sd->nsecrets, sizeof(*f));
	json_t *list = json_array();
	unsigned char rnd[12];

	for (size_t i = 0; i < sd->nsecrets; i++) {
		char hex[2 * sizeof(rnd) + 1], *name, *opt;
		/* unguessable is enough (and the index keeps them apart): a
		 * short read leaves zeros, not a failed build */
		if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
			memset(rnd, 0, sizeof(rnd));
		for (size_t k = 0; k < sizeof(rnd); k++)
			snprintf(hex + 2 * k, 3, "%02x", rnd[k]);
		name = xasprintf(".kiln-secret-%s-%zu", hex, i);
		opt = xasprintf("id=%s,src=%s", sd->secrets[i].id, name);
		json_array_append_new(list, json_string(opt));
		free(opt);
		f[i] = (struct context_file){
		    .name = name, .data = sd->secrets[i].data, .len = sd->secrets[i].len};
	}
	free(j->podman_secrets);
	j->podman_secrets = json_dumps(list, JSON_COMPACT);
	json_decref(list);
	cs->extra = f;
	cs->nextra = sd->nsecrets;
}

static void podman_secrets_done(struct context_spec *cs)
{
	for (size_t i = 0; i < cs->nextra; i++)
		free((void *)cs->extra[i].name);
	free((void *)cs->extra);
	cs->extra = NULL;
	cs->nextra = 0;
}

static void start_build(struct job *j);

static void probe_done(struct docker_call *c, void *arg)
{
	struct job *j = arg;

	j->call = NULL;
	/* the reply itself does not matter: the call negotiated the version
	 * (an engine without /version still answered /_ping) */
	if (docker_call_result(c) < 0) {
		call_failed(j, c, "asking the engine its version");
		next_state(j);
		return;
	}
	j->spec.builder = docker_builder_auto(j->d); /* not AUTO: no second probe */
	start_build(j);
}

static void start_build(struct job *j)
{
	const struct manifest *m = &j->spec.m;
	struct context_spec cs = {.repo_path = j->spec.repo_path,
				  .commit = j->spec.commit,
				  .dir = m->context,
				  .dockerfile = m->dockerfile};
	struct docker_request rq = {.method = "POST",
				    .content_type = "application/x-tar",
				    .body = build_body,
				    .line = build_line,
				    .registry_config = j->spec.registry_config};
	char *path;
	int r;

	j->builder = j->spec.builder;
	if (j->builder == DOCKER_BUILDER_AUTO) {
		if (!docker_api_version(j->d)) {
			/* auto needs the engine's version: any versioned call
			 * negotiates it */
			struct docker_request v = {.method = "GET", .path = "/version"};
			start_call(j, &v, probe_done);
			return;
		}
		j->builder = docker_builder_auto(j->d);
	}
	if (j->builder == DOCKER_BUILDER_BUILDKIT &&
	    docker_engine_kind(j->d) == DOCKER_ENGINE_PODMAN) {
		/* it would build with buildah and never send moby.image.id */
		fail(j, -EOPNOTSUPP, false,
		     "builder: buildkit asked for, but the engine is %s, which has no BuildKit: "
		     "set builder: auto or classic (Podman builds with buildah, which runs "
		     "RUN --mount itself)",
		     docker_engine_str(j->d));
		next_state(j);
		return;
	}
	snprintf(j->res.builder, sizeof(j->res.builder), "%s", docker_builder_str(j->builder));
	if (j->builder != DOCKER_BUILDER_BUILDKIT && m->nsecrets > 0 &&
	    docker_engine_kind(j->d) != DOCKER_ENGINE_PODMAN) {
		fail(j, -EINVAL, false,
		     "%s grants secrets, which only BuildKit builds can mount; this build uses the "
		     "classic builder (set builder: buildkit, or use an engine with API >= %s)",
		     j->spec.manifest_file, DOCKER_BUILDKIT_API_MIN);
		next_state(j);
		return;
	}
	/* one session per BuildKit build: registry credentials for its pulls,
	 * the granted secrets; the engine waits for it by id */
	if (j->builder == DOCKER_BUILDER_BUILDKIT) {
		struct kiln_err e = {0};
		r = session_start(j->loop, j->d, &j->spec.session, session_dead, j, &j->session,
				  &e);
		if (r < 0) {
			fail(j, r, true, "opening the BuildKit session: %s", e.msg);
			next_state(j);
			return;
		}
	}
	if (docker_engine_kind(j->d) == DOCKER_ENGINE_PODMAN && j->spec.session.nsecrets > 0)
		podman_secrets(j, &cs);
	r = context_start(j->loop, &cs, context_ready, j, &j->cx, &j->dockerfile_in_tar,
			  &j->cx_err);
	podman_secrets_done(&cs);
	if (r < 0) {
		fail(j, r, true, "build context: %s", j->cx_err.msg);
		next_state(j);
		return;
	}
	path = build_path(j);
	rq.path = path;
	j->reply = (struct job_reply){.kind = JOB_STREAM_BUILD};
	if (j->builder == DOCKER_BUILDER_BUILDKIT)
		j->reply = (struct job_reply){.kind = JOB_STREAM_BUILDKIT, .trace = bktrace_new()};
	say(j,
	    "kiln: building %s from %s at %.12s with %s on %s (context %s, Dockerfile %s%s%s%s%s)",
	    j->ref, path_display(j->spec.path), j->spec.commit, j->res.builder,
	    docker_engine_str(j->d), path_display(m->context), m->dockerfile,
	    j->spec.network ? ", network " : "", j->spec.network ? j->spec.network : "",
	    j->spec.pull ? ", pulling base images" : "",
	    j->spec.no_cache ? ", no build cache" : "");
	start_call(j, &rq, build_done);
	free(path);
}

/* ---- smoke test ---- */

static void test_removed(struct docker_call *c, void *arg)
{
	struct job *j = arg;

	j->call = NULL;
	if (docker_call_result(c) < 0 ||
	    (docker_call_status(c) >= 300 && docker_call_status(c) != 404))
		say(j, "kiln: could not remove test container %.12s: %s", j->container,
		    docker_call_error(c));
	j->container[0] = '\0';
	next_state(j);
}

static void remove_container(struct job *j)
{
	char *path = xasprintf("/containers/%s?force=1&v=1", j->container);
	struct docker_request rq = {.method = "DELETE", .path = path};

	set_state(j, JOB_CLEANUP);
	/* not j->call's abort: the removal must run even after a cancel */
	j->call = docker_call_start(j->d, &rq, test_removed, j);
	free(path);
}

static void test_logs_done(struct docker_call *c, void *arg)
{
	struct job *j = arg;
	size_t len;
	const char *p = docker_call_reply(c, &len);
	struct buf text = {0};

	j->call = NULL;
	if (docker_call_result(c) == 0 && docker_call_status(c) == 200) {
		docker_demux_logs(p, len, &text);
		if (text.len)
			say_text(j, text.p);
	}
	buf_done(&text);
	if (j->exit_code != 0)
		fail(j, -EIO, false, "smoke test failed: exit code %d; nothing pushed",
		     j->exit_code);
	else
		say(j, "kiln: smoke test passed");
	remove_container(j);
}

static void test_wait_done(struct docker_call *c, void *arg)
{
	struct job *j = arg;
	json_t *o;
	char *path;
	struct docker_request rq = {.method = "GET"};

	j->call = NULL;
	uv_timer_stop(&j->timer);
	if (docker_call_result(c) < 0 || docker_call_status(c) != 200) {
		call_failed(j, c, "waiting for the smoke test");
		remove_container(j);
		return;
	}
	o = json_loads(docker_call_reply(c, NULL), 0, NULL);
	if (!json_is_integer(json_object_get(o, "StatusCode"))) {
		json_decref(o);
		fail(j, -EPROTO, true,
		     "waiting for the smoke test: no StatusCode in the engine's reply");
		remove_container(j);
		return;
	}
	j->exit_code = (int)json_integer_value(json_object_get(o, "StatusCode"));
	json_decref(o);
	path = xasprintf("/containers/%s/logs?stdout=1&stderr=1", j->container);
	rq.path = path;
	start_call(j, &rq, test_logs_done);
	free(path);
}

static void test_timeout(uv_timer_t *t)
{
	struct job *j = t->data;

	fail(j, -ETIMEDOUT, false, "smoke test did not finish within %" PRIu64 " s",
	     j->spec.test_timeout_ms / 1000);
	if (j->call)
		docker_call_abort(j->call);
}

static void test_started(struct docker_call *c, void *arg)
{
	struct job *j = arg;
	char *path;
	struct docker_request rq = {.method = "POST"};

	j->call = NULL;
	if (docker_call_result(c) < 0 || docker_call_status(c) >= 300) {
		call_failed(j, c, "starting the smoke test");
		remove_container(j);
		return;
	}
	/* not-running answers at once for a container that already exited */
	path = xasprintf("/containers/%s/wait?condition=not-running", j->container);
	rq.path = path;
	if (j->spec.test_timeout_ms)
		uv_timer_start(&j->timer, test_timeout, j->spec.test_timeout_ms, 0);
	start_call(j, &rq, test_wait_done);
	free(path);
}

static void test_created(struct docker_call *c, void *arg)
{
	struct job *j = arg;
	json_t *o;
	const char *id;
	char *path;
	struct docker_request rq = {.method = "POST"};

	j->call = NULL;
	if (docker_call_result(c) < 0 || docker_call_status(c) != 201) {
		call_failed(j, c, "creating the smoke test container");
		next_state(j);
		return;
	}
	o = json_loads(docker_call_reply(c, NULL), 0, NULL);
	id = json_string_value(json_object_get(o, "Id"));
	snprintf(j->container, sizeof(j->container), "%s", id ? id : "");
	json_decref(o);
	if (!j->container[0]) {
		fail(j, -EPROTO, true, "creating the smoke test container: no id in the reply");
		next_state(j);
		return;
	}
	if (j->cancelled) {
		remove_container(j);
		return;
	}
	path = xasprintf("/containers/%s/start", j->container);
	rq.path = path;
	start_call(j, &rq, test_started);
	free(path);
}

static void start_test(struct job *j)
{
	json_t *body = json_object(), *cmd = json_array(), *labels = json_object();
	char *s, *id = xasprintf("%" PRId64, j->spec.id);
	struct docker_request rq = {.method = "POST", .path = "/containers/create"};

	for (size_t i = 0; i < j->spec.m.ntest_command; i++)
		json_array_append_new(cmd, json_string(j->spec.m.test_command[i]));
	json_object_set_new(body, "Image", json_string(j->res.image_id));
	json_object_set_new(body, "Cmd", cmd);
	if (j->spec.id)
		json_object_set_new(labels, "org.kiln.build", json_string(id));
	json_object_set_new(labels, "org.kiln.image", json_string(j->ref));
	json_object_set_new(body, "Labels", labels);
	json_object_set_new(body, "HostConfig", json_pack("{s:s}", "NetworkMode", "none"));
	s = json_dumps(body, JSON_COMPACT);
	rq.json = s;
	say(j, "kiln: smoke test: %s", s);
	start_call(j, &rq, test_created);
	free(s);
	free(id);
	json_decref(body);
}

/* ---- push ---- */

static const char *push_tag(const struct job *j)
{
	return j->push_index == 0 ? j->spec.m.version : j->spec.m.tags[j->push_index - 1];
}

static void push_line(struct docker_call *c, const char *line, size_t len, void *arg)
{
	struct job *j = arg;

	(void)c;
	if (job_reply_line(&j->reply, line, len, show_line, j))
		fail(j, -EIO, docker_error_transient(j->reply.error), "push of %s:%s failed: %s",
		     j->repo_ref, push_tag(j), j->reply.error);
	if (j->push_index == 0)
		snprintf(j->res.digest, sizeof(j->res.digest), "%s", j->reply.id);
}

static void push_done(struct docker_call *c, void *arg)
{
	struct job *j = arg;

	j->call = NULL;
	if (docker_call_result(c) < 0)
		call_failed(j, c, "push");
	else if (docker_call_status(c) != 200)
		fail(j, -EIO, docker_call_transient(c), "push of %s:%s: %s", j->repo_ref,
		     push_tag(j), docker_call_error(c));
	else if (j->res.code == 0)
		say(j, "kiln: pushed %s:%s", j->repo_ref, push_tag(j));
	if (j->res.code == 0 && j->push_index == 0 && !j->res.digest[0])
		fail(j, -EPROTO, true, "push of %s: the engine reported no digest", j->ref);
	j->push_index++;
	next_state(j);
}

static void start_push(struct job *j)
{
	char *e = docker_escape(push_tag(j));
	char *path = xasprintf("/images/%s/push?tag=%s", j->repo_ref, e);
	struct docker_request rq = {.method = "POST",
				    .path = path,
				    .line = push_line,
				    .registry_auth = j->spec.registry_auth};

	j->reply = (struct job_reply){.kind = JOB_STREAM_PUSH};
	start_call(j, &rq, push_done);
	free(path);
	free(e);
}

/* ---- the machine ---- */

/* Called when a state's work is over: picks what comes next. */
static void next_state(struct job *j)
{
	if (j->res.code < 0 || j->cancelled) {
		if (j->container[0] && j->state != JOB_CLEANUP)
			remove_container(j);
		else
			finish(j);
		return;
	}
	switch (j->state) {
	case JOB_CHECK:
		set_state(j, JOB_BUILD);
		start_build(j);
		break;
	case JOB_BUILD:
		if (j->spec.m.test_command) {
			set_state(j, JOB_TEST);
			start_test(j);
			break;
		}
		/* fall through */
	case JOB_TEST:
	case JOB_CLEANUP:
		if (!j->spec.push) {
			finish(j);
			break;
		}
		set_state(j, JOB_PUSH);
		start_push(j);
		break;
	case JOB_PUSH:
		if (j->push_index <= j->spec.m.ntags)
			start_push(j);
		else
			finish(j);
		break;
	case JOB_DONE:
		break;
	}
}

static void begin(struct job *j)
{
	if (j->spec.check_tag)
		start_check(j);
	else
		next_state(j);
}

static void identified(struct docker_call *c, void *arg)
{
	struct job *j = arg;

	j->call = NULL;
	if (docker_call_result(c) < 0 || docker_call_status(c) != 200) {
		call_failed(j, c, "asking the engine what it is (GET /_ping)");
		next_state(j);
		return;
	}
	begin(j);
}

struct job *job_start(uv_loop_t *loop, struct docker *d, struct job_spec *spec, job_log_cb *log,
		      job_done_cb *done, void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->loop = loop;
	j->d = d;
	j->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	j->log = log;
	j->done = done;
	j->arg = arg;
	j->ref = manifest_ref(&j->spec.m, j->spec.m.version);
	j->repo_ref = xasprintf("%s/%s", j->spec.m.registry, j->spec.m.name);
	uv_timer_init(loop, &j->timer);
	j->timer.data = j;
	j->state = JOB_CHECK;
	/* which engine it is decides how the tag is checked (and how to build) */
	if (docker_engine_kind(d) == DOCKER_ENGINE_UNKNOWN)
		j->call = docker_identify(d, identified, j);
	else
		begin(j);
	return j;
}

void job_cancel(struct job *j)
{
	if (j->cancelled || j->finished)
		return;
	j->cancelled = true;
	/* the removal of a test container runs to its end */
	if (j->call && j->state != JOB_CLEANUP)
		docker_call_abort(j->call);
}

const struct job_result *job_result(const struct job *j)
{
	return &j->res;
}

static void timer_closed(uv_handle_t *h)
{
	struct job *j = h->data;

	job_spec_done(&j->spec);
	bktrace_free(j->reply.trace);
	free(j->dockerfile_in_tar);
	free(j->podman_secrets);
	free(j->ref);
	free(j->repo_ref);
	free(j);
}

struct job *job_free(struct job *j)
{
	if (!j)
		return NULL;
	j->cx = context_free(j->cx);
	uv_close((uv_handle_t *)&j->timer, timer_closed);
	return NULL;
}

/* ---- preparing (on a worker) ---- */

/* The manifest of `path` at the commit, with the commit's full sha. */
static int read_manifest(const char *repo_path, const char *commit, const char *file,
			 const char *path, struct manifest *ret_m, char **ret_sha,
			 char **ret_subject, struct kiln_err *err)
{
	git_repository *repo = NULL;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	git_tree_entry *te = NULL;
	git_blob *blob = NULL;
	struct kiln_diags diags = {0};
	int r;

	if ((r = repo_open_at(repo_path, &repo, err)) < 0)
		goto out;
	if ((r = repo_commit(repo, commit, &c, err)) < 0)
		goto out;
	if (git_commit_tree(&tree, c) < 0) {
		r = kiln_err_git(err, -EIO, "the tree of %s", commit);
		goto out;
	}
	r = repo_entry(tree, file, &te);
	if (r == -EIO) {
		r = kiln_err_git(err, r, "cannot read '%s' at %.12s", file,
				 git_oid_tostr_s(git_commit_id(c)));
		goto out;
	}
	if (r < 0 || git_tree_entry_type(te) != GIT_OBJECT_BLOB) {
		/* the words `kiln rebuild` has always answered with */
		r = kiln_err_set(err, -ENOENT, "no image folder '%s' at %.12s (no %s)",
				 path_display(path), git_oid_tostr_s(git_commit_id(c)), file);
		goto out;
	}
	if ((r = repo_blob(repo, git_tree_entry_id(te), MANIFEST_SIZE_MAX, &blob, err)) < 0)
		goto out;
	r = manifest_parse(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob), file, path,
			   ret_m, &diags);
	if (r < 0) {
		char line[900];
		kiln_diag_format(&diags.v[0], line, sizeof(line));
		r = kiln_err_set(err, -EINVAL, "%s%s", line,
				 diags.n > 1 ? " (and more errors)" : "");
		goto out;
	}
	*ret_sha = xstrdup(git_oid_tostr_s(git_commit_id(c)));
	*ret_subject = repo_commit_summary(c);
out:
	kiln_diags_done(&diags);
	git_blob_free(blob);
	git_tree_entry_free(te);
	git_tree_free(tree);
	git_commit_free(c);
	repo_close(repo);
	return r;
}

/* The manifest's builder and network, else the daemon's (or the CLI's). */
static void choose_builder(const struct job_policy *p, struct job_spec *s)
{
	const char *b = s->m.builder ? s->m.builder : p->builder;
	const char *n = s->m.network ? s->m.network : p->network;

	if (!b || docker_builder_parse(b, &s->builder) < 0)
		s->builder = DOCKER_BUILDER_AUTO;
	/* "default" sends nothing: the engine's own default */
	s->network = n && strcmp(n, "default") != 0 ? xstrdup(n) : NULL;
}

/* The secrets the manifest grants, read now: each must be defined where the
 * policy says (kilnd.yaml or --secret), or the build fails before it starts. */
static int read_secrets(const struct job_policy *p, struct job_spec *s, struct kiln_err *err)
{
	for (size_t i = 0; i < s->m.nsecrets; i++) {
		const char *id = s->m.secrets[i];
		const struct config_secret *def = NULL;
		int r;

		for (size_t k = 0; k < p->nsecrets && !def; k++)
			if (strcmp(p->secrets[k].id, id) == 0)
				def = &p->secrets[k];
		if (!def)
			return kiln_err_set(
			    err, -EINVAL, "%s grants secret '%s', which is not defined in %s",
			    s->manifest_file, id,
			    p->secrets_where ? p->secrets_where : "the configuration");
		r = auth_read_secret(id, def->file, &s->session, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The policy's part of the spec: what to push, what to check, credentials. */
static int apply_policy(const struct job_policy *p, struct job_spec *s, struct kiln_err *err)
{
	char *host;
	int r = 0;

	s->id = p->id;
	s->push = p->push;
	/* a dependency rebuild re-pushes its tags: the new base is its purpose */
	s->check_tag = p->push && !p->overwrite_tags && !p->dependency;
	/* a label every puller reads: a password in the remote URL stays here */
	s->source_url = p->source_url ? redact_dup(p->source_url) : NULL;
	s->test_timeout_ms = p->test_timeout_ms;
	s->pull = p->pull;
	s->no_cache = p->no_cache;
	choose_builder(p, s);
	host = auth_registry_host(s->m.registry);
	s->registry_auth = auth_header(p->registries, p->nregistries, host);
	s->registry_config = auth_config_header(p->registries, p->nregistries);
	free(host);
	auth_session_creds(p->registries, p->nregistries, &s->session);
	if ((r = read_secrets(p, s, err)) < 0)
		return r;
	if (s->check_tag && p->store) {
		char *ref = manifest_ref(&s->m, s->m.version);
		r = store_pushed_from(p->store, ref, s->commit, err);
		free(ref);
		/* not knowing must not read as "not pushed by kiln", which would
		 * refuse the build as an overwrite: the caller retries */
		if (r < 0)
			return -EAGAIN;
		s->pushed_before = r == 1;
	}
	return 0;
}

int job_prepare(const char *repo_path, const char *commit, const char *path,
		const char *manifest_name, const struct job_policy *policy, struct job_spec *ret,
		struct kiln_err *err)
{
	struct job_spec s = {0};
	char *file = path[0] ? xasprintf("%s/%s", path, manifest_name) : xstrdup(manifest_name);
	int r;

	r = read_manifest(repo_path, commit, file, path, &s.m, &s.commit, &s.subject, err);
	if (r < 0) {
		free(file);
		return r;
	}
	s.repo_path = xstrdup(repo_path);
	s.path = xstrdup(path);
	s.manifest_file = file;
	if (policy && (r = apply_policy(policy, &s, err)) < 0) {
		job_spec_done(&s);
		return r;
	}
	*ret = s;
	return 0;
}

void job_spec_done(struct job_spec *s)
{
	free(s->repo_path);
	free(s->commit);
	free(s->subject);
	free(s->source_url);
	free(s->path);
	free(s->manifest_file);
	manifest_done(&s->m);
	free(s->registry_auth);
	free(s->registry_config);
	free(s->network);
	session_data_done(&s->session);
	memset(s, 0, sizeof(*s));
}
