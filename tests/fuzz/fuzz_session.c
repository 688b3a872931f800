/* fuzz_session.c: arbitrary bytes from the engine into the BuildKit session's
 * server (nghttp2 + kiln's gRPC framing and protobuf), after the client
 * preface so that mutations reach the frames. Whatever the server answers is
 * drained; it must never crash, leak or hand out a secret it was not given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session_data sd = {0};
	struct session_h2 *h;
	struct buf out = {0};
	size_t half = size / 2;

	session_data_add_cred(&sd, "reg.example:5000", "alice", "pw");
	session_data_add_secret(&sd, "token", (unsigned char *)xstrdup("value"), 5);
	h = session_h2_new(&sd);
	/* in two pieces: a frame cut anywhere must be put together again */
	if (session_h2_recv(h, preface, sizeof(preface) - 1) == 0 &&
	    session_h2_recv(h, data, half) == 0 && session_h2_send(h, &out, 1u << 20) == 0 &&
	    session_h2_recv(h, data + half, size - half) == 0)
		(void)session_h2_send(h, &out, 1u << 20);
	buf_done(&out);
	session_h2_free(h);
	session_data_done(&sd);
	return 0;
}
