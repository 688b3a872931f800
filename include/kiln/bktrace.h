/* bktrace.h (build): BuildKit's progress, as the engine streams it from POST
 * /build?version=2 (`{"id":"moby.buildkit.trace","aux":"<base64>"}`, each the
 * base64 of a protobuf moby.buildkit.v1.StatusResponse), turned into the
 * lines the docker CLI prints with --progress=plain:
 *
 *   #3 [stage-0 2/3] RUN make
 *   #3 cc -o app app.c          (the step's stdout and stderr)
 *   #3 DONE 0.3s                (or #3 CACHED, or #3 ERROR: ...)
 *
 * A step is numbered when it first starts; it remembers its last output
 * lines, so that a failed build can say which step failed and what it printed
 * last. The input is the engine's: anything malformed is skipped, never
 * trusted, and every table is bounded. */
#ifndef KILN_BKTRACE_H
#define KILN_BKTRACE_H

#include <stddef.h>
#include <sys/types.h>

#include "kiln/buf.h"
#include "kiln/common.h"

#define BKTRACE_MSG_MAX	     (4u << 20) /* a decoded StatusResponse larger than this is skipped */
#define BKTRACE_VERTICES_MAX 10000	/* steps of one build; later ones go unnamed */
#define BKTRACE_LINE_MAX     4096	/* a step's output line is cut here */
#define BKTRACE_TAIL_LINES   5		/* output lines a step keeps for its error */
#define BKTRACE_TAIL_BYTES   1024

struct bktrace;
typedef buf_line_cb bktrace_show_cb;

struct bktrace *bktrace_new(void);
struct bktrace *bktrace_free(struct bktrace *t); /* NULL-safe; returns NULL */

/* Decodes one trace message (the aux string: base64 text of len bytes) and
 * shows what it says, a line per call. -EINVAL when the base64 or the
 * protobuf is malformed: what was decoded before the fault is shown. */
int bktrace_feed(struct bktrace *t, const char *b64, size_t len, bktrace_show_cb *show, void *arg);
/* The same for a decoded StatusResponse (for the tests and the fuzzer). */
int bktrace_feed_raw(struct bktrace *t, const unsigned char *p, size_t len, bktrace_show_cb *show,
		     void *arg);
/* Ends every step's unfinished output line (the stream ended). */
void bktrace_flush(struct bktrace *t, bktrace_show_cb *show, void *arg);

/* The first step that failed, as one line for the build's error:
 * "step '[2/2] RUN make' failed: <its error>; last output: a | b". Returns
 * false (buf untouched) when no step has failed. */
bool bktrace_failure(const struct bktrace *t, char *buf, size_t size);

/* Decodes base64 (standard alphabet, padding optional, no whitespace) into
 * out, which holds at least len * 3 / 4 + 3 bytes: the count, or -EINVAL. */
ssize_t bktrace_base64_decode(const char *in, size_t len, unsigned char *out);

#endif
