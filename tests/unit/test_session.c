/* test_session.c: the session's HTTP/2 + gRPC server, driven by an nghttp2
 * client in memory as the engine's gRPC client would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "kiln/session.h"

struct reply {
	struct buf body;
	int status; /* grpc-status, -1 until seen */
	char message[256];
	bool closed;
};

struct client {
	nghttp2_session *ng;
	struct reply r;
	const uint8_t *req;
	size_t req_len, req_off;
};

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *arg)
{
	struct client *c = arg;

	(void)ng;
	(void)f;
	(void)flags;
	if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
		c->r.status = atoi((const char *)value);
	if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0)
		snprintf(c->r.message, sizeof(c->r.message), "%.*s", (int)valuelen,
			 (const char *)value);
	return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *arg)
{
	struct client *c = arg;

	(void)ng;
	(void)flags;
	(void)id;
	buf_append(&c->r.body, data, len);
	return 0;
}

static int on_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
	struct client *c = arg;

	(void)ng;
	(void)id;
	(void)code;
	c->r.closed = true;
	return 0;
}

static ssize_t req_read(nghttp2_session *ng, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *arg)
{
	struct client *c = arg;
	size_t n = c->req_len - c->req_off;

	(void)ng;
	(void)id;
	(void)src;
	if (n > len)
		n = len;
	memcpy(out, c->req + c->req_off, n);
	c->req_off += n;
	if (c->req_off == c->req_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* Moves bytes both ways until neither side has more to say. */
static void pump(struct client *c, struct session_h2 *h)
{
	for (int round = 0; round < 50; round++) {
		const uint8_t *data;
		ssize_t n;
		struct buf out = {0};
		bool moved = false;

		while ((n = nghttp2_session_mem_send(c->ng, &data)) > 0) {
			assert_int_equal(session_h2_recv(h, data, (size_t)n), 0);
			moved = true;
		}
		assert_int_equal(session_h2_send(h, &out, 1u << 20), 0);
		if (out.len > 0) {
			assert_true(nghttp2_session_mem_recv(c->ng, (const uint8_t *)out.p,
							     out.len) == (ssize_t)out.len);
			moved = true;
		}
		buf_done(&out);
		if (!moved)
			return;
	}
	fail_msg("the sessions kept talking");
}

static struct client *client_new(void)
{
	struct client *c = xcalloc(1, sizeof(*c));
	nghttp2_session_callbacks *cbs;

	assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
	assert_int_equal(nghttp2_session_client_new(&c->ng, cbs, c), 0);
	nghttp2_session_callbacks_del(cbs);
	assert_int_equal(nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, NULL, 0), 0);
	return c;
}

static void client_free(struct client *c)
{
	nghttp2_session_del(c->ng);
	free(c);
}

/* One unary call on the client's connection: path, the message (already
 * protobuf), or the raw body when framed is false. */
static void call(struct session_h2 *h, struct client *c, const char *path, const void *msg,
		 size_t len, bool framed, struct reply *ret)
{
	static uint8_t frame[512];
	nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
	    {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0},
	    {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
	    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
	    {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0},
	};
	nghttp2_data_provider prd = {.read_callback = req_read};

	assert_true(len + 5 <= sizeof(frame));
	c->r = (struct reply){.status = -1};
	if (framed) {
		frame[0] = 0;
		frame[1] = (uint8_t)(len >> 24);
		frame[2] = (uint8_t)(len >> 16);
		frame[3] = (uint8_t)(len >> 8);
		frame[4] = (uint8_t)len;
		memcpy(frame + 5, msg, len);
		c->req = frame;
		c->req_len = len + 5;
	} else {
		c->req = msg;
		c->req_len = len;
	}
	c->req_off = 0;
	assert_true(nghttp2_submit_request(c->ng, NULL, nv, 6, &prd, NULL) > 0);
	pump(c, h);
	assert_true(c->r.closed);
	*ret = c->r;
}

/* The message of a gRPC body of one frame. */
static const char *message(struct reply *r, size_t *ret_len)
{
	assert_true(r->body.len >= 5);
	assert_int_equal(r->body.p[0], 0);
	*ret_len = r->body.len - 5;
	assert_int_equal((size_t)((uint8_t)r->body.p[3] << 8 | (uint8_t)r->body.p[4]), *ret_len);
	return r->body.p + 5;
}

static struct session_data data(void)
{
	struct session_data sd = {0};
	unsigned char *v = (unsigned char *)xstrdup("s3cr3t\n");

	session_data_add_cred(&sd, "reg.example:5000", "alice", "pw");
	session_data_add_secret(&sd, "token", v, 7);
	return sd;
}

/* Each test: the data, a server on it and a client connected to it. */
struct fixture {
	struct session_data sd;
	struct session_h2 *h;
	struct client *c;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->sd = data();
	f->h = session_h2_new(&f->sd);
	f->c = client_new();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	client_free(f->c);
	session_h2_free(f->h);
	session_data_done(&f->sd);
	free(f);
	return 0;
}

static void test_health(void **state)
{
	struct fixture *f = *state;
	struct session_h2 *h = f->h;
	struct client *c = f->c;
	struct reply r;
	const char *m;
	size_t n;

	call(h, c, "/grpc.health.v1.Health/Check", "", 0, true, &r);
	assert_int_equal(r.status, 0);
	m = message(&r, &n);
	assert_int_equal(n, 2);
	assert_memory_equal(m, "\x08\x01", 2); /* status: SERVING */
	assert_int_equal(session_h2_stats(h)->calls, 1);
	buf_done(&r.body);
}

static void test_credentials(void **state)
{
	struct fixture *f = *state;
	struct session_h2 *h = f->h;
	struct client *c = f->c;
	struct reply r;
	const char *m;
	size_t n;
	static const char req[] = "\x0a\x10reg.example:5000";

	call(h, c, "/moby.filesync.v1.Auth/Credentials", req, sizeof(req) - 1, true, &r);
	assert_int_equal(r.status, 0);
	m = message(&r, &n);
	assert_int_equal(n, 11);
	assert_memory_equal(m,
			    "\x0a\x05"
			    "alice"
			    "\x12\x02"
			    "pw",
			    11);
	buf_done(&r.body);
	/* a host kiln has nothing for: empty credentials, an anonymous pull */
	call(h, c, "/moby.filesync.v1.Auth/Credentials",
	     "\x0a\x03"
	     "x.y",
	     5, true, &r);
	assert_int_equal(r.status, 0);
	m = message(&r, &n);
	assert_int_equal(n, 0);
	buf_done(&r.body);
	/* asked again: the log names a host once */
	call(h, c, "/moby.filesync.v1.Auth/Credentials", req, sizeof(req) - 1, true, &r);
	buf_done(&r.body);
	assert_string_equal(session_h2_stats(h)->cred_hosts, "reg.example:5000");
	assert_string_equal(session_h2_stats(h)->anon_hosts, "x.y");
}

static void test_secret(void **state)
{
	struct fixture *f = *state;
	struct session_h2 *h = f->h;
	struct client *c = f->c;
	struct reply r;
	const char *m;
	size_t n;

	/* ID=1 "token", annotations=2 (a map entry) that kiln ignores */
	call(h, c, "/moby.buildkit.secrets.v1.Secrets/GetSecret",
	     "\x0a\x05token\x12\x06\x0a\x01k\x12\x01v", 15, true, &r);
	assert_int_equal(r.status, 0);
	m = message(&r, &n);
	assert_int_equal(n, 9);
	assert_memory_equal(m, "\x0a\x07s3cr3t\n", 9);
	assert_string_equal(session_h2_stats(h)->missing, "");
	buf_done(&r.body);
	/* not granted: NotFound, and the id is remembered for kiln's error */
	call(h, c, "/moby.buildkit.secrets.v1.Secrets/GetSecret", "\x0a\x05other", 7, true, &r);
	assert_int_equal(r.status, 5);
	assert_string_equal(r.message, "secret other not found");
	assert_int_equal(r.body.len, 0);
	assert_string_equal(session_h2_stats(h)->missing, "other");
	buf_done(&r.body);
}

static void test_unimplemented_and_bad(void **state)
{
	struct fixture *f = *state;
	struct session_h2 *h = f->h;
	struct client *c = f->c;
	struct reply r;

	/* what BuildKit asks before Credentials: Unimplemented sends it there */
	call(h, c, "/moby.filesync.v1.Auth/GetTokenAuthority", "\x0a\x01x", 3, true, &r);
	assert_int_equal(r.status, 12);
	buf_done(&r.body);
	/* a frame whose length disagrees with the body */
	call(h, c, "/moby.filesync.v1.Auth/Credentials", "\x00\x00\x00\x00\x09\x0a", 6, false, &r);
	assert_int_equal(r.status, 3);
	buf_done(&r.body);
	/* compressed */
	call(h, c, "/grpc.health.v1.Health/Check", "\x01\x00\x00\x00\x00", 5, false, &r);
	assert_int_equal(r.status, 12);
	buf_done(&r.body);
	/* a truncated protobuf: field 1 claims 9 bytes */
	call(h, c, "/moby.buildkit.secrets.v1.Secrets/GetSecret", "\x0a\x09to", 4, true, &r);
	assert_int_equal(r.status, 3);
	buf_done(&r.body);
	/* garbage instead of HTTP/2 closes the connection */
	h = session_h2_new(&f->sd);
	assert_int_equal(session_h2_recv(h, "GET / HTTP/1.1\r\n\r\n", 18), -EPROTO);
	session_h2_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_health, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_secret, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unimplemented_and_bad, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
