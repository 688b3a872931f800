#!/usr/bin/env bash
# quickstart.sh: packaging/quickstart.sh, the README's first command, against
# the built kiln and kilnd (KILN, KILND: no deps, no build) with its files in
# a scratch build directory: what it prints, what kilnd built, and that it
# leaves no kilnd behind, or with --keep one that its printed line stops.
. "$(dirname "$0")/lib/common.sh"
: "${KILN_SRC:?set KILN_SRC to the source tree}"
: "${KILND:?set KILND to the kilnd executable}"
QS="$KILN_SRC/packaging/quickstart.sh"

quickstart() { # ARGS...: runs it with its build directory in ./b, output in out
	KILN_BUILD_DIR=$PWD/b sh "$QS" --dry-run "$@" >out 2>err
}

# alive_kilnd: pids of kilnd processes running this scenario's configuration
alive_kilnd() {
	pgrep -f "$PWD/b/quickstart/kilnd.yaml" || true
}

# check_run: the output and the state of one finished run
check_run() {
	local planned changed
	contains "$(cat out)" "$(printf '%s\n' \
		"modified	base	registry.example.com:5000/team/examples/base:1.0.0" \
		"dependency	app	registry.example.com:5000/team/examples/app:2.3.0" \
		"dependency	tools/jq	registry.example.com:5000/team/tools/jq:1.7.1" \
		"added	tools/yq	registry.example.com:5000/team/tools/yq:4.40.5")"
	contains "$(cat out)" "kilnd runs a dry run"
	# what kilnd built is what kiln changes says the last commit affects
	changed=$("$KILN" changes --repo b/example-images HEAD~1 HEAD | cut -f2 | sort | tr '\n' ' ')
	planned=$(python3 -c 'import sqlite3, sys
for r in sqlite3.connect(sys.argv[1]).execute("SELECT path, state FROM builds ORDER BY path"):
    print(*r)' b/quickstart/state/kilnd.db)
	[ "$changed" = "app " ] || fail "the third commit changed: $changed"
	[ "$planned" = "app succeeded" ] || fail "kilnd built: $planned"
	contains "$(cat out)" "succeeded   examples       main         app"
}

t_twice_in_a_row_leaves_nothing_running() {
	local i
	for i in 1 2; do
		quickstart || fail "run $i exited $?: $(tail -5 err)"
		check_run
		[ -z "$(alive_kilnd)" ] || fail "run $i left kilnd running: $(alive_kilnd)"
		[ ! -e b/quickstart/kilnd.pid ] || fail "run $i left its pid file"
	done
}

t_keep_prints_a_kill_line_that_stops_it() {
	local first line
	quickstart --keep || fail "exited $?: $(tail -5 err)"
	first=$(alive_kilnd)
	track_pid "$first"
	[ -n "$first" ] || fail "--keep left no kilnd"
	# a second run stops the first one and keeps its own
	quickstart --keep || fail "second run exited $?: $(tail -5 err)"
	check_run
	kill -0 "$first" 2>/dev/null && fail "the first --keep kilnd $first still runs"
	contains "$(cat out)" "stopping the kilnd a previous --keep left (pid $first)"
	line=$(grep '^kill [0-9]*$' out)
	[ "$line" = "kill $(alive_kilnd)" ] || fail "kill line '$line', running: $(alive_kilnd)"
	track_pid "${line#kill }"
	$line
	wait_for 30 test -z "$(alive_kilnd)" ||
		fail "'$line' did not stop kilnd in 30 s: $(tail -5 b/quickstart/kilnd.log)"
}

run_all
