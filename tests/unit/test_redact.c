/* test_redact.c: credentials in URLs are masked wherever they stand: a bare
 * URL, URLs quoted inside a message (libgit2's and ours), an unencoded '@' in
 * the password, a token as the user name, ssh account names kept, text cut in
 * the middle of a password, and a mask that does not fit its buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/redact.h"

static void expect_dup(const char *in, const char *want)
{
	char *got = redact_dup(in);
	assert_string_equal(got, want);
	free(got);
}

static void urls(void **state)
{
	(void)state;
	expect_dup("http://user:s3cret@host/x.git", "http://user:***@host/x.git");
	expect_dup("https://user:p@ss@host:8443/x.git", "https://user:***@host:8443/x.git");
	expect_dup("https://ghp_TOKEN@github.com/o/r.git", "https://***@github.com/o/r.git");
	expect_dup("https://user:@host/x", "https://user:***@host/x");
	expect_dup("ssh://git@host/x.git", "ssh://git@host/x.git");
	expect_dup("git+ssh://git:pw@host/x.git", "git+ssh://git:***@host/x.git");
	/* nothing to hide */
	expect_dup("https://host:8080/a@b", "https://host:8080/a@b");
	expect_dup("git@host:x.git", "git@host:x.git");
	expect_dup("/srv/git/x.git", "/srv/git/x.git");
	expect_dup("file:///srv/x.git", "file:///srv/x.git");
	assert_true(redact_has_secret("http://u:p@h/x"));
	assert_true(redact_has_secret("https://token@h/x"));
	assert_false(redact_has_secret("ssh://git@h/x"));
	assert_false(redact_has_secret("https://h/x"));
}

static void in_messages(void **state)
{
	char msg[256];

	(void)state;
	snprintf(msg, sizeof(msg),
		 "cannot fetch from 'http://u:s3cret@h/x.git': too many redirects or "
		 "authentication replays; see http://a:b@c/ and http://d/");
	assert_int_equal(redact_text(msg, sizeof(msg)), 2);
	assert_string_equal(msg, "cannot fetch from 'http://u:***@h/x.git': too many redirects or "
				 "authentication replays; see http://a:***@c/ and http://d/");
	/* a plain listen address at the end of a line stays */
	snprintf(msg, sizeof(msg), "listening on http://127.0.0.1:8080");
	assert_int_equal(redact_text(msg, sizeof(msg)), 0);
	assert_string_equal(msg, "listening on http://127.0.0.1:8080");
}

/* what vsnprintf leaves of a text longer than the buffer */
static void cut_copy(char *dst, size_t size, const char *text)
{
	size_t n = strlen(text) < size - 1 ? strlen(text) : size - 1;

	memcpy(dst, text, n);
	dst[n] = '\0';
}

static void cut_texts(void **state)
{
	char msg[24];

	(void)state;
	/* the buffer ends inside the password: the '@' is gone, the rest goes */
	cut_copy(msg, sizeof(msg), "fetch http://user:s3cret@host/x");
	assert_string_equal(msg, "fetch http://user:s3cre");
	assert_int_equal(redact_text(msg, sizeof(msg)), 1);
	assert_string_equal(msg, "fetch http://***");
	/* a mask longer than what it hides is cut at the buffer's end */
	cut_copy(msg, sizeof(msg), "at http://u:p@h/abcdefg");
	assert_int_equal(redact_text(msg, sizeof(msg)), 1);
	assert_string_equal(msg, "at http://u:***@h/abcde");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(urls),
	    cmocka_unit_test(in_messages),
	    cmocka_unit_test(cut_texts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
