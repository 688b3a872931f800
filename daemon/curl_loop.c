/* curl_loop.c (base): the glue between one CURLM and the libuv loop, as curl's
 * docs/examples/multi-uv.c does it. Owns the multi handle, its timer and a
 * poll handle per socket curl watches; not the easy handles. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/common.h"
#include "kiln/curl_loop.h"

struct curl_loop {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer; /* curl's timeout */
	curl_loop_done_cb *done;
	void *arg;
};

struct curl_sock {
	uv_poll_t poll;
	struct curl_loop *cl;
	curl_socket_t fd;
};

static void check_done(struct curl_loop *cl)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(cl->multi, &left)) != NULL) {
		if (m->msg == CURLMSG_DONE)
			cl->done(m->easy_handle, m->data.result, cl->arg);
	}
}

static void sock_close_cb(uv_handle_t *h)
{
	free(container_of((uv_poll_t *)h, struct curl_sock, poll));
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	struct curl_sock *s = container_of(p, struct curl_sock, poll);
	struct curl_loop *cl = s->cl;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	curl_multi_socket_action(cl->multi, s->fd, flags, &running);
	check_done(cl);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct curl_loop *cl = userp;
	struct curl_sock *s = socketp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			/* fds are reused at once: stop now, free when libuv is done */
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, sock_close_cb);
			curl_multi_assign(cl->multi, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->cl = cl;
		s->fd = fd;
		if (uv_poll_init_socket(cl->loop, &s->poll, fd) < 0) {
			free(s);
			return -1;
		}
		curl_multi_assign(cl->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, poll_cb);
	return 0;
}

static void timeout_cb(uv_timer_t *t)
{
	struct curl_loop *cl = t->data;
	int running;

	curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(cl);
}

static int timer_cb(CURLM *multi, long ms, void *userp)
{
	struct curl_loop *cl = userp;

	(void)multi;
	if (ms < 0)
		uv_timer_stop(&cl->timer);
	else
		uv_timer_start(&cl->timer, timeout_cb, (uint64_t)ms, 0);
	return 0;
}

int curl_loop_new(uv_loop_t *loop, curl_loop_done_cb *done, void *arg, struct curl_loop **ret,
		  struct kiln_err *err)
{
	struct curl_loop *cl = xcalloc(1, sizeof(*cl));

	(void)err;
	cl->loop = loop;
	cl->done = done;
	cl->arg = arg;
	uv_timer_init(loop, &cl->timer);
	cl->timer.data = cl;
	*ret = cl;
	return 0;
}

/* The multi handle is made for the first transfer: until then kilnd has not
 * loaded libcurl (lazyload.c). */
int curl_loop_add(struct curl_loop *cl, CURL *easy, struct kiln_err *err)
{
	CURLMcode mc;

	if (!cl->multi) {
		cl->multi = curl_multi_init();
		if (!cl->multi) {
			int code = curl_loop_init_error();
			return kiln_err_set(err, code, "curl_multi_init failed: %s",
					    strerror(-code));
		}
		curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
		curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
		curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
		curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
	}
	mc = curl_multi_add_handle(cl->multi, easy);
	if (mc != CURLM_OK)
		return kiln_err_set(err, -EIO, "curl_multi_add_handle: %s",
				    curl_multi_strerror(mc));
	return 0;
}

int curl_loop_init_error(void)
{
	return errno == ELIBACC ? -ELIBACC : -ENOMEM;
}

void curl_loop_remove(struct curl_loop *cl, CURL *easy)
{
	if (cl->multi)
		curl_multi_remove_handle(cl->multi, easy);
}

static void timer_closed(uv_handle_t *h)
{
	free(h->data);
}

struct curl_loop *curl_loop_free(struct curl_loop *cl)
{
	if (!cl)
		return NULL;
	if (cl->multi)
		curl_multi_cleanup(cl->multi);
	cl->multi = NULL;
	uv_close((uv_handle_t *)&cl->timer, timer_closed);
	return NULL;
}
