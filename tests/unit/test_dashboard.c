/* test_dashboard.c: the dashboard's pieces that see hostile input: HTML
 * escaping, ANSI colour codes turned into text, the query string's filters
 * and cursors, the auth file and the Authorization header. The hashes were
 * made by the tools an operator uses: `htpasswd -nbB -C 5` ($2y$), python3's
 * crypt module (METHOD_BLOWFISH: $2b$, METHOD_SHA256: $5$) and
 * `openssl passwd -6` ($6$); runs of those tools at test time
 * run in tests/integration/dashboard.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/dashboard.h"

#define ALICE "alice:$2y$05$NiNMN3r2IKPpJDlVu0EA3exl12TJFNNDC9YGKXLN4YOI3jBoMcPry\n"
#define BOB                                                                                        \
	"bob:$6$saltsalt$J0HqphIcObHD/gdYF3Rt9Gfypz2EAvpwOgPggzqggnaAB1ug0kYA9fAV/"                \
	"lvhIOalIFuG5iALluV728wQZTFea0\n"
#define CAROL "carol:$5$wAxwKsEzZdI6sIT3$LnCDrdopt/zN.YxbvMFiusaW2nmMIxMtr1Vwr.Ef8L.\n"
#define DAVE  "dave:$2b$04$7kDSaGymZmT/AOj1OEKLXOQfAAiBdOmsfmeq/53pgMxwvXDsDtD9m\n"

static char *escaped(const char *s)
{
	struct buf b = {0};
	dashboard_escape(&b, s, strlen(s));
	return buf_steal(&b);
}

static void escape(void **state)
{
	char *s;

	(void)state;
	s = escaped("<script>alert('x')</script> & \"q\"");
	assert_string_equal(s,
			    "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
	free(s);
	s = escaped("plain text, ünïcode");
	assert_string_equal(s, "plain text, ünïcode");
	free(s);
	s = escaped("");
	assert_string_equal(s, "");
	free(s);
	s = escaped("&amp;");
	assert_string_equal(s, "&amp;amp;");
	free(s);
}

static char *text(const char *s, size_t len)
{
	struct buf b = {0};
	dashboard_ansi_text(&b, s, len);
	return buf_steal(&b);
}

#define TEXT(lit) text(lit, sizeof(lit) - 1)

static void ansi(void **state)
{
	char *s;
	static const char nul[] = "a\0b";

	(void)state;
	s = TEXT("\x1b[1;31merror\x1b[0m: x\n");
	assert_string_equal(s, "error: x\n");
	free(s);
	/* 256 colours, a cursor move, OSC title with BEL and with ST, ESC c */
	s = TEXT("\x1b[38;5;196mred\x1b[2K\x1b]0;title\a.\x1b]8;;http://x\x1b\\link\x1b"
		 "c!");
	assert_string_equal(s, "red.link!");
	free(s);
	/* a progress line's carriage returns and other controls go; tabs stay */
	s = TEXT("50%\r100%\t\x07\x08"
		 "done\n");
	assert_string_equal(s, "50%100%\tdone\n");
	free(s);
	/* a sequence cut at the end of the text, and NUL */
	s = TEXT("ok\x1b[31");
	assert_string_equal(s, "ok");
	free(s);
	s = text(nul, sizeof(nul) - 1);
	assert_string_equal(s, "ab");
	free(s);
	/* markup is not touched here: escaping is the page's */
	s = TEXT("<b>");
	assert_string_equal(s, "<b>");
	free(s);
}

static void query(void **state)
{
	struct dashboard_query q;
	struct kiln_err err = {0};

	(void)state;
	assert_int_equal(dashboard_parse_query(NULL, &q, &err), 0);
	assert_string_equal(q.repo, "");
	assert_int_equal(q.before, 0);
	assert_int_equal(q.offset, -1);
	assert_int_equal(dashboard_parse_query("repository=images&image=team%2Fapp+x&state=failed"
					       "&before=120&offset=0&follow=1&x",
					       &q, &err),
			 0);
	assert_string_equal(q.repo, "images");
	assert_string_equal(q.image, "team/app x");
	assert_string_equal(q.state, "failed");
	assert_int_equal(q.before, 120);
	assert_int_equal(q.offset, 0);
	/* the form sends empty fields for "any" */
	assert_int_equal(dashboard_parse_query("repository=&image=&state=", &q, &err), 0);
	assert_string_equal(q.state, "");
	assert_int_equal(dashboard_parse_query("state=bogus", &q, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bogus"));
	assert_int_equal(dashboard_parse_query("before=0", &q, &err), -EINVAL);
	assert_int_equal(dashboard_parse_query("before=-1", &q, &err), -EINVAL);
	assert_int_equal(dashboard_parse_query("before=12x", &q, &err), -EINVAL);
	assert_int_equal(dashboard_parse_query("before=99999999999999999999", &q, &err), -EINVAL);
	assert_int_equal(dashboard_parse_query("offset=%2D1", &q, &err), -EINVAL);
	assert_int_equal(dashboard_parse_query("image=%zz", &q, &err), -EINVAL);
	assert_int_equal(dashboard_parse_query("image=%4", &q, &err), -EINVAL);
	assert_int_equal(dashboard_parse_query("image=a%00b", &q, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "NUL"));
	{
		char longq[2000] = "repository=";
		memset(longq + 11, 'a', 300);
		assert_int_equal(dashboard_parse_query(longq, &q, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "longer"));
	}
}

static char *b64_header(const char *b64)
{
	static char h[8192];
	snprintf(h, sizeof(h), "Basic %s", b64);
	return h;
}

static void auth(void **state)
{
	struct dashboard_auth *a = NULL;
	struct kiln_err err = {0};
	const char *file = "# dashboard users\n\n" ALICE BOB "  \r\n" CAROL DAVE;

	(void)state;
	assert_int_equal(dashboard_auth_parse(file, strlen(file), "users", &a, &err), 0);
	assert_int_equal(dashboard_auth_users(a), 4);
	assert_true(dashboard_auth_check(a, b64_header("YWxpY2U6d29uZGVyIGxhbmQ="))); /* alice */
	assert_true(dashboard_auth_check(a, b64_header("Ym9iOmIwYjpwYXNz"))); /* bob:b0b:pass */
	assert_true(dashboard_auth_check(a, b64_header("Y2Fyb2w6Y2Fyb2w="))); /* carol */
	assert_true(dashboard_auth_check(a, b64_header("ZGF2ZTpkYXZl")));     /* dave */
	assert_true(dashboard_auth_check(a, "basic  ZGF2ZTpkYXZl"));
	assert_false(dashboard_auth_check(a, b64_header("YWxpY2U6d3Jvbmc="))); /* alice:wrong */
	assert_false(dashboard_auth_check(a, b64_header("bWFsbG9yeTpkYXZl"))); /* mallory:dave */
	assert_false(dashboard_auth_check(a, b64_header("ZGF2ZQ==")));	       /* no colon */
	assert_false(dashboard_auth_check(a, b64_header("!!!")));
	assert_false(dashboard_auth_check(a, b64_header("")));
	assert_false(dashboard_auth_check(a, "Bearer ZGF2ZTpkYXZl"));
	assert_false(dashboard_auth_check(a, "Basic"));
	assert_false(dashboard_auth_check(a, NULL));
	assert_false(dashboard_auth_check(NULL, b64_header("ZGF2ZTpkYXZl")));
	{
		char big[4096];
		memset(big, 'A', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_false(dashboard_auth_check(a, b64_header(big)));
	}
	assert_null(dashboard_auth_unref(a));
}

static void auth_errors(void **state)
{
	struct dashboard_auth *a = NULL;
	struct kiln_err err = {0};
	static const struct {
		const char *text, *msg;
	} bad[] = {
	    {ALICE "nocolon\n", "users:2: not a 'user:hash' line"},
	    {":$6$x$y\n", "users:1: not a 'user:hash' line"},
	    {"eve:plaintext\n", "users:1: user 'eve': not a bcrypt"},
	    {"eve:$1$md5$abc\n", "users:1: user 'eve': not a bcrypt"},
	    {"eve:$6$\n", "users:1: user 'eve': not a bcrypt"},
	    {"eve:$2y$05$short\n", "users:1: user 'eve': not a bcrypt"},
	    {ALICE ALICE, "users:2: user 'alice' is there twice"},
	    {"# nobody\n", "users: no users"},
	    {"", "users: no users"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = '\0';
		a = NULL;
		dashboard_auth_parse(bad[i].text, strlen(bad[i].text), "users", &a, &err);
		if (a || strncmp(err.msg, bad[i].msg, strlen(bad[i].msg)) != 0)
			fail_msg("case %zu: '%s', want '%s...'", i, err.msg, bad[i].msg);
	}
	assert_int_equal(dashboard_auth_parse("a:b\0c\n", 6, "users", &a, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "users:1: contains a NUL"));
	assert_int_equal(dashboard_auth_load("/nonexistent/users", &a, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/users"));
}

static void routes(void **state)
{
	(void)state;
	assert_true(dashboard_path("/"));
	assert_true(dashboard_path("/builds"));
	assert_true(dashboard_path("/builds/12"));
	assert_true(dashboard_path("/builds/12/log"));
	assert_true(dashboard_path("/builds/12/events"));
	assert_false(dashboard_path("/builds/12/events/x"));
	assert_true(dashboard_path("/engine"));
	assert_true(dashboard_path("/static/dashboard.js"));
	assert_true(dashboard_path("/static/dashboard.css"));
	assert_false(dashboard_path("/builds/0"));
	assert_false(dashboard_path("/builds/12x"));
	assert_false(dashboard_path("/builds/-1"));
	assert_false(dashboard_path("/builds/99999999999999999999999"));
	assert_false(dashboard_path("/builds/12/log/x"));
	assert_false(dashboard_path("/static/other.js"));
	assert_false(dashboard_path("/healthz"));
	assert_false(dashboard_path("/metrics"));
	assert_false(dashboard_path("/hooks/images"));
}

static char *sse(const char *event, int64_t id, const char *text)
{
	struct buf b = {0};
	dashboard_sse_event(&b, event, id, text, strlen(text));
	return buf_steal(&b);
}

/* A client joins the data lines with newlines and drops the last one: each
 * text must come back whole, a final newline included. */
static void sse_events(void **state)
{
	struct {
		const char *event;
		int64_t id;
		const char *text, *want;
	} cases[] = {
	    {NULL, 7, "step 1\n", "id: 7\ndata: step 1\ndata: \n\n"},
	    {NULL, 9, "a\nb", "id: 9\ndata: a\ndata: b\n\n"},
	    {NULL, 0, "", "id: 0\ndata: \n\n"},
	    {NULL, 3, "\n\n", "id: 3\ndata: \ndata: \ndata: \n\n"},
	    {NULL, 4, " lead", "id: 4\ndata:  lead\n\n"},
	    {"end", -1, "failed", "event: end\ndata: failed\n\n"},
	    {"state", -1, "running", "event: state\ndata: running\n\n"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = sse(cases[i].event, cases[i].id, cases[i].text);
		assert_string_equal(got, cases[i].want);
		free(got);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(escape),	  cmocka_unit_test(ansi),	 cmocka_unit_test(query),
	    cmocka_unit_test(auth),	  cmocka_unit_test(auth_errors), cmocka_unit_test(routes),
	    cmocka_unit_test(sse_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
