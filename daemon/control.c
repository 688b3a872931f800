/* control.c: the status socket. Owns the listening pipe and every client.
 * Requests on one connection are answered in order; one that needs the
 * database runs on a worker while reading from that client pauses. A client
 * that sends garbage gets an error line; one that sends an over-long line,
 * stops reading its answers or idles too long is disconnected. Nothing a
 * client does blocks the loop or another client. */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/buf.h"
#include "kiln/control.h"
#include "kiln/err.h"
#include "kiln/log.h"
#include "kiln/manifest.h"
#include "kiln/repo.h"

#define CLIENT_IDLE_MS	   (5 * 60 * 1000)
#define CLIENT_BACKLOG_MAX (4u << 20) /* unread answers before we give up on a client */
#define CLIENTS_MAX	   256

struct client;

struct control {
	uv_loop_t *loop;
	uv_pipe_t pipe;
	char *path;
	gid_t status_gid, admin_gid;
	struct store *store;
	struct control_ops ops;
	void *arg;
	struct client *clients;
	unsigned nclients;
	bool closing, pipe_closed;
	void (*done)(void *);
	void *done_arg;
};

struct client {
	uv_pipe_t pipe;
	uv_timer_t timer;
	int handles_open;
	struct control *ctl;
	struct client *prev, *next;
	struct buf in;
	bool busy; /* a request is on a worker */
	bool reading, closing;
	struct job *job; /* on a worker */
	bool can_read, can_admin;
	uid_t uid;
};

#define LOG_ANSWER_MAX (8u << 20) /* the tail of a longer log is sent */
#define FOLLOW_POLL_MS 500

struct job {
	uv_work_t req;
	uv_timer_t timer; /* logs --follow: waiting for the build to end */
	struct store *store;
	char *log_path;			  /* logs */
	char *mirror, *manifest, *branch; /* rebuild */
	struct client *cl; /* NULL once the client went away; never used by the worker */
	json_t *request;
	json_t *answer;
	struct kiln_err err;
	int r;
};

static void client_close(struct client *cl);
static void client_process(struct client *cl);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/* ---- writing answers ---- */

struct wreq {
	uv_write_t w;
	char *data;
};

static void after_write(uv_write_t *w, int status)
{
	struct wreq *wr = container_of(w, struct wreq, w);

	free(wr->data);
	free(wr);
	(void)status; /* a failed write shows up as a read error */
}

static void send_json(struct client *cl, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	struct wreq *wr;
	uv_buf_t b;
	size_t n;

	json_decref(obj);
	if (text == NULL || cl->closing) {
		free(text);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) > CLIENT_BACKLOG_MAX) {
		free(text);
		client_close(cl); /* it does not read what it asks for */
		return;
	}
	n = strlen(text);
	wr = xcalloc(1, sizeof(*wr));
	wr->data = xreallocarray(text, n + 2, 1);
	wr->data[n] = '\n';
	b = uv_buf_init(wr->data, (unsigned)n + 1);
	if (uv_write(&wr->w, (uv_stream_t *)&cl->pipe, &b, 1, after_write) < 0) {
		free(wr->data);
		free(wr);
		client_close(cl);
	}
}

static void send_ok(struct client *cl, json_t *result)
{
	send_json(cl, json_pack("{s:i, s:b, s:o}", "v", CONTROL_PROTOCOL, "ok", 1, "result",
				result ? result : json_object()));
}

static void send_error(struct client *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void send_error(struct client *cl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_json(cl, json_pack("{s:i, s:b, s:s}", "v", CONTROL_PROTOCOL, "ok", 0, "error", msg));
}

/* ---- commands that read or write the state (on a worker) ---- */

static json_t *row_json(const struct store_build_row *b)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer(b->id));
	json_object_set_new(o, "repository", json_string(b->repo ? b->repo : ""));
	json_object_set_new(o, "branch", json_string(b->branch ? b->branch : ""));
	json_object_set_new(o, "path", json_string(b->path && b->path[0] ? b->path : "."));
	json_object_set_new(o, "image", b->image ? json_string(b->image) : json_null());
	json_object_set_new(o, "commit", json_string(b->commit ? b->commit : ""));
	json_object_set_new(o, "change", json_string(b->change ? b->change : ""));
	json_object_set_new(o, "state", json_string(b->state ? b->state : ""));
	json_object_set_new(o, "attempts", json_integer(b->attempts));
	json_object_set_new(o, "digest", json_null());
	json_object_set_new(o, "error", b->error ? json_string(b->error) : json_null());
	json_object_set_new(o, "queued_at", json_integer(b->created_at));
	json_object_set_new(o, "started_at",
			    b->started_at ? json_integer(b->started_at) : json_null());
	json_object_set_new(o, "finished_at",
			    b->finished_at ? json_integer(b->finished_at) : json_null());
	return o;
}

static void db_work(uv_work_t *req)
{
	struct job *j = container_of(req, struct job, req);
	const char *cmd = json_string_value(json_object_get(j->request, "cmd"));
	struct store_build_filter f = {0};
	struct store_build_row *rows = NULL;
	size_t n = 0;

	if (strcmp(cmd, "logs") == 0) {
		int64_t id = json_integer_value(json_object_get(j->request, "id"));
		struct store_build_filter lf = {.id = id, .limit = 1};
		FILE *fp;
		struct buf text = {0};
		char chunk[65536];
		size_t got;
		long size;

		j->r = store_list_builds(j->store, &lf, &rows, &n, &j->err);
		if (j->r < 0)
			return;
		if (n == 0) {
			j->r = kiln_err_set(&j->err, -ENOENT, "no build %lld", (long long)id);
			return;
		}
		if ((fp = fopen(j->log_path, "re")) != NULL) {
			if (fseek(fp, 0, SEEK_END) == 0 &&
			    (size = ftell(fp)) > (long)LOG_ANSWER_MAX)
				fseek(fp, size - (long)LOG_ANSWER_MAX, SEEK_SET);
			else
				rewind(fp);
			while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0)
				buf_append(&text, chunk, got);
			fclose(fp);
		}
		j->answer = json_pack("{s:I, s:s, s:s%}", "id", (json_int_t)id, "state",
				      rows[0].state ? rows[0].state : "", "log",
				      text.p ? text.p : "", text.len);
		buf_done(&text);
		store_build_rows_free(rows, 1);
		return;
	}
	if (strcmp(cmd, "rebuild") == 0) {
		const char *repo = json_string_value(json_object_get(j->request, "repository"));
		const char *path = json_string_value(json_object_get(j->request, "image"));
		const char *want = json_string_value(json_object_get(j->request, "commit"));
		git_repository *mirror = NULL;
		git_commit *commit = NULL;
		git_tree *tree = NULL;
		git_tree_entry *e = NULL;
		git_blob *blob = NULL;
		struct manifest m = {0};
		struct kiln_diags diags = {0};
		char seen[STORE_SHA_LEN + 1], hex[GIT_OID_HEXSZ + 1], *file, *ref;
		int64_t id;

		if (strcmp(path, ".") == 0)
			path = "";
		file = path[0] ? xasprintf("%s/%s", path, j->manifest) : xstrdup(j->manifest);
		if (want == NULL && store_last_seen(j->store, repo, j->branch, seen, &j->err) < 0) {
			j->r = kiln_err_set(&j->err, -ENOENT, "'%s' has no commit seen yet", repo);
		} else if ((j->r = repo_mirror_open(j->mirror, &mirror, &j->err)) == 0 &&
			   (j->r = repo_commit(mirror, want ? want : seen, &commit, &j->err)) ==
			       0) {
			if (git_commit_tree(&tree, commit) < 0 || repo_entry(tree, file, &e) < 0 ||
			    git_tree_entry_type(e) != GIT_OBJECT_BLOB ||
			    repo_blob(mirror, git_tree_entry_id(e), MANIFEST_SIZE_MAX, &blob,
				      NULL) < 0) {
				j->r = kiln_err_set(
				    &j->err, -ENOENT, "no image folder '%s' at %.12s",
				    path[0] ? path : ".",
				    git_oid_tostr(hex, sizeof(hex), git_commit_id(commit)));
			} else if (manifest_parse(git_blob_rawcontent(blob),
						  (size_t)git_blob_rawsize(blob), file, path, &m,
						  &diags) < 0) {
				char line[512];
				kiln_diag_format(&diags.v[0], line, sizeof(line));
				j->r = kiln_err_set(&j->err, -EINVAL, "%s", line);
			} else {
				ref = manifest_ref(&m, m.version);
				git_oid_tostr(hex, sizeof(hex), git_commit_id(commit));
				id = store_queue_build(j->store, repo, j->branch, path, ref, hex,
						       &j->err);
				if (id < 0)
					j->r = (int)id;
				else
					j->answer =
					    json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id,
						      "image", ref, "commit", hex);
				free(ref);
			}
		}
		manifest_done(&m);
		kiln_diags_done(&diags);
		git_blob_free(blob);
		git_tree_entry_free(e);
		git_tree_free(tree);
		git_commit_free(commit);
		git_repository_free(mirror);
		free(file);
		return;
	}
	if (strcmp(cmd, "cancel") == 0) {
		j->r = store_cancel(j->store, json_integer_value(json_object_get(j->request, "id")),
				    &j->err);
		if (j->r == 0)
			j->answer = json_pack("{s:I, s:s}", "id",
					      json_integer_value(json_object_get(j->request, "id")),
					      "state", "cancelled");
		return;
	}
	f.repo = json_string_value(json_object_get(j->request, "repository"));
	f.path = json_string_value(json_object_get(j->request, "image"));
	if (f.path && strcmp(f.path, ".") == 0)
		f.path = "";
	f.state = json_string_value(json_object_get(j->request, "state"));
	f.limit = (unsigned)json_integer_value(json_object_get(j->request, "limit"));
	if (strcmp(cmd, "build") == 0) {
		f.id = json_integer_value(json_object_get(j->request, "id"));
		f.limit = 1;
	}
	j->r = store_list_builds(j->store, &f, &rows, &n, &j->err);
	if (j->r < 0)
		return;
	if (strcmp(cmd, "build") == 0) {
		if (n == 0)
			j->r = kiln_err_set(&j->err, -ENOENT, "no build %lld", (long long)f.id);
		else
			j->answer = row_json(&rows[0]);
	} else {
		j->answer = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(j->answer, row_json(&rows[i]));
	}
	store_build_rows_free(rows, n);
}

static void job_free_cb(uv_handle_t *h)
{
	struct job *j = h->data;

	json_decref(j->answer);
	json_decref(j->request);
	free(j->log_path);
	free(j->mirror);
	free(j->manifest);
	free(j->branch);
	free(j);
}

static void db_after(uv_work_t *req, int status);

static void follow_cb(uv_timer_t *t)
{
	struct job *j = t->data;

	if (j->cl == NULL) { /* the follower left */
		uv_close((uv_handle_t *)&j->timer, job_free_cb);
		return;
	}
	uv_queue_work(j->cl->ctl->loop, &j->req, db_work, db_after);
}

static void db_after(uv_work_t *req, int status)
{
	struct job *j = container_of(req, struct job, req);
	struct client *cl = j->cl;

	const char *bstate = j->r == 0 && json_is_object(j->answer)
				 ? json_string_value(json_object_get(j->answer, "state"))
				 : NULL;

	if (cl != NULL && status >= 0 && j->log_path != NULL && bstate != NULL &&
	    json_is_true(json_object_get(j->request, "follow")) &&
	    (strcmp(bstate, "queued") == 0 || strcmp(bstate, "running") == 0)) {
		/* logs --follow: look again once the build has had time to move on */
		json_decref(j->answer);
		j->answer = NULL;
		uv_timer_start(&j->timer, follow_cb, FOLLOW_POLL_MS, 0);
		return;
	}
	if (cl != NULL && status >= 0 && j->r == -EBUSY && cl->ctl->ops.cancel_running &&
	    strcmp(json_string_value(json_object_get(j->request, "cmd")), "cancel") == 0) {
		/* not queued: perhaps running, which only the builder can stop */
		json_int_t id = json_integer_value(json_object_get(j->request, "id"));
		if (cl->ctl->ops.cancel_running((int64_t)id, cl->ctl->arg) == 0) {
			j->r = 0;
			j->answer = json_pack("{s:I, s:s}", "id", id, "state", "cancelling");
		}
	}
	if (cl != NULL) {
		cl->busy = false;
		cl->job = NULL;
		if (status < 0 || j->r < 0) {
			send_error(cl, "%s", status < 0 ? "cancelled" : j->err.msg);
		} else {
			const char *cmd = json_string_value(json_object_get(j->request, "cmd"));
			if ((strcmp(cmd, "cancel") == 0 || strcmp(cmd, "rebuild") == 0) &&
			    cl->ctl->ops.changed)
				cl->ctl->ops.changed(cl->ctl->arg);
			send_ok(cl, j->answer);
			j->answer = NULL;
		}
		client_process(cl);
	}
	uv_close((uv_handle_t *)&j->timer, job_free_cb);
}

/* ---- dispatch ---- */

struct cmd {
	const char *name;
	bool admin;	  /* changes something */
	bool db;	  /* runs on a worker */
	const char *need; /* a required integer or string argument */
};

static const struct cmd cmds[] = {
    {"status", false, false, NULL},
    {"health", false, false, NULL},
    {"builds", false, true, NULL},
    {"build", false, true, "id"},
    {"trigger", true, false, "repository"},
    {"cancel", true, true, "id"},
    {"logs", false, true, "id"},
    {"rebuild", true, true, "repository"},
};

static void dispatch(struct client *cl, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "cmd"));
	json_t *v = json_object_get(req, "v");
	const struct cmd *c = NULL;

	if (v && json_integer_value(v) != CONTROL_PROTOCOL) {
		send_error(cl, "protocol version %lld is not supported (this kilnd speaks %d)",
			   (long long)json_integer_value(v), CONTROL_PROTOCOL);
		goto out;
	}
	for (size_t i = 0; name && i < ARRAY_SIZE(cmds); i++) {
		if (strcmp(cmds[i].name, name) == 0)
			c = &cmds[i];
	}
	if (c == NULL) {
		send_error(cl,
			   "unknown command '%s' (status, health, builds, build, logs, trigger, "
			   "rebuild, cancel)",
			   name ? name : "(none)");
		goto out;
	}
	if (c->admin ? !cl->can_admin : !cl->can_read) {
		send_error(cl, "permission denied: '%s' needs %s", name,
			   c->admin ? "root, kilnd's user or the admin group"
				    : "root, kilnd's user or the status group");
		goto out;
	}
	if (c->need) {
		json_t *a = json_object_get(req, c->need);
		if (strcmp(c->need, "id") == 0 ? !json_is_integer(a) || json_integer_value(a) <= 0
					       : !json_is_string(a)) {
			send_error(cl, "'%s' needs '%s'", name, c->need);
			goto out;
		}
	}
	if (c->db) {
		struct job *j = xcalloc(1, sizeof(*j));
		j->cl = cl;
		j->store = cl->ctl->store;
		j->request = json_incref(req);
		uv_timer_init(cl->ctl->loop, &j->timer);
		j->timer.data = j;
		if (strcmp(name, "logs") == 0)
			j->log_path = cl->ctl->ops.log_path(
			    json_integer_value(json_object_get(req, "id")), cl->ctl->arg);
		if (strcmp(name, "rebuild") == 0) {
			const char *repo = json_string_value(json_object_get(req, "repository"));
			if (!json_is_string(json_object_get(req, "image"))) {
				uv_close((uv_handle_t *)&j->timer, job_free_cb);
				send_error(cl, "'rebuild' needs 'image' (the image folder)");
				goto out;
			}
			if (cl->ctl->ops.repo_info(repo, &j->mirror, &j->manifest, &j->branch,
						   cl->ctl->arg) < 0) {
				uv_close((uv_handle_t *)&j->timer, job_free_cb);
				send_error(cl, "repository '%s' is not watched", repo);
				goto out;
			}
		}
		cl->busy = true;
		cl->job = j;
		uv_queue_work(cl->ctl->loop, &j->req, db_work, db_after);
	} else if (strcmp(name, "status") == 0) {
		json_t *o = json_object();
		cl->ctl->ops.status(o, cl->ctl->arg);
		send_ok(cl, o);
	} else if (strcmp(name, "health") == 0) {
		json_t *o = json_object();
		int r = cl->ctl->ops.health(o, cl->ctl->arg);
		json_object_set_new(o, "healthy", json_boolean(r == 0));
		send_ok(cl, o);
	} else { /* trigger */
		const char *repo = json_string_value(json_object_get(req, "repository"));
		const char *branch = json_string_value(json_object_get(req, "branch"));
		if (cl->ctl->ops.trigger(repo, branch, cl->ctl->arg) < 0)
			send_error(cl, "repository '%s'%s%s%s is not watched", repo,
				   branch ? " (branch '" : "", branch ? branch : "",
				   branch ? "')" : "");
		else
			send_ok(cl, json_pack("{s:s}", "triggered", repo));
	}
out:
	json_decref(req);
}

/* Answers every complete line buffered, in order, unless one is on a worker. */
static void client_process(struct client *cl)
{
	while (!cl->busy && !cl->closing) {
		char *nl = cl->in.len ? memchr(cl->in.p, '\n', cl->in.len) : NULL;
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
			send_error(cl, "not a JSON object: %s", jerr.text);
			continue;
		}
		dispatch(cl, req);
	}
	if (!cl->closing && !cl->busy && !cl->reading) {
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
	client_close(container_of(t, struct client, timer));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct client *cl = container_of((uv_pipe_t *)st, struct client, pipe);

	if (nread < 0) {
		/* a half-closed client still gets the answers to what it sent */
		uv_read_stop(st);
		cl->reading = false;
		if (nread == UV_EOF && (cl->busy || cl->in.len)) {
			buf_putc(&cl->in, '\n');
			client_process(cl);
		}
		if (!cl->busy)
			client_close(cl);
	} else if (nread > 0) {
		buf_append(&cl->in, b->base, (size_t)nread);
		uv_timer_start(&cl->timer, timer_cb, CLIENT_IDLE_MS, 0);
		if (cl->in.len > CONTROL_LINE_MAX && memchr(cl->in.p, '\n', cl->in.len) == NULL) {
			send_error(cl, "request longer than %u bytes", CONTROL_LINE_MAX);
			client_close(cl);
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
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		ctl->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	ctl->nclients--;
	buf_done(&cl->in);
	free(cl);
	control_maybe_done(ctl);
}

static void client_close(struct client *cl)
{
	if (cl->closing)
		return;
	cl->closing = true;
	if (cl->job) { /* its answer will go nowhere */
		cl->job->cl = NULL;
		cl->job = NULL;
	}
	uv_close((uv_handle_t *)&cl->pipe, client_closed);
	uv_close((uv_handle_t *)&cl->timer, client_closed);
}

/* Whether user uid is in group gid (primary or supplementary). Local NSS
 * lookups, once per connection. */
static bool in_group(uid_t uid, gid_t peer_gid, gid_t gid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	gid_t groups[256];
	int n = (int)ARRAY_SIZE(groups);

	if (gid == (gid_t)-1)
		return false;
	if (peer_gid == gid)
		return true;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
		return false;
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
		return false;
	for (int i = 0; i < n; i++) {
		if (groups[i] == gid)
			return true;
	}
	return false;
}

static void on_connection(uv_stream_t *server, int status)
{
	struct control *ctl = container_of((uv_pipe_t *)server, struct control, pipe);
	struct client *cl;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (status < 0)
		return;
	cl = xcalloc(1, sizeof(*cl));
	cl->ctl = ctl;
	uv_pipe_init(ctl->loop, &cl->pipe, 0);
	uv_timer_init(ctl->loop, &cl->timer);
	cl->pipe.data = cl->timer.data = cl;
	cl->handles_open = 2;
	cl->next = ctl->clients;
	if (ctl->clients)
		ctl->clients->prev = cl;
	ctl->clients = cl;
	ctl->nclients++;
	if (uv_accept(server, (uv_stream_t *)&cl->pipe) < 0 || ctl->closing ||
	    ctl->nclients > CLIENTS_MAX || uv_fileno((uv_handle_t *)&cl->pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		client_close(cl);
		return;
	}
	cl->uid = cred.uid;
	cl->can_admin =
	    cred.uid == 0 || cred.uid == geteuid() || in_group(cred.uid, cred.gid, ctl->admin_gid);
	cl->can_read = cl->can_admin || in_group(cred.uid, cred.gid, ctl->status_gid);
	uv_timer_start(&cl->timer, timer_cb, CLIENT_IDLE_MS, 0);
	cl->reading = true;
	uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, read_cb);
}

static void free_on_close(uv_handle_t *h)
{
	struct control *ctl = container_of((uv_pipe_t *)h, struct control, pipe);

	free(ctl->path);
	free(ctl);
}

int control_start(uv_loop_t *loop, const char *path, gid_t sock_gid, gid_t status_gid,
		  gid_t admin_gid, struct store *store, const struct control_ops *ops, void *arg,
		  struct control **ret, struct kiln_err *err)
{
	struct control *ctl = xcalloc(1, sizeof(*ctl));
	struct stat st;
	int r;

	ctl->loop = loop;
	ctl->path = xstrdup(path);
	ctl->status_gid = status_gid;
	ctl->admin_gid = admin_gid;
	ctl->store = store;
	ctl->ops = *ops;
	ctl->arg = arg;
	/* a socket left by a previous run (the state lock proves it is not in use) */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	uv_pipe_init(loop, &ctl->pipe, 0);
	r = uv_pipe_bind(&ctl->pipe, path);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&ctl->pipe, 64, on_connection);
	if (r < 0) {
		kiln_err_set(err, r, "status socket '%s': %s", path, uv_strerror(r));
		uv_close((uv_handle_t *)&ctl->pipe, free_on_close);
		return r;
	}
	if (chmod(path, 0660) < 0 ||
	    (sock_gid != (gid_t)-1 && chown(path, (uid_t)-1, sock_gid) < 0))
		log_warning("status socket '%s': cannot set mode or group: %s", path,
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
	for (struct client *cl = ctl->clients, *next; cl; cl = next) {
		next = cl->next;
		client_close(cl);
	}
}
