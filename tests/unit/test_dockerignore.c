/* test_dockerignore.c: the matcher against tests/data/dockerignore.cases (each
 * case confirmed with the real Docker CLI), and parse errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/buf.h"
#include "kiln/dockerignore.h"

static void run_case(const char *title, struct buf *patterns, struct strv *files, int *checked)
{
	struct dockerignore *di = NULL;
	struct kiln_err err = {0};

	if (dockerignore_parse(patterns->p ? patterns->p : "", patterns->len, &di, &err) < 0)
		fail_msg("case '%s': %s", title, err.msg);
	for (size_t i = 0; i < files->n; i++) {
		char *f = files->v[i];
		size_t n = strlen(f);
		bool want_sent = f[n - 1] == '+';
		f[n - 2] = '\0';
		if (dockerignore_excluded(di, f) == want_sent)
			fail_msg("case '%s': '%s' should be %s", title, f,
				 want_sent ? "sent" : "excluded");
		(*checked)++;
	}
	dockerignore_free(di);
}

static void cli_confirmed_cases(void **state)
{
	FILE *f = fopen(KILN_TEST_DATA "/dockerignore.cases", "r");
	char line[4096], title[4096] = "";
	struct buf patterns = {0};
	struct strv files = {0};
	int ncases = 0, checked = 0, nfiles = 0;

	(void)state;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "=== ", 4) == 0) {
			if (ncases++)
				run_case(title, &patterns, &files, &checked);
			snprintf(title, sizeof(title), "%s", line + 4);
			patterns.len = 0;
			strv_done(&files);
		} else if (strncmp(line, "P ", 2) == 0) {
			buf_puts(&patterns, line + 2);
			buf_putc(&patterns, '\n');
		} else if (strncmp(line, "F ", 2) == 0) {
			strv_push(&files, xstrdup(line + 2));
			nfiles++;
		}
	}
	run_case(title, &patterns, &files, &checked);
	fclose(f);
	buf_done(&patterns);
	strv_done(&files);
	assert_true(ncases >= 30);
	assert_int_equal(checked, nfiles);
	assert_true(nfiles >= 80);
}

static void parse_errors(void **state)
{
	const char *bad[] = {"!\n", "a\n  !  \n", "[a\n", "[]\n", "x\\\n", "[z-a]\n", "[-a]\n"};
	struct dockerignore *di = NULL;
	struct kiln_err err = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		di = NULL;
		if (dockerignore_parse(bad[i], strlen(bad[i]), &di, &err) != -EINVAL)
			fail_msg("'%s' should not parse", bad[i]);
		assert_null(di);
		assert_non_null(strstr(err.msg, ".dockerignore:"));
	}
	assert_int_equal(dockerignore_parse("a\n!\n", 4, &di, &err), -EINVAL);
	assert_non_null(strstr(err.msg, ":2:"));
}

static void bom_crlf_and_empty(void **state)
{
	const char text[] = "\xEF\xBB\xBF"
			    "foo\r\n\r\n# c\r\nbar\r\n";
	struct dockerignore *di = NULL;
	struct kiln_err err = {0};

	(void)state;
	assert_int_equal(dockerignore_parse(text, sizeof(text) - 1, &di, &err), 0);
	assert_int_equal(dockerignore_npatterns(di), 2);
	assert_true(dockerignore_excluded(di, "foo"));
	assert_true(dockerignore_excluded(di, "bar/x"));
	assert_false(dockerignore_excluded(di, "baz"));
	di = dockerignore_free(di);
	assert_int_equal(dockerignore_parse("", 0, &di, &err), 0);
	assert_false(dockerignore_excluded(di, "anything"));
	dockerignore_free(di);
}

static void no_backtracking_blowup(void **state)
{
	/* 30 stars against a long near-miss: an NFA is linear, backtracking is not. */
	struct buf p = {0}, s = {0};
	struct dockerignore *di = NULL;
	struct kiln_err err = {0};

	(void)state;
	for (int i = 0; i < 30; i++)
		buf_puts(&p, "*a");
	buf_puts(&p, "b\n");
	for (int i = 0; i < 3000; i++)
		buf_putc(&s, 'a');
	assert_int_equal(dockerignore_parse(p.p, p.len, &di, &err), 0);
	assert_false(dockerignore_excluded(di, s.p));
	dockerignore_free(di);
	buf_done(&p);
	buf_done(&s);
}

static void line_too_long(void **state)
{
	size_t n = DOCKERIGNORE_LINE_MAX + 2;
	char *text = malloc(n);
	struct dockerignore *di = NULL;
	struct kiln_err err = {0};

	(void)state;
	memset(text, 'a', n);
	assert_int_equal(dockerignore_parse(text, n, &di, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "longer than"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(cli_confirmed_cases), cmocka_unit_test(parse_errors),
	    cmocka_unit_test(bom_crlf_and_empty),  cmocka_unit_test(no_backtracking_blowup),
	    cmocka_unit_test(line_too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
