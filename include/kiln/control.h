/* control.h (report): the status socket. A unix stream socket speaking the
 * protocol of proto.h: one JSON object per line each way. Rights come from
 * the peer's credentials (SO_PEERCRED, SO_PEERGROUPS): reading needs root,
 * kilnd's own user or the status group; changing anything needs root,
 * kilnd's own user or the admin group. A peer with neither right, or over
 * its connection cap, is refused on accept with an error line. */
#ifndef KILN_CONTROL_H
#define KILN_CONTROL_H

#include <jansson.h>
#include <sys/types.h>
#include <uv.h>

#include "kiln/common.h"
#include "kiln/store.h"

struct control_ops {
	/* fills the "status" answer: version, uptime, repositories, queue */
	void (*status)(json_t *obj, void *arg);
	/* 0 when the repository (and branch, unless NULL) is watched, else -ENOENT */
	int (*watched)(const char *repo, const char *branch, void *arg);
	/* poll now (after the trigger is recorded); -ENOENT as watched */
	int (*trigger)(const char *repo, const char *branch, void *arg);
	/* builds were queued or cancelled */
	void (*changed)(void *arg);
	/* 0 healthy, else why not */
	int (*health)(json_t *obj, void *arg);
	/* a build's log file path (the caller frees it) */
	char *(*log_path)(int64_t id, void *arg);
	/* for rebuild: the repository's mirror, manifest file name and first
	 * branch (all new strings), or -ENOENT when it is not watched */
	int (*repo_info)(const char *repo, char **mirror, char **manifest, char **branch,
			 void *arg);
	/* cancel a running build: 0, or -ENOENT when none runs with that id */
	int (*cancel_running)(int64_t id, void *arg);
};

struct control;

/* Listens on path (a stale socket file is replaced): mode 0666 when a group
 * is given (rights are checked on accept), else 0600. status_gid and
 * admin_gid may be (gid_t)-1: none. */
int control_start(uv_loop_t *loop, const char *path, gid_t status_gid, gid_t admin_gid,
		  struct store *store, const struct control_ops *ops, void *arg,
		  struct control **ret, struct kiln_err *err);
/* How long a client may stay with no request under way (a request being
 * answered, such as `logs -f` waiting for a build's end, never times out);
 * applies from each client's next read. */
#define CONTROL_IDLE_MS_DEFAULT (5u * 60 * 1000)
void control_set_idle(struct control *c, uint64_t ms);
/* Closes the socket and every client, then done(arg). */
void control_close(struct control *c, void (*done)(void *arg), void *arg);

#endif
