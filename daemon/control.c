/* control.c (report): the status socket. Owns the listening pipe, every client
 * and every request in flight. The protocol is proto.h; the commands are one
 * table, a row per command: the right it needs, whether it blocks (then its
 * handler runs on a worker) and its handler. Who may connect is decided on
 * accept from the peer's kernel credentials (uid, gid, supplementary groups),
 * and how many connections each uid may hold too. Requests on one connection
 * are answered in order; while one is on a worker, reading from that client
 * pauses; a client that half-closes gets every answer before the connection
 * ends. A client that sends garbage gets an error line; one that sends an
 * over-long line, stops reading its answers or idles too long is
 * disconnected. Nothing a client does blocks the loop or another client. */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kiln/buf.h"
#include "kiln/control.h"
#include "kiln/err.h"
#include "kiln/job.h"
#include "kiln/log.h"
#include "kiln/proto.h"

#define CLIENT_BACKLOG_MAX (4u << 20) /* unread answers before we give up on a client */
#define FOLLOW_POLL_MS	   500
/* A refused client is read (and what it sends dropped) this long after its
 * error line, so that the request it may still be writing neither fails
 * (EPIPE) nor turns the line into a reset; at most REFUSED_LINGER_MAX at
 * once, past that one is closed as soon as its line is written. */
#define REFUSED_LINGER_MS  1000
#define REFUSED_LINGER_MAX 64
/* Connection slots. Any one uid may hold CLIENTS_PER_UID of the CLIENTS_MAX
 * ordinary slots: a runaway script or a hostile local user locks out nobody
 * else (eight busy uids fill the slots, one cannot). Root and kilnd's own uid
 * are the operators: they are not held to the per-uid cap and, when the
 * ordinary slots are full, have CLIENTS_RESERVE more, so `kiln health` and
 * `kiln trigger` keep working whatever others do. 16 covers a few monitoring
 * probes, `logs -f` followers and interactive commands at once (each kiln
 * command holds one connection for a moment). Every slot is one fd: 272 in
 * all leaves most of a 1024 soft limit to HTTP, git and the engine. */
#define CLIENTS_MAX	256
#define CLIENTS_PER_UID 32
#define CLIENTS_RESERVE 16
#define LISTEN_BACKLOG	64
/* The default socket's directory, when kilnd makes it. The socket's own mode,
 * the groups and the peer's credentials decide who may connect; a tighter
 * directory would only shut out someone they admit. */
#define SOCKET_DIR_MODE 0755

struct client;
struct request;
TAILQ_HEAD(client_list, client);

struct control {
	uv_loop_t *loop;
	uv_pipe_t pipe;
	char *path;
	gid_t status_gid, admin_gid;
	struct store *store;
	struct control_ops ops;
	void *arg;
	struct client_list clients;
	unsigned nclients;   /* open, admitted or not: teardown waits for them */
	unsigned nadmitted;  /* holding a slot */
	unsigned nlingering; /* refused, read until they go */
	bool closing, pipe_closed;
	void (*done)(void *);
	void *done_arg;
	uint64_t idle_ms; /* a client with no request under way is closed after it */
};

struct client {
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_shutdown_t shutdown; /* ending: the last answers are flushed first */
	int handles_open;
	struct control *ctl;
	TAILQ_ENTRY(client) entry;
	struct buf in;
	bool busy; /* a request is on a worker */
	bool reading, closing;
	bool eof;	    /* it half-closed: answer what it sent, then end */
	bool finishing;	    /* no more requests; ends once its answers are written */
	bool admitted;	    /* holds a slot */
	bool lingering;	    /* refused: read and dropped until it goes */
	struct request *rq; /* on a worker */
	bool can_read, can_admin;
	uid_t uid;
};

/* A handler fills rq->answer and returns 0, or returns a negative errno with
 * rq->err set. A finish step may return CTL_AGAIN: the request goes on and is
 * answered later. */
#define CTL_AGAIN 1
typedef int ctl_handler(struct request *rq);

enum ctl_right { CTL_READ, CTL_ADMIN };

struct ctl_cmd {
	const char *name;
	enum ctl_right right;
	const char *need;     /* an argument it must have: PROTO_F_ID (> 0) or a string */
	bool on_worker;	      /* the handler blocks (the store, git): it runs on a worker */
	bool changes;	      /* success queued or cancelled builds: tell kilnd */
	ctl_handler *prepare; /* on the loop before the worker: what only the loop knows */
	ctl_handler *handler;
	ctl_handler *finish; /* on the loop after the worker */
};

/* One request being answered. On a worker, the handler touches only this. */
struct request {
	uv_work_t work;
	uv_timer_t timer; /* logs --follow: waiting for the build to end */
	const struct ctl_cmd *cmd;
	struct client *cl; /* NULL once the client went away; never used on a worker */
	struct store *store;
	json_t *args; /* the request object */
	json_t *answer;
	char *log_path;			  /* logs */
	char *mirror, *manifest, *branch; /* rebuild */
	int r;
	struct kiln_err err;
};

static void client_close(struct client *cl, const char *why);
static void client_finish(struct client *cl, const char *why);
static void client_process(struct client *cl);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

static const char *arg_str(const struct request *rq, const char *key)
{
	return json_string_value(json_object_get(rq->args, key));
}

static int64_t arg_int(const struct request *rq, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(rq->args, key));
}

/* ---- writing answers ---- */

struct wreq {
	uv_write_t w;
	char *data;
};

static void after_write(uv_write_t *w, int status)
{
	struct wreq *wr = container_of(w, struct wreq, w);
	struct client *cl = container_of((uv_pipe_t *)w->handle, struct client, pipe);

	free(wr->data);
	free(wr);
	/* gone for good (a half-closed client is no longer read, so no read
	 * error would tell); the client outlives its cancelled writes */
	if (status < 0)
		client_close(cl, uv_strerror(status));
}

static void send_json(struct client *cl, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	struct wreq *wr;
	uv_buf_t b;
	size_t n;
	int r;

	json_decref(obj);
	if (cl->closing || cl->finishing) {
		free(text);
		return;
	}
	if (text == NULL) {
		client_close(cl, "out of memory for an answer");
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) > CLIENT_BACKLOG_MAX) {
		free(text);
		client_close(cl, "it does not read its answers");
		return;
	}
	n = strlen(text);
	wr = xcalloc(1, sizeof(*wr));
	wr->data = xreallocarray(text, n + 2, 1);
	wr->data[n] = '\n';
	b = uv_buf_init(wr->data, (unsigned)n + 1);
	if ((r = uv_write(&wr->w, (uv_stream_t *)&cl->pipe, &b, 1, after_write)) < 0) {
		free(wr->data);
		free(wr);
		client_close(cl, uv_strerror(r));
	}
}

static void send_ok(struct client *cl, json_t *result)
{
	send_json(cl, json_pack("{s:i, s:b, s:o}", PROTO_F_VERSION, PROTO_VERSION, PROTO_F_OK, 1,
				PROTO_F_RESULT, result ? result : json_object()));
}

static void send_error(struct client *cl, const char *msg)
{
	send_json(cl, json_pack("{s:i, s:b, s:s}", PROTO_F_VERSION, PROTO_VERSION, PROTO_F_OK, 0,
				PROTO_F_ERROR, msg));
}

/* ---- the commands answered on the loop ---- */

static int status_run(struct request *rq)
{
	struct control *ctl = rq->cl->ctl;

	rq->answer = json_object();
	ctl->ops.status(rq->answer, ctl->arg);
	return 0;
}

static int health_run(struct request *rq)
{
	struct control *ctl = rq->cl->ctl;
	int r;

	rq->answer = json_object();
	r = ctl->ops.health(rq->answer, ctl->arg);
	json_object_set_new(rq->answer, PROTO_F_HEALTHY, json_boolean(r == 0));
	return 0;
}

/* kiln trigger: recorded in the store before the answer (a crash before the
 * poll leaves it to be replayed at the next start), then polled. */
static int trigger_prepare(struct request *rq)
{
	struct control *ctl = rq->cl->ctl;
	const char *repo = arg_str(rq, PROTO_F_REPOSITORY), *branch = arg_str(rq, PROTO_F_BRANCH);

	if (ctl->ops.watched(repo, branch, ctl->arg) < 0)
		return kiln_err_set(&rq->err, -ENOENT, "repository '%s'%s%s%s is not watched", repo,
				    branch ? " (branch '" : "", branch ? branch : "",
				    branch ? "')" : "");
	return 0;
}

static int trigger_work(struct request *rq)
{
	return store_record_trigger(rq->store, arg_str(rq, PROTO_F_REPOSITORY),
				    arg_str(rq, PROTO_F_BRANCH), &rq->err);
}

static int trigger_finish(struct request *rq)
{
	struct control *ctl = rq->cl->ctl;
	const char *repo = arg_str(rq, PROTO_F_REPOSITORY);

	if (rq->r < 0) {
		/* no poll either: the answer says it was not taken */
		log_error("status socket: trigger of '%s' not recorded: %s", repo, rq->err.msg);
		return 0;
	}
	if (ctl->ops.trigger(repo, arg_str(rq, PROTO_F_BRANCH), ctl->arg) < 0) {
		/* a reload removed it meanwhile; the row is served by nothing */
		rq->r =
		    kiln_err_set(&rq->err, -ENOENT, "repository '%s' is no longer watched", repo);
		return 0;
	}
	rq->answer = json_pack("{s:s}", PROTO_F_TRIGGERED, repo);
	return 0;
}

/* ---- the commands that read or write the store (on a worker) ---- */

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *time_or_null(int64_t t)
{
	return t ? json_integer(t) : json_null();
}

static json_t *row_json(const struct store_build_row *b)
{
	json_t *o = json_object();

	json_object_set_new(o, PROTO_F_ID, json_integer(b->id));
	json_object_set_new(o, PROTO_F_REPOSITORY, json_string(b->repo ? b->repo : ""));
	json_object_set_new(o, PROTO_F_BRANCH, json_string(b->branch ? b->branch : ""));
	json_object_set_new(o, PROTO_F_PATH, json_string(b->path && b->path[0] ? b->path : "."));
	json_object_set_new(o, PROTO_F_IMAGE, str_or_null(b->image));
	json_object_set_new(o, PROTO_F_COMMIT, json_string(b->commit ? b->commit : ""));
	json_object_set_new(o, PROTO_F_SUBJECT, str_or_null(b->subject));
	json_object_set_new(o, PROTO_F_CHANGE, json_string(b->change ? b->change : ""));
	json_object_set_new(o, PROTO_F_STATE, json_string(b->state ? b->state : ""));
	json_object_set_new(o, PROTO_F_ATTEMPTS, json_integer(b->attempts));
	json_object_set_new(o, PROTO_F_DIGEST, str_or_null(b->digest));
	json_object_set_new(o, PROTO_F_BUILDER, str_or_null(b->builder));
	json_object_set_new(o, PROTO_F_ERROR, str_or_null(b->error));
	json_object_set_new(o, PROTO_F_QUEUED_AT, json_integer(b->created_at));
	json_object_set_new(o, PROTO_F_STARTED_AT, time_or_null(b->started_at));
	json_object_set_new(o, PROTO_F_FINISHED_AT, time_or_null(b->finished_at));
	return o;
}

/* The build with this id: 0 and *ret (free with store_build_rows_free), or
 * -ENOENT. */
static int one_build(struct request *rq, int64_t id, struct store_build_row **ret)
{
	struct store_build_filter f = {.id = id, .limit = 1};
	struct store_build_row *rows = NULL;
	size_t n = 0;
	int r;

	r = store_list_builds(rq->store, &f, &rows, &n, &rq->err);
	if (r < 0)
		return r;
	if (n == 0)
		return kiln_err_set(&rq->err, -ENOENT, "no build %lld", (long long)id);
	*ret = rows;
	return 0;
}

static int builds_work(struct request *rq)
{
	struct store_build_filter f = {0};
	struct store_build_row *rows = NULL;
	int64_t limit = arg_int(rq, PROTO_F_LIMIT);
	size_t n = 0;
	int r;

	/* 0: the store's default; a negative one would mean "no limit" to SQLite */
	if (limit < 0 || limit > PROTO_LIMIT_MAX)
		return kiln_err_set(&rq->err, -EINVAL, "'%s' must be 1 to %d, not %lld",
				    PROTO_F_LIMIT, PROTO_LIMIT_MAX, (long long)limit);
	f.repo = arg_str(rq, PROTO_F_REPOSITORY);
	f.path = arg_str(rq, PROTO_F_IMAGE);
	if (f.path && strcmp(f.path, ".") == 0)
		f.path = "";
	f.state = arg_str(rq, PROTO_F_STATE);
	f.limit = (unsigned)limit;
	r = store_list_builds(rq->store, &f, &rows, &n, &rq->err);
	if (r < 0)
		return r;
	rq->answer = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(rq->answer, row_json(&rows[i]));
	store_build_rows_free(rows, n);
	return 0;
}

static int build_work(struct request *rq)
{
	struct store_build_row *row;
	int r = one_build(rq, arg_int(rq, PROTO_F_ID), &row);

	if (r < 0)
		return r;
	rq->answer = row_json(row);
	store_build_rows_free(row, 1);
	return 0;
}

static int logs_prepare(struct request *rq)
{
	struct control *ctl = rq->cl->ctl;

	rq->log_path = ctl->ops.log_path(arg_int(rq, PROTO_F_ID), ctl->arg);
	return 0;
}

/* The last `max` bytes of the file at path into out; none yet is no error. */
static int read_tail(const char *path, long max, struct buf *out, struct kiln_err *err)
{
	char chunk[65536];
	FILE *fp = path ? fopen(path, "re") : NULL;
	long size;
	size_t got;
	int r = 0;

	if (fp == NULL) {
		if (path == NULL || errno == ENOENT)
			return 0;
		return kiln_err_set(err, -errno, "cannot read log '%s': %s", path, strerror(errno));
	}
	if (fseek(fp, 0, SEEK_END) < 0 || (size = ftell(fp)) < 0 ||
	    fseek(fp, size > max ? size - max : 0, SEEK_SET) < 0)
		r = kiln_err_set(err, -errno, "cannot seek in log '%s': %s", path, strerror(errno));
	while (r == 0 && (got = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(out, chunk, got);
	if (r == 0 && ferror(fp))
		r = kiln_err_set(err, -EIO, "cannot read log '%s'", path);
	fclose(fp);
	return r;
}

static int logs_work(struct request *rq)
{
	int64_t id = arg_int(rq, PROTO_F_ID);
	struct store_build_row *row = NULL;
	struct buf text = {0};
	int r;

	r = one_build(rq, id, &row);
	if (r < 0)
		goto out;
	/* a follower waits for the end: until then only the state is needed,
	 * not up to 8 MiB of log read twice a second */
	if (json_is_true(json_object_get(rq->args, PROTO_F_FOLLOW)) &&
	    (strcmp(row->state, PROTO_STATE_QUEUED) == 0 ||
	     strcmp(row->state, PROTO_STATE_RUNNING) == 0)) {
		rq->answer =
		    json_pack("{s:I, s:s}", PROTO_F_ID, (json_int_t)id, PROTO_F_STATE, row->state);
		goto out;
	}
	r = read_tail(rq->log_path, (long)PROTO_LOG_MAX, &text, &rq->err);
	if (r < 0)
		goto out;
	rq->answer =
	    json_pack("{s:I, s:s, s:s%}", PROTO_F_ID, (json_int_t)id, PROTO_F_STATE,
		      row->state ? row->state : "", PROTO_F_LOG, text.p ? text.p : "", text.len);
out:
	buf_done(&text);
	store_build_rows_free(row, row ? 1 : 0);
	return r;
}

static void work_cb(uv_work_t *w);
static void after_work_cb(uv_work_t *w, int status);
static void request_end(struct request *rq);

static void follow_cb(uv_timer_t *t)
{
	struct request *rq = container_of(t, struct request, timer);
	int r;

	if (rq->cl == NULL) { /* the follower left */
		request_end(rq);
		return;
	}
	r = uv_queue_work(rq->cl->ctl->loop, &rq->work, work_cb, after_work_cb);
	if (r < 0) {
		rq->r = kiln_err_set(&rq->err, r, "cannot queue work: %s", uv_strerror(r));
		request_end(rq);
	}
}

/* logs --follow: look again once a queued or running build has had time to
 * move on */
static int logs_finish(struct request *rq)
{
	const char *state = json_string_value(json_object_get(rq->answer, PROTO_F_STATE));

	if (rq->r < 0 || !json_is_true(json_object_get(rq->args, PROTO_F_FOLLOW)) || !state ||
	    (strcmp(state, PROTO_STATE_QUEUED) != 0 && strcmp(state, PROTO_STATE_RUNNING) != 0))
		return 0;
	json_decref(rq->answer);
	rq->answer = NULL;
	uv_timer_start(&rq->timer, follow_cb, FOLLOW_POLL_MS, 0);
	return CTL_AGAIN;
}

static int cancel_work(struct request *rq)
{
	int64_t id = arg_int(rq, PROTO_F_ID);
	int r = store_cancel(rq->store, id, &rq->err);

	if (r < 0)
		return r;
	rq->answer = json_pack("{s:I, s:s}", PROTO_F_ID, (json_int_t)id, PROTO_F_STATE,
			       PROTO_STATE_CANCELLED);
	return 0;
}

/* not queued: perhaps running, which only the builder can stop */
static int cancel_finish(struct request *rq)
{
	struct control *ctl = rq->cl->ctl;
	int64_t id = arg_int(rq, PROTO_F_ID);

	if (rq->r != -EBUSY || ctl->ops.cancel_running == NULL ||
	    ctl->ops.cancel_running(id, ctl->arg) < 0)
		return 0;
	rq->r = 0;
	rq->answer = json_pack("{s:I, s:s}", PROTO_F_ID, (json_int_t)id, PROTO_F_STATE,
			       PROTO_STATE_CANCELLING);
	return 0;
}

static int rebuild_prepare(struct request *rq)
{
	struct control *ctl = rq->cl->ctl;
	const char *repo = arg_str(rq, PROTO_F_REPOSITORY);

	if (arg_str(rq, PROTO_F_IMAGE) == NULL)
		return kiln_err_set(&rq->err, -EINVAL, "'%s' needs '%s' (the image folder)",
				    rq->cmd->name, PROTO_F_IMAGE);
	if (ctl->ops.repo_info(repo, &rq->mirror, &rq->manifest, &rq->branch, ctl->arg) < 0)
		return kiln_err_set(&rq->err, -ENOENT, "repository '%s' is not watched", repo);
	return 0;
}

/* Queues a build of one image folder at a commit (default: the first
 * branch's last-seen one), its manifest read from the mirror as a build
 * reads it. Errors say what failed: only a manifest that is not there is
 * reported as not found. */
static int rebuild_work(struct request *rq)
{
	const char *repo = arg_str(rq, PROTO_F_REPOSITORY), *path = arg_str(rq, PROTO_F_IMAGE);
	const char *commit = arg_str(rq, PROTO_F_COMMIT);
	char seen[STORE_SHA_LEN + 1];
	struct job_spec spec = {0};
	char *ref = NULL;
	int64_t id;
	int r;

	if (strcmp(path, ".") == 0)
		path = "";
	if (commit == NULL) {
		r = store_last_seen(rq->store, repo, rq->branch, seen, &rq->err);
		if (r == -ENOENT)
			r = kiln_err_set(&rq->err, r, "'%s' has no commit seen yet", repo);
		if (r < 0)
			goto out;
		commit = seen;
	}
	r = job_prepare(rq->mirror, commit, path, rq->manifest, NULL, &spec, &rq->err);
	if (r < 0)
		goto out;
	ref = manifest_ref(&spec.m, spec.m.version);
	id = store_queue_build(rq->store, repo, rq->branch, path, ref, spec.commit, spec.subject,
			       &rq->err);
	if (id < 0) {
		r = (int)id;
		goto out;
	}
	rq->answer = json_pack("{s:I, s:s, s:s}", PROTO_F_ID, (json_int_t)id, PROTO_F_IMAGE, ref,
			       PROTO_F_COMMIT, spec.commit);
out:
	free(ref);
	job_spec_done(&spec);
	return r;
}

/* ---- the table ---- */

static const struct ctl_cmd ctl_cmds[] = {
    {PROTO_CMD_STATUS, CTL_READ, NULL, false, false, NULL, status_run, NULL},
    {PROTO_CMD_HEALTH, CTL_READ, NULL, false, false, NULL, health_run, NULL},
    {PROTO_CMD_BUILDS, CTL_READ, NULL, true, false, NULL, builds_work, NULL},
    {PROTO_CMD_BUILD, CTL_READ, PROTO_F_ID, true, false, NULL, build_work, NULL},
    {PROTO_CMD_LOGS, CTL_READ, PROTO_F_ID, true, false, logs_prepare, logs_work, logs_finish},
    {PROTO_CMD_TRIGGER, CTL_ADMIN, PROTO_F_REPOSITORY, true, false, trigger_prepare, trigger_work,
     trigger_finish},
    {PROTO_CMD_REBUILD, CTL_ADMIN, PROTO_F_REPOSITORY, true, true, rebuild_prepare, rebuild_work,
     NULL},
    {PROTO_CMD_CANCEL, CTL_ADMIN, PROTO_F_ID, true, true, NULL, cancel_work, cancel_finish},
};

static const struct ctl_cmd *ctl_cmd_find(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(ctl_cmds); i++) {
		if (strcmp(ctl_cmds[i].name, name) == 0)
			return &ctl_cmds[i];
	}
	return NULL;
}

/* The command a request names, if this client may run it with these
 * arguments; else NULL and why in err. */
static const struct ctl_cmd *request_check(const struct client *cl, json_t *args,
					   struct kiln_err *err)
{
	const char *name = json_string_value(json_object_get(args, PROTO_F_CMD));
	json_t *v = json_object_get(args, PROTO_F_VERSION), *a;
	const struct ctl_cmd *c = ctl_cmd_find(name);
	char names[256] = "";

	if (v && json_integer_value(v) != PROTO_VERSION) {
		kiln_err_set(err, -EPROTO,
			     "protocol version %lld is not supported (this kilnd speaks %d)",
			     (long long)json_integer_value(v), PROTO_VERSION);
		return NULL;
	}
	if (c == NULL) {
		for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++)
			snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
				 i ? ", " : "", ctl_cmds[i].name);
		kiln_err_set(err, -EINVAL, "unknown command '%s' (%s)", name ? name : "(none)",
			     names);
		return NULL;
	}
	if (c->right == CTL_ADMIN ? !cl->can_admin : !cl->can_read) {
		kiln_err_set(err, -EPERM, "permission denied: '%s' needs %s", name,
			     c->right == CTL_ADMIN ? "root, kilnd's user or the admin group"
						   : "root, kilnd's user or the status group");
		return NULL;
	}
	a = c->need ? json_object_get(args, c->need) : NULL;
	if (c->need &&
	    (strcmp(c->need, PROTO_F_ID) == 0 ? !json_is_integer(a) || json_integer_value(a) <= 0
					      : !json_is_string(a))) {
		kiln_err_set(err, -EINVAL, "'%s' needs '%s'", name, c->need);
		return NULL;
	}
	return c;
}

/* ---- requests ---- */

static void request_free_cb(uv_handle_t *h)
{
	struct request *rq = container_of((uv_timer_t *)h, struct request, timer);

	json_decref(rq->answer);
	json_decref(rq->args);
	free(rq->log_path);
	free(rq->mirror);
	free(rq->manifest);
	free(rq->branch);
	free(rq);
}

/* Answers (when the client is still there), lets the client go on with its
 * next request if this one held it, and frees the request. */
static void request_end(struct request *rq)
{
	struct client *cl = rq->cl;
	bool held;

	uv_close((uv_handle_t *)&rq->timer, request_free_cb);
	if (cl == NULL)
		return;
	held = cl->rq == rq;
	if (held) {
		cl->busy = false;
		cl->rq = NULL;
	}
	if (rq->r < 0) {
		send_error(cl, rq->err.msg);
	} else {
		if (rq->cmd->changes && cl->ctl->ops.changed)
			cl->ctl->ops.changed(cl->ctl->arg);
		send_ok(cl, rq->answer);
		rq->answer = NULL;
	}
	if (held)
		client_process(cl);
}

static void work_cb(uv_work_t *w)
{
	struct request *rq = container_of(w, struct request, work);

	rq->r = rq->cmd->handler(rq);
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct request *rq = container_of(w, struct request, work);

	if (status < 0)
		rq->r = kiln_err_set(&rq->err, status, "cancelled");
	else if (rq->cl != NULL && rq->cmd->finish && rq->cmd->finish(rq) == CTL_AGAIN)
		return;
	request_end(rq);
}

/* Runs one request: takes args. */
static void dispatch(struct client *cl, json_t *args)
{
	struct kiln_err err = {0};
	const struct ctl_cmd *c = request_check(cl, args, &err);
	struct request *rq;
	int r;

	if (c == NULL) {
		json_decref(args);
		send_error(cl, err.msg);
		return;
	}
	rq = xcalloc(1, sizeof(*rq));
	rq->cmd = c;
	rq->cl = cl;
	rq->store = cl->ctl->store;
	rq->args = args;
	uv_timer_init(cl->ctl->loop, &rq->timer);
	if (c->prepare && (rq->r = c->prepare(rq)) < 0) {
		request_end(rq);
		return;
	}
	if (!c->on_worker) {
		rq->r = c->handler(rq);
		request_end(rq);
		return;
	}
	r = uv_queue_work(cl->ctl->loop, &rq->work, work_cb, after_work_cb);
	if (r < 0) {
		rq->r = kiln_err_set(&rq->err, r, "cannot queue work: %s", uv_strerror(r));
		request_end(rq);
		return;
	}
	cl->busy = true;
	cl->rq = rq;
}

/* Answers every complete line buffered, in order, unless one is on a worker.
 * Then reads on, or, after the client's end of input, ends the connection
 * once the answers are written. */
static void client_process(struct client *cl)
{
	while (!cl->busy && !cl->closing && !cl->finishing) {
		char *nl = cl->in.len ? memchr(cl->in.p, '\n', cl->in.len) : NULL;
		char msg[256];
		size_t len;
		json_t *req;
		json_error_t jerr;

		if (nl == NULL)
			break;
		len = (size_t)(nl - cl->in.p);
		req = json_loadb(cl->in.p, len, JSON_REJECT_DUPLICATES, &jerr);
		memmove(cl->in.p, nl + 1, cl->in.len - len - 1);
		cl->in.len -= len + 1;
		if (len == 0)
			continue;
		if (!json_is_object(req)) {
			json_decref(req);
			snprintf(msg, sizeof(msg), "not a JSON object: %s", jerr.text);
			send_error(cl, msg);
			continue;
		}
		dispatch(cl, req);
	}
	if (cl->closing || cl->finishing || cl->busy)
		return;
	if (cl->eof) {
		client_finish(cl, "end of input, every request answered");
	} else if (!cl->reading) {
		cl->reading = true;
		uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, read_cb);
	}
}

/* ---- clients ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	(void)suggested;
	b->base = xmalloc(16384);
	b->len = 16384;
}

static void timer_cb(uv_timer_t *t)
{
	struct client *cl = container_of(t, struct client, timer);

	/* waiting for an answer is not idling: `kiln logs -f` waits for a
	 * build's end, however long it runs */
	if (cl->busy && !cl->finishing) {
		uv_timer_start(&cl->timer, timer_cb, cl->ctl->idle_ms, 0);
		return;
	}
	client_close(cl, cl->finishing ? "its last answers were not taken in time" : "idle");
}

/* A half-closed client still gets the answers to everything it sent (an
 * unfinished last line is taken as a line), in order; the connection ends
 * after the last one is written. */
static void client_eof(struct client *cl)
{
	cl->eof = true;
	if (cl->in.len)
		buf_putc(&cl->in, '\n');
	client_process(cl);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct client *cl = container_of((uv_pipe_t *)st, struct client, pipe);
	char msg[64];

	if (nread < 0) {
		uv_read_stop(st);
		cl->reading = false;
		if (nread == UV_EOF)
			client_eof(cl);
		else
			client_close(cl, uv_strerror((int)nread));
	} else if (nread > 0) {
		buf_append(&cl->in, b->base, (size_t)nread);
		uv_timer_start(&cl->timer, timer_cb, cl->ctl->idle_ms, 0);
		if (cl->in.len > PROTO_LINE_MAX && memchr(cl->in.p, '\n', cl->in.len) == NULL) {
			snprintf(msg, sizeof(msg), "request longer than %u bytes", PROTO_LINE_MAX);
			send_error(cl, msg);
			client_finish(cl, msg);
		} else if (cl->busy) {
			uv_read_stop(st); /* one request at a time */
			cl->reading = false;
		} else {
			client_process(cl);
		}
	}
	free(b->base);
}

static void control_maybe_done(struct control *ctl)
{
	if (!ctl->closing || !ctl->pipe_closed || ctl->nclients > 0)
		return;
	if (ctl->done)
		ctl->done(ctl->done_arg);
	free(ctl->path);
	free(ctl);
}

static void client_closed(uv_handle_t *h)
{
	struct client *cl = h->data;
	struct control *ctl = cl->ctl;

	if (--cl->handles_open > 0)
		return;
	TAILQ_REMOVE(&ctl->clients, cl, entry);
	ctl->nclients--;
	if (cl->admitted)
		ctl->nadmitted--;
	if (cl->lingering)
		ctl->nlingering--;
	buf_done(&cl->in);
	free(cl);
	control_maybe_done(ctl);
}

/* Every way a client ends; why is logged at debug. Memory goes in the close
 * callbacks. */
static void client_close(struct client *cl, const char *why)
{
	if (cl->closing)
		return;
	log_debug("status socket: client uid %u closed: %s", (unsigned)cl->uid, why);
	cl->closing = true;
	if (cl->rq) { /* its answer will go nowhere */
		cl->rq->cl = NULL;
		cl->rq = NULL;
	}
	uv_close((uv_handle_t *)&cl->pipe, client_closed);
	uv_close((uv_handle_t *)&cl->timer, client_closed);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct client *cl = container_of(req, struct client, shutdown);

	if (status < 0 || !cl->lingering)
		client_close(cl,
			     status < 0 ? uv_strerror(status) : "its last answers were written");
}

/* The gentle end: takes no more requests, lets the answers already queued
 * reach the client, then closes (uv_close alone would cancel them). A client
 * that does not take them is closed by its timer or CLIENT_BACKLOG_MAX. */
static void client_finish(struct client *cl, const char *why)
{
	int r;

	if (cl->closing || cl->finishing)
		return;
	log_debug("status socket: client uid %u ending: %s", (unsigned)cl->uid, why);
	cl->finishing = true;
	if (cl->reading) {
		uv_read_stop((uv_stream_t *)&cl->pipe);
		cl->reading = false;
	}
	r = uv_shutdown(&cl->shutdown, (uv_stream_t *)&cl->pipe, shutdown_cb);
	if (r < 0)
		client_close(cl, uv_strerror(r));
}

static bool uid_privileged(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

static bool has_gid(gid_t want, gid_t primary, const gid_t *groups, size_t n)
{
	if (want == (gid_t)-1)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (groups[i] == want)
			return true;
	}
	return want == primary;
}

/* The uid's groups in the group database with gid as its primary one: only
 * for a kernel that cannot tell a peer's groups. *ret_groups is the caller's
 * to free. */
static int groups_of_uid(uid_t uid, gid_t gid, gid_t **ret_groups, size_t *ret_n)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	gid_t *g = NULL;
	int n = 64;

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
		return -ENOENT;
	for (int tries = 0; tries < 3; tries++) { /* a failure says how many there are */
		g = xreallocarray(g, (size_t)n + 1, sizeof(*g));
		if (getgrouplist(pw.pw_name, gid, g, &n) >= 0) {
			*ret_groups = g;
			*ret_n = (size_t)n;
			return 0;
		}
	}
	free(g);
	return -ERANGE;
}

/* The peer's supplementary groups as the kernel recorded them when it
 * connected (SO_PEERGROUPS, Linux >= 4.13): the groups its process holds,
 * not what the group database says of its uid (a process may have dropped
 * or been given groups; the database may be remote, slow or down). Only when
 * the kernel cannot tell, the database's. *ret_groups is the caller's to
 * free. */
static int peer_groups(int fd, const struct ucred *cred, gid_t **ret_groups, size_t *ret_n)
{
#ifdef SO_PEERGROUPS
	socklen_t len = 64 * sizeof(gid_t);
	gid_t *g = NULL;

	for (int tries = 0; tries < 3; tries++) { /* ERANGE says how many there are */
		g = xreallocarray(g, len / sizeof(*g) + 1, sizeof(*g));
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) == 0) {
			*ret_groups = g;
			*ret_n = len / sizeof(*g);
			return 0;
		}
		if (errno != ERANGE)
			break;
	}
	free(g);
#endif
	return groups_of_uid(cred->uid, cred->gid, ret_groups, ret_n);
}

/* The client's uid and rights, from the peer's credentials. */
static int client_credentials(struct client *cl, int fd)
{
	struct control *ctl = cl->ctl;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t *groups = NULL;
	size_t n = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	cl->uid = cred.uid;
	if (uid_privileged(cred.uid)) {
		cl->can_admin = cl->can_read = true;
		return 0;
	}
	if (peer_groups(fd, &cred, &groups, &n) < 0)
		n = 0; /* the primary group still counts */
	cl->can_admin = has_gid(ctl->admin_gid, cred.gid, groups, n);
	cl->can_read = cl->can_admin || has_gid(ctl->status_gid, cred.gid, groups, n);
	free(groups);
	return 0;
}

/* Gives the client a slot, or says why not (see CLIENTS_MAX). */
static int client_admit(struct client *cl, struct kiln_err *err)
{
	struct control *ctl = cl->ctl;
	unsigned mine = 0;
	struct client *c;

	if (!cl->can_read)
		return kiln_err_set(
		    err, -EACCES,
		    "permission denied: uid %u is not root, kilnd's user or a member "
		    "of listen.status_group or listen.admin_group",
		    (unsigned)cl->uid);
	if (uid_privileged(cl->uid)) {
		if (ctl->nadmitted >= CLIENTS_MAX + CLIENTS_RESERVE)
			return kiln_err_set(err, -EAGAIN,
					    "too many connections (%u, the reserve for root and "
					    "kilnd's user included); try again later",
					    ctl->nadmitted);
	} else {
		TAILQ_FOREACH(c, &ctl->clients, entry)
		mine += c->admitted && c->uid == cl->uid;
		if (mine >= CLIENTS_PER_UID)
			return kiln_err_set(err, -EUSERS,
					    "too many connections from uid %u (at most %u at once)",
					    (unsigned)cl->uid, CLIENTS_PER_UID);
		if (ctl->nadmitted >= CLIENTS_MAX)
			return kiln_err_set(err, -EAGAIN,
					    "too many connections (%u); try again later",
					    ctl->nadmitted);
	}
	cl->admitted = true;
	ctl->nadmitted++;
	return 0;
}

static void discard_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct client *cl = container_of((uv_pipe_t *)st, struct client, pipe);

	free(b->base);
	if (nread < 0)
		client_close(cl, "refused, and it went");
}

/* A client that may not stay is told why in one error line, then let go
 * (see REFUSED_LINGER_MS). */
static void client_refuse(struct client *cl, const char *why)
{
	struct control *ctl = cl->ctl;

	send_error(cl, why);
	uv_timer_start(&cl->timer, timer_cb, REFUSED_LINGER_MS, 0);
	if (ctl->nlingering < REFUSED_LINGER_MAX) {
		cl->lingering = true;
		ctl->nlingering++;
	}
	client_finish(cl, why);
	if (cl->lingering && !cl->closing)
		uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, discard_cb);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct control *ctl = container_of((uv_pipe_t *)server, struct control, pipe);
	struct kiln_err err = {0};
	struct client *cl;
	uv_os_fd_t fd;
	int r;

	if (status < 0) {
		log_warning("status socket: cannot accept: %s", uv_strerror(status));
		return;
	}
	cl = xcalloc(1, sizeof(*cl));
	cl->ctl = ctl;
	cl->uid = (uid_t)-1;
	uv_pipe_init(ctl->loop, &cl->pipe, 0);
	uv_timer_init(ctl->loop, &cl->timer);
	cl->pipe.data = cl->timer.data = cl;
	cl->handles_open = 2;
	TAILQ_INSERT_HEAD(&ctl->clients, cl, entry);
	ctl->nclients++;
	if ((r = uv_accept(server, (uv_stream_t *)&cl->pipe)) < 0) {
		client_close(cl, uv_strerror(r));
		return;
	}
	if (ctl->closing) {
		client_close(cl, "kilnd is stopping");
		return;
	}
	if (uv_fileno((uv_handle_t *)&cl->pipe, &fd) < 0 || client_credentials(cl, fd) < 0) {
		client_close(cl, "no peer credentials");
		return;
	}
	if (client_admit(cl, &err) < 0) {
		client_refuse(cl, err.msg);
		return;
	}
	uv_timer_start(&cl->timer, timer_cb, cl->ctl->idle_ms, 0);
	cl->reading = true;
	uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, read_cb);
}

static void free_on_close(uv_handle_t *h)
{
	struct control *ctl = container_of((uv_pipe_t *)h, struct control, pipe);

	free(ctl->path);
	free(ctl);
}

/* The default socket's directory: systemd's RuntimeDirectory= makes it for
 * the unit; a manual start has none. Only the default: a configured path's
 * directory is the administrator's to make, and a typo must not become a
 * directory. The parent (/run) must exist: nothing above is created. */
static int make_socket_dir(const char *path, struct kiln_err *err)
{
	char *dir;
	int r = 0;

	if (strcmp(path, PROTO_SOCKET_DEFAULT) != 0)
		return 0;
	dir = xstrndup(path, (size_t)(strrchr(path, '/') - path));
	if (mkdir(dir, SOCKET_DIR_MODE) == 0) {
		if (chmod(dir, SOCKET_DIR_MODE) < 0) /* the umask narrowed it */
			log_warning("status socket: cannot set the mode of '%s': %s", dir,
				    strerror(errno));
		log_info("status socket: created '%s'", dir);
	} else if (errno != EEXIST) {
		r = kiln_err_set(err, -errno, "status socket '%s': cannot create '%s': %s", path,
				 dir, strerror(errno));
	}
	free(dir);
	return r;
}

/* bind(2) here, not uv_pipe_bind: libuv reports a missing directory (ENOENT)
 * as EACCES and cuts a long path short; this says what really went wrong. */
static int bind_socket(const char *path, int *ret_fd, struct kiln_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = -1, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return kiln_err_set(err, -ENAMETOOLONG,
				    "status socket '%s': the path is longer than %zu bytes", path,
				    sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = kiln_err_set(err, -errno, "status socket '%s': %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

void control_set_idle(struct control *c, uint64_t ms)
{
	c->idle_ms = ms;
}

int control_start(uv_loop_t *loop, const char *path, gid_t status_gid, gid_t admin_gid,
		  struct store *store, const struct control_ops *ops, void *arg,
		  struct control **ret, struct kiln_err *err)
{
	struct control *ctl;
	/* Who may connect is decided on accept, from the peer's credentials:
	 * that check is the authority. The file mode cannot express it (one
	 * group per file, and members of either group have rights), so with a
	 * group configured anyone may connect and is told on accept whether it
	 * may stay; without one, only kilnd's user and root have rights, and
	 * 0600 keeps everyone else off the socket. */
	mode_t mode = status_gid != (gid_t)-1 || admin_gid != (gid_t)-1 ? 0666 : 0600;
	struct stat st;
	int fd = -1, r;

	r = make_socket_dir(path, err);
	if (r < 0)
		return r;
	/* a socket left by a previous run (the state lock proves it is not in use) */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	r = bind_socket(path, &fd, err);
	if (r < 0)
		return r;
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->loop = loop;
	ctl->path = xstrdup(path);
	ctl->status_gid = status_gid;
	ctl->admin_gid = admin_gid;
	ctl->store = store;
	ctl->ops = *ops;
	ctl->idle_ms = CONTROL_IDLE_MS_DEFAULT;
	ctl->arg = arg;
	TAILQ_INIT(&ctl->clients);
	uv_pipe_init(loop, &ctl->pipe, 0);
	r = uv_pipe_open(&ctl->pipe, fd);
	if (r < 0)
		close(fd); /* not adopted: closing the handle would leave it open */
	else
		r = uv_listen((uv_stream_t *)&ctl->pipe, LISTEN_BACKLOG, on_connection);
	if (r < 0) {
		kiln_err_set(err, r, "status socket '%s': %s", path, uv_strerror(r));
		uv_close((uv_handle_t *)&ctl->pipe, free_on_close);
		unlink(path);
		return r;
	}
	if (chmod(path, mode) < 0)
		log_warning("status socket '%s': cannot set mode %04o: %s", path, (unsigned)mode,
			    strerror(errno));
	*ret = ctl;
	return 0;
}

static void pipe_closed(uv_handle_t *h)
{
	struct control *ctl = container_of((uv_pipe_t *)h, struct control, pipe);

	ctl->pipe_closed = true;
	unlink(ctl->path);
	control_maybe_done(ctl);
}

void control_close(struct control *ctl, void (*done)(void *arg), void *arg)
{
	ctl->closing = true;
	ctl->done = done;
	ctl->done_arg = arg;
	uv_close((uv_handle_t *)&ctl->pipe, pipe_closed);
	for (struct client *cl = TAILQ_FIRST(&ctl->clients), *next; cl; cl = next) {
		next = TAILQ_NEXT(cl, entry);
		client_close(cl, "kilnd is stopping");
	}
}
