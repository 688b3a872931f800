/* backup.c (queue): when the store's verified snapshot is written: shortly after
 * start, then at most once per interval, on a worker thread. Owns its timer
 * and the job in flight; what a snapshot is (VACUUM INTO, checked, renamed)
 * is store.c's. */
#include <assert.h>
#include <inttypes.h>

#include "kiln/backup.h"
#include "kiln/log.h"
#include "kiln/store.h"

/* The first snapshot after start: soon, but after the first polls began. */
#define BACKUP_FIRST_MS 1000

static const char *const state_names[] = {"waiting", "running", "stopping", "closed"};

const char *backup_state_str(enum backup_state s)
{
	return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

static void set_state(struct backup *b, enum backup_state s)
{
	log_debug("state snapshot: %s -> %s", backup_state_str(b->state), backup_state_str(s));
	b->state = s;
}

static void timer_cb(uv_timer_t *t);

static void wait_next(struct backup *b, uint64_t ms)
{
	set_state(b, BACKUP_WAITING);
	uv_timer_start(&b->timer, timer_cb, ms, 0);
}

static void timer_closed_cb(uv_handle_t *h)
{
	struct backup *b = container_of((uv_timer_t *)h, struct backup, timer);

	set_state(b, BACKUP_CLOSED);
	if (b->closed)
		b->closed(b->arg);
}

static void work_cb(uv_work_t *w)
{
	struct backup *b = container_of(w, struct backup, work);
	b->r = store_backup(b->store, &b->err);
}

/* Logs what the snapshot came to, then waits for the next one or closes. */
static void backup_done(struct backup *b, int status)
{
	if (status < 0)
		log_warning("state snapshot cancelled; the last one stays");
	else if (b->r < 0)
		log_warning("state snapshot not written: %s; the last one stays, next try in "
			    "%" PRIu64 "ms",
			    b->err.msg, b->interval_ms);
	else if (b->r > 0)
		log_debug("state snapshot written to '%s'", STORE_BACKUP_FILE);
	if (b->state == BACKUP_STOPPING)
		uv_close((uv_handle_t *)&b->timer, timer_closed_cb);
	else
		wait_next(b, b->interval_ms);
}

static void after_cb(uv_work_t *w, int status)
{
	struct backup *b = container_of(w, struct backup, work);
	assert(b->state == BACKUP_RUNNING || b->state == BACKUP_STOPPING);
	backup_done(b, status);
}

static void timer_cb(uv_timer_t *t)
{
	struct backup *b = container_of(t, struct backup, timer);

	assert(b->state == BACKUP_WAITING);
	set_state(b, BACKUP_RUNNING);
	uv_queue_work(b->loop, &b->work, work_cb, after_cb);
}

void backup_start(struct backup *b, uv_loop_t *loop, struct store *store, uint64_t interval_ms)
{
	b->loop = loop;
	b->store = store;
	b->interval_ms = interval_ms;
	uv_timer_init(loop, &b->timer);
	wait_next(b, interval_ms < BACKUP_FIRST_MS ? interval_ms : BACKUP_FIRST_MS);
}

void backup_stop(struct backup *b, backup_closed_cb *closed, void *arg)
{
	b->closed = closed;
	b->arg = arg;
	if (b->state == BACKUP_RUNNING) {
		set_state(b, BACKUP_STOPPING); /* backup_done closes */
	} else if (b->state == BACKUP_WAITING) {
		uv_timer_stop(&b->timer);
		uv_close((uv_handle_t *)&b->timer, timer_closed_cb);
	}
}
