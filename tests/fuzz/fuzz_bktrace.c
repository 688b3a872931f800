/* fuzz_bktrace.c (build): BuildKit's trace messages as kiln decodes them. Each
 * input is fed twice to one decoder as a raw StatusResponse (the second time
 * every step is known: updates, output of numbered steps), then as the base64
 * text the engine sends. No input may crash or leak; every line shown stays a
 * bounded C string, and the failure summary fits its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/bktrace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* a step's number, its name (cut at 1 KiB) or an output line (cut at
 * BKTRACE_LINE_MAX), and the words around them */
#define SHOWN_LINE_MAX (BKTRACE_LINE_MAX + 2048)

static void show(const char *line, size_t len, void *arg)
{
	(void)arg;
	if (len > SHOWN_LINE_MAX || memchr(line, '\0', len))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bktrace *t = bktrace_new();
	char summary[64];

	bktrace_feed_raw(t, data, size, show, NULL);
	bktrace_feed_raw(t, data, size, show, NULL);
	bktrace_feed(t, (const char *)data, size, show, NULL);
	bktrace_flush(t, show, NULL);
	if (bktrace_failure(t, summary, sizeof(summary)) && strnlen(summary, 64) == 64)
		abort();
	bktrace_free(t);
	return 0;
}
