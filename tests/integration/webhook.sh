#!/usr/bin/env bash
# webhook.sh: kilnd's HTTP listener with the requests GitHub, GitLab, Gitea
# and a generic sender make: signatures right and wrong, every error code,
# redeliveries, keep-alive and pipelining, many connections at once.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}"
LIB=$(cd "$(dirname "$0")/lib" && pwd)

setup_daemon() { # writes kilnd.yaml for four repositories (one per provider) and starts kilnd
	PORT=$(free_port)
	printf 'topsecret' >hook.secret
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
	(cd c && mkdir a && printf 'name: a\nversion: "1"\nregistry: r.example.com\n' >a/manifest.yaml &&
		echo 'FROM scratch' >a/Dockerfile && git add -A && git commit -qm one && git push -q origin HEAD:main)
	{
		echo "state_dir: $PWD/state"
		echo "builds: {dry_run: true}"
		echo "listen: {http: [\"127.0.0.1:$PORT\"], status_socket: $PWD/kiln.sock,"
		echo "         header_timeout: 1s, body_timeout: 1s, idle_timeout: 2s}"
		echo "repositories:"
		for p in github gitlab gitea generic; do
			echo "  - name: $p"
			echo "    url: $PWD/origin.git"
			echo "    poll_interval: 1h"
			if [ "$p" = generic ]; then
				echo "    webhook: {provider: $p, secret_file: hook.secret, header: X-Signature}"
			else
				echo "    webhook: {provider: $p, secret_file: hook.secret}"
			fi
		done
	} >kilnd.yaml
	"$KILND" --config kilnd.yaml --log-level debug >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "kilnd .* ready:" kilnd.log || fail "kilnd did not start: $(tail -3 kilnd.log)"
	kill -0 "$KPID" 2>/dev/null || fail "kilnd exited: $(tail -3 kilnd.log)"
}

hook() { python3 "$LIB/hook.py" "$PORT" "$@"; }
polls() { grep -c "watch '$1': idle -> fetching" kilnd.log; }

expect_status() { # WANT ARGS...
	local want=$1 got
	shift
	got=$(hook "$@")
	[ "$got" = "$want" ] || fail "hook $*: status $got, want $want"
}

t_providers_and_errors() {
	setup_daemon
	expect_status 202 /hooks/github github topsecret --delivery d-1
	wait_for 5 grep -q "watch 'github'.*first seen" kilnd.log || fail "github push did not poll"
	n=$(polls github)
	expect_status 200 /hooks/github github topsecret --delivery d-1 # redelivery
	expect_status 401 /hooks/github github topsecret --bad-sig --delivery d-2
	expect_status 401 /hooks/github github topsecret --no-sig --delivery d-3
	expect_status 200 /hooks/github github topsecret --event ping
	expect_status 202 /hooks/github github topsecret --event issues
	expect_status 202 /hooks/github github topsecret --ref refs/heads/other --delivery d-4
	expect_status 202 /hooks/github github topsecret --after 0000000000000000000000000000000000000000 --delivery d-5
	expect_status 202 /hooks/github github topsecret --ref refs/tags/v1 --delivery d-6
	expect_status 400 /hooks/github github topsecret --body '{"ref": ' --delivery d-7
	expect_status 404 /hooks/nope github topsecret
	expect_status 405 /hooks/github github topsecret --method GET
	sleep 0.5
	[ "$(polls github)" = "$n" ] || fail "an ignored or refused request triggered a poll"
	# GitHub's form content type: payload=<json>, signed as sent
	expect_status 202 /hooks/github github topsecret --form --delivery d-8
	expect_status 202 /hooks/gitlab gitlab topsecret --delivery g-1
	expect_status 401 /hooks/gitlab gitlab topsecret --bad-sig --delivery g-2
	expect_status 202 /hooks/gitlab gitlab topsecret --event "Tag Push Hook" --ref refs/tags/v1
	expect_status 202 /hooks/gitea gitea topsecret --delivery t-1
	expect_status 401 /hooks/gitea gitea topsecret --bad-sig --delivery t-2
	expect_status 415 /hooks/gitea gitea topsecret --form --delivery t-3
	expect_status 202 /hooks/generic generic topsecret --delivery x-1
	expect_status 401 /hooks/generic generic topsecret --no-sig
	for p in gitlab gitea generic; do
		wait_for 5 grep -q "watch '$p'.*first seen" kilnd.log || fail "$p push did not poll"
	done
	grep -q "topsecret" kilnd.log && fail "the secret was logged"
	# health and metrics
	body=$(curl -s "http://127.0.0.1:$PORT/healthz")
	contains "$body" '"status":"ok"'
	metrics=$(curl -s "http://127.0.0.1:$PORT/metrics")
	contains "$metrics" 'kiln_webhook_deliveries_total{result="accepted"} 5'
	contains "$metrics" 'kiln_webhook_deliveries_total{result="duplicate"} 1'
	contains "$metrics" 'kiln_webhook_deliveries_total{result="unauthorized"} 5'
	contains "$metrics" 'kiln_last_successful_poll_timestamp_seconds{repository="github"}'
	# every family the README lists, each with its HELP and TYPE once
	for f in kiln_process_start_time_seconds:gauge kiln_queue_depth:gauge \
		kiln_running_builds:gauge kiln_builds_total:counter \
		kiln_build_duration_seconds:histogram kiln_polls_total:counter kiln_fetches_total:counter \
		kiln_fetch_errors_total:counter kiln_last_successful_poll_timestamp_seconds:gauge \
		kiln_webhook_deliveries_total:counter kiln_webhook_commits_total:counter \
		kiln_health_reasons:gauge kiln_outbox_sent_total:counter \
		kiln_outbox_failed_total:counter kiln_outbox_pending:gauge; do
		[ "$(grep -c "^# TYPE ${f%%:*} ${f#*:}\$" <<<"$metrics")" = 1 ] &&
			[ "$(grep -c "^# HELP ${f%%:*} " <<<"$metrics")" = 1 ] || fail "/metrics: family $f"
	done
	[ "$(grep -c '^# TYPE' <<<"$metrics")" = 15 ] || fail "/metrics has families the README does not list"
	contains "$metrics" 'kiln_build_duration_seconds_bucket{le="+Inf"}'
	# the polls the deliveries asked for are done: none is left to replay
	unhandled() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM deliveries WHERE handled = 0").fetchone()[0])' state/kilnd.db; }
	all_handled() { [ "$(unhandled)" = 0 ]; }
	wait_for 5 all_handled || fail "deliveries not marked handled after their polls: $(unhandled)"
	grep -q "http connection [0-9]* closed: " kilnd.log || fail "no connection close reason logged at debug"
	[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/healthz")" = 405 ] ||
		fail "POST /healthz is not 405"
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/nothing")" = 404 ] ||
		fail "unknown path is not 404"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

t_limits_pipelining_and_load() {
	ulimit -n 4096 2>/dev/null || true # 1,000 sockets on each side
	setup_daemon
	# over 25 MiB: refused from the Content-Length, before the body is read
	head -c $((26 << 20)) /dev/zero >big
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' \
		-H 'Content-Type: application/json' --data-binary @big "http://127.0.0.1:$PORT/hooks/github")
	[ "$code" = 413 ] || fail "26 MiB body: $code, want 413"
	python3 - "$PORT" <<-'PY' || fail "protocol checks failed"
	import re, socket, sys, time
	port = int(sys.argv[1])
	def conn(source="127.0.0.1"):
	    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
	    return s
	def read_all(s):
	    data = b""
	    while True:
	        try:
	            chunk = s.recv(65536)
	        except socket.timeout:
	            break
	        if not chunk:
	            break
	        data += chunk
	    return data
	# pipelining: three requests in one write, three answers in order
	s = conn()
	s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	          b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
	          b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	data = read_all(s)
	codes = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
	assert codes == [b"200", b"404", b"200"], codes
	# keep-alive: two requests, one connection
	s = conn()
	for _ in range(2):
	    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	    head = s.recv(65536)
	    assert head.startswith(b"HTTP/1.1 200"), head
	s.close()
	# garbage: 400 and closed
	s = conn()
	s.sendall(b"\x00\x01 not http at all\r\n\r\n")
	assert read_all(s).startswith(b"HTTP/1.1 400"), "garbage"
	# headers over the limit: 431 and closed
	s = conn()
	s.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
	assert read_all(s).startswith(b"HTTP/1.1 431"), "big headers"
	# 1,000 connections at once, from 20 client addresses (each under its
	# cap of 64 connections): all answered
	socks = [conn("127.0.0.%d" % (1 + i % 20)) for i in range(1000)]
	for x in socks:
	    x.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	ok = sum(1 for x in socks if read_all(x).startswith(b"HTTP/1.1 200"))
	assert ok == 1000, ok
	for x in socks:
	    x.close()
	# slow loris: headers trickling in are cut at header_timeout (1 s here)
	t0 = time.monotonic()
	s = conn()
	s.sendall(b"GET /healthz HTTP/1.1\r\n")
	for _ in range(40):
	    time.sleep(0.1)
	    try:
	        s.sendall(b"X-A: b\r\n")
	    except OSError:
	        break
	assert read_all(s) == b"", "slow headers were answered"
	assert time.monotonic() - t0 < 3, "not cut at the header timeout"
	# a body that never finishes is cut at body_timeout
	s = conn()
	s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
	t0 = time.monotonic()
	assert read_all(s) == b"" and time.monotonic() - t0 < 3, "slow body not cut"
	# an idle keep-alive connection is closed after idle_timeout
	s = conn()
	s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	s.settimeout(5)
	t0 = time.monotonic()
	data = read_all(s)
	assert data.startswith(b"HTTP/1.1 200") and time.monotonic() - t0 < 4, "idle not closed"
	# a client that stops mid-request holds nothing else up
	slow = conn()
	slow.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	s = conn()
	s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	assert read_all(s).startswith(b"HTTP/1.1 200"), "blocked by a slow client"
	slow.close()
	PY
	kill -0 "$KPID" || fail "kilnd died"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

t_delivery_replayed_after_crash() {
	setup_daemon
	kill -TERM "$KPID"
	wait "$KPID"
	# a delivery answered just before a crash, not yet followed by a poll
	python3 - state/kilnd.db <<-'PY'
	import sqlite3, sys, time
	c = sqlite3.connect(sys.argv[1])
	c.execute("INSERT INTO deliveries (repository, id, received_at) VALUES ('gitea', 'lost', ?)", (int(time.time() * 1000),))
	c.commit()
	PY
	"$KILND" --config kilnd.yaml --log-level debug >>kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "'gitea' has webhook deliveries or triggers from before the restart" kilnd.log ||
		fail "pending delivery not replayed: $(tail -5 kilnd.log)"
	wait_for 10 grep -q "watch 'gitea'.*first seen" kilnd.log || fail "no poll for the replayed delivery"
	handled() { [ "$(python3 -c "import sqlite3; print(sqlite3.connect('state/kilnd.db').execute(\"SELECT handled FROM deliveries WHERE id = 'lost'\").fetchone()[0])")" = 1 ]; }
	wait_for 10 handled || fail "delivery not marked handled after the poll"
	kill -TERM "$KPID"
	wait "$KPID"
}

# A delivery that arrives while its repository is being polled is served by
# the poll that follows (the trigger coalesces into it): it must not stay
# unhandled, to cause one more poll at every restart.
t_delivery_during_a_poll_is_handled() {
	setup_daemon
	expect_status 202 /hooks/github github topsecret --delivery first
	wait_for 5 grep -q "watch 'github'.*first seen" kilnd.log || fail "no first poll"
	# enough images that planning the push takes a while
	(cd c && for i in $(seq 1 300); do
		mkdir "i$i" && printf 'name: i%s\nversion: "1"\nregistry: r.example.com\n' "$i" >"i$i/manifest.yaml" &&
			echo 'FROM scratch' >"i$i/Dockerfile"
	done && git add -A && git commit -qm many && git push -q origin HEAD:main)
	# the second delivery is sent as soon as the first is answered, while
	# the poll it started fetches and plans the 300 new images
	got=$(hook /hooks/github github topsecret --delivery push --then during | tr '\n' ' ')
	[ "$got" = "202 202 " ] || fail "statuses: $got"
	if ! wait_for 5 grep -q "watch 'github': trigger while .*coalesced" kilnd.log; then
		skip "the second delivery did not arrive while the poll ran"
		return
	fi
	unhandled() { python3 -c "import sqlite3; print(sqlite3.connect('state/kilnd.db').execute(\"SELECT count(*) FROM deliveries WHERE repository = 'github' AND handled = 0\").fetchone()[0])"; }
	all_handled() { [ "$(unhandled)" = 0 ]; }
	wait_for 10 all_handled || fail "$(unhandled) deliveries left unhandled after the polls"
	kill -TERM "$KPID"
	wait "$KPID"
	"$KILND" --config kilnd.yaml --log-level debug >restart.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "kilnd .* ready:" restart.log || fail "kilnd did not start again"
	grep -q "'github' has webhook deliveries or triggers from before the restart" restart.log &&
		fail "a restart replayed a delivery a poll had served"
	kill -TERM "$KPID"
	wait "$KPID"
}

# Group commit: deliveries that arrive while one is being committed share
# the next transaction (kiln_webhook_commits_total counts them), each
# answered when it is durable; an id twice in one batch is a duplicate the
# second time, an id already recorded stays a duplicate.
t_deliveries_in_flight_share_one_commit() {
	setup_daemon
	expect_status 202 /hooks/github github topsecret --delivery early
	wait_for 5 grep -q "watch 'github'.*first seen" kilnd.log || fail "no first poll"
	commits() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^kiln_webhook_commits_total / {print $2}'; }
	n=$(commits)
	codes=$(python3 "$LIB/hook_batch.py" "$PORT" state/kilnd.db /hooks/github topsecret \
		b-0 b-1 b-2 b-3 b-2 early b-4)
	# b-2 twice in the batch: one 202 and one 200, whichever came first
	read -r c0 c1 c2 c3 c2b ce c4 <<<"$codes"
	[ "$c0 $c1 $c3 $c4 $ce" = "202 202 202 202 200" ] || fail "statuses: $codes (want b-0, b-1, b-3, b-4 202, early 200)"
	[ "$(printf '%s\n' "$c2" "$c2b" | sort | tr '\n' ' ')" = "200 202 " ] || fail "b-2 twice: $c2 and $c2b"
	[ "$(($(commits) - n))" = 2 ] || fail "$(($(commits) - n)) commits for b-0, then the six behind it; want 2"
	python3 -c 'import sqlite3
ids = sorted(r[0] for r in sqlite3.connect("state/kilnd.db").execute("SELECT id FROM deliveries"))
assert ids == ["b-0", "b-1", "b-2", "b-3", "b-4", "early"], ids' || fail "not each delivery recorded once"
}

t_socket_activation() {
	command -v systemd-socket-activate >/dev/null || { skip "no systemd-socket-activate"; return; }
	PORT=$(free_port)
	printf 'state_dir: %s/state\nlisten: {status_socket: %s/kiln.sock}\nbuilds: {dry_run: true}\nrepositories: []\n' "$PWD" "$PWD" >kilnd.yaml
	systemd-socket-activate -l "127.0.0.1:$PORT" "$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	sleep 0.3
	# the socket exists before kilnd runs: the first request starts it
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$PORT/healthz")
	[ "$code" = 200 ] || fail "healthz over an adopted socket: $code ($(tail -3 kilnd.log))"
	grep -q "listening on a socket from systemd" kilnd.log || fail "socket not adopted"
	kill -TERM "$KPID"
	wait "$KPID"
}

run_all
