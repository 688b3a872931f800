/* test_path.c: repository-relative path normalisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/path.h"

static void check(const char *dir, const char *rel, int want_r, const char *want)
{
	char *out = NULL;
	int r = path_resolve(dir, rel, &out);

	assert_int_equal(r, want_r);
	if (r == 0)
		assert_string_equal(out, want);
	free(out);
}

static void resolve(void **state)
{
	(void)state;
	check("a/b", "Dockerfile", 0, "a/b/Dockerfile");
	check("a/b", ".", 0, "a/b");
	check("a/b", "./x/../y//z/", 0, "a/b/y/z");
	check("a/b", "../..", 0, "");
	check("a/b", "../../..", -EXDEV, NULL);
	check("", "..", -EXDEV, NULL);
	check("", "x", 0, "x");
	check("a", "/etc/passwd", -EINVAL, NULL);
	check("a", "", -EINVAL, NULL);
	/* leaving and coming back in is still leaving */
	check("a", "../../a/x", -EXDEV, NULL);
}

static void helpers(void **state)
{
	(void)state;
	assert_string_equal(path_display(""), ".");
	assert_string_equal(path_display("a"), "a");
	assert_string_equal(path_below("a/b/c", "a"), "b/c");
	assert_string_equal(path_below("a/b", ""), "a/b");
	assert_null(path_below("ab/c", "a"));
	assert_int_equal(path_parent_len("a/b/c", 5), 3);
	assert_int_equal(path_parent_len("abc", 3), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(resolve),
	    cmocka_unit_test(helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
