/* build.h: the builder seam. It takes queued builds from the state, up to
 * `concurrency` at a time, on worker threads, and records how each ended.
 * This build has one builder, the dry run: it logs what it would build (image
 * reference, repository, commit) and records the build as succeeded. The
 * Docker builder will take the same place. */
#ifndef KILN_BUILD_H
#define KILN_BUILD_H

#include <uv.h>

#include "kiln/state.h"

struct builder;

typedef void builder_changed_cb(struct builder *b, void *arg);

struct builder {
	uv_loop_t *loop;
	struct state *state; /* borrowed */
	unsigned concurrency;
	unsigned running; /* jobs in flight */
	bool draining;	  /* stopping: take nothing new */
	bool idle;	  /* the last take found the queue empty */
	unsigned queued;  /* last counts seen, for status */
	unsigned active;
	char last_error[256];
	uint64_t done;
	builder_changed_cb *changed;
	void *arg;
};

void builder_init(struct builder *b, uv_loop_t *loop, struct state *state, unsigned concurrency,
		  builder_changed_cb *changed, void *arg);
/* There may be new queued builds: start jobs up to the concurrency. */
void builder_kick(struct builder *b);
/* Take nothing new; running jobs finish. */
void builder_drain(struct builder *b);

#endif
