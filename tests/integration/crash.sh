#!/usr/bin/env bash
# crash.sh: 50 kill -9s of kilnd at random moments under webhook load and
# `kiln trigger`s; after each restart the state database is intact, nothing
# is planned twice and nothing acknowledged is lost (lib/crash.py says what
# is checked). tests/bench/crash.sh runs 500.
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/kilnd.sh"
. "$LIB/crash.sh"

t_kill_9_loop_under_webhook_load() {
	crash_loop "${CRASH_ROUNDS:-50}"
}

run_all
