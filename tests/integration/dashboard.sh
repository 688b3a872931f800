#!/usr/bin/env bash
# dashboard.sh: the web dashboard over curl (the browser's view is
# dashboard_browser.sh): served only when enabled, on listen.http or on its
# own listen.dashboard_http; read-only (405); security headers; HTTP Basic
# authentication against htpasswd -B and openssl passwd -6 hashes made here,
# and an auth file's errors; filters and paging over builds written into the
# state; markup in an image folder, a log line and a build error shown as
# text.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}" "${KILN:?}"
LIB=$(cd "$(dirname "$0")/lib" && pwd)

EVIL='x<script>alert(1)<'

# origin DIR: a bare repository with two images, one in a folder whose name
# is markup
origin() {
	git init -q --bare -b main "$1"
	rm -rf c
	git clone -q "$1" c 2>/dev/null
	(cd c && image base base 1 && image "$EVIL" evil 1 && commit 'one <script>alert(2)</script>' &&
		git push -q origin HEAD:main)
}

# start LISTEN-YAML [more top-level yaml]: kilnd, dry run, on origin.git
start() {
	PORT=$(free_port)
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	builds: {dry_run: true}
	listen: {http: ["127.0.0.1:$PORT"], status_socket: $PWD/kiln.sock$1}
	${2:-}
	repositories:
	  - name: images
	    url: $PWD/origin.git
	    poll_interval: 60s
	    build_on_start: all
	Y
	: >notify.log
	python3 "$LIB/notify_listen.py" "$PWD/notify.sock" "$PWD/notify.log" &
	track_pid $!
	wait_for 5 test -S notify.sock || fail "notify socket did not appear"
	NOTIFY_SOCKET="$PWD/notify.sock" "$KILND" --config kilnd.yaml --log-level debug >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "READY=1" notify.log || fail "no READY=1 (log: $(tail -5 kilnd.log))"
}

stop() {
	kill -TERM "$KPID" && wait "$KPID" || fail "kilnd did not stop cleanly"
}

# code PATH [curl args...]: the status of a GET
code() {
	local path=$1
	shift
	curl -s -o /dev/null -w '%{http_code}' "$@" "http://127.0.0.1:${CPORT:-$PORT}$path"
}

# get PATH [curl args...]: headers and body into page.out
get() {
	local path=$1
	shift
	curl -s -D headers.out -o page.out "$@" "http://127.0.0.1:${CPORT:-$PORT}$path"
}

builds_done() {
	[ "$(sqlite3_count "SELECT count(*) FROM builds WHERE state = 'succeeded'")" = "${1:-2}" ]
}

sqlite3_count() {
	python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' \
		state/kilnd.db "$1"
}

t_off_by_default() {
	origin origin.git
	start ""
	for p in / /builds /builds/1 /builds/1/log /engine /static/dashboard.js; do
		[ "$(code "$p")" = 404 ] || fail "$p served with the dashboard off"
	done
	[ "$(code /healthz)" = 200 ] || fail "/healthz not served"
	stop
}

t_pages() {
	origin origin.git
	start ", dashboard: true"
	wait_for 10 builds_done || fail "the two dry-run builds did not finish"
	get /
	[ "$(head -1 headers.out | tr -d '\r')" = "HTTP/1.1 200 OK" ] || fail "/: $(head -1 headers.out)"
	grep -qi "^Content-Security-Policy: default-src 'none'; script-src 'self'" headers.out ||
		fail "no CSP"
	grep -qi "^X-Content-Type-Options: nosniff" headers.out || fail "no nosniff"
	grep -q 'href="/builds?repository=images">images</a>' page.out || fail "repository not listed"
	grep -q 'next poll' page.out || fail "no next poll column"
	! grep -q '<script>[^<]' page.out || fail "inline script on the page"
	get /builds
	[ "$(grep -c '<tr><td><a href="/builds/' page.out)" = 2 ] || fail "not 2 builds listed"
	get /engine
	grep -q 'none: builds.dry_run' page.out || fail "engine page: $(cat page.out)"
	get /static/dashboard.js
	grep -qi '^Content-Type: text/javascript' headers.out || fail "script type"
	get /static/dashboard.css
	grep -qi '^Content-Type: text/css' headers.out || fail "stylesheet type"
	# read-only
	[ "$(code / -X POST -d x=1)" = 405 ] || fail "POST / not 405"
	[ "$(code /builds/1 -X DELETE)" = 405 ] || fail "DELETE not 405"
	curl -s -I "http://127.0.0.1:$PORT/builds" >head.out
	grep -qi '^Content-Length: [1-9]' head.out || fail "HEAD has no length"
	[ "$(curl -s -X HEAD -m 2 "http://127.0.0.1:$PORT/builds" 2>/dev/null | wc -c)" = 0 ] ||
		fail "HEAD sent a body"
	# bad requests
	[ "$(code '/builds?state=bogus')" = 400 ] || fail "bad state not 400"
	[ "$(code '/builds?before=x')" = 400 ] || fail "bad cursor not 400"
	[ "$(code '/builds/999')" = 404 ] || fail "missing build not 404"
	[ "$(code '/builds/1/nope')" = 404 ] || fail "unknown path not 404"
	stop
}

t_escaping() {
	origin origin.git
	start ", dashboard: true"
	wait_for 10 builds_done || fail "the two dry-run builds did not finish"
	id=$(sqlite3_count "SELECT id FROM builds WHERE path = '$EVIL'")
	python3 -c 'import sqlite3,sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE builds SET error = ? WHERE id = ?", ("<script>alert(3)</script>", int(sys.argv[2])))
c.commit()' state/kilnd.db "$id"
	printf '\033[31m<script>alert(4)</script>\033[0m\n' >>"state/logs/$id.log"
	for p in /builds "/builds/$id" "/builds?image=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1]))' "$EVIL")"; do
		get "$p"
		grep -q '<script>alert' page.out && fail "$p: markup from the state is live"
		grep -q 'x&lt;script&gt;alert(1)&lt;' page.out || fail "$p: the folder is not shown escaped"
	done
	grep -q '&lt;script&gt;alert(3)&lt;/script&gt;' page.out || fail "the error is not shown escaped"
	get "/builds/$id"
	grep -q '&lt;script&gt;alert(4)&lt;/script&gt;' page.out || fail "the log line is not shown escaped"
	grep -q '<td id="f-message">one &lt;script&gt;alert(2)&lt;/script&gt;</td>' page.out ||
		fail "the commit message is not shown escaped: $(grep -o '<td id="f-message">[^/]*' page.out)"
	"$KILN" show "$id" --socket kiln.sock >show.out || fail "kiln show failed"
	grep -q '^subject      one <script>alert(2)</script>$' show.out || fail "kiln show: $(cat show.out)"
	# a rebuild at a commit whose message has a terminal escape: kept, made harmless
	# (it changes no image folder, so no plan kept its message before)
	(cd c && printf 'x\n' >>notes.txt && git add -A &&
		git commit -q -m "$(printf 'two \033[31mred\033[0m\n\nbody <i>')" && git push -q origin HEAD:main)
	sha=$(git -C c rev-parse HEAD)
	"$KILN" trigger images --socket kiln.sock >/dev/null || fail "trigger failed"
	seen() { [ "$(sqlite3_count "SELECT last_seen FROM branches WHERE branch = 'main'")" = "$sha" ]; }
	wait_for 10 seen || fail "the push was not polled"
	"$KILN" rebuild images base "$sha" --socket kiln.sock >rebuild.out || fail "rebuild: $(cat rebuild.out)"
	rid=$(sqlite3_count "SELECT max(id) FROM builds")
	get "/builds/$rid"
	grep -q '<td id="f-message">two  \[31mred \[0m</td>' page.out ||
		fail "the rebuild's message: $(grep -o '<td id="f-message">[^<]*' page.out | od -c | head)"
	grep -q $'\033' page.out && fail "a colour code reached the page"
	# a message in Latin-1 (git's i18n.commitEncoding): not UTF-8, so each
	# stray byte is shown as U+FFFD (JSON strings must be UTF-8); a C1
	# control character (U+009B, CSI to some terminals) becomes a space
	(cd c && printf 'y\n' >>notes.txt && git add -A && printf 'caf\351 cr\350me \302\23331m\n' >msg &&
		git -c i18n.commitEncoding=ISO-8859-1 commit -q -F msg && git push -q origin HEAD:main)
	sha=$(git -C c rev-parse HEAD)
	"$KILN" trigger images --socket kiln.sock >/dev/null || fail "trigger failed"
	wait_for 10 seen || fail "the second push was not polled"
	"$KILN" rebuild images base "$sha" --socket kiln.sock >rebuild.out || fail "rebuild: $(cat rebuild.out)"
	rid=$(sqlite3_count "SELECT max(id) FROM builds")
	"$KILN" show "$rid" --socket kiln.sock >show.out || fail "kiln show failed"
	grep -q $'^subject      caf\xef\xbf\xbd cr\xef\xbf\xbdme  31m$' show.out || fail "kiln show: $(grep subject show.out | od -c)"
	get "/builds/$id/log?offset=0"
	grep -qi '^Content-Type: text/plain' headers.out || fail "the live log is not text/plain"
	grep -qi '^X-Kiln-State: succeeded' headers.out || fail "no state header"
	grep -q '^<script>alert(4)</script>$' page.out || fail "the live log's text: $(cat page.out)"
	stop
}

t_filters_paging() {
	origin origin.git
	start ", dashboard: true"
	wait_for 10 builds_done || fail "the two dry-run builds did not finish"
	python3 -c 'import sqlite3,sys
c = sqlite3.connect(sys.argv[1])
for i in range(120):
    c.execute("INSERT INTO builds (repository, branch, path, image, commit_sha, change, state,"
              " attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 0)",
              ("other" if i % 3 else "images", "main", "p%d" % (i % 4), "reg/x/p%d:1" % (i % 4),
               "%040x" % i, "added", "failed" if i % 5 == 0 else "succeeded"))
c.commit()' state/kilnd.db
	ids() { grep -o '<tr><td><a href="/builds/[0-9]*"' page.out | grep -o '[0-9]*'; }
	get /builds
	[ "$(ids | wc -l)" = 50 ] || fail "page 1 has $(ids | wc -l) builds"
	[ "$(ids | head -1)" = 122 ] || fail "page 1 is not newest first"
	next=$(grep -o 'id="older" rel="next" href="[^"]*"' page.out | sed 's/.*href="//; s/"$//; s/&amp;/\&/g')
	[ "$next" = "/builds?before=73" ] || fail "older link: '$next'"
	get "$next"
	[ "$(ids | head -1)" = 72 ] && [ "$(ids | tail -1)" = 23 ] || fail "page 2: $(ids | head -1)..$(ids | tail -1)"
	get "/builds?before=23"
	[ "$(ids | wc -l)" = 22 ] || fail "page 3 has $(ids | wc -l) builds"
	grep -q 'id="older"' page.out && fail "a last page links further"
	grep -q 'id="newest"' page.out || fail "no link back to the newest"
	get "/builds?state=failed"
	[ "$(ids | wc -l)" = 24 ] || fail "failed: $(ids | wc -l)"
	get "/builds?repository=other&state=succeeded"
	want=$(python3 -c 'print(sum(1 for i in range(120) if i % 3 and i % 5))')
	[ "$(ids | wc -l)" = "$(( want < 50 ? want : 50 ))" ] || fail "other+succeeded: $(ids | wc -l)"
	grep -q 'id="older" rel="next" href="/builds?repository=other&amp;state=succeeded&amp;before=' page.out ||
		[ "$want" -le 50 ] || fail "paging drops the filters"
	get "/builds?image=p1"
	[ "$(ids | wc -l)" = 30 ] || fail "folder p1: $(ids | wc -l)"
	get "/builds?image=reg/x/p2:1"
	[ "$(ids | wc -l)" = 30 ] || fail "image reg/x/p2:1: $(ids | wc -l)"
	get "/builds?image=base"
	[ "$(ids | wc -l)" = 1 ] || fail "folder base: $(ids | wc -l)"
	stop
}

t_auth() {
	origin origin.git
	htpasswd -nbB -C 5 alice 'in wonderland' >users || fail "htpasswd failed"
	echo "bob:$(openssl passwd -6 'b0b:secret')" >>users
	htpasswd -nbB -C 12 slow 'the slow one' | head -1 >>users
	start ", dashboard: true" "dashboard: {auth_file: $PWD/users}"
	grep -q "dashboard: 3 users from" kilnd.log || fail "users not read: $(tail -3 kilnd.log)"
	# password checks at once are capped (DASHBOARD_CHECKS_MAX, 2): a burst
	# of guesses at a costly hash gets 503s, not the whole worker pool
	local pids=""
	for i in 1 2 3 4 5 6; do
		code / -u "slow:guess $i" >"burst.$i" &
		pids="$pids $!"
	done
	# shellcheck disable=SC2086 # one pid a word; a bare wait would wait for kilnd
	wait $pids
	[ "$(cat burst.* | grep -c 503)" -ge 1 ] || fail "no 503 in a burst of checks: $(cat burst.*)"
	grep -q 200 burst.* && fail "a guess let in"
	get /
	grep -q '^HTTP/1.1 401' headers.out || fail "no 401 without credentials"
	grep -qi '^WWW-Authenticate: Basic realm="kiln"' headers.out || fail "no Basic challenge"
	[ "$(code / -u 'alice:in wonderland')" = 200 ] || fail "alice refused"
	[ "$(code /builds -u 'bob:b0b:secret')" = 200 ] || fail "bob refused"
	[ "$(code /static/dashboard.js -u 'bob:b0b:secret')" = 200 ] || fail "bob refused the script"
	[ "$(code / -u 'alice:wrong')" = 401 ] || fail "a wrong password let in"
	[ "$(code / -u 'mallory:in wonderland')" = 401 ] || fail "an unknown user let in"
	[ "$(code /static/dashboard.css)" = 401 ] || fail "the stylesheet served without credentials"
	[ "$(code /builds -H 'Authorization: Basic !!!')" = 401 ] || fail "bad base64 let in"
	# a second time is answered from the cache: the same answer
	[ "$(code / -u 'alice:in wonderland')" = 200 ] || fail "alice refused the second time"
	[ "$(code / -u 'alice:wrong')" = 401 ] || fail "a wrong password let in the second time"
	# not for webhooks and health
	[ "$(code /healthz)" = 200 ] || fail "/healthz asks for the dashboard's password"
	[ "$(code / -u 'slow:the slow one')" = 200 ] || fail "the slow user refused after the burst"
	# a reload reads the file again: bob gone
	htpasswd -nbB -C 5 alice 'in wonderland' >users
	kill -HUP "$KPID"
	wait_for 10 grep -q "dashboard: 1 user from" kilnd.log || fail "auth file not read again"
	[ "$(code / -u 'bob:b0b:secret')" = 401 ] || fail "bob still let in after the reload"
	# a broken file at a reload keeps the users in force, and says where
	# (line 3: htpasswd -n ends with an empty line)
	echo "carol:plaintext" >>users
	kill -HUP "$KPID"
	wait_for 10 grep -q "users:3: user 'carol': not a bcrypt" kilnd.log || fail "no file:line error"
	[ "$(code / -u 'alice:in wonderland')" = 200 ] || fail "alice refused after a bad reload"
	stop
	# and at start it stops kilnd
	"$KILND" --config kilnd.yaml >start.log 2>&1 && fail "kilnd started with a broken auth file"
	grep -q "users:3: user 'carol'" start.log || fail "start error: $(tail -2 start.log)"
}

t_own_listener() {
	origin origin.git
	DPORT=$(free_port)
	start ", dashboard_http: \"127.0.0.1:$DPORT\""
	[ "$(code /)" = 404 ] || fail "listen.http serves the dashboard"
	[ "$(CPORT=$DPORT code /)" = 200 ] || fail "listen.dashboard_http does not serve it"
	[ "$(CPORT=$DPORT code /builds)" = 200 ] || fail "no /builds on listen.dashboard_http"
	[ "$(CPORT=$DPORT code /healthz)" = 404 ] || fail "/healthz on the dashboard's listener"
	[ "$(CPORT=$DPORT code /hooks/images -X POST -d '{}')" = 404 ] || fail "webhooks on it"
	[ "$(CPORT=$DPORT code / -X POST -d x=1)" = 405 ] || fail "POST not 405 there"
	stop
}

# events FILE: the JSON lines sse_client.py wrote so far, as "event|id|data"
events() {
	python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if "event" in e: print("%s|%s|%s" % (e["event"], e["id"], e["data"].replace("\n", "\\n")))
    elif "eof" in e: print("eof")' "$1"
}

# a build put in the state as running, with a log file kilnd's dashboard reads
running_build() {
	python3 -c 'import sqlite3,sys
c = sqlite3.connect(sys.argv[1])
cur = c.execute("INSERT INTO builds (repository, branch, path, image, commit_sha, change, state,"
                " attempts, created_at, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 1, 2)",
                ("images", "main", "base", "reg/x/base:1", "0" * 40, "added", "running"))
c.commit()
print(cur.lastrowid)' state/kilnd.db
}

set_state() {
	python3 -c 'import sqlite3,sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE builds SET state = ?, finished_at = 3 WHERE id = ?", (sys.argv[2], int(sys.argv[3])))
c.commit()' state/kilnd.db "$1" "$2"
}

# The live log as Server-Sent Events: what is there, then each new line as
# it is written (colour codes dropped, markup as it is: the client puts it in
# as text), state changes, the end; a reconnect resumes after Last-Event-ID;
# a client that leaves ends its stream; kilnd stops promptly with one open.
t_events() {
	origin origin.git
	start ", dashboard: true"
	wait_for 10 builds_done || fail "the two dry-run builds did not finish"
	id=$(running_build)
	printf 'step 1\n' >"state/logs/$id.log"
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id/events?offset=0" ev.out &
	cpid=$!
	track_pid $cpid
	wait_for 5 grep -q '"data": "step 1\\n"' ev.out || fail "the first piece: $(cat ev.out)"
	grep -q '"status": "HTTP/1.1 200 OK"' ev.out || fail "status: $(head -1 ev.out)"
	grep -q '"content-type": "text/event-stream; charset=utf-8"' ev.out || fail "type: $(head -1 ev.out)"
	grep -q '"content-security-policy": "default-src' ev.out || fail "no CSP on the stream"
	grep -q '"content-length"' ev.out && fail "a stream with a length"
	[ "$(events ev.out | head -2)" = "state|None|running
message|7|step 1\n" ] || fail "the first events: $(events ev.out)"
	printf '\033[1;32m<b>step 2</b>\033[0m\r\nhalf a li' >>"state/logs/$id.log"
	wait_for 5 grep -q 'step 2' ev.out || fail "a new line did not arrive: $(events ev.out)"
	events ev.out | grep -qF 'message|' || fail "no message"
	[ "$(events ev.out | tail -1)" = 'message|33|<b>step 2</b>\n' ] ||
		fail "the new line (colour codes dropped, the unfinished line kept back): $(events ev.out | tail -1)"
	printf 'ne\n' >>"state/logs/$id.log"
	wait_for 5 grep -q 'half a line' ev.out || fail "the finished line: $(events ev.out)"
	set_state failed "$id"
	wait_for 5 grep -q '"eof": true' ev.out || fail "the stream did not end with the build: $(events ev.out)"
	[ "$(events ev.out | tail -4)" = 'message|45|half a line\n
state|45|failed
end|45|failed
eof' ] || fail "the last events: $(events ev.out | tail -4)"
	wait "$cpid" || fail "sse client failed"
	# resuming: after byte 33 only what followed; an ended build's stream ends
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id/events" ev2.out 33
	[ "$(events ev2.out)" = 'state|None|failed
message|45|half a line\n
end|45|failed
eof' ] || fail "resumed at 33: $(events ev2.out)"
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id/events?offset=45" ev3.out
	[ "$(events ev3.out)" = 'state|None|failed
end|None|failed
eof' ] || fail "nothing after the end: $(events ev3.out)"
	[ "$(code "/builds/999/events")" = 404 ] || fail "a missing build's stream not 404"
	[ "$(code "/builds/$id/events?offset=x")" = 400 ] || fail "a bad offset not 400"
	[ "$(code "/builds/$id/events" -H 'Last-Event-ID: -3')" = 400 ] || fail "a bad Last-Event-ID not 400"
	# a client that leaves: its stream ends at the next look
	id2=$(running_build)
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id2/events" ev4.out &
	cpid=$!
	wait_for 5 grep -q '"event": "state"' ev4.out || fail "second stream: $(cat ev4.out)"
	kill "$cpid"
	wait "$cpid" 2>/dev/null || true
	wait_for 5 grep -q "live log of build $id2 ends: the client left" kilnd.log ||
		fail "the stream outlived its client"
	# stopping with a stream open: it ends, kilnd exits at once
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id2/events" ev5.out &
	cpid=$!
	track_pid $cpid
	wait_for 5 grep -q '"event": "state"' ev5.out || fail "third stream: $(cat ev5.out)"
	t0=$(date +%s%N)
	stop
	[ $((($(date +%s%N) - t0) / 1000000)) -lt 3000 ] || fail "kilnd took over 3 s to stop with a stream open"
	wait "$cpid" || fail "sse client failed"
	[ "$(events ev5.out | tail -1)" = eof ] || fail "the stream was not closed: $(events ev5.out)"
	events ev5.out | grep -q '^end|' && fail "an end event for a build that did not end"
	true
}

# The live log's limits: a burst of streams from two addresses at once gets
# at most DASHBOARD_STREAMS_MAX (64) of them, the rest 503 (a stream is
# counted from its request on, not from its first read).
t_events_cap() {
	origin origin.git
	start ", dashboard: true"
	wait_for 10 builds_done || fail "the two dry-run builds did not finish"
	id=$(running_build)
	printf 'step 1\n' >"state/logs/$id.log"
	python3 "$LIB/sse_burst.py" "$PORT" "/builds/$id/events" 90 127.0.0.1 127.0.0.2 >burst.out ||
		fail "burst client failed"
	[ "$(awk '$1 == 200 {print $2}' burst.out)" -le 64 ] || fail "over 64 streams at once: $(cat burst.out)"
	[ "$(awk '$1 == 503 {print $2}' burst.out)" -ge 26 ] || fail "too few 503s: $(cat burst.out)"
	# once their clients left, the places are free again (a build that
	# ended: its stream ends at once)
	ok200() { [ "$(code /builds/1/events)" = 200 ]; }
	wait_for 5 ok200 || fail "the places were not given back: $(code /builds/1/events)"
	stop
}

# A stream whose first read (here a costly password check) is still on a
# worker: a reload that changes the users ends it, as it ends those already
# streaming; a SIGTERM then does not wait for it (shutdown_grace 20 s).
t_events_checking() {
	origin origin.git
	htpasswd -nbB -C 13 slow 'the slow one' | head -1 >users
	start ", dashboard: true" "shutdown_grace: 20s
dashboard: {auth_file: $PWD/users}"
	wait_for 10 builds_done || fail "the two dry-run builds did not finish"
	id=$(running_build)
	printf 'step 1\n' >"state/logs/$id.log"
	{
		echo "other:$(openssl passwd -6 other)"
		htpasswd -nbB -C 13 slow2 'slow too' | head -1
	} >users2
	curl -sN -u 'slow:the slow one' "http://127.0.0.1:$PORT/builds/$id/events" >ev.out &
	track_pid $!
	sleep 0.2
	mv users2 users
	kill -HUP "$KPID"
	wait_for 10 grep -q "live log of build $id ends: the dashboard's users or listeners changed" kilnd.log ||
		fail "a stream let in under the old users goes on: $(cat ev.out)"
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id/events" ev2.out '' 'other:other' &
	track_pid $!
	wait_for 5 grep -q '"event": "state"' ev2.out || fail "other's stream: $(cat ev2.out)"
	# curl: it connects sooner than python starts
	curl -sN -u 'slow2:slow too' "http://127.0.0.1:$PORT/builds/$id/events" >ev3.out &
	track_pid $!
	sleep 0.2
	kill -TERM "$KPID"
	t0=$(date +%s%N)
	wait "$KPID" || fail "kilnd did not stop cleanly"
	[ $((($(date +%s%N) - t0) / 1000000)) -lt 3000 ] || fail "kilnd took over 3 s to stop"
	grep -q "grace period over" kilnd.log && fail "kilnd waited out its grace period"
	true
}

# The live log in pieces of DASHBOARD_LOG_CHUNK_MAX (256 KiB): no character
# and no colour code split between two pieces (the client decodes each
# piece's lines alone), a line longer than a piece cut between characters;
# a log that grew by megabytes at once comes at once, not a piece each
# DASHBOARD_FOLLOW_MS.
t_events_chunks() {
	origin origin.git
	start ", dashboard: true"
	wait_for 10 builds_done || fail "the two dry-run builds did not finish"
	id=$(running_build)
	# a first line of 300 000 bytes with a two-byte character across
	# byte 262 144, then lines that are mostly colour codes
	python3 -c 'import sys
line = "a" * 262143 + "\u00e9" + "b" * 37854 + "\n"
sys.stdout.buffer.write(line.encode())
sys.stdout.buffer.write((b"\x1b[1;32m" * 12 + b"ok\n") * 4000)' >"state/logs/$id.log"
	set_state succeeded "$id"
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id/events?offset=0" ev.out
	python3 -c 'import json,sys
text = "".join(e["data"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "message")
want = "a" * 262143 + "\u00e9" + "b" * 37854 + "\n" + "ok\n" * 4000
if text != want:
    i = next((i for i in range(min(len(text), len(want))) if text[i] != want[i]), min(len(text), len(want)))
    sys.exit("differs at %d of %d/%d: %r" % (i, len(text), len(want), text[max(0, i - 10):i + 10]))' ev.out ||
		fail "the log in pieces is not the log"
	events ev.out | tail -1 | grep -q eof || fail "no end"
	# 4 MB written at once to a running build's log
	id2=$(running_build)
	: >"state/logs/$id2.log"
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id2/events?offset=0" ev2.out &
	track_pid $!
	wait_for 5 grep -q '"event": "state"' ev2.out || fail "second stream: $(cat ev2.out)"
	python3 -c 'import sys; sys.stdout.write(("x" * 99 + "\n") * 40000)' >>"state/logs/$id2.log"
	# (a piece each 500 ms took 8 s; the margin is for a loaded sanitizer run)
	wait_for 6 grep -q '"id": "4000000"' ev2.out || fail "4 MB took over 6 s: $(events ev2.out | tail -1 | cut -c1-40)"
	# a client that reads nothing: its stream ends once more than 1 MiB
	# has waited for it DASHBOARD_STALL_MS (10 s)
	python3 -c 'import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /builds/%s/events?offset=0 HTTP/1.1\r\nHost: x\r\n\r\n" % sys.argv[2].encode())
time.sleep(60)' "$PORT" "$id2" &
	track_pid $!
	wait_for 14 grep -q "live log of build $id2 ends: the client reads nothing" kilnd.log ||
		fail "a stalled stream goes on"
	stop
}

# A reload that turns listen.dashboard off ends the open streams (no end
# event: the build did not end) and the stream is gone from then on
t_events_off() {
	origin origin.git
	start ", dashboard: true"
	wait_for 10 builds_done || fail "the two dry-run builds did not finish"
	id=$(running_build)
	python3 "$LIB/sse_client.py" "$PORT" "/builds/$id/events?offset=0" ev.out &
	cpid=$!
	track_pid $cpid
	wait_for 5 grep -q '"event": "state"' ev.out || fail "the stream: $(cat ev.out)"
	sed -i 's/, dashboard: true//' kilnd.yaml
	kill -HUP "$KPID"
	wait_for 5 grep -q '"eof": true' ev.out || fail "the stream outlived listen.dashboard"
	events ev.out | grep -q '^end|' && fail "an end event for a build that did not end"
	[ "$(code "/builds/$id/events")" = 404 ] || fail "the stream still served after the reload"
	stop
}

run_all
