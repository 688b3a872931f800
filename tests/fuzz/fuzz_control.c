/* fuzz_control.c (report): arbitrary bytes sent to kilnd's status socket,
 * the server running in-process on its libuv loop with a real (temporary)
 * state database holding one build with a pushed digest. It must answer or
 * close, never crash or leak. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "kiln/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static struct control *ctl;
static struct store *st;
static char dir[] = "/tmp/kiln-fuzz-control.XXXXXX";
static char path[128];

static void status(json_t *o, void *arg)
{
	(void)arg;
	json_object_set_new(o, "version", json_string("fuzz"));
}

static int trigger(const char *repo, const char *branch, void *arg)
{
	(void)branch;
	(void)arg;
	return strcmp(repo, "images") == 0 ? 0 : -ENOENT;
}

static void changed(void *arg)
{
	(void)arg;
}

static int health(json_t *o, void *arg)
{
	(void)o;
	(void)arg;
	return 0;
}

static char *log_path(int64_t id, void *arg)
{
	char *p;

	(void)arg;
	if (asprintf(&p, "%s/%lld.log", dir, (long long)id) < 0)
		abort();
	return p;
}

static int repo_info(const char *repo, char **mirror, char **manifest, char **branch, void *arg)
{
	(void)arg;
	if (strcmp(repo, "images") != 0)
		return -ENOENT;
	if (asprintf(mirror, "%s/mirror.git", dir) < 0)
		abort();
	*manifest = strdup("manifest.yaml");
	*branch = strdup("main");
	return 0;
}

static int cancel_running(int64_t id, void *arg)
{
	(void)id;
	(void)arg;
	return -ENOENT; /* nothing runs here: cancels of running builds are refused */
}

/* "images" is watched; a trigger of it is taken (and polls nothing here) */
static const struct control_ops ops = {.status = status,
				       .watched = trigger,
				       .trigger = trigger,
				       .changed = changed,
				       .health = health,
				       .log_path = log_path,
				       .repo_info = repo_info,
				       .cancel_running = cancel_running};

static void setup(void)
{
	struct kiln_err err = {0};
	const struct store_plan_item items[] = {{"a", "r/a:1", "added", NULL, 0}};

	if (mkdtemp(dir) == NULL || store_open(dir, &st, &err) < 0 ||
	    store_record_plan(st, "images", "main", "0123456789012345678901234567890123456789",
			      NULL, items, 1, 0, &err) < 0 ||
	    store_set_result(st, 1, "sha256:1", "sha256:2", "buildkit", &err) < 0) {
		fprintf(stderr, "fuzz_control: setup: %s\n", err.msg);
		abort();
	}
	snprintf(path, sizeof(path), "%s/kiln.sock", dir);
	uv_loop_init(&loop);
	if (control_start(&loop, path, (gid_t)-1, (gid_t)-1, st, &ops, NULL, &ctl, &err) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char buf[65536];
	int fd, spins = 0;

	if (ctl == NULL)
		setup();
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	for (size_t off = 0; off < size && spins < 10000; spins++) {
		ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno != EAGAIN)
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	shutdown(fd, SHUT_WR);
	for (spins = 0; spins < 200000; spins++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	close(fd);
	for (spins = 0; spins < 1000; spins++)
		uv_run(&loop, UV_RUN_NOWAIT);
	return 0;
}
