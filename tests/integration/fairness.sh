#!/usr/bin/env bash
# fairness.sh: one client cannot take kilnd's HTTP listener away from the
# others. Attackers and probes use different loopback source addresses (Linux
# routes all of 127.0.0.0/8 to lo), since kilnd caps connections per client
# address. Under the sanitizer build (KILN_SANITIZED=1, set by
# tests/CMakeLists.txt) everything runs several times slower, so a probe's
# budget is 500 ms there instead of 100 ms; every probe must still answer.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}"
LIB=$(cd "$(dirname "$0")/lib" && pwd)

# thousands of sockets on each side: the hard limit, and it must be enough
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 8192 ] ||
	skip_all "the open files limit is $(ulimit -Hn) (hard); these tests need 8192"

BUDGET_MS=100
[ "${KILN_SANITIZED:-0}" = 1 ] && BUDGET_MS=500

start_daemon() { # EXTRA_LISTEN_KEYS: one github repository, kilnd on a free port
	PORT=$(free_port)
	printf 'topsecret' >hook.secret
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
	(cd c && image a a 1 && commit one && git push -q origin HEAD:main)
	cat >kilnd.yaml <<-EOF
		state_dir: $PWD/state
		builds: {dry_run: true}
		listen: {http: ["127.0.0.1:$PORT"], status_socket: $PWD/kiln.sock $1}
		repositories:
		  - {name: r, url: $PWD/origin.git, poll_interval: 1h,
		     webhook: {provider: github, secret_file: hook.secret}}
	EOF
	"$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "kilnd .* ready:" kilnd.log || fail "kilnd did not start: $(tail -3 kilnd.log)"
}

stop_daemon() {
	kill -0 "$KPID" 2>/dev/null || fail "kilnd died: $(tail -3 kilnd.log)"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

# The target of issue 9: 2,000 idle and 1,100 reconnecting slow-loris
# connections from 127.0.0.1; /healthz from 127.0.0.2 answers every probe in
# time, a signed webhook from 127.0.0.3 is accepted.
t_attack_from_one_address() {
	start_daemon ""
	# niced: a real attacker does not take kilnd's CPU, only its sockets
	nice -n 10 python3 "$LIB/fairness.py" attack "$PORT" 60 ready stop >attack.log 2>&1 &
	APID=$!
	track_pid "$APID"
	wait_for 20 test -e ready || fail "the attack did not get going: $(tail -3 attack.log)"
	python3 "$LIB/fairness.py" probe "$PORT" 15 "$BUDGET_MS" >probe.log 2>&1 &
	PPID_=$!
	sleep 5
	code=$(python3 "$LIB/hook.py" "$PORT" /hooks/r github topsecret --delivery f-1 --source 127.0.0.3 2>&1 | tail -1)
	[ "$code" = 202 ] || fail "signed webhook from 127.0.0.3 under attack: $code, want 202"
	wait "$PPID_" || fail "/healthz probes under attack"
	touch stop
	wait "$APID" || fail "the attack failed: $(tail -3 attack.log)"
	cat probe.log attack.log
	grep -q "HTTP client 127.0.0.1 has .* connections, none idle: refusing more" kilnd.log ||
		fail "the per-client cap was not logged"
	stop_daemon
}

# A full server closes its oldest idle connection for a newcomer.
t_full_server_reclaims_idle() {
	start_daemon ", idle_timeout: 1m"
	cap=$(sed -n 's/.*HTTP connections: at most \([0-9]*\).*/\1/p' kilnd.log)
	[ -n "$cap" ] || fail "no connection cap in the log"
	# 60 a source address: under the per-client cap of 64
	python3 "$LIB/fairness.py" hold "$PORT" $((cap + 100)) 60 || fail "idle connections not reclaimed"
	stop_daemon
}

# A connection that sends nothing gets listen.first_byte_timeout (3 s), not
# the keep-alive idle_timeout (15 s).
t_silent_connection_cut_early() {
	start_daemon ""
	python3 "$LIB/fairness.py" silent "$PORT" || fail "silent connection not cut at 3 s"
	stop_daemon
}

# A refused body is still answered: the lingering close.
t_lingering_close() {
	start_daemon ""
	python3 "$LIB/fairness.py" linger "$PORT" $((25 << 20)) || fail "lingering close"
	stop_daemon
}

run_all
