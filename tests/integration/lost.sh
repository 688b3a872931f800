#!/usr/bin/env bash
# lost.sh: nothing a user sends is lost. A push soon after kilnd starts is
# built (the branch's baseline is taken at start, a webhook's `before` covers
# a push the baseline already sees), an acknowledged `kiln trigger` or
# SIGUSR1 survives a `kill -9` before its poll ends, and so does every
# webhook delivery answered 2xx under a concurrent load (group commit). The remote is a `git
# daemon` that a scenario stops (SIGSTOP) to hold a poll at a known point.
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/kilnd.sh"

hook() { python3 "$LIB/hook.py" "$PORT" "$@"; }
polls() { grep -c "watch 'images': idle -> fetching" kilnd.log; }
# planned SHA: kilnd logged a plan ending at SHA (a grep, cheap enough to
# poll; the scenarios then check the builds table itself)
planned() { grep -q "watch 'images': branch 'main' [0-9a-f(empty)]*\.\.${1:0:12}: " kilnd.log; }
in_store() { [ -n "$(builds_for state "$1")" ] || fail "$2: no build of ${1:0:12} in the store"; }

# served: the origin behind `git daemon`, and a clone to push from ($clone)
served() {
	mkdir served
	clone=$(origin "$PWD/served/images.git")
	serve_git "$PWD/served"
}

# restart: kilnd again on the same state, after a kill -9
restart() {
	"$KILND" --config kilnd.yaml --log-level debug >>kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
}

# A push made as kilnd starts, its webhook delivered while the branch's first
# poll is still under way (here: held in ls-remote, so the timing is not left
# to chance), is in what that poll sees: without the webhook's `before` it
# would be taken as the starting point and never built.
t_webhook_before_the_first_poll_is_planned() {
	served || return
	PORT=$(free_port)
	config "$PWD/state" "git://127.0.0.1:$GIT_PORT/images.git" 1h "$PORT" >kilnd.yaml
	old=$(git -C "$clone" rev-parse HEAD)
	kill -STOP "$GIT_PID"
	push "$clone" app/x # as kilnd starts: its first poll will see it
	new=$(git -C "$clone" rev-parse HEAD)
	start_kilnd kilnd.yaml
	t0=$(date +%s%N)
	code=$(hook /hooks/images github topsecret --delivery push-1 --before "$old" --after "$new")
	ms=$((($(date +%s%N) - t0) / 1000000))
	echo "  webhook answered ${ms} ms after READY=1 was seen"
	[ "$code" = 202 ] || fail "webhook: status $code"
	kill -CONT "$GIT_PID"
	wait_for 10 planned "$new" || fail "the pushed commit was not planned: $(grep "watch 'images'" kilnd.log | tail -4)"
	[ "$(builds_for state "$new")" = "app|queued" ] || [ "$(builds_for state "$new")" = "app|succeeded" ] ||
		fail "builds of the push: $(builds_for state "$new")"
	grep -q "planned from ${old:0:12}, where a webhook push moved it from" kilnd.log ||
		fail "the plan did not start from the webhook's before"
	stop_kilnd
}

# The branch's baseline is taken at start, not at a random point of the hour:
# a push after it, woken by `kiln trigger` or a webhook (without a usable
# `before`: all zeros, as for a new branch), is built.
t_push_after_the_baseline_is_planned() {
	served || return
	PORT=$(free_port)
	config "$PWD/state" "git://127.0.0.1:$GIT_PORT/images.git" 1h "$PORT" >kilnd.yaml
	start_kilnd kilnd.yaml
	wait_for 5 grep -q "watch 'images': branch 'main' first seen" kilnd.log ||
		fail "no baseline at start: $(tail -3 kilnd.log)"
	wait_for 5 grep -q "watch 'images': planning -> idle" kilnd.log || fail "the baseline did not end"
	push "$clone" base/x
	first=$(git -C "$clone" rev-parse HEAD)
	expect_rc 0 "$KILN" trigger images --socket "$PWD/state.sock"
	wait_for 10 planned "$first" || fail "triggered push not planned: $(grep "watch 'images'" kilnd.log | tail -3)"
	in_store "$first" "kiln trigger"
	push "$clone" app/y
	second=$(git -C "$clone" rev-parse HEAD)
	code=$(hook /hooks/images github topsecret --delivery push-2 --after "$second")
	[ "$code" = 202 ] || fail "webhook: status $code"
	wait_for 10 planned "$second" || fail "webhook push not planned: $(grep "watch 'images'" kilnd.log | tail -3)"
	in_store "$second" "webhook"
	stop_kilnd
}

# survives_kill9 DO TRIES: TRIES times, the remote is held, a push is made,
# DO asks for a poll (and returns once kilnd took it), kill -9 while that
# poll hangs, the remote goes on, kilnd starts again: the push is planned.
survives_kill9() {
	local do=$1 tries=$2 i sha n
	served || return
	config "$PWD/state" "git://127.0.0.1:$GIT_PORT/images.git" 1h >kilnd.yaml
	start_kilnd kilnd.yaml
	# the baseline: taken at start now; asked for on older kilnds
	"$KILN" trigger images --socket "$PWD/state.sock" >/dev/null 2>&1
	wait_for 10 grep -q "first seen" kilnd.log || fail "no first poll: $(tail -3 kilnd.log)"
	wait_for 10 grep -q "watch 'images': planning -> idle" kilnd.log || fail "the first poll did not end"
	for i in $(seq 1 "$tries"); do
		kill -STOP "$GIT_PID"
		push "$clone" "app/k$i"
		sha=$(git -C "$clone" rev-parse HEAD)
		n=$(polls)
		"$do" || { kill -CONT "$GIT_PID"; return; }
		wait_for 5 eval '[ "$(polls)" -gt "$n" ]' || fail "try $i: no poll started"
		kill -KILL "$KPID"
		wait "$KPID" 2>/dev/null
		kill -CONT "$GIT_PID"
		restart
		if ! wait_for 10 planned "$sha"; then
			fail "try $i: the push acknowledged before the kill -9 was not planned after the restart"
			break
		fi
		in_store "$sha" "try $i"
	done
	echo "  $((i - failed_now)) of $tries tries planned after the restart"
	stop_kilnd
}

do_trigger() {
	expect_rc 0 "$KILN" trigger images --socket "$PWD/state.sock"
	[ "$failed_now" = 0 ]
}

do_usr1() {
	kill -USR1 "$KPID"
}

t_trigger_survives_kill9() {
	survives_kill9 do_trigger 5 # the issue's count
}

t_sigusr1_survives_kill9() {
	survives_kill9 do_usr1 3
}

# `kiln rebuild` answers after its build row is committed: a kill -9 right
# after the answer keeps it (true before the durable triggers too).
t_rebuild_survives_kill9() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 1h >kilnd.yaml
	start_kilnd kilnd.yaml
	"$KILN" trigger images --socket "$PWD/state.sock" >/dev/null 2>&1 # for older kilnds
	wait_for 10 grep -q "watch 'images': planning -> idle" kilnd.log || fail "no baseline"
	for i in 1 2 3; do
		expect_rc 0 "$KILN" rebuild images app --socket "$PWD/state.sock"
		id=$(sed -n 's/^queued build \([0-9]*\):.*/\1/p' <<<"$OUT")
		kill -KILL "$KPID"
		wait "$KPID" 2>/dev/null
		[ -n "$id" ] && [ "$(db state/kilnd.db "SELECT count(*) FROM builds WHERE id = $id")" = 1 ] ||
			fail "try $i: rebuild '${id}' ($OUT) not in the store after kill -9"
		n=$(grep -c "kilnd .* ready:" kilnd.log)
		restart
		wait_for 10 eval '[ "$(grep -c "kilnd .* ready:" kilnd.log)" -gt "$n" ]' ||
			fail "kilnd did not start again: $(tail -3 kilnd.log)"
	done
	stop_kilnd
}

# A delivery is served only when every branch of its poll was planned: a
# plan that fails for the second branch leaves it unhandled (to be polled for
# again), though the first branch's plan was recorded.
t_delivery_unserved_when_a_branch_fails() {
	clone=$(origin "$PWD/origin.git")
	(cd "$clone" && git push -q origin HEAD:next)
	config "$PWD/state" "$PWD/origin.git" 1h | sed 's/^    poll_interval: 1h$/&\n    branches: [main, next]/' >kilnd.yaml
	start_kilnd kilnd.yaml
	"$KILN" trigger images --socket "$PWD/state.sock" >/dev/null 2>&1 # for older kilnds
	next_seen() { [ -n "$(db state/kilnd.db "SELECT 1 FROM branches WHERE branch = 'next'")" ]; }
	wait_for 10 next_seen || fail "no baseline: $(tail -3 kilnd.log)"
	stop_kilnd
	push "$clone" app/z
	sha=$(git -C "$clone" rev-parse HEAD)
	(cd "$clone" && echo 1 >>base/n && git add -A && git commit -qm n && git push -q origin HEAD:next)
	# the state says 'next' was last seen at a commit the mirror lacks: its
	# plan fails; a delivery answered before the crash asks for the poll
	db state/kilnd.db "UPDATE branches SET last_seen = '$(printf '1%.0s' $(seq 40))' WHERE branch = 'next'"
	db state/kilnd.db "INSERT INTO deliveries (repository, id, received_at) VALUES ('images', 'lost', 1)"
	start_kilnd kilnd.yaml
	wait_for 10 planned "$sha" || fail "main's push not planned: $(tail -3 kilnd.log)"
	wait_for 10 grep -q "watch 'images': planning failed" kilnd.log || fail "next's plan did not fail"
	[ "$(db state/kilnd.db "SELECT handled FROM deliveries WHERE id = 'lost'")" = 0 ] ||
		fail "the delivery was marked handled though branch 'next' was not planned"
	stop_kilnd
}

# Webhook deliveries answered in batches (group commit): kill -9 in the
# middle of a load of new ids on 16 connections, three times; after each
# restart every id that got a 2xx is in the state database.
t_acknowledged_deliveries_survive_kill9_under_load() {
	clone=$(origin "$PWD/origin.git")
	PORT=$(free_port)
	config "$PWD/state" "$PWD/origin.git" 1h "$PORT" >kilnd.yaml
	start_kilnd kilnd.yaml
	for i in 1 2 3; do
		: >acked
		python3 "$LIB/hook_load.py" "$PORT" topsecret 16 acked "try$i" &
		load=$!
		track_pid "$load"
		wait_for 10 eval '[ "$(wc -l <acked)" -ge 200 ]' || fail "try $i: load not answered: $(tail -3 kilnd.log)"
		sleep 0.$((RANDOM % 10))
		kill -KILL "$KPID"
		wait "$KPID" 2>/dev/null
		wait "$load"
		n=$(grep -c "kilnd .* ready:" kilnd.log)
		restart
		wait_for 10 eval '[ "$(grep -c "kilnd .* ready:" kilnd.log)" -gt "$n" ]' ||
			fail "kilnd did not start again: $(tail -3 kilnd.log)"
		missing=$(python3 -c 'import sqlite3, sys
have = {r[0] for r in sqlite3.connect("file:state/kilnd.db?mode=ro", uri=True).execute("SELECT id FROM deliveries")}
acked = [l.strip() for l in open("acked")]
print(len(acked), len([d for d in acked if d not in have]))')
		echo "  try $i: ${missing% *} deliveries acknowledged before the kill -9, ${missing#* } missing after it"
		[ "${missing#* }" = 0 ] || fail "try $i: ${missing#* } acknowledged deliveries lost"
	done
	stop_kilnd
}

run_all
