/* test_bktrace.c (build): BuildKit's trace as kiln shows it, from streams a
 * real dockerd 20.10.24 sent (the .ndjson files in tests/data/bktrace: a build with a
 * cache mount, a failing RUN, a RUN on an engine without a bridge), and from
 * hand-made protobuf for what those do not cover (cuts, bad input). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/bktrace.h"
#include "kiln/buf.h"
#include "kiln/job.h"

static void collect(const char *line, size_t len, void *arg)
{
	struct buf *b = arg;

	buf_append(b, line, len);
	buf_putc(b, '\n');
}

/* Every line of a captured stream through the job's reply parser, as the
 * job reads it; returns whether a line reported an error. */
static bool replay(const char *name, struct job_reply *rp, struct buf *shown)
{
	char *path = xasprintf("%s/bktrace/%s", KILN_TEST_DATA, name);
	FILE *f = fopen(path, "r");
	char line[65536];
	bool failed = false;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		failed |= job_reply_line(rp, line, strlen(line), collect, shown);
	}
	fclose(f);
	free(path);
	bktrace_flush(rp->trace, collect, shown);
	return failed;
}

static void real_build(void **state)
{
	struct job_reply rp = {.kind = JOB_STREAM_BUILDKIT, .trace = bktrace_new()};
	struct buf shown = {0};
	char why[256];

	(void)state;
	assert_false(replay("build-ok.ndjson", &rp, &shown));
	assert_string_equal(
	    rp.id, "sha256:0f5fb67b156ee0b2820fb9c0f1b92bc6a803f6b8a4d243b85dc03b68baeaeba0");
	/* steps numbered as they start, each with its output and duration */
	assert_non_null(strstr(shown.p, "#1 [internal] load remote build context\n#1 DONE 0.0s\n"));
	assert_non_null(strstr(shown.p, "#3 [stage-0 1/3] COPY busybox /bin/busybox\n"));
	assert_non_null(strstr(shown.p, "#4 [stage-0 2/3] RUN [\"/bin/busybox\", \"sh\", \"-c\", "
					"\"echo hello out; echo err >&2; /bin/busybox mkdir -p "
					"/tmp\"]\n#4 err\n#4 hello out\n#4 DONE 0.2s\n"));
	assert_non_null(strstr(shown.p, "#5 x\n#5 DONE 0.1s\n"));
	assert_non_null(strstr(shown.p, "#6 exporting to image\n"));
	assert_non_null(strstr(shown.p, "#6 writing image sha256:0f5fb67b156e"));
	/* said once, though the engine repeats finished steps */
	assert_null(strstr(strstr(shown.p, "#4 DONE") + 1, "#4 DONE"));
	assert_false(bktrace_failure(rp.trace, why, sizeof(why)));
	bktrace_free(rp.trace);
	buf_done(&shown);
}

static void real_failure(void **state)
{
	struct job_reply rp = {.kind = JOB_STREAM_BUILDKIT, .trace = bktrace_new()};
	struct buf shown = {0};
	char why[1024];

	(void)state;
	assert_true(replay("build-failed.ndjson", &rp, &shown));
	assert_string_equal(rp.id, "");
	assert_non_null(strstr(shown.p, "#4 line1\n#4 line2\n#4 ERROR: executor failed running "
					"[/bin/busybox sh -c echo line1; echo line2 >&2; exit "
					"3]: exit code: 3\n"));
	assert_true(bktrace_failure(rp.trace, why, sizeof(why)));
	assert_string_equal(why, "step '[2/2] RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo line1; "
				 "echo line2 >&2; exit 3\"]' failed: executor failed running "
				 "[/bin/busybox sh -c echo line1; echo line2 >&2; exit 3]: exit "
				 "code: 3; last output: line1 | line2");
	assert_non_null(strstr(rp.error, "exit code: 3"));
	bktrace_free(rp.trace);
	buf_done(&shown);
}

static void real_no_bridge(void **state)
{
	struct job_reply rp = {.kind = JOB_STREAM_BUILDKIT, .trace = bktrace_new()};
	struct buf shown = {0};
	char why[1024];

	(void)state;
	assert_true(replay("no-bridge.ndjson", &rp, &shown));
	assert_true(bktrace_failure(rp.trace, why, sizeof(why)));
	assert_non_null(strstr(why, "network bridge not found"));
	bktrace_free(rp.trace);
	buf_done(&shown);
}

/* ---- hand-made messages ---- */

static void put_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		buf_putc(b, (char)(v | 0x80));
		v >>= 7;
	}
	buf_putc(b, (char)v);
}

static void put_bytes(struct buf *b, unsigned field, const void *p, size_t n)
{
	put_varint(b, field << 3 | 2);
	put_varint(b, n);
	buf_append(b, p, n);
}

static void put_msg(struct buf *b, unsigned field, struct buf *sub)
{
	put_bytes(b, field, sub->p ? sub->p : "", sub->len);
	buf_done(sub);
}

/* StatusResponse{vertexes: [{digest, name, started, completed?, error?}]} */
static void vertex(struct buf *out, const char *digest, const char *name, bool completed,
		   const char *error)
{
	struct buf v = {0}, ts = {0};

	put_bytes(&v, 1, digest, strlen(digest));
	put_bytes(&v, 3, name, strlen(name));
	put_varint(&ts, 1 << 3);
	put_varint(&ts, 100);
	put_msg(&v, 5, &ts);
	if (completed) {
		put_varint(&ts, 1 << 3);
		put_varint(&ts, 102);
		put_msg(&v, 6, &ts);
	}
	if (error)
		put_bytes(&v, 7, error, strlen(error));
	put_msg(out, 1, &v);
}

/* StatusResponse{logs: [{vertex, stream: 1, msg}]} */
static void logmsg(struct buf *out, const char *digest, const void *msg, size_t n)
{
	struct buf l = {0};

	put_bytes(&l, 1, digest, strlen(digest));
	put_varint(&l, 3 << 3);
	put_varint(&l, 1);
	put_bytes(&l, 4, msg, n);
	put_msg(out, 3, &l);
}

static void output_lines(void **state)
{
	struct bktrace *t = bktrace_new();
	struct buf m = {0}, shown = {0};
	char why[2048], big[BKTRACE_LINE_MAX + 10];

	(void)state;
	vertex(&m, "d1", "[1/1] RUN make", false, NULL);
	logmsg(&m, "d1", "a\nb", 3);  /* "b" continues in the next piece */
	logmsg(&m, "d1", "c\r\n", 3); /* CR LF ends a line too */
	for (int i = 0; i < 7; i++)
		logmsg(&m, "d1", "n\n", 2);
	logmsg(&m, "d1", "x\0y\n", 4); /* a NUL ends what a line can show */
	memset(big, 'z', sizeof(big));
	logmsg(&m, "d1", big, sizeof(big)); /* cut in pieces, never lost */
	logmsg(&m, "d1", "unended", 7);	    /* ends the cut line's last piece */
	vertex(&m, "d1", "[1/1] RUN make", true, "exit code: 2");
	assert_int_equal(bktrace_feed_raw(t, (unsigned char *)m.p, m.len, collect, &shown), 0);
	assert_non_null(strstr(shown.p, "#1 [1/1] RUN make\n#1 a\n#1 bc\n#1 n\n"));
	assert_non_null(strstr(shown.p, "#1 x\n#1 zzz"));
	assert_non_null(strstr(shown.p, "\n#1 zzzzzzzzzzunended\n#1 ERROR: exit code: 2\n"));
	assert_true(bktrace_failure(t, why, sizeof(why)));
	/* the last five lines only, each cut to fit 1 KiB together */
	assert_non_null(strstr(why,
			       "step '[1/1] RUN make' failed: exit code: 2; last output: n | n | x"
			       " | zzz"));
	assert_non_null(strstr(why, " | zzzzzzzzzzunended"));
	assert_true(strlen(why) < 1024 + 100);
	bktrace_free(t);
	buf_done(&m);
	buf_done(&shown);
}

/* A cancelled sibling's "context canceled" does not hide the real failure. */
static void first_real_error(void **state)
{
	struct bktrace *t = bktrace_new();
	struct buf m = {0}, shown = {0};
	char why[512];

	(void)state;
	vertex(&m, "a", "[a 1/1] RUN sleep 9", true, "context canceled");
	vertex(&m, "b", "[b 1/1] RUN false", true, "exit code: 1");
	vertex(&m, "c", "[c 1/1] RUN true", true, "exit code: 5");
	assert_int_equal(bktrace_feed_raw(t, (unsigned char *)m.p, m.len, collect, &shown), 0);
	assert_true(bktrace_failure(t, why, sizeof(why)));
	assert_string_equal(why, "step '[b 1/1] RUN false' failed: exit code: 1");
	bktrace_free(t);
	buf_done(&m);
	buf_done(&shown);
}

static void bad_input(void **state)
{
	struct bktrace *t = bktrace_new();
	struct buf shown = {0}, m = {0};
	unsigned char out[16];
	static const unsigned char cut[] = {0x0a, 0x05, 0x0a, 0x01};	/* length past the end */
	static const unsigned char group[] = {0x0b, 0x0c};		/* a group */
	static const unsigned char varint[] = {0x08, 0xff, 0xff, 0xff}; /* never ends */

	(void)state;
	assert_int_equal(bktrace_feed_raw(t, cut, sizeof(cut), collect, &shown), -EINVAL);
	assert_int_equal(bktrace_feed_raw(t, group, sizeof(group), collect, &shown), -EINVAL);
	assert_int_equal(bktrace_feed_raw(t, varint, sizeof(varint), collect, &shown), -EINVAL);
	assert_int_equal(bktrace_feed(t, "!!!!", 4, collect, &shown), -EINVAL);
	/* a varint where a message was expected: skipped */
	assert_int_equal(bktrace_feed(t, "CAE=", 4, collect, &shown), 0);
	assert_null(shown.p);
	/* unknown fields and a fixed-size one are skipped */
	put_varint(&m, 9 << 3 | 1);
	buf_append(&m, "12345678", 8);
	put_bytes(&m, 15, "new", 3);
	vertex(&m, "d", "step", true, NULL);
	assert_int_equal(bktrace_feed_raw(t, (unsigned char *)m.p, m.len, collect, &shown), 0);
	assert_string_equal(shown.p, "#1 step\n#1 DONE 2.0s\n");
	assert_int_equal(bktrace_base64_decode("aGk", 3, out), 2);
	assert_memory_equal(out, "hi", 2);
	assert_int_equal(bktrace_base64_decode("a", 1, out), -EINVAL);
	bktrace_free(t);
	buf_done(&m);
	buf_done(&shown);
}

/* moby.image.id names the image; other aux objects (a stage's) do not. */
static void image_id_only_from_moby_image_id(void **state)
{
	struct job_reply rp = {.kind = JOB_STREAM_BUILDKIT};
	struct buf shown = {0};
	static const char stage[] = "{\"aux\":{\"ID\":\"sha256:stage\"}}";
	static const char image[] = "{\"id\":\"moby.image.id\",\"aux\":{\"ID\":\"sha256:img\"}}";

	(void)state;
	job_reply_line(&rp, stage, strlen(stage), collect, &shown);
	assert_string_equal(rp.id, "");
	job_reply_line(&rp, image, strlen(image), collect, &shown);
	assert_string_equal(rp.id, "sha256:img");
	buf_done(&shown);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(real_build),
	    cmocka_unit_test(real_failure),
	    cmocka_unit_test(real_no_bridge),
	    cmocka_unit_test(output_lines),
	    cmocka_unit_test(first_real_error),
	    cmocka_unit_test(bad_input),
	    cmocka_unit_test(image_id_only_from_moby_image_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
