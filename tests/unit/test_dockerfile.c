/* test_dockerfile.c: FROM extraction the way Docker reads a Dockerfile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/dockerfile.h"

/* Asserts the FROM refs of text (with optional build args) equal want[] ("line:ref"). */
static void expect(const char *text, const struct kv *args, size_t nargs, const char *const *want,
		   size_t nwant)
{
	struct dockerfile_froms f = {0};
	char got[512];

	assert_int_equal(dockerfile_froms(text, strlen(text), args, nargs, &f, NULL), 0);
	if (f.n != nwant) {
		for (size_t i = 0; i < f.n; i++)
			fprintf(stderr, "got %u:%s\n", f.v[i].line, f.v[i].ref);
		fail_msg("expected %zu FROM refs, got %zu", nwant, f.n);
	}
	for (size_t i = 0; i < f.n; i++) {
		snprintf(got, sizeof(got), "%u:%s", f.v[i].line, f.v[i].ref);
		assert_string_equal(got, want[i]);
	}
	dockerfile_froms_done(&f);
}

#define EXPECT(text, ...)                                                                          \
	do {                                                                                       \
		const char *const w[] = {__VA_ARGS__};                                             \
		expect(text, NULL, 0, w, sizeof(w) / sizeof(w[0]));                                \
	} while (0)

static void plain_and_tags(void **state)
{
	(void)state;
	EXPECT("FROM alpine\n", "1:alpine:latest");
	EXPECT("from reg:5000/a/b:1.2\n", "1:reg:5000/a/b:1.2");
	EXPECT("FROM reg:5000/a/b\n", "1:reg:5000/a/b:latest");
	EXPECT("FROM a@sha256:abc\n", "1:a@sha256:abc");
	expect("FROM scratch\n", NULL, 0, NULL, 0);
}

static void stages_flags_comments(void **state)
{
	(void)state;
	EXPECT("# syntax=docker/dockerfile:1\n"
	       "FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\n"
	       "RUN make\n"
	       "# FROM commented:1\n"
	       "FROM build AS test\n"
	       "FROM BUILD\n"
	       "  FROM   reg/final:2  as   out\n",
	       "2:golang:1.22", "7:reg/final:2");
}

static void continuations(void **state)
{
	(void)state;
	EXPECT("FROM \\\n  # a comment inside\n\n   reg/x:1 \\\n   AS y\nFROM y\n", "1:reg/x:1");
	/* the escape directive switches the continuation character */
	EXPECT("# escape=`\nFROM reg/w:1 `\n AS z\nFROM c:\\x\n", "2:reg/w:1", "4:c:\\x");
	/* a continuation joins text as is: "alpine:" and "3.18" stay apart */
	EXPECT("FROM alpine:\\\n3.18\n", "1:alpine:3.18");
}

static void args_and_build_args(void **state)
{
	const struct kv args[] = {{"TAG", "9"}, {"UNDECLARED", "u"}};
	const char *const w1[] = {"3:reg/base:9", "4:reg/other:latest", "5:x:1"};
	const char *const w2[] = {"3:reg/base:3", "4:reg/other:latest", "5:x:1"};
	const char *text = "ARG REG=reg\nARG TAG=3 V=1\n"
			   "FROM ${REG}/base:$TAG\n"
			   "FROM $REG/other${UNDECLARED}\n"
			   "FROM x:${V}\n";

	(void)state;
	expect(text, args, 2, w1, 3);
	expect(text, NULL, 0, w2, 3);
	/* ARG after the first FROM does not reach later FROM lines */
	EXPECT("FROM a:1\nARG LATE=z\nFROM b:${LATE}\n", "1:a:1", "3:b:");
	/* defaults may use earlier args; modifiers */
	EXPECT("ARG A=x\nARG B=${A}y\nFROM $B\nFROM ${UNSET:-dflt}:${A:+set}\nFROM q:${A:-no}\n",
	       "3:xy:latest", "4:dflt:set", "5:q:x");
	/* quotes are removed, single quotes do not expand */
	EXPECT("ARG A=\"r/b\"\nFROM \"$A\":1\nFROM '$A'\n", "2:r/b:1", "3:$A:latest");
}

static void normalize(void **state)
{
	char *s;

	(void)state;
	s = dockerfile_normalize_ref("host:5000/x");
	assert_string_equal(s, "host:5000/x:latest");
	free(s);
	s = dockerfile_normalize_ref("host:5000/x:2");
	assert_string_equal(s, "host:5000/x:2");
	free(s);
}

static void size_limit(void **state)
{
	size_t n = DOCKERFILE_SIZE_MAX + 1;
	char *big = calloc(1, n);
	struct dockerfile_froms f = {0};
	struct kiln_err err = {0};

	(void)state;
	assert_int_equal(dockerfile_froms(big, n, NULL, 0, &f, &err), -EFBIG);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(plain_and_tags), cmocka_unit_test(stages_flags_comments),
	    cmocka_unit_test(continuations),  cmocka_unit_test(args_and_build_args),
	    cmocka_unit_test(normalize),      cmocka_unit_test(size_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
