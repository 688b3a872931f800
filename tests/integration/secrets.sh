#!/usr/bin/env bash
# secrets.sh: a password written into a repository URL is never printed:
# not in kilnd's log (at debug), `kilnd --check-config`, `kiln status` (text
# and JSON), /healthz, /metrics or sd_notify's STATUS=; kilnd warns that it
# belongs in credentials.password_file. Nor is any secret read from a file
# (webhook, repository and registry passwords, an SSH key): every output
# surface of a kilnd that uses them all is collected and searched by
# lib/leaks.py, which is first shown to find each of them.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?set KILND to the kilnd executable}"
LIB=$(cd "$(dirname "$0")/lib" && pwd)

SECRET=s3cretPW-4711

# refuse HOST_PORT_FILE: an HTTP server that answers every request 401 (the
# remote a fetch fails against, so that libgit2's errors quote the URL too);
# its port in the file once it listens, the Authorization headers it got in
# FILE.auth
refuse() {
	python3 - "$1" <<-'PY' &
	import http.server, sys
	class H(http.server.BaseHTTPRequestHandler):
	    def do_GET(self):
	        if self.headers.get("Authorization"):
	            with open(sys.argv[1] + ".auth", "a") as f:
	                f.write(self.headers["Authorization"] + "\n")
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

# ---- every secret kind, every output ----

# leak_check SECRETS FILES...: fails, naming them, when FILES hold a secret
leak_check() {
	local out
	out=$(python3 "$LIB/leaks.py" "$@") || fail "secrets printed: $out"
}

# A kilnd with every kind of secret configured from $CREDENTIALS_DIRECTORY
# (relative file names), plus a URL with a password, builds on the stand-in
# engine (a real build and push: the registry password goes to the engine),
# fails the polls that use the others and gets a webhook with a bad
# signature; everything it prints anywhere is collected into out/ and
# searched for every secret, also in base64.
t_every_secret_kind_never_printed() {
	local port hport kpid notes id i
	mkdir creds out
	printf 'hook-%s' "$SECRET" >creds/hook.secret
	printf 'repo-%s\n' "$SECRET" >creds/repo.password
	printf 'registry-%s' "$SECRET" >creds/registry.password
	printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nsshkey%sAAAA\n-----END OPENSSH PRIVATE KEY-----\n' \
		"$SECRET" >creds/id_ed25519
	{
		printf 'webhook secret\thook-%s\n' "$SECRET"
		printf 'repository password\trepo-%s\talice\n' "$SECRET"
		printf 'registry password\tregistry-%s\tcarol\n' "$SECRET"
		printf 'ssh key\tsshkey%sAAAA\n' "$SECRET"
		printf 'url password\turl-%s\tbob\n' "$SECRET"
	} >secrets.tsv
	# the grep finds each secret in each form it looks for
	{
		printf 'x hook-%s x\n' "$SECRET"
		printf 'Authorization: Basic %s\n' "$(printf 'alice:repo-%s' "$SECRET" | base64 -w0)"
		printf 'X-Registry-Auth: %s\n' "$(printf '{"username":"carol","password":"registry-%s"}' "$SECRET" |
			base64 -w0 | tr '+/' '-_')"
		printf 'sshkey%sAAAA\nhttp://bob:url-%s@h/x\n' "$SECRET" "$SECRET"
	} >control.txt
	found=$(python3 "$LIB/leaks.py" secrets.tsv control.txt)
	[ "$(wc -l <<<"$found")" = 5 ] || fail "the grep missed a secret in the control file: $found"
	python3 "$LIB/leaks.py" secrets.tsv secrets.tsv >/dev/null && fail "the grep exits 0 on a leak"
	python3 "$LIB/leaks.py" secrets.tsv "$LIB/leaks.py" || fail "the grep finds secrets where there are none"

	AUTH_LOG=$PWD/engine.auth python3 "$LIB/hostile_engine.py" "$PWD/e.sock" "$PWD/mode" 2>engine.log &
	track_pid $!
	echo ok >mode
	wait_for 10 test -S e.sock || fail "the stand-in engine did not start: $(cat engine.log)"
	refuse "$PWD/port"
	port=$(cat port)
	hport=$(free_port)
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
	(cd c && manifest app app 1 && printf 'FROM scratch\nCOPY . /\n' >app/Dockerfile && commit one &&
		git push -q origin HEAD:main)
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	docker: {host: "unix://$PWD/e.sock"}
	builds: {retries: 0, builder: classic}
	listen: {status_socket: $PWD/state.sock, http: ["127.0.0.1:$hport"]}
	registries:
	  - host: reg.example.com:5000
	    username: carol
	    password_file: registry.password
	repositories:
	  - name: images
	    url: $PWD/origin.git
	    poll_interval: 1h
	    build_on_start: all
	    webhook: {provider: github, secret_file: hook.secret}
	  - name: creds
	    url: http://127.0.0.1:$port/creds.git
	    poll_interval: 1h
	    credentials: {username: alice, password_file: repo.password}
	  - name: inurl
	    url: "http://bob:url-$SECRET@127.0.0.1:$port/inurl.git"
	    poll_interval: 1h
	  - name: ssh
	    url: ssh://git@127.0.0.1:$(free_port)/ssh.git
	    poll_interval: 1h
	    credentials: {username: git, ssh_key_file: id_ed25519}
	Y
	export CREDENTIALS_DIRECTORY=$PWD/creds KILN_SOCKET=$PWD/state.sock
	"$KILND" --check-config --config kilnd.yaml >out/check-config 2>&1 ||
		fail "--check-config refused: $(cat out/check-config)"

	notes="$PWD/out/sd_notify"
	python3 "$LIB/notify_listen.py" "$PWD/notify.sock" "$notes" &
	track_pid $!
	wait_for 5 test -S "$PWD/notify.sock" || fail "notify socket did not appear"
	NOTIFY_SOCKET="$PWD/notify.sock" "$KILND" --config kilnd.yaml --log-level debug \
		>out/kilnd.stdout 2>out/kilnd.stderr &
	kpid=$!
	track_pid "$kpid"
	wait_for 10 "$KILN" health || { fail "kilnd did not start: $(tail -5 out/kilnd.stderr)"; return; }
	for i in images creds inurl ssh; do
		"$KILN" trigger "$i" >>out/trigger 2>&1 || fail "kiln trigger $i refused"
	done
	all_polls_failed() {
		"$KILN" status --json | python3 -c '
import json, sys
r = {x["name"]: x for x in json.load(sys.stdin)["repositories"]}
sys.exit(not all(r[n]["last_error"] for n in ("creds", "inurl", "ssh")))'
	}
	wait_for 20 all_polls_failed || fail "the polls did not all fail: $("$KILN" status 2>&1)"
	built() { [ -n "$("$KILN" builds --state succeeded --json | python3 -c 'import json,sys; print(*[b["id"] for b in json.load(sys.stdin)])')" ]; }
	wait_for 20 built || fail "nothing built on the stand-in engine: $("$KILN" builds 2>&1)"
	id=$("$KILN" builds --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
	# a webhook signed with the wrong secret and one signed right: their answers
	python3 - "$hport" "hook-$SECRET" >out/webhooks 2>&1 <<-'PY'
	import hashlib, hmac, http.client, json, sys
	port, secret = int(sys.argv[1]), sys.argv[2]
	body = json.dumps({"ref": "refs/heads/main", "after": "1" * 40}).encode()
	for key in (secret + "x", secret):
	    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
	    sig = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
	    c.request("POST", "/hooks/images", body=body, headers={
	        "Content-Type": "application/json", "X-GitHub-Event": "push",
	        "X-GitHub-Delivery": "leak-" + key[-1], "X-Hub-Signature-256": sig})
	    r = c.getresponse()
	    print(r.status, r.reason, r.getheaders(), r.read())
	PY
	grep -q "^401 " out/webhooks || fail "the bad signature was not refused: $(cat out/webhooks)"
	grep -q "^202 " out/webhooks || fail "the good signature was not accepted: $(cat out/webhooks)"
	for c in "status" "status --json" "builds" "builds --json" "show $id" "show $id --json" \
		"logs $id" "health"; do
		"$KILN" $c >"out/kiln $c" 2>&1 || fail "kiln $c exited $?: $(cat "out/kiln $c")"
	done
	curl -s -i "http://127.0.0.1:$hport/healthz" >out/healthz
	curl -s -i "http://127.0.0.1:$hport/metrics" >out/metrics
	grep -q "kiln_" out/metrics || fail "/metrics did not answer"
	kill -TERM "$kpid"
	wait "$kpid" || fail "kilnd exited $? after SIGTERM"
	cp state/logs/* out/ 2>/dev/null
	# what must be there, so that an empty output cannot pass
	grep -q "reg.example.com:5000/team/app:1" "out/kiln logs $id" || fail "kiln logs: $(cat "out/kiln logs $id")"
	grep -q "bob:\*\*\*@" "out/kiln status" || fail "kiln status does not show the redacted URL"
	# the credentials were used: had they been printed, the grep would see them
	grep -qx "Basic $(printf 'alice:repo-%s' "$SECRET" | base64 -w0)" port.auth ||
		fail "the repository password was not sent: $(cat port.auth 2>&1)"
	grep -q "registry password (inside base64)" <<<"$(python3 "$LIB/leaks.py" secrets.tsv engine.auth)" ||
		fail "the registry password did not reach the engine: $(cat engine.auth 2>&1)"
	leak_check secrets.tsv out/*
	unset CREDENTIALS_DIRECTORY KILN_SOCKET
}

run_all
