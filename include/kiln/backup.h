/* backup.h (queue): when the store's verified snapshot is written. The first
 * shortly after start (the state kilnd has just checked), then at most once
 * per interval and only when the database changed; each on a worker thread,
 * since the copy and its check block. The snapshot itself is
 * store_backup's. */
#ifndef KILN_BACKUP_H
#define KILN_BACKUP_H

#include <stdint.h>

#include <uv.h>

#include "kiln/common.h"

struct store;

enum backup_state {
	BACKUP_WAITING,	 /* the timer runs */
	BACKUP_RUNNING,	 /* a snapshot is on a worker */
	BACKUP_STOPPING, /* stopped while a snapshot was on a worker */
	BACKUP_CLOSED,
};

const char *backup_state_str(enum backup_state s);

typedef void backup_closed_cb(void *arg);

/* Embedded in its owner; every field is backup.c's, interval_ms may be
 * changed at any time (it applies from the next wait). */
struct backup {
	uv_loop_t *loop;
	struct store *store;
	uint64_t interval_ms;
	enum backup_state state;
	uv_timer_t timer;
	uv_work_t work;
	int r;
	struct kiln_err err;
	backup_closed_cb *closed;
	void *arg;
};

void backup_start(struct backup *b, uv_loop_t *loop, struct store *store, uint64_t interval_ms);
/* No new snapshot; closed(arg) once the one in flight (if any) has finished
 * and the timer is closed, so the store may be closed after it. */
void backup_stop(struct backup *b, backup_closed_cb *closed, void *arg);

#endif
