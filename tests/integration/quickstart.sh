#!/usr/bin/env bash
# quickstart.sh: packaging/quickstart.sh, the README's first command, against
# the built kiln and kilnd (KILN, KILND: no deps, no build) with its files in
# a scratch build directory: what it prints, what kilnd built, and that it
# leaves nothing behind, or with --keep what its printed line stops. Without
# an engine (DOCKER_HOST names a dead socket) kilnd runs a dry run; the
# engine_ scenario gives it a private dockerd (tests/e2e/lib/engine.sh; root)
# and reads what reached its private registry from the registry's storage.
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/../e2e/lib/engine.sh"
: "${KILN_SRC:?set KILN_SRC to the source tree}"
: "${KILND:?set KILND to the kilnd executable}"
QS="$KILN_SRC/packaging/quickstart.sh"

# The engine, started by the first scenario that needs it, in a directory
# known here so that the teardown also runs when a scenario is interrupted
# (unix socket paths are short: not under TEST_TMP)
E=$(mktemp -d /tmp/kiln-qe.XXXXXX)
ENGINE_DIR=$E
at_exit engine_teardown

quickstart() { # ARGS...: runs it with its build directory in ./b, output in out
	KILN_BUILD_DIR=$PWD/b sh "$QS" "$@" >out 2>err
}

# dead_socket: DOCKER_HOST names a socket nobody listens on
dead_socket() {
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$PWD/dead.sock"
	export DOCKER_HOST="unix://$PWD/dead.sock"
}

# alive: pids of the processes running this scenario's kilnd configuration
# or registry configuration
alive_kilnd() { pgrep -f "$PWD/b/quickstart/kilnd.yaml" || true; }
alive_registry() { pgrep -f "$PWD/b/quickstart/registry/config.yml" || true; }
# none_alive: neither runs (a function: wait_for calls it anew each time, where
# `test -z "$(alive_kilnd)"` would be expanded once, before kilnd had stopped)
none_alive() { [ -z "$(alive_kilnd)$(alive_registry)" ]; }

# check_run REGISTRY: the output and the state of one finished run whose
# images name REGISTRY: every image built once, then the app alone (one
# query: python3 starts slowly on a loaded machine)
check_run() {
	local reg=$1 changed head builds
	contains "$(cat out)" "$(printf '%s\n' \
		"modified	base	$reg/team/examples/base:1.0.0" \
		"dependency	app	$reg/team/examples/app:2.3.0" \
		"dependency	tools/jq	$reg/team/tools/jq:1.7.1" \
		"added	tools/yq	$reg/team/tools/yq:4.40.5")"
	# what kilnd built last is what kiln changes says the last commit affects
	changed=$("$KILN" changes --repo b/example-images HEAD~1 HEAD | cut -f2 | sort | tr '\n' ' ')
	[ "$changed" = "app " ] || fail "the third commit changed: $changed"
	head=$(git -C b/example-images rev-parse HEAD)
	builds=$(python3 -c 'import sqlite3, sys
for r in sqlite3.connect(sys.argv[1]).execute(
        "SELECT commit_sha = ?, path, image, state FROM builds ORDER BY 1, 2", (sys.argv[2],)):
    print(*r)' b/quickstart/state/kilnd.db "$head")
	[ "$builds" = "$(printf '%s\n' \
		"0 app $reg/team/examples/app:2.3.0 succeeded" \
		"0 base $reg/team/examples/base:1.0.0 succeeded" \
		"0 tools/jq $reg/team/tools/jq:1.7.1 succeeded" \
		"0 tools/yq $reg/team/tools/yq:4.40.5 succeeded" \
		"1 app $reg/team/examples/app:2.3.1 succeeded")" ] ||
		fail "kilnd's builds (1: at the last commit): $builds"
	contains "$(cat out)" "succeeded   examples       main         app"
}

# kill_line_stops_kilnd: the kill line the last --keep run printed names
# exactly the kilnd that runs, and running it stops everything
kill_line_stops_kilnd() {
	local line
	line=$(grep '^kill [0-9 ]*$' out)
	[ "$line" = "kill $(alive_kilnd)" ] || fail "kill line '$line', running: $(alive_kilnd)"
	track_pid "${line#kill }"
	$line
	wait_for 30 none_alive ||
		fail "'$line' did not stop kilnd in 30 s: $(tail -5 b/quickstart/kilnd.log)"
}

t_twice_in_a_row_leaves_nothing_running() {
	local i
	dead_socket
	for i in 1 2; do
		quickstart || fail "run $i exited $?: $(tail -5 err)"
		contains "$(cat out)" "the Docker engine at $PWD/dead.sock does not answer (start it: sudo systemctl start docker): kilnd runs a dry run"
		check_run registry.example.com:5000
		[ -z "$(alive_kilnd)" ] || fail "run $i left kilnd running: $(alive_kilnd)"
		[ ! -e b/quickstart/kilnd.pid ] || fail "run $i left its pid file"
	done
}

t_keep_prints_a_kill_line_that_stops_it() {
	local first line
	export DOCKER_HOST="unix://$PWD/none.sock"
	quickstart --keep || fail "exited $?: $(tail -5 err)"
	contains "$(cat out)" "no Docker engine at $PWD/none.sock (install one: sudo apt-get install docker.io): kilnd runs a dry run"
	first=$(alive_kilnd)
	track_pid "$first"
	[ -n "$first" ] || fail "--keep left no kilnd"
	# a second run stops the first one and keeps its own
	quickstart --keep || fail "second run exited $?: $(tail -5 err)"
	check_run registry.example.com:5000
	kill -0 "$first" 2>/dev/null && fail "the first --keep kilnd $first still runs"
	contains "$(cat out)" "stopping the kilnd a previous --keep left (pid $first)"
	kill_line_stops_kilnd
}

# ---- with a Docker engine ----

# engine_here: the private engine runs (started on first use); false with a
# skip when it cannot run here
engine_here() {
	local c
	[ "$(id -u)" = 0 ] || { skip "dockerd needs root"; return 1; }
	for c in dockerd docker-registry; do
		command -v "$c" >/dev/null || { skip "no $c (packages docker.io, docker-registry)"; return 1; }
	done
	[ -S "$E/docker.sock" ] && return 0
	engine_start "$E" || { fail "the private dockerd did not start"; return 1; }
}

# tags_in_store: each image and its tags, as the registry's storage holds them
tags_in_store() {
	local d=b/quickstart/registry/store/docker/registry/v2/repositories r
	for r in team/examples/app team/examples/base team/tools/jq team/tools/yq; do
		echo "$r: $(ls "$d/$r/_manifests/tags" 2>/dev/null | sort | tr '\n' ' ')"
	done
}

# check_real: one real run: kilnd built and pushed every image once, then
# the app alone, and the registry holds exactly those tags; sets REG
check_real() {
	REG=$(sed -n 's/.*pushes to a private registry on \(127\.0\.0\.1:[0-9]*\))$/\1/p' out)
	[ -n "$REG" ] || { fail "no real build: $(head -8 out)"; return; }
	check_run "$REG"
	[ "$(tags_in_store)" = "$(printf '%s\n' "team/examples/app: 2.3.0 2.3.1 " \
		"team/examples/base: 1 1.0.0 latest " "team/tools/jq: 1.7 1.7.1 " "team/tools/yq: 4.40.5 ")" ] ||
		fail "the registry holds: $(tags_in_store)"
	# the engine built it: its own output, and kilnd's push, in the log
	contains "$(cat b/quickstart/state/logs/5.log)" "Successfully tagged $REG/team/examples/app:2.3.1"
	contains "$(cat b/quickstart/state/logs/5.log)" "kiln: pushed $REG/team/examples/app:2.3.1"
	contains "$(cat out)" '{"name":"team/examples/app","tags":["2.3.1","2.3.0"]}'
}

# A real run, then a real --keep run, then a dry --keep run (no engine: it
# is quicker) that must stop both what the real one left, then its kill line.
t_engine_twice_then_keep() {
	local kp rp line
	engine_here || return
	quickstart || { fail "run 1 exited $?: $(tail -5 err)"; return; }
	check_real
	[ -z "$(alive_kilnd)$(alive_registry)" ] || fail "run 1 left running: $(alive_kilnd) $(alive_registry)"
	if [ -e b/quickstart/kilnd.pid ] || [ -e b/quickstart/registry.pid ]; then
		fail "run 1 left its pid files"
	fi

	quickstart --keep || { fail "run 2 (--keep) exited $?: $(tail -5 err)"; return; }
	check_real
	kp=$(alive_kilnd) rp=$(alive_registry)
	track_pid "$kp"
	track_pid "$rp"
	if [ -z "$kp" ] || [ -z "$rp" ]; then
		fail "--keep left: kilnd '$kp', registry '$rp'"
	fi
	[ "$(grep '^kill [0-9 ]*$' out)" = "kill $kp $rp" ] ||
		fail "kill line '$(grep '^kill' out)', running: kilnd $kp, registry $rp"
	# still serving what it received
	[ "$(curl -sf "http://$REG/v2/team/tools/jq/tags/list")" = '{"name":"team/tools/jq","tags":["1.7","1.7.1"]}' ] ||
		fail "the kept registry answers: $(curl -s "http://$REG/v2/team/tools/jq/tags/list")"

	(dead_socket && quickstart --keep) || { fail "run 3 (dry, --keep) exited $?: $(tail -5 err)"; return; }
	contains "$(cat out)" "stopping the kilnd a previous --keep left (pid $kp)"
	contains "$(cat out)" "stopping the registry a previous --keep left (pid $rp)"
	kill -0 "$kp" 2>/dev/null && fail "the kept kilnd $kp still runs"
	kill -0 "$rp" 2>/dev/null && fail "the kept registry $rp still runs"
	check_run registry.example.com:5000
	[ -z "$(alive_registry)" ] || fail "a dry run left a registry: $(alive_registry)"
	kill_line_stops_kilnd
}

run_all
