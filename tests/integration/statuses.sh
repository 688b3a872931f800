#!/usr/bin/env bash
# statuses.sh: commit statuses and notifications through the outbox, against
# stand-ins for the GitHub, GitLab and Gitea APIs and a notification receiver
# (lib/forge.py checks each request as the forge documents it). Builds run
# in dry-run mode: no engine. Statuses arrive in order per context, a newer
# state supersedes an unsent older one, 500/429 are retried (a notification
# with the same X-Kiln-Delivery), nothing is lost to a kill -9 before the
# send, a 401 is shown in `kiln status` and logged once, and no token reaches
# a log or the state database.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}" "${KILN:?}"
LIB=$(dirname "$0")/lib
abs_path LIB

TOKEN=tok-$$-s3cr3t
HOOKKEY=hook-$$-k3y

# forge KIND: a stand-in in ./KIND (port in $KIND_PORT, requests in KIND/log)
forge() {
	mkdir -p "$1"
	python3 "$LIB/forge.py" "$1" "$1/port" "$1/log" "$1" "$([ "$1" = notify ] && echo "$HOOKKEY" || echo "$TOKEN")" &
	track_pid $!
	wait_for 5 test -s "$1/port" || fail "stand-in $1 did not start"
	touch "$1/log"
	eval "${1^^}_PORT=\$(cat $1/port)"
}

origin() {
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
	(cd c && image a a 1 && image b b 1 && commit one && git push -q origin HEAD:main)
	printf '%s\n' "$TOKEN" >token
	printf '%s\n' "$HOOKKEY" >hookkey
}

start_kilnd() {
	"$KILND" --config kilnd.yaml >>kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 test -S kiln.sock || fail "no status socket: $(cat kilnd.log)"
	export KILN_SOCKET=$PWD/kiln.sock
}

push_change() { # builds both images at a new commit
	(cd c && echo "$1" >>a/f && echo "$1" >>b/f && commit "$1" && git push -q origin HEAD:main)
	git -C c rev-parse HEAD
}

# states KIND SHA CONTEXT: the states the stand-in accepted for them, in order
states() {
	python3 - "$1/log" "$2" "$3" <<-'P'
	import json, sys
	out = []
	for l in open(sys.argv[1]):
	    r = json.loads(l)
	    if r.get("sha") == sys.argv[2] and r.get("context") == sys.argv[3] and r["answer"] < 300:
	        out.append(r["state"])
	print(" ".join(out))
	P
}

no_check_failed() {
	local k
	for k in "$@"; do
		! grep -q '"check"' "$k/log" || fail "$k: requests broke the rules: $(grep '"check"' "$k/log")"
	done
}

db() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' state/kilnd.db "$1"; }

no_token_anywhere() {
	grep -q "$TOKEN" kilnd.log && fail "the token is in the log"
	grep -q "$HOOKKEY" kilnd.log && fail "the notification key is in the log"
	cat state/kilnd.db* 2>/dev/null | grep -aq "$TOKEN" && fail "the token is in the state database"
	cat state/kilnd.db* 2>/dev/null | grep -aq "$HOOKKEY" && fail "the notification key is in the state database"
	[ -z "${NOTIFY_PORT:-}" ] || ! cat state/kilnd.db* 2>/dev/null | grep -aq "127.0.0.1:$NOTIFY_PORT" ||
		fail "a notification URL is in the state database"
	return 0
}

# ordered SEQ ALLOWED...: SEQ is a subsequence of ALLOWED, ending at its last
ordered() {
	python3 - "$@" <<-'P'
	import sys
	seq, allowed = sys.argv[1].split(), sys.argv[2:]
	pos = [allowed.index(s) for s in seq]
	sys.exit(0 if seq and pos == sorted(set(pos)) and seq[-1] == allowed[-1] else 1)
	P
}

# github_config [PORT]: kilnd.yaml for one repository's statuses to the
# GitHub stand-in (or whatever listens on PORT)
github_config() {
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	builds: {dry_run: true}
	listen: {status_socket: $PWD/kiln.sock}
	repositories:
	  - name: gh
	    url: $PWD/origin.git
	    poll_interval: 300ms
	    status: {provider: github, api_url: "http://127.0.0.1:${1:-$GITHUB_PORT}", token_file: token, project: team/images}
	Y
}

# github_only: kilnd reporting one repository's statuses to the GitHub stand-in
github_only() {
	github_config
	start_kilnd
	wait_for 10 grep -q "first seen" kilnd.log || fail "no first poll"
}

t_forges() {
	origin
	forge github
	forge gitlab
	forge gitea
	forge notify
	# GitHub refuses (503, Retry-After: 1) until both builds ended: their
	# successes supersede the pendings; GitLab's first answer is a 429, the
	# receiver's first a 500
	echo "503 1" >github/always
	echo "429 1" >gitlab/answers
	echo 500 >notify/answers
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	builds: {dry_run: true}
	listen: {status_socket: $PWD/kiln.sock}
	dashboard: {url: "https://kiln.example.com"}
	notify:
	  - {url: "http://127.0.0.1:$NOTIFY_PORT/hook", secret_file: hookkey, events: [succeeded, failed]}
	repositories:
	  - name: gh
	    url: $PWD/origin.git
	    poll_interval: 300ms
	    status: {provider: github, api_url: "http://127.0.0.1:$GITHUB_PORT", token_file: token, project: team/images}
	  - name: gl
	    url: $PWD/origin.git
	    poll_interval: 300ms
	    status: {provider: gitlab, api_url: "http://127.0.0.1:$GITLAB_PORT/api/v4", token_file: token, project: team/sub/images}
	  - name: gt
	    url: $PWD/origin.git
	    poll_interval: 300ms
	    status: {provider: gitea, api_url: "http://127.0.0.1:$GITEA_PORT/api/v1", token_file: token, project: team/images}
	Y
	start_kilnd
	wait_for 10 grep -q "first seen" kilnd.log || fail "no first poll"
	sha=$(push_change two)
	ended() { [ "$(db "SELECT count(*) FROM builds WHERE commit_sha = '$sha' AND state = 'succeeded'")" = 6 ]; }
	wait_for 15 ended || fail "the builds did not end"
	rm github/always
	done_for() { [ "$(states "$1" "$sha" "$2" | awk '{print $NF}')" = "$3" ]; }
	for ctx in kiln/a kiln/b; do
		wait_for 15 done_for github "$ctx" success || fail "github $ctx: $(states github "$sha" $ctx)"
		wait_for 15 done_for gitlab "$ctx" success || fail "gitlab $ctx: $(states gitlab "$sha" $ctx)"
		wait_for 15 done_for gitea "$ctx" success || fail "gitea $ctx: $(states gitea "$sha" $ctx)"
		ordered "$(states gitlab "$sha" $ctx)" pending running success || fail "gitlab $ctx out of order: $(states gitlab "$sha" $ctx)"
		ordered "$(states gitea "$sha" $ctx)" pending success || fail "gitea $ctx out of order: $(states gitea "$sha" $ctx)"
		# the refusals held GitHub's queue until both builds ended: their
		# pendings were superseded and never sent
		[ "$(states github "$sha" $ctx)" = success ] || fail "github $ctx: superseded pending sent: $(states github "$sha" $ctx)"
	done
	[ "$(db "SELECT count(*) FROM outbox WHERE done = 'superseded'")" -ge 2 ] || fail "no superseded rows"
	grep -q '"project": "team%2Fsub%2Fimages"' gitlab/log || fail "gitlab project id not URL-encoded: $(head -1 gitlab/log)"
	grep -q '"target_url": "https://kiln.example.com/builds/[0-9]*"' github/log || fail "no target_url"
	grep -q '"answer": 429' gitlab/log || fail "gitlab's 429 never answered"
	# notifications: each build end once, the 500's retry with the same delivery
	notified() { [ "$(grep -c '"answer": 200' notify/log)" -ge 6 ]; }
	wait_for 15 notified || fail "notifications: $(cat notify/log)"
	python3 - notify/log <<-'P' || fail "notification deliveries wrong: $(cat notify/log)"
	import json, sys
	rows = [json.loads(l) for l in open(sys.argv[1])]
	ok = [r for r in rows if r["answer"] == 200]
	bad = [r for r in rows if r["answer"] == 500]
	ids = [r["delivery"] for r in ok]
	assert len(ids) == len(set(ids)), "a delivery twice"
	assert len(bad) == 1 and bad[0]["delivery"] in ids, "the 500's delivery not retried as itself"
	assert all(r["state"] == "succeeded" for r in ok), "an event not asked for"
	assert all(r["log_url"].startswith("https://kiln.example.com/builds/") for r in ok)
	P
	sleep 1
	# exactly one per build end: 3 repositories x 2 images x 2 commits
	[ "$(grep -c '"answer": 200' notify/log)" = 6 ] || fail "not one notification per build end: $(cat notify/log)"
	no_check_failed github gitlab gitea notify
	no_token_anywhere
	metrics_ok() { "$KILN" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
r = {x["name"]: x for x in s["repositories"]}
sys.exit(0 if all(r[n]["outbox"] == 0 and r[n]["reporting_error"] is None for n in ("gh", "gl", "gt")) else 1)'; }
	wait_for 5 metrics_ok || fail "status: $("$KILN" status --json)"
}

t_kill() {
	origin
	forge github
	echo "503" >github/always
	github_only
	sha=$(push_change two)
	# the builds ended, their successes wait in the outbox behind the refusals
	unsent() { [ "$(db "SELECT count(*) FROM outbox WHERE state = 'succeeded' AND done IS NULL")" = 2 ]; }
	wait_for 15 unsent || fail "no unsent successes"
	wait_for 5 grep -q '"answer": 503' github/log || fail "no refused attempt"
	kill -9 "$KPID"
	wait "$KPID" 2>/dev/null
	rm github/always
	start_kilnd
	for ctx in kiln/a kiln/b; do
		got() { [ "$(states github "$sha" $ctx)" = success ]; }
		wait_for 15 got || fail "$ctx after the kill: '$(states github "$sha" $ctx)'"
	done
	sent() { [ "$(db "SELECT count(*) FROM outbox WHERE done IS NULL")" = 0 ]; }
	wait_for 5 sent || fail "rows left unsent"
	no_check_failed github
	no_token_anywhere
}

t_refused() {
	origin
	forge github
	echo 401 >github/always
	github_only
	push_change two >/dev/null
	# at least the two successes: more rows than one, so "once" means something
	refusals() { [ "$(grep -c '"answer": 401' github/log)" -ge 2 ]; }
	wait_for 15 refusals || fail "not refused: $(cat github/log)"
	[ "$(grep -c 'refused with HTTP 401' kilnd.log)" = 1 ] || fail "the 401 not logged once: $(grep 'refused' kilnd.log)"
	expect_rc 0 "$KILN" status
	contains "$OUT" "last refused: HTTP 401: stand-in says 401"
	expect_rc 0 "$KILN" status --json
	contains "$OUT" '"reporting_error": "HTTP 401: stand-in says 401"'
	no_token_anywhere
}

# GitHub's 307 for a renamed repository: the status is posted there
t_renamed() {
	origin
	forge github
	printf '307\n307\n' >github/answers
	github_only
	sha=$(push_change two)
	for ctx in kiln/a kiln/b; do
		got() { [ "$(states github "$sha" $ctx | awk '{print $NF}')" = success ]; }
		wait_for 15 got || fail "$ctx: '$(states github "$sha" $ctx)'"
	done
	grep -q '"answer": 307' github/log || fail "no 307 answered"
	grep -q '"project": "team/renamed"' github/log || fail "the redirect was not followed: $(cat github/log)"
	no_check_failed github
}

# a reload takes the new status settings (the outbox is made anew from
# them, the old one closed), also twice in a row
t_reload() {
	origin
	forge github
	github_config "$(free_port)" # nothing listens there: every send retries
	start_kilnd
	wait_for 10 grep -q "first seen" kilnd.log || fail "no first poll"
	sha=$(push_change two)
	unsent() { [ "$(db "SELECT count(*) FROM outbox WHERE state = 'succeeded' AND done IS NULL")" = 2 ]; }
	wait_for 15 unsent || fail "no unsent successes"
	github_config
	reloaded() { [ "$(grep -c 'configuration reloaded' kilnd.log)" = "$1" ]; }
	kill -HUP "$KPID"
	wait_for 5 reloaded 1 || fail "no reload"
	kill -HUP "$KPID" # (signals sent at once may arrive as one)
	wait_for 5 reloaded 2 || fail "no second reload"
	for ctx in kiln/a kiln/b; do
		got() { [ "$(states github "$sha" $ctx | awk '{print $NF}')" = success ]; }
		wait_for 15 got || fail "$ctx after the reload: '$(states github "$sha" $ctx)'"
	done
	kill -0 "$KPID" || fail "kilnd died at a reload: $(tail -5 kilnd.log)"
	no_check_failed github
	no_token_anywhere
}

run_all
