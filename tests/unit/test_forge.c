/* test_forge.c: the outbox's requests and the reading of the answers: each
 * forge's URL, headers and fields, the description's limit cut on a UTF-8
 * boundary, the project a repository URL names, the signed notification,
 * Retry-After (seconds, HTTP date) and X-RateLimit-Reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "kiln/forge.h"
#include "kiln/sig.h"

#define SHA "0123456789abcdef0123456789abcdef01234567"

static struct store_outbox_row row_of(const char *state, const char *error)
{
	struct store_outbox_row r = {0};

	r.id = 42;
	snprintf(r.state, sizeof(r.state), "%s", state);
	r.error = (char *)error;
	r.b.id = 7;
	r.b.repo = "images";
	r.b.branch = "main";
	r.b.path = "tools/base";
	r.b.image = "reg.example.com/team/base:1";
	r.b.commit = SHA;
	r.b.digest = "sha256:abc";
	r.b.started_at = 100;
	r.b.finished_at = 112;
	return r;
}

static bool has_header(const struct forge_request *rq, const char *h)
{
	for (size_t i = 0; i < rq->headers.n; i++) {
		if (strcmp(rq->headers.v[i], h) == 0)
			return true;
	}
	return false;
}

static const char *field(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void github_status(void **state)
{
	struct forge_status fs = {FORGE_GITHUB, "https://api.github.com", "team/images", "T0K",
				  "https://kiln.example.com"};
	struct store_outbox_row row = row_of("succeeded", NULL);
	struct forge_request rq;
	struct kiln_err err = {0};
	json_t *o;

	(void)state;
	assert_int_equal(forge_status_request(&fs, &row, &rq, &err), 0);
	assert_string_equal(rq.url, "https://api.github.com/repos/team/images/statuses/" SHA);
	assert_true(has_header(&rq, "Authorization: Bearer T0K"));
	assert_true(has_header(&rq, "Accept: application/vnd.github+json"));
	assert_true(has_header(&rq, "X-GitHub-Api-Version: 2022-11-28"));
	assert_true(has_header(&rq, "User-Agent: kiln/" KILN_VERSION));
	o = json_loads(rq.body, 0, NULL);
	assert_string_equal(field(o, "state"), "success");
	assert_string_equal(field(o, "context"), "kiln/tools/base");
	assert_string_equal(field(o, "target_url"), "https://kiln.example.com/builds/7");
	assert_null(json_object_get(o, "name"));
	json_decref(o);
	forge_request_done(&rq);
	/* running has no GitHub state: nothing to send */
	row = row_of("running", NULL);
	assert_int_equal(forge_status_request(&fs, &row, &rq, &err), -ENODATA);
	/* without a dashboard, no target_url */
	fs.dashboard_url = NULL;
	row = row_of("cancelled", NULL);
	assert_int_equal(forge_status_request(&fs, &row, &rq, &err), 0);
	o = json_loads(rq.body, 0, NULL);
	assert_string_equal(field(o, "state"), "error");
	assert_null(json_object_get(o, "target_url"));
	json_decref(o);
	forge_request_done(&rq);
}

static void gitlab_and_gitea_status(void **state)
{
	struct forge_status gl = {FORGE_GITLAB, "https://gitlab.com/api/v4", "team/sub/images",
				  "T0K", NULL};
	struct forge_status gt = {FORGE_GITEA, "https://git.example.com/api/v1", "team/images",
				  "T0K", NULL};
	struct store_outbox_row row = row_of("running", NULL);
	struct forge_request rq;
	struct kiln_err err = {0};
	json_t *o;

	(void)state;
	assert_int_equal(forge_status_request(&gl, &row, &rq, &err), 0);
	assert_string_equal(rq.url,
			    "https://gitlab.com/api/v4/projects/team%2Fsub%2Fimages/statuses/" SHA);
	assert_true(has_header(&rq, "PRIVATE-TOKEN: T0K"));
	o = json_loads(rq.body, 0, NULL);
	assert_string_equal(field(o, "state"), "running");
	assert_string_equal(field(o, "name"), "kiln/tools/base");
	assert_null(json_object_get(o, "context"));
	json_decref(o);
	forge_request_done(&rq);
	row = row_of("failed", "push of x failed");
	assert_int_equal(forge_status_request(&gl, &row, &rq, &err), 0);
	o = json_loads(rq.body, 0, NULL);
	assert_string_equal(field(o, "state"), "failed");
	assert_string_equal(field(o, "description"), "push of x failed");
	json_decref(o);
	forge_request_done(&rq);
	row = row_of("superseded", NULL);
	assert_int_equal(forge_status_request(&gl, &row, &rq, &err), 0);
	assert_non_null(strstr(rq.body, "\"canceled\""));
	forge_request_done(&rq);
	row = row_of("failed", "build failed: x");
	assert_int_equal(forge_status_request(&gt, &row, &rq, &err), 0);
	assert_string_equal(rq.url,
			    "https://git.example.com/api/v1/repos/team/images/statuses/" SHA);
	assert_true(has_header(&rq, "Authorization: token T0K"));
	o = json_loads(rq.body, 0, NULL);
	assert_string_equal(field(o, "state"), "failure");
	assert_string_equal(field(o, "context"), "kiln/tools/base");
	json_decref(o);
	forge_request_done(&rq);
	row = row_of("running", NULL);
	assert_int_equal(forge_status_request(&gt, &row, &rq, &err), -ENODATA);
}

/* 140 characters on GitHub, counted as characters: a multi-byte one is
 * never split, and a cut text ends in an ellipsis. */
static void description_limits(void **state)
{
	struct forge_status fs = {FORGE_GITHUB, "https://api.github.com", "t/i", "T", NULL};
	char error[1024];
	struct store_outbox_row row;
	struct forge_request rq;
	struct kiln_err err = {0};
	json_t *o;
	const char *d;
	size_t chars = 0;

	(void)state;
	/* 200 two-byte characters */
	for (size_t i = 0; i < 200; i++)
		memcpy(error + 2 * i, "\xc3\xa9", 2);
	error[400] = '\0';
	row = row_of("failed", error);
	assert_int_equal(forge_status_request(&fs, &row, &rq, &err), 0);
	o = json_loads(rq.body, 0, NULL);
	assert_non_null(o); /* valid UTF-8, or jansson would refuse it */
	d = field(o, "description");
	for (const char *p = d; *p; p++)
		chars += ((unsigned char)*p & 0xc0) != 0x80;
	assert_int_equal(chars, 140);
	assert_non_null(strstr(d, "\xe2\x80\xa6"));
	json_decref(o);
	forge_request_done(&rq);
	assert_int_equal(forge_description_max(FORGE_GITLAB), 255);
	/* short texts stay whole; the cut is exact at the limit, in a buffer
	 * of the text's own size (ASan sees a byte past it) */
	static const char *const cuts[][2] = {
	    {"abc", "abc"},
	    {"abcd", "ab\xe2\x80\xa6"},
	    {"abcdefgh", "ab\xe2\x80\xa6"},
	    {"a\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", "a\xe2\x82\xac\xe2\x80\xa6"},
	};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char *c = forge_cut(strdup(cuts[i][0]), 3);
		assert_string_equal(c, cuts[i][1]);
		free(c);
	}
}

static void project_from_url(void **state)
{
	static const char *const cases[][2] = {
	    {"https://github.com/team/images.git", "team/images"},
	    {"https://github.com/team/images", "team/images"},
	    {"https://user@gitlab.com/team/sub/images.git/", "team/sub/images"},
	    {"ssh://git@gitlab.example.com:2222/team/images.git", "team/images"},
	    {"git@github.com:team/images.git", "team/images"},
	    {"http://git.example.com:3000/team/images", "team/images"},
	    {"/srv/git/images.git", NULL},
	    {"file:///srv/git/team/images.git", NULL},
	    {"https://github.com/images", NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = forge_project_from_url(cases[i][0]);
		if (cases[i][1]) {
			assert_non_null(p);
			assert_string_equal(p, cases[i][1]);
		} else {
			assert_null(p);
		}
		free(p);
	}
	assert_string_equal(forge_default_api(FORGE_GITHUB), "https://api.github.com");
	assert_string_equal(forge_default_api(FORGE_GITLAB), "https://gitlab.com/api/v4");
	assert_null(forge_default_api(FORGE_GITEA));
}

static void notification(void **state)
{
	struct forge_notify fn = {"https://hooks.example.com/x", "k3y", "https://kiln.example.com"};
	struct store_outbox_row row = row_of("failed", "smoke test failed: exit code 1");
	struct forge_request rq;
	struct kiln_err err = {0};
	unsigned char mac[SIG_SHA256_LEN];
	char want[100] = "X-Kiln-Signature-256: sha256=";
	json_t *o;

	(void)state;
	assert_int_equal(forge_notify_request(&fn, &row, &rq, &err), 0);
	assert_string_equal(rq.url, "https://hooks.example.com/x");
	assert_true(has_header(&rq, "X-Kiln-Delivery: 42"));
	sig_hmac_sha256("k3y", 3, rq.body, strlen(rq.body), mac);
	for (size_t i = 0; i < SIG_SHA256_LEN; i++)
		snprintf(want + strlen(want), 3, "%02x", mac[i]);
	assert_true(has_header(&rq, want));
	o = json_loads(rq.body, 0, NULL);
	assert_string_equal(field(o, "state"), "failed");
	assert_string_equal(field(o, "repository"), "images");
	assert_string_equal(field(o, "commit"), SHA);
	assert_string_equal(field(o, "error"), "smoke test failed: exit code 1");
	assert_string_equal(field(o, "log_url"), "https://kiln.example.com/builds/7");
	assert_int_equal(json_integer_value(json_object_get(o, "duration_seconds")), 12);
	assert_int_equal(json_integer_value(json_object_get(o, "delivery")), 42);
	assert_non_null(strstr(field(o, "text"), "failed"));
	json_decref(o);
	forge_request_done(&rq);
	/* the same row gives the same body and signature (a retry) */
	fn.secret = NULL;
	assert_int_equal(forge_notify_request(&fn, &row, &rq, &err), 0);
	for (size_t i = 0; i < rq.headers.n; i++)
		assert_null(strstr(rq.headers.v[i], "Signature"));
	forge_request_done(&rq);
}

static void answers(void **state)
{
	struct forge_reply rp = {0};
	uint64_t ms = 99;
	int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */

	(void)state;
	assert_int_equal(forge_retry_after("120", now, &ms), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(forge_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now, &ms), 0);
	assert_int_equal(ms, 60000);
	assert_int_equal(forge_retry_after("Sun, 06 Nov 1994 08:40:37 GMT", now, &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(forge_retry_after("soon", now, &ms), -EINVAL);
	assert_int_equal(forge_retry_after("12x", now, &ms), -EINVAL);
	assert_int_equal(forge_retry_after("99999999999999999999", now, &ms), -EINVAL);

	rp.status = 201;
	assert_int_equal(forge_verdict(&rp, now, &ms), FORGE_SENT);
	rp.status = 502;
	assert_int_equal(forge_verdict(&rp, now, &ms), FORGE_RETRY);
	assert_int_equal(ms, 0);
	rp.status = 0; /* no answer */
	assert_int_equal(forge_verdict(&rp, now, &ms), FORGE_RETRY);
	rp.status = 429;
	snprintf(rp.retry_after, sizeof(rp.retry_after), "7");
	assert_int_equal(forge_verdict(&rp, now, &ms), FORGE_RETRY);
	assert_int_equal(ms, 7000);
	/* GitHub's primary rate limit: 403, none remaining, reset at */
	memset(&rp, 0, sizeof(rp));
	rp.status = 403;
	snprintf(rp.ratelimit_remaining, sizeof(rp.ratelimit_remaining), "0");
	snprintf(rp.ratelimit_reset, sizeof(rp.ratelimit_reset), "%lld", (long long)now + 30);
	assert_int_equal(forge_verdict(&rp, now, &ms), FORGE_RETRY);
	assert_int_equal(ms, 30000);
	/* a 403 that is no rate limit, 401, 404: refused */
	memset(&rp, 0, sizeof(rp));
	rp.status = 403;
	snprintf(rp.ratelimit_remaining, sizeof(rp.ratelimit_remaining), "4999");
	assert_int_equal(forge_verdict(&rp, now, &ms), FORGE_REFUSED);
	rp.status = 401;
	assert_int_equal(forge_verdict(&rp, now, &ms), FORGE_REFUSED);
	rp.status = 404;
	assert_int_equal(forge_verdict(&rp, now, &ms), FORGE_REFUSED);
}

static void states(void **state)
{
	(void)state;
	assert_string_equal(forge_state(FORGE_GITHUB, "queued", NULL), "pending");
	assert_string_equal(forge_state(FORGE_GITHUB, "failed", "build failed: x"), "failure");
	assert_string_equal(forge_state(FORGE_GITHUB, "superseded", NULL), "error");
	assert_string_equal(forge_state(FORGE_GITLAB, "cancelled", NULL), "canceled");
	assert_string_equal(forge_state(FORGE_GITEA, "succeeded", NULL), "success");
	assert_null(forge_state(FORGE_GITEA, "running", NULL));
	/* the engine failing on every attempt is no verdict on the build */
	assert_string_equal(
	    forge_state(FORGE_GITHUB, "failed", STORE_ERROR_GAVE_UP "push of x: connection reset"),
	    "error");
	assert_string_equal(forge_state(FORGE_GITEA, "failed", STORE_ERROR_GAVE_UP "x"), "error");
	assert_string_equal(forge_state(FORGE_GITLAB, "failed", STORE_ERROR_GAVE_UP "x"), "failed");
	assert_null(strstr(forge_sink_states(FORGE_GITHUB), ",running,"));
	assert_non_null(strstr(forge_sink_states(FORGE_GITLAB), ",running,"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(github_status),
	    cmocka_unit_test(gitlab_and_gitea_status),
	    cmocka_unit_test(description_limits),
	    cmocka_unit_test(project_from_url),
	    cmocka_unit_test(notification),
	    cmocka_unit_test(answers),
	    cmocka_unit_test(states),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
