/* curl_loop.h (base): one libcurl multi handle driven by a libuv loop
 * (curl_multi_socket_action): libuv polls the sockets curl asks for and runs
 * curl's one timer. The owner adds and removes its easy handles on the multi
 * and gets each finished transfer through the done callback. The Engine API
 * client and the outbox each own one. */
#ifndef KILN_CURL_LOOP_H
#define KILN_CURL_LOOP_H

#include <curl/curl.h>
#include <uv.h>

#include "kiln/err.h"

struct curl_loop;

/* A transfer ended (CURLMSG_DONE): the owner removes easy from the multi
 * before anything else. Runs on the loop, outside curl's callbacks. */
typedef void curl_loop_done_cb(CURL *easy, CURLcode result, void *arg);

int curl_loop_new(uv_loop_t *loop, curl_loop_done_cb *done, void *arg, struct curl_loop **ret,
		  struct kiln_err *err);
/* Starts a transfer; the multi handle is made by the first (so libcurl is
 * not touched, nor loaded by kilnd, until something is sent). */
int curl_loop_add(struct curl_loop *cl, CURL *easy, struct kiln_err *err);
/* Takes a transfer off (done, or abandoned); easy stays the owner's. */
void curl_loop_remove(struct curl_loop *cl, CURL *easy);
/* After curl_easy_init or curl_multi_init gave NULL: -ELIBACC when kilnd
 * could not load libcurl (lazyload.c sets errno so), else -ENOMEM. */
int curl_loop_init_error(void);
/* Cleans the multi up (the owner removed its handles first) and closes the
 * timer; the memory goes in its close callback. NULL-safe; returns NULL. */
struct curl_loop *curl_loop_free(struct curl_loop *cl);

#endif
