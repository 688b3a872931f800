#!/usr/bin/env bash
# health.sh: kilnd says it is degraded, and why, while something keeps it
# from doing its job: a repository whose polls keep failing, the engine down,
# little free space in state_dir, the state database failing to write (a
# full tmpfs; root only). Each reason shows in GET /healthz (503 and
# "reasons"), `kiln health` (a line each, exit 1) and /metrics, and goes
# away when its cause does.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}" "${KILN:?}"
LIB=$(cd "$(dirname "$0")/lib" && pwd)

# origin DIR: a bare repository with one image
origin() {
	git init -q --bare -b main "$1"
	rm -rf c
	git clone -q "$1" c 2>/dev/null
	(cd c && image a a 1 && commit one && git push -q origin HEAD:main)
}

# start URL HEALTH-YAML [more top-level yaml]: kilnd on a free port, dry run
# unless the extra yaml says otherwise, STATUS= lines into notify.log
start() {
	PORT=$(free_port)
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	builds: {dry_run: ${DRY_RUN:-true}}
	listen: {http: ["127.0.0.1:$PORT"], status_socket: $PWD/kiln.sock}
	health: $2
	${3:-}
	repositories:
	  - name: images
	    url: $1
	    poll_interval: ${POLL:-300ms}
	    webhook: {provider: generic, secret_file: hook.secret, header: X-Signature}
	Y
	printf 'topsecret' >hook.secret
	: >notify.log
	python3 "$LIB/notify_listen.py" "$PWD/notify.sock" "$PWD/notify.log" &
	track_pid $!
	wait_for 5 test -S notify.sock || fail "notify socket did not appear"
	NOTIFY_SOCKET="$PWD/notify.sock" "$KILND" --config kilnd.yaml --log-level debug >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "kilnd .* ready:" kilnd.log || fail "kilnd did not start: $(tail -3 kilnd.log)"
	export KILN_SOCKET=$PWD/kiln.sock
}

healthz_code() { curl -s -o healthz.json -w '%{http_code}' --max-time 10 "http://127.0.0.1:$PORT/healthz"; }
is_code() { [ "$(healthz_code)" = "$1" ]; }

# expect_reason WHAT NAME TEXT: the last /healthz answer was 503, degraded,
# with a reason of that kind and name whose message holds TEXT, and the
# fields every reason has
expect_reason() {
	WHAT=$1 NAME=$2 TEXT=$3 python3 - healthz.json <<-'P' || fail "/healthz: no $1 reason with '$3': $(cat healthz.json)"
	import json, os, sys
	h = json.load(open(sys.argv[1]))
	assert h["status"] == "degraded", h
	for k in ("version", "uptime_s", "repositories", "queued", "running", "dry_run"):
	    assert k in h, k
	for r in h["reasons"]:
	    assert set(r) >= {"what", "name", "message", "since"}, r
	    assert r["since"] is None or isinstance(r["since"], int), r
	want = os.environ["NAME"] or None
	hits = [r for r in h["reasons"] if r["what"] == os.environ["WHAT"] and r["name"] == want
	        and os.environ["TEXT"] in r["message"]]
	assert len(hits) == 1, h["reasons"]
	P
}

# healthy: /healthz 200 with no reasons, kiln health exit 0
expect_healthy() {
	[ "$(healthz_code)" = 200 ] || fail "/healthz not 200: $(cat healthz.json)"
	contains "$(cat healthz.json)" '"status":"ok",'
	contains "$(cat healthz.json)" '"reasons":[]}'
	expect_rc 0 "$KILN" health
	[ "$OUT" = healthy ] || fail "kiln health: $OUT"
}

metric() { curl -s --max-time 10 "http://127.0.0.1:$PORT/metrics" | grep "^kiln_health_reasons{what=\"$1\"}"; }

# A repository that cannot be polled (its path does not exist yet) is a
# reason once it has failed for health.repository_failing_after, not at its
# first failure; once it can be polled again (a trigger, not the backoff),
# kilnd is healthy again.
t_repository_failing() {
	start "$PWD/origin.git" "{repository_failing_after: 4s, min_free_space: 0}"
	wait_for 10 grep -q "watch 'images': poll failed" kilnd.log || fail "no failed poll: $(tail -3 kilnd.log)"
	# well within the threshold: a failed poll alone is no reason
	[ "$(healthz_code)" = 200 ] || fail "degraded at the first failed poll: $(cat healthz.json)"
	wait_for 15 is_code 503 || fail "/healthz stayed $(healthz_code) past the threshold"
	expect_reason repository images "polls failing"
	expect_rc 1 "$KILN" health
	contains "$OUT" "unhealthy: 1 reason"
	contains "$OUT" "repository 'images': polls failing"
	contains "$OUT" "(since 20"
	[ "$(metric repository)" = 'kiln_health_reasons{what="repository"} 1' ] ||
		fail "metric: $(metric repository)"
	# STATUS= comes with the next failed poll (every 3.2 s by then)
	wait_for 10 grep -q "STATUS=degraded: repository 'images': polls failing" notify.log ||
		fail "STATUS= did not say degraded: $(grep STATUS= notify.log | tail -2)"
	origin origin.git
	expect_rc 0 "$KILN" trigger images
	wait_for 10 is_code 200 || fail "/healthz stayed $(healthz_code) after the repository came back"
	expect_healthy
	[ "$(metric repository)" = 'kiln_health_reasons{what="repository"} 0' ] ||
		fail "metric: $(metric repository)"
	wait_for 10 sh -c "grep STATUS= notify.log | tail -1 | grep -v -q degraded" ||
		fail "STATUS= still degraded: $(grep STATUS= notify.log | tail -1)"
}

# A remote that refuses connections (a closed port), its URL carrying a
# password: the reason says what failed and never shows the password.
t_repository_unreachable_masks_password() {
	start "http://kiln:hunter2@127.0.0.1:$(free_port)/x.git" "{repository_failing_after: 1s, min_free_space: 0}"
	wait_for 15 is_code 503 || fail "/healthz stayed $(healthz_code) past the threshold"
	expect_reason repository images "polls failing"
	expect_rc 1 "$KILN" health
	contains "$OUT" "repository 'images': polls failing"
	contains "$OUT" "cannot list 'http://kiln:***@127.0.0.1:"
	grep -q hunter2 healthz.json && fail "/healthz shows the password: $(cat healthz.json)"
	case $OUT in *hunter2*) fail "kiln health shows the password: $OUT" ;; esac
	return 0
}

# More free space wanted than any disk has: a disk reason naming state_dir;
# a reload that turns the check off makes kilnd healthy.
t_low_disk() {
	origin origin.git
	start "$PWD/origin.git" "{min_free_space: 1000G}"
	wait_for 10 is_code 503 || fail "/healthz $(healthz_code) with 1000G wanted free"
	expect_reason disk "$PWD/state" "free, below health.min_free_space (1000.0 GiB)"
	python3 -c '
import json
r = json.load(open("healthz.json"))["reasons"][0]
assert 0 < r["free_bytes"] < r["min_free_bytes"] == 1000 << 30, r' || fail "disk reason fields: $(cat healthz.json)"
	expect_rc 1 "$KILN" health
	contains "$OUT" "disk '$PWD/state':"
	sed -i 's/min_free_space: 1000G/min_free_space: 0/' kilnd.yaml
	kill -HUP "$KPID"
	wait_for 10 is_code 200 || fail "/healthz stayed $(healthz_code) after the reload"
	expect_healthy
}

# Builds on an engine that is not there: an engine reason naming its
# address, while the repository itself is fine. A dry run has no engine.
t_engine_down() {
	origin origin.git
	DRY_RUN=false start "$PWD/origin.git" "{min_free_space: 0}" \
		"docker: {host: \"unix://$PWD/no-engine.sock\"}"
	wait_for 10 is_code 503 || fail "/healthz $(healthz_code) without an engine"
	expect_reason engine "unix://$PWD/no-engine.sock" "unusable"
	expect_rc 1 "$KILN" health
	contains "$OUT" "engine 'unix://$PWD/no-engine.sock': docker engine"
	[ "$(metric engine)" = 'kiln_health_reasons{what="engine"} 1' ] || fail "metric: $(metric engine)"
}

# t_state_writes_failing's 4 MiB tmpfs, mounted by the script (a scenario
# runs in a subshell, whose at_exit would be lost) and unmounted when it ends
SMALL_FS= SMALL_FS_WHY=
mount_small_fs() {
	case t_state_writes_failing in "t_${KILN_ONLY:-}"*) ;; *) return ;; esac
	[ "$(id -u)" = 0 ] || { SMALL_FS_WHY="not root (a small tmpfs is mounted)"; return; }
	mkdir "$TEST_TMP/small"
	# lazy: an interrupted scenario's kilnd may still hold its database
	at_exit "umount -l '$TEST_TMP/small' 2>/dev/null"
	mount -t tmpfs -o size=4m kiln-health "$TEST_TMP/small" && SMALL_FS=$TEST_TMP/small ||
		SMALL_FS_WHY="cannot mount a tmpfs"
}
mount_small_fs

# state_dir on the full tmpfs: a webhook's delivery cannot be recorded (503,
# not acknowledged), and health says the state fails to write (and that
# little space is left). Space freed, the same delivery is accepted and
# recorded, and kilnd is healthy.
t_state_writes_failing() {
	if [ -z "$SMALL_FS" ]; then
		skip "$SMALL_FS_WHY"
		return
	fi
	ln -s "$SMALL_FS" state
	origin origin.git
	start "$PWD/origin.git" "{min_free_space: 1M}"
	wait_for 10 grep -q "first seen" kilnd.log || fail "no first poll: $(tail -3 kilnd.log)"
	expect_healthy
	dd if=/dev/zero of=state/fill bs=64k 2>/dev/null
	code=$(python3 "$LIB/hook.py" "$PORT" /hooks/images generic topsecret --delivery full-1)
	[ "$code" = 503 ] || fail "a delivery on a full disk answered $code"
	# a batch (deliveries that came while one was committing) fails whole
	codes=$(python3 "$LIB/hook_batch.py" "$PORT" state/kilnd.db /hooks/images topsecret \
		full-2 full-3 full-4 full-3)
	[ "$codes" = "503 503 503 503" ] || fail "a batch on a full disk answered $codes"
	is_code 503 || fail "/healthz $(healthz_code) with the state failing to write"
	expect_reason state "" "database or disk is full (No space left on device)"
	expect_reason disk "$PWD/state" "below health.min_free_space"
	python3 -c '
import json
r = [r for r in json.load(open("healthz.json"))["reasons"] if r["what"] == "state"][0]
assert r["errno"] == 28 and r["failures"] >= 1 and r["since"] > 0, r' || fail "state reason fields: $(cat healthz.json)"
	expect_rc 1 "$KILN" health
	contains "$OUT" "unhealthy: 2 reasons"
	contains "$OUT" "state: state database: recording a delivery: database or disk is full"
	contains "$OUT" "failed since the last write (since 20"
	rm state/fill
	code=$(python3 "$LIB/hook.py" "$PORT" /hooks/images generic topsecret --delivery full-1)
	[ "$code" = 202 ] || fail "the refused delivery, sent again with space, answered $code"
	expect_healthy
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
	python3 -c '
import sqlite3
ids = [r[0] for r in sqlite3.connect("state/kilnd.db").execute("SELECT id FROM deliveries")]
assert ids == ["full-1"], ids' || fail "the delivery was not recorded once, or a refused one was"
}

run_all
