#!/usr/bin/env bash
# body.sh: large unauthenticated request bodies must not take kilnd's memory
# or its loop: 40 clients at once each send 25 MiB with a bad signature, and
# kilnd's peak RSS (VmHWM) stays under 128 MiB and it gives the memory back
# afterwards, /healthz answers within 100 ms (95 % of the probes; none
# stalls), every client ends with 401 (503 + Retry-After meanwhile, past
# listen.bodies_max), and signed deliveries are accepted afterwards. Also
# the cap for chunked bodies and a body larger than the cap. The figures are
# printed, for the record.
#
# KILN_SANITIZED=1 (tests/CMakeLists.txt sets it for -DKILN_SANITIZE=ON
# builds; unset, it is guessed from the kilnd binary): the sanitizers' shadow
# memory and quarantine make RSS meaningless and every byte costs more, so
# the memory and 100 ms figures are printed, not asserted (a stall of 2 s
# still fails); every functional check runs.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}"
abs_path KILND
LIB=$(cd "$(dirname "$0")/lib" && pwd)

if [ -z "${KILN_SANITIZED:-}" ]; then
	KILN_SANITIZED=0
	grep -qa __asan_init "$KILND" && KILN_SANITIZED=1
fi

start_daemon() { # [extra listen keys]: kilnd with repositories github, gitea and generic
	PORT=$(free_port)
	printf 'topsecret' >hook.secret
	git init -q --bare -b main origin.git
	{
		echo "state_dir: $PWD/state"
		echo "builds: {dry_run: true}"
		echo "listen: {http: [\"127.0.0.1:$PORT\"], status_socket: $PWD/kiln.sock${1:+, $1}}"
		echo "repositories:"
		for p in github gitea generic; do
			echo "  - name: $p"
			echo "    url: $PWD/origin.git"
			echo "    poll_interval: 1h"
			h=
			[ "$p" = generic ] && h=", header: X-Signature"
			echo "    webhook: {provider: $p, secret_file: hook.secret$h}"
		done
	} >kilnd.yaml
	"$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "kilnd .* ready:" kilnd.log || fail "kilnd did not start: $(tail -3 kilnd.log)"
}

hook() { python3 "$LIB/hook.py" "$PORT" "$@"; }

stop_daemon() {
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0: $(tail -3 kilnd.log)"
}

t_big_bad_bodies_at_once() {
	start_daemon
	out=$(python3 "$LIB/body_load.py" "$PORT" "$KPID" 40 25 100) || fail "the load failed: $out"
	echo "  40 x 25 MiB, bad signatures: $(tr '\n' ' ' <<<"$out")"
	eval "$(tr ' ' '\n' <<<"$out" | grep -E '^[a-z_0-9]+=[0-9.a-z:,]*$')"
	[ "$final" = "401:40" ] || fail "final answers $final, want 401 for all 40 clients"
	[ "$unfinished" = 0 ] || fail "$unfinished clients got no final answer"
	[ "$s503" -gt 0 ] || fail "no 503: the body cap never held a client back"
	[ "$s503_without_retry_after" = 0 ] || fail "$s503_without_retry_after 503s without Retry-After"
	[ "$failed_probes" = 0 ] || fail "$failed_probes /healthz probes failed"
	[ "$probes" -ge 20 ] || fail "only $probes /healthz probes during the load"
	if [ "$KILN_SANITIZED" = 1 ]; then
		# slower per byte, and freed memory is held in quarantine
		echo "  (sanitizer build: memory and the 100 ms target not checked)"
		awk -v m="$healthz_max_ms" 'BEGIN { exit !(m < 2000) }' || fail "/healthz stalled $healthz_max_ms ms"
	else
		# 95 % within 100 ms, none stalled: on 2 shared cores a probe now
		# and then waits for the CPU whatever kilnd does (an idle kilnd too)
		awk -v m="$healthz_p95_ms" 'BEGIN { exit !(m < 100) }' ||
			fail "/healthz: 95th percentile $healthz_p95_ms ms (want < 100)"
		awk -v m="$healthz_max_ms" 'BEGIN { exit !(m < 1000) }' || fail "/healthz stalled $healthz_max_ms ms"
		[ "$vmhwm_kib" -lt $((128 << 10)) ] || fail "kilnd's VmHWM $((vmhwm_kib >> 10)) MiB (want < 128)"
		[ $((rss_after_kib - rss_before_kib)) -lt $((16 << 10)) ] ||
			fail "kilnd kept $(((rss_after_kib - rss_before_kib) >> 10)) MiB after the load (want < 16)"
	fi
	kill -0 "$KPID" 2>/dev/null || fail "kilnd died"
	# still serves: signed deliveries of each kind
	[ "$(hook /hooks/github github topsecret --delivery after-load)" = 202 ] || fail "github delivery after the load"
	[ "$(hook /hooks/gitea gitea topsecret --delivery after-load)" = 202 ] || fail "gitea delivery after the load"
	[ "$(hook /hooks/generic generic topsecret --delivery after-load)" = 202 ] || fail "generic delivery after the load"
	grep -q "topsecret" kilnd.log && fail "the secret was logged"
	stop_daemon
}

# With a 1 MiB cap: a chunked body is counted as it grows (503 when others
# hold the rest, 413 when larger than the cap itself), a Content-Length over
# the cap is 413 at once, and a signed chunked delivery is hashed as its
# chunks arrive.
t_chunked_and_over_the_cap() {
	start_daemon "bodies_max: 1M"
	python3 - "$PORT" <<-'PY' || fail "chunked bodies and the cap"
	import hashlib, hmac, json, socket, sys
	port = int(sys.argv[1])
	def ask(head, chunks):
	    s = socket.create_connection(("127.0.0.1", port), timeout=10)
	    s.sendall(head)
	    try:
	        for c in chunks:
	            s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
	        s.sendall(b"0\r\n\r\n")
	    except OSError:
	        pass  # refused while sending
	    data = b""
	    try:
	        while True:
	            d = s.recv(65536)
	            if not d:
	                break
	            data += d
	    except OSError:
	        pass
	    return data
	chunked = b"POST /hooks/github HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\nX-GitHub-Event: push\r\n"
	# 700 KB held by a body on its way: a chunked one is refused once it
	# grows past the 1 MiB left to share
	held = socket.create_connection(("127.0.0.1", port), timeout=10)
	held.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: k\r\nContent-Length: 700000\r\n\r\n{")
	data = ask(chunked + b"X-Hub-Signature-256: sha256=" + b"00" * 32 + b"\r\n\r\n", [b"x" * 65536] * 8)
	assert data.startswith(b"HTTP/1.1 503") and b"\r\nRetry-After: " in data, data[:200]
	held.close()
	# a chunked body larger than the cap itself: 413, never 503
	data = ask(chunked + b"X-Hub-Signature-256: sha256=" + b"00" * 32 + b"\r\n\r\n", [b"x" * 65536] * 20)
	assert data.startswith(b"HTTP/1.1 413"), data[:200]
	# a Content-Length larger than the cap: 413 before the body
	s = socket.create_connection(("127.0.0.1", port), timeout=10)
	s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: k\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
	data = s.recv(65536)
	assert data.startswith(b"HTTP/1.1 413"), data[:200]
	s.close()
	# signed, in small chunks: the HMAC over the decoded body matches
	body = json.dumps({"ref": "refs/heads/main", "after": "1" * 40, "pad": "y" * 300000}).encode()
	mac = hmac.new(b"topsecret", body, hashlib.sha256).hexdigest().encode()
	parts = [body[i:i + 7001] for i in range(0, len(body), 7001)]
	data = ask(chunked + b"X-GitHub-Delivery: c-1\r\nX-Hub-Signature-256: sha256=" + mac + b"\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n", parts)
	assert data.startswith(b"HTTP/1.1 202"), data[:300]
	# the same with one byte changed: 401
	bad = body[:-2] + b"z}"
	data = ask(chunked + b"X-GitHub-Delivery: c-2\r\nX-Hub-Signature-256: sha256=" + mac + b"\r\nConnection: close\r\n\r\n", [bad])
	assert data.startswith(b"HTTP/1.1 401"), data[:300]
	PY
	# nothing is left counted once every request is answered: a body of
	# almost the whole cap still fits
	head -c $(((1 << 20) - 100)) /dev/zero >big
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' \
		-H 'X-Hub-Signature-256: sha256=00' --data-binary @big "http://127.0.0.1:$PORT/hooks/github")
	[ "$code" = 401 ] || fail "a body just under the cap after the others: $code, want 401"
	stop_daemon
}

run_all
