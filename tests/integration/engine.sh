#!/usr/bin/env bash
# engine.sh: `kiln build` and kilnd against a stand-in engine that answers
# badly on purpose (lib/hostile_engine.py) in the classic builder's stream
# (set here: the engine says API 1.41, where auto means BuildKit). Every bad
# reply must end that build with an error that says what went wrong, never a
# crash (the sanitizer build runs this too), and kilnd must stay up with its
# state.
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/kilnd.sh"
: "${KILND:?}" "${KILN:?}"
ENGINE_PY="$(cd "$(dirname "$0")/lib" && pwd)/hostile_engine.py"
EMPTY_TREE=4b825dc642cb6eb9a060e54bf8d69288fbee4904

start_engine() {
	python3 "$ENGINE_PY" "$PWD/e.sock" "$PWD/mode" 2>engine.log &
	track_pid $!
	wait_for 10 test -S e.sock || fail "the stand-in engine did not start: $(cat engine.log)"
}

# one_image [manifest lines...]: repository c with one image folder, app
one_image() {
	mkdir c
	(cd c && new_repo && manifest app app 1 "$@" &&
		printf 'FROM scratch\nCOPY . /\n' >app/Dockerfile && commit one)
}

# kb MODE RC TEXT [options...]: `kiln build` with the engine in MODE exits
# RC (never a signal), and its output or errors contain TEXT
kb() {
	local m=$1 rc=$2 text=$3
	shift 3
	echo "$m" >mode
	expect_rc "$rc" "$KILN" build --repo c --docker-host "unix://$PWD/e.sock" --retries 0 --builder classic \
		"$@" "$EMPTY_TREE" HEAD
	contains "$OUT$ERR" "$text"
}

t_good_replies_build_and_push() {
	start_engine
	one_image
	kb ok 0 "reg.example.com:5000/team/app:1"
	kb ok 0 "sha256:$(printf 'cd%.0s' $(seq 32))" --push
}

t_odd_pings_fall_back_to_the_oldest_api() {
	start_engine
	one_image
	kb ping_noversion 0 "1 built"
	kb ping_garbage 0 "1 built"
}

t_bad_build_streams_fail_the_build() {
	start_engine
	one_image
	kb build_garbage 1 "the engine's reply ended without an image id"
	contains "$OUT" "app:1 | not json at all"
	kb build_error 1 "build failed: step failed"
	kb build_500 1 "engine on fire"
	kb build_html 1 "HTTP 500: <html>"
	kb build_cut 1 "FAILED"
	# odd but complete streams still build
	kb build_hugeline 0 "1 built"
	kb build_nul 0 "1 built"
}

# A BuildKit build's session refused or dropped by the engine fails the build
# with words saying so, as a failure worth retrying
t_buildkit_session_failures() {
	start_engine
	one_image
	kb session_refused 1 "the engine refused POST /session: HTTP/1.1 400" --builder buildkit
	contains "$OUT" "ended mid-build"
	kb session_drop 1 "the BuildKit session with the engine unix://$PWD/e.sock ended mid-build" \
		--builder buildkit --retries 1
	contains "$OUT" "attempt 1 failed"
}

t_bad_smoke_test_replies() {
	start_engine
	one_image 'test: {command: ["true"]}'
	kb create_garbage 1 "creating the smoke test container: no id in the reply"
	kb wait_garbage 1 "no StatusCode in the engine's reply"
	kb logs_garbage 0 "1 built"
}

t_bad_registry_replies() {
	start_engine
	one_image
	kb check_500 1 "cannot tell whether reg.example.com:5000/team/app:1 already exists" --push
	# a refusal to say is not a reason to stop: the push decides
	kb check_denied 0 "would not say whether" --push
	kb push_error 1 "push of reg.example.com:5000/team/app:1 failed: denied: no" --push
	kb push_garbage 1 "the engine reported no digest" --push
}

# kilnd_on_engine MODE BUILDS-YAML: kilnd watching a repository of three
# images (all built at once) on the stand-in engine in MODE
kilnd_on_engine() {
	start_engine
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
	(cd c && for i in 1 2 3; do image "app$i" "app$i" 1; done && commit one &&
		git push -q origin HEAD:main)
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	docker: {host: "unix://$PWD/e.sock"}
	builds: $2
	listen: {status_socket: $PWD/kiln.sock}
	repositories:
	  - name: images
	    url: $PWD/origin.git
	    poll_interval: 300ms
	    build_on_start: all
	Y
	echo "$1" >mode
	"$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	export KILN_SOCKET=$PWD/kiln.sock
}

# count_builds STATE N: kilnd has N builds in STATE
count_builds() {
	[ "$("$KILN" builds --state "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = "$2" ]
}

# kilnd meets the same replies: each build fails with its reason, and the
# daemon stays up, healthy, and builds once the engine behaves
t_kilnd_stays_up() {
	kilnd_on_engine build_garbage "{concurrency: 3, retries: 0, builder: classic}"
	wait_for 30 count_builds failed 3 || fail "three failed builds expected: $("$KILN" builds 2>&1)"
	"$KILN" builds --json | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    assert "without an image id" in (b["error"] or ""), b' || fail "failed builds without their reason"
	kill -0 "$KPID" 2>/dev/null || fail "kilnd died: $(tail -5 kilnd.log)"
	echo build_cut >mode
	"$KILN" rebuild images app1 >/dev/null || fail "rebuild refused"
	wait_for 30 sh -c "[ \"\$('$KILN' builds --image app1 --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"state\"])')\" = failed ]" ||
		fail "the cut-off build did not fail"
	echo ok >mode
	"$KILN" rebuild images app1 >/dev/null || fail "rebuild refused"
	wait_for 30 sh -c "[ \"\$('$KILN' builds --image app1 --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"state\"])')\" = succeeded ]" ||
		fail "no good build once the engine behaved: $("$KILN" builds 2>&1)"
	expect_rc 0 "$KILN" health
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

# a 3 MiB line makes each log hit its cap; only the newest logs are kept
t_kilnd_caps_and_rotates_logs() {
	kilnd_on_engine build_hugeline "{concurrency: 1, retries: 0, log_max_size: 64K, keep_logs: 2, builder: classic}"
	wait_for 30 count_builds succeeded 3 || fail "three builds expected: $("$KILN" builds 2>&1)"
	[ "$(ls state/logs)" = "$(printf '2.log\n3.log')" ] || fail "logs kept: $(ls state/logs | tr '\n' ' ')"
	size=$(stat -c %s state/logs/3.log)
	[ "$size" -le $((64 * 1024 + 200)) ] || fail "log of $size bytes over its 64K cap"
	tail -1 state/logs/3.log | grep -q "log cut at" || fail "a cut log does not say so"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

# SIGINT during `kiln build`: the build is cut off at once, the summary says
# so and the exit status is 1
t_kiln_build_interrupted() {
	start_engine
	one_image
	echo build_slow >mode
	"$KILN" build --repo c --docker-host "unix://$PWD/e.sock" --builder classic "$EMPTY_TREE" HEAD >out 2>err &
	pid=$!
	wait_for 10 grep -q "RUN sleep 60" out || fail "the build did not start: $(cat err)"
	t0=$(date +%s)
	kill -INT "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" = 1 ] || fail "exit status $rc after SIGINT, expected 1"
	[ $(($(date +%s) - t0)) -lt 5 ] || fail "SIGINT took $(($(date +%s) - t0)) s"
	grep -q "interrupted" err || fail "no word of the interruption: $(cat err)"
	grep -q "app:1 .*\(cancelled\|interrupted\)" out || fail "summary: $(tail -3 out)"
}

# maps_lib LIB: kilnd ($KPID) has LIB mapped
maps_lib() {
	grep -q "/$1\.so" "/proc/$KPID/maps"
}

# kilnd loads libcurl, libarchive and libnghttp2 on first use
# (daemon/lazyload.c): a kilnd that only polls (a dry run: no engine to
# ping) has none of them mapped; one that builds, builds through them. With
# a libcurl that cannot be loaded kilnd still starts and polls, and says
# which library it lacks.
t_kilnd_loads_the_engine_client_on_first_use() {
	origin "$PWD/dry.git" >/dev/null
	config "$PWD/dry" "$PWD/dry.git" 300ms >dry.yaml
	start_kilnd dry.yaml
	wait_for 20 grep -q "first seen" kilnd.log || fail "no first poll: $(tail -5 kilnd.log)"
	sleep 1 # a few polls more
	maps_lib libgit2 || fail "the check reads the wrong file: no libgit2 mapped"
	for l in libcurl libarchive libnghttp2; do
		! maps_lib $l || fail "a kilnd that only polls loaded $l"
	done
	stop_kilnd
	rm kilnd.log
	kilnd_on_engine ok "{concurrency: 3, retries: 0, builder: classic}"
	wait_for 30 count_builds succeeded 3 || fail "no builds: $("$KILN" builds 2>&1; tail -5 kilnd.log)"
	maps_lib libcurl && maps_lib libarchive || fail "built without libcurl or libarchive mapped?"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

t_kilnd_without_a_loadable_libcurl() {
	mkdir lib && : >lib/libcurl.so.4
	LD_LIBRARY_PATH=$PWD/lib kilnd_on_engine ok "{retries: 0, builder: classic}"
	wait_for 20 grep -q "unusable" kilnd.log || fail "no word of the engine: $(tail -5 kilnd.log)"
	grep -q "cannot load libcurl.so.4 (builds and outgoing requests need it): .*libcurl.so.4" kilnd.log ||
		fail "the log does not name libcurl: $(tail -5 kilnd.log)"
	grep -q "unusable: GET /_ping: Can not access a needed shared library" kilnd.log ||
		fail "the engine's error does not say a library is missing: $(grep unusable kilnd.log)"
	[ "$(grep -c "cannot load libcurl" kilnd.log)" = 1 ] || fail "logged more than once"
	expect_rc 0 "$KILN" status
	kill -0 "$KPID" 2>/dev/null || fail "kilnd died: $(tail -5 kilnd.log)"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

run_all
