/* fuzz_http.c: arbitrary bytes sent to kilnd's HTTP server over a real
 * loopback connection, the server running in-process on its libuv loop. The
 * server must answer or close, never crash, leak or keep the connection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "kiln/http_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static struct http_server *srv;
static int port;

static void handle(struct http_request *req, void *arg)
{
	(void)arg;
	http_respond(req, strcmp(req->path, "/") == 0 ? 200 : 404, NULL, req->body, req->body_len);
}

static void setup(void)
{
	struct http_server_opts o;
	char addr[64];

	uv_loop_init(&loop);
	http_server_default_opts(&o);
	o.body_max = 1 << 16;
	o.header_timeout_ms = o.body_timeout_ms = o.idle_timeout_ms = 50;
	http_server_new(&loop, &o, handle, NULL, &srv);
	for (port = 41000 + getpid() % 8000;; port++) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		if (http_server_listen(srv, addr, NULL) == 0)
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	char buf[65536];
	int fd, spins = 0;

	if (srv == NULL)
		setup();
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		abort();
	connect(fd, (struct sockaddr *)&sa, sizeof(sa)); /* completes once the loop accepts */
	for (size_t off = 0; off < size && spins < 10000; spins++) {
		ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN)
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	shutdown(fd, SHUT_WR);
	/* until the server has answered and closed (deadlines are 50 ms) */
	for (spins = 0; spins < 100000; spins++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	close(fd);
	while (http_server_conns(srv) > 0 && spins++ < 200000)
		uv_run(&loop, UV_RUN_NOWAIT);
	if (http_server_conns(srv) > 0)
		abort(); /* a connection the server never let go */
	return 0;
}
