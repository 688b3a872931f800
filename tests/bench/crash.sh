#!/usr/bin/env bash
# crash.sh: the kill -9 loop of tests/integration/crash.sh, 500 rounds, going
# on past a broken invariant so that the table counts them all: rounds,
# deliveries sent and acknowledged, triggers acknowledged, builds planned,
# duplicates, lost deliveries and triggers, integrity_check failures, restart
# time (to READY=1) median and p99.
#
#   tests/bench/crash.sh [KILND] [--rounds N] [--seed N] [--settle S]
#
# --settle: how long an invariant may take after a restart (default 30 s;
# each lost delivery or trigger costs that long).
# KILN defaults to the kiln beside KILND; CRASH_TRIGGERS=0 counts lost
# triggers without failing on them. Exit status 1 when an invariant broke.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
KILND=${KILND:-$here/../../build/kilnd}
# not "extra": run_all has a local of that name, which its scenarios see
rounds=500 crash_opts=()
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--seed | --settle) crash_opts+=("$1" "$2"); shift 2 ;;
	*) KILND=$1; shift ;;
	esac
done
KILN=${KILN:-$(dirname "$KILND")/kiln}
[ -x "$KILND" ] && [ -x "$KILN" ] || { echo "no kilnd or kiln at $KILND, $KILN" >&2; exit 2; }
export KILN KILND
set +eu
LIB=$here/../integration/lib
. "$LIB/common.sh"
. "$LIB/kilnd.sh"
. "$LIB/crash.sh"

t_kill_9_loop() {
	crash_loop "$rounds" --keep-going "${crash_opts[@]}"
}

run_all
