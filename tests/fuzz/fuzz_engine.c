/* fuzz_engine.c (build): the Docker engine's replies as kiln reads them. Each
 * input is read four ways with the job's and the client's real parsers: as
 * a classic and a BuildKit build progress stream and as a push progress
 * stream (NDJSON, split on '\n' as docker.c delivers lines), and as a
 * container log in 8-byte-header frames. None may crash or leak, and what
 * they keep must stay in bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/docker.h"
#include "kiln/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void show(const char *line, size_t len, void *arg)
{
	size_t *shown = arg;

	/* lines reach the log as C strings: no NUL inside the count */
	if (memchr(line, '\0', len))
		abort();
	*shown += len;
}

static void check(const struct job_reply *rp)
{
	if (strnlen(rp->id, sizeof(rp->id)) == sizeof(rp->id) ||
	    strnlen(rp->error, sizeof(rp->error)) == sizeof(rp->error))
		abort();
}

static void streams(const char *p, size_t size)
{
	struct job_reply build = {.kind = JOB_STREAM_BUILD}, push = {.kind = JOB_STREAM_PUSH};
	struct job_reply bk = {.kind = JOB_STREAM_BUILDKIT, .trace = bktrace_new()};
	size_t shown = 0, start = 0;

	for (size_t i = 0; i <= size; i++) {
		if (i < size && p[i] != '\n')
			continue;
		if (job_reply_line(&build, p + start, i - start, show, &shown) &&
		    !memchr(p + start, 'e', i - start))
			abort(); /* an error needs an "error" key */
		job_reply_line(&push, p + start, i - start, show, &shown);
		job_reply_line(&bk, p + start, i - start, show, &shown);
		check(&build);
		check(&push);
		check(&bk);
		start = i + 1;
	}
	bktrace_free(bk.trace);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out = {0};

	streams((const char *)data, size);
	docker_demux_logs(data, size, &out);
	/* every byte kept is a payload byte: at least one header went before it */
	if (out.len > (size >= 8 ? size - 8 : 0))
		abort();
	buf_done(&out);
	return 0;
}
