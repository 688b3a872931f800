/* fuzz_http.c: arbitrary bytes sent to kilnd's HTTP server over a real
 * loopback connection, the server running in-process on its libuv loop with
 * kilnd's own handler behind it (webhook.c): provider rules, signature and
 * token checks with a known secret, the JSON (or form) payload, repository
 * and branch matching, delivery records in a real temporary store, /healthz
 * and /metrics. The configuration is a kilnd.yaml written here: one
 * repository per provider, all with the secret FUZZ_SECRET.
 *
 * A fuzzer cannot forge an HMAC, so an input may carry the placeholder
 * FUZZ_SIGN where a signature goes: it is replaced by the real HMAC-SHA256
 * (hex) of the bytes after the first blank line, and mutated bodies still
 * reach the payload parser (the HMAC is computed as the body arrives, through
 * webhook_headers' sink). The server must answer or close, never crash, leak,
 * keep the connection or keep body bytes counted. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "kiln/config.h"
#include "kiln/http_server.h"
#include "kiln/log.h"
#include "kiln/metrics.h"
#include "kiln/sig.h"
#include "kiln/store.h"
#include "kiln/webhook.h"

#define FUZZ_SECRET "kiln-fuzz-secret"
#define FUZZ_SIGN   "FUZZ_SIGN"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static struct http_server *srv;
static struct config cfg;
static struct store *store;
static struct metrics *metrics;
static struct webhook wh;
static char dir[64];
static int port;

static int trigger(const char *repo, void *arg)
{
	(void)arg;
	return config_repo(&cfg, repo) ? 0 : -ENOENT;
}

static int health(struct buf *json, void *arg)
{
	(void)arg;
	buf_puts(json, "{\"status\":\"ok\"}\n");
	return 200;
}

static const struct webhook_ops ops = {trigger, health};

static void write_file(const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

static void remove_dir(void)
{
	static const char *const files[] = {"kilnd.yaml",	  "hook.secret",
					    "state/kilnd.db",	  "state/kilnd.db-wal",
					    "state/kilnd.db-shm", "state/kilnd.lock"};
	char path[128];

	store = store_close(store);
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/state", dir);
	rmdir(path);
	rmdir(dir);
}

/* kilnd.yaml with one repository per provider, and the store, once. */
static void setup_config(void)
{
	struct kiln_diags diags = {0};
	struct kiln_err err = {0};
	char path[128], *yaml;

	/* tmpfs when there is one: every accepted push is a durable write */
	snprintf(dir, sizeof(dir), "/dev/shm/kiln-fuzz-http.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		snprintf(dir, sizeof(dir), "/tmp/kiln-fuzz-http.XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
	}
	write_file("hook.secret", FUZZ_SECRET);
	yaml = xasprintf("state_dir: %s/state\n"
			 "builds: {dry_run: true}\n"
			 "repositories:\n"
			 "  - {name: github, url: /nonexistent, branches: [main, dev],\n"
			 "     webhook: {provider: github, secret_file: %s/hook.secret}}\n"
			 "  - {name: gitlab, url: /nonexistent,\n"
			 "     webhook: {provider: gitlab, secret_file: %s/hook.secret}}\n"
			 "  - {name: gitea, url: /nonexistent,\n"
			 "     webhook: {provider: gitea, secret_file: %s/hook.secret}}\n"
			 "  - {name: generic, url: /nonexistent,\n"
			 "     webhook: {provider: generic, secret_file: %s/hook.secret,\n"
			 "               header: X-Signature}}\n"
			 "  - {name: plain, url: /nonexistent}\n",
			 dir, dir, dir, dir, dir);
	write_file("kilnd.yaml", yaml);
	free(yaml);
	snprintf(path, sizeof(path), "%s/kilnd.yaml", dir);
	if (config_load(path, &cfg, &diags) < 0) {
		fprintf(stderr, "fuzz_http: the fuzzer's kilnd.yaml is invalid (%zu errors)\n",
			diags.n);
		abort();
	}
	if (store_open(cfg.state_dir, &store, &err) < 0) {
		fprintf(stderr, "fuzz_http: %s\n", err.msg);
		abort();
	}
	atexit(remove_dir);
}

static void setup(void)
{
	struct http_server_opts o;
	struct kiln_err err = {0};
	char addr[64];

	log_set_level(LOG_LVL_ERR); /* one line per accepted push would drown the fuzzer's */
	uv_loop_init(&loop);
	setup_config();
	metrics = metrics_new();
	webhook_init(&wh, &loop, store, &cfg, metrics, &ops, NULL);
	http_server_default_opts(&o);
	o.body_max = 1 << 16;
	o.header_timeout_ms = o.body_timeout_ms = o.idle_timeout_ms = o.first_byte_timeout_ms = 50;
	o.headers = webhook_headers;
	http_server_new(&loop, &o, webhook_handle, &wh, &srv);
	for (port = 41000 + getpid() % 8000;; port++) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		if (http_server_listen(srv, addr, &err) == 0)
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
}

/* The input with every FUZZ_SIGN replaced by the hex HMAC of its body. */
static uint8_t *sign(const uint8_t *data, size_t size, size_t *ret_size)
{
	const uint8_t *body = memmem(data, size, "\r\n\r\n", 4), *p, *at;
	unsigned char mac[SIG_SHA256_LEN];
	char hex[2 * SIG_SHA256_LEN + 1];
	struct buf out = {0};

	body = body ? body + 4 : data + size;
	sig_hmac_sha256(FUZZ_SECRET, strlen(FUZZ_SECRET), body, (size_t)(data + size - body), mac);
	for (size_t i = 0; i < SIG_SHA256_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	for (p = data; (at = memmem(p, (size_t)(body - p), FUZZ_SIGN, strlen(FUZZ_SIGN))) != NULL;
	     p = at + strlen(FUZZ_SIGN)) {
		buf_append(&out, p, (size_t)(at - p));
		buf_puts(&out, hex);
	}
	buf_append(&out, p, (size_t)(data + size - p));
	*ret_size = out.len;
	return (uint8_t *)buf_steal(&out);
}

/* Sends the request, reads until the server answered and closed. */
static void exchange(const uint8_t *data, size_t size)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	char buf[65536];
	int fd, spins = 0;

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
	/* until the server has answered and closed (deadlines are 50 ms; a
	 * recorded delivery is answered after its worker) */
	for (spins = 0; spins < 100000; spins++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	close(fd);
	/* a request the client left is answered (to nobody) after its worker */
	while ((http_server_conns(srv) > 0 || http_server_bodies(srv) > 0) && spins++ < 200000)
		uv_run(&loop, UV_RUN_NOWAIT);
	if (http_server_conns(srv) > 0)
		abort(); /* a connection the server never let go */
	if (http_server_bodies(srv) > 0)
		abort(); /* body bytes still counted with every request gone */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *signed_data;
	size_t signed_size;

	if (srv == NULL)
		setup();
	signed_data = sign(data, size, &signed_size);
	exchange(signed_data, signed_size);
	free(signed_data);
	return 0;
}
