/* test_jsonscan.c: the checking pass keeps the wanted top-level strings
 * (escapes decoded), leaves others NULL, and refuses what jansson refuses
 * (malformed, trailing data, NUL, lone surrogates, bad UTF-8, duplicate
 * wanted keys, nesting past the limit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/buf.h"
#include "kiln/jsonscan.h"

/* Scans s for ref, after and before; returns the result, fields in f. */
static int scan(const char *s, struct jsonscan_field f[3])
{
	f[0] = (struct jsonscan_field){"ref", NULL};
	f[1] = (struct jsonscan_field){"after", NULL};
	f[2] = (struct jsonscan_field){"before", NULL};
	return jsonscan_object(s, strlen(s), f, 3, NULL);
}

static void done(struct jsonscan_field f[3])
{
	for (int i = 0; i < 3; i++)
		free(f[i].value);
}

static void keeps_top_level_strings(void **state)
{
	struct jsonscan_field f[3];

	(void)state;
	assert_int_equal(
	    scan(" {\"commits\": [{\"ref\": \"nested\", \"n\": -1.5e+3, \"ok\": true},"
		 " null, false, 0, []], \"r\\u0065f\": \"refs/heads/ma\\u00efn\\n\","
		 " \"before\": 7, \"repository\": {\"after\": \"x\"}, \"after\": \"\"}\n",
		 f),
	    0);
	assert_string_equal(f[0].value, "refs/heads/ma\xc3\xafn\n");
	assert_non_null(f[1].value);
	assert_string_equal(f[1].value, ""); /* an empty string, not absent */
	assert_null(f[2].value);	     /* not a string */
	done(f);
	assert_int_equal(scan("{}", f), 0);
	assert_null(f[0].value);
	assert_int_equal(scan("{\"ref\":\"\\ud83d\\ude00 \\\"\\\\\\/\\b\\f\\r\\t\"}", f), 0);
	assert_string_equal(f[0].value, "\xf0\x9f\x98\x80 \"\\/\b\f\r\t");
	done(f);
}

static void refuses_what_jansson_refuses(void **state)
{
	static const char *const bad[] = {
	    "",
	    "[]",
	    "\"ref\"",
	    "{\"ref\": \"a\"} x",
	    "{\"ref\": \"a\",}",
	    "{\"ref\" \"a\"}",
	    "{\"ref\": \"a\"",
	    "{\"ref\": \"a}",
	    "{\"ref\": \"a\\u0000\"}",
	    "{\"ref\": \"\\ud800\"}",
	    "{\"ref\": \"\\udc00\"}",
	    "{\"ref\": \"\\ud800\\u0041\"}",
	    "{\"ref\": \"\\x\"}",
	    "{\"ref\": \"\xc0\xaf\"}",	   /* overlong '/' */
	    "{\"ref\": \"\xed\xa0\x80\"}", /* an encoded surrogate */
	    "{\"ref\": \"\xf4\x90\x80\x80\"}",
	    "{\"ref\": \"a\tb\"}",
	    "{\"ref\": \"a\", \"ref\": \"b\"}",
	    "{\"ref\": 1, \"ref\": \"b\"}",
	    "{\"x\": 01}",
	    "{\"x\": 1.}",
	    "{\"x\": -}",
	    "{\"x\": 1e}",
	    "{\"x\": tru}",
	    "{\"x\": [1 2]}",
	    "{\"x\": [1,]}",
	    "{\"x\": {\"a\" 1}}",
	};
	struct jsonscan_field f[3];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scan(bad[i], f) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
		assert_null(f[0].value);
	}
}

static void depth_is_bounded(void **state)
{
	struct buf b = {0};
	struct jsonscan_field f[3];

	(void)state;
	buf_puts(&b, "{\"ref\": \"x\", \"a\": ");
	for (int i = 0; i < JSONSCAN_DEPTH_MAX - 2; i++)
		buf_putc(&b, '[');
	for (int i = 0; i < JSONSCAN_DEPTH_MAX - 2; i++)
		buf_putc(&b, ']');
	buf_putc(&b, '}');
	assert_int_equal(scan(b.p, f), 0); /* the limit itself */
	done(f);
	buf_done(&b);
	buf_puts(&b, "{\"a\": ");
	for (int i = 0; i < 100000; i++)
		buf_putc(&b, '[');
	assert_int_equal(scan(b.p, f), -EINVAL);
	buf_done(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(keeps_top_level_strings),
	    cmocka_unit_test(refuses_what_jansson_refuses),
	    cmocka_unit_test(depth_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
