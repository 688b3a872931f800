#!/usr/bin/env bash
# secrets.sh: a password written into a repository URL is never printed:
# not in kilnd's log (at debug), `kilnd --check-config`, `kiln status` (text
# and JSON), /healthz, /metrics or sd_notify's STATUS=; kilnd warns that it
# belongs in credentials.password_file.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?set KILND to the kilnd executable}"
LIB=$(cd "$(dirname "$0")/lib" && pwd)

SECRET=s3cretPW-4711

# refuse HOST_PORT_FILE: an HTTP server that answers every request 401 (the
# remote a fetch fails against, so that libgit2's errors quote the URL too);
# its port in the file once it listens
refuse() {
	python3 - "$1" <<-'PY' &
	import http.server, sys
	class H(http.server.BaseHTTPRequestHandler):
	    def do_GET(self):
	        self.send_response(401)
	        self.send_header("WWW-Authenticate", 'Basic realm="x"')
	        self.send_header("Content-Length", "0")
	        self.end_headers()
	    do_POST = do_GET
	    def log_message(self, *a):
	        pass
	s = http.server.HTTPServer(("127.0.0.1", 0), H)
	open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
	import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
	s.serve_forever()
	PY
	track_pid $!
	wait_for 10 test -s "$1" || fail "the refusing server did not start"
}

# no_secret WHAT TEXT: fails when TEXT holds the password
no_secret() {
	case "$2" in *"$SECRET"*) fail "$1 shows the password: $(grep -F "$SECRET" <<<"$2" | head -3)" ;; esac
}

poll_failed() {
	"$KILN" status --json --socket "$PWD/state.sock" |
		python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["repositories"][0]["last_error"] is None)'
}

t_url_password_never_printed() {
	local port hport url out notes kpid
	refuse "$PWD/port"
	port=$(cat port)
	hport=$(free_port)
	url="http://user:$SECRET@127.0.0.1:$port/images.git"
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	builds: {dry_run: true}
	listen: {status_socket: $PWD/state.sock, http: ["127.0.0.1:$hport"]}
	repositories:
	  - name: images
	    url: "$url"
	    poll_interval: 1h
	Y
	expect_rc 0 "$KILND" --check-config --config kilnd.yaml
	no_secret "--check-config" "$OUT$ERR"
	contains "$ERR" "credentials.password_file"
	contains "$ERR" "http://user:***@127.0.0.1:$port/images.git"

	notes="$PWD/notify.log"
	: >"$notes"
	python3 "$LIB/notify_listen.py" "$PWD/notify.sock" "$notes" &
	track_pid $!
	wait_for 5 test -S "$PWD/notify.sock" || fail "notify socket did not appear"
	NOTIFY_SOCKET="$PWD/notify.sock" "$KILND" --config kilnd.yaml --log-level debug >kilnd.log 2>&1 &
	kpid=$!
	track_pid "$kpid"
	wait_for 10 "$KILN" health --socket "$PWD/state.sock" || {
		fail "kilnd did not start: $(tail -5 kilnd.log)"
		return
	}
	expect_rc 0 "$KILN" trigger images --socket "$PWD/state.sock"
	# the poll fails against the 401s: its error quotes the URL
	wait_for 20 poll_failed || fail "the poll did not fail: $(tail -5 kilnd.log)"

	expect_rc 0 "$KILN" status --socket "$PWD/state.sock"
	no_secret "kiln status" "$OUT$ERR"
	expect_rc 0 "$KILN" status --json --socket "$PWD/state.sock"
	no_secret "kiln status --json" "$OUT$ERR"
	[ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["repositories"][0]["url"])' <<<"$OUT")" = \
		"http://user:***@127.0.0.1:$port/images.git" ] || fail "status --json: url not shown redacted: $OUT"
	out=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["repositories"][0]["last_error"])' <<<"$OUT")
	contains "$out" "user:***@"
	"$KILN" health --socket "$PWD/state.sock" >health.out 2>&1
	no_secret "kiln health" "$(cat health.out)"
	out=$(curl -s "http://127.0.0.1:$hport/healthz")
	[ -n "$out" ] || fail "/healthz did not answer"
	no_secret "/healthz" "$out"
	out=$(curl -s "http://127.0.0.1:$hport/metrics")
	contains "$out" "kiln_"
	no_secret "/metrics" "$out"
	kill -TERM "$kpid"
	wait "$kpid" || fail "kilnd exited $? after SIGTERM"
	contains "$(cat kilnd.log)" "user:***@127.0.0.1:$port"
	contains "$(cat kilnd.log)" "credentials.password_file"
	no_secret "kilnd's log" "$(cat kilnd.log)"
	no_secret "sd_notify" "$(cat "$notes")"
}

# a configuration error that quotes the URL redacts it as well
t_config_error_redacted() {
	cat >bad.yaml <<-Y
	state_dir: $PWD/state
	repositories:
	  - name: images
	    url: "ftp://user:$SECRET@host/images.git"
	Y
	expect_rc 1 "$KILND" --check-config --config bad.yaml
	contains "$ERR" "ftp://user:***@host"
	no_secret "--check-config's error" "$OUT$ERR"
}

run_all
