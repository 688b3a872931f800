#!/usr/bin/env bash
# startup.sh: what kilnd sets up for itself at start. The default status
# socket's directory is made when it is missing (a manual start, no systemd
# RuntimeDirectory=); a socket or listener that cannot be made says why, with
# the real cause; the open files limit is raised and the HTTP connection cap
# derived from it, so that a flood of connections leaves the status socket
# answering.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?set KILND to the kilnd executable}"

config() { # [more yaml under listen]
	cat <<-Y
	state_dir: $PWD/state
	builds: {dry_run: true}
	shutdown_grace: 5s
	listen: {$*}
	repositories:
	  - name: images
	    url: $PWD/origin.git
	    poll_interval: 1h
	Y
}

# In a mount namespace of its own, /run is an empty tmpfs: /run/kiln is
# missing as on a host where kilnd was never started by systemd, and nothing
# outside is touched. kilnd runs with the default socket, kiln finds it there.
t_default_socket_dir_made() {
	local ns=(unshare --mount --propagation private)
	[ "$(id -u)" = 0 ] || ns=(unshare --user --map-root-user --mount)
	"${ns[@]}" true 2>/dev/null || {
		skip "no mount namespace here (unshare: $("${ns[@]}" true 2>&1 | head -1))"
		return
	}
	git init -q --bare -b main origin.git
	config >kilnd.yaml
	sed -i '/^listen:/d' kilnd.yaml # status_socket: the default
	expect_rc 0 "${ns[@]}" env KILND="$KILND" KILN="$KILN" bash -c '
		mount -t tmpfs tmpfs /run || exit 10
		"$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
		k=$!
		for i in $(seq 100); do "$KILN" health >health.out 2>&1 && break; sleep 0.1; done
		stat -c %a /run/kiln >mode.out 2>&1
		"$KILN" health >>health.out 2>&1
		rc=$?
		kill -TERM $k
		wait $k
		exit $rc'
	contains "$(cat kilnd.log)" "created '/run/kiln'"
	[ "$(cat mode.out)" = 755 ] || fail "/run/kiln has mode $(cat mode.out), expected 755"
	contains "$(cat health.out)" "healthy"
}

# A directory that is not the default's is not made, and the error names the
# real cause (libuv's bind turned ENOENT into "permission denied").
t_socket_error_says_why() {
	git init -q --bare -b main origin.git
	config "status_socket: $PWD/missing/kiln.sock" >kilnd.yaml
	expect_rc 1 "$KILND" --config kilnd.yaml
	contains "$ERR" "'$PWD/missing/kiln.sock': No such file or directory"
	case "$ERR" in *"ermission denied"*) fail "ENOENT reported as permission denied: $ERR" ;; esac
	[ ! -e missing ] || fail "kilnd made a directory for a configured socket path"
	# a path too long for a socket address is refused, not cut short (libuv
	# cut it and kilnd served a socket nobody looked for: hence the timeout)
	config "status_socket: $PWD/$(printf 'x%.0s' $(seq 120))/kiln.sock" >long.yaml
	expect_rc 1 timeout 10 "$KILND" --config long.yaml
	contains "$ERR" "longer than 107 bytes"
}

t_http_bind_error_says_why() {
	local port
	git init -q --bare -b main origin.git
	port=$(free_port)
	python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
open("held", "w").close(); time.sleep(60)' "$port" &
	track_pid $!
	wait_for 10 test -e held || fail "could not hold a port"
	config "status_socket: $PWD/k.sock, http: [\"127.0.0.1:$port\"]" >kilnd.yaml
	expect_rc 1 "$KILND" --config kilnd.yaml
	contains "$ERR" "cannot bind 127.0.0.1:$port: Address already in use"
}

# flood PORT N: opens N connections to 127.0.0.1:PORT and holds them (the
# ones kilnd refuses are closed by kilnd, not by us); "N" in flood.N once
# all are made
flood() {
	python3 - "$1" "$2" <<-'PY' &
	import socket, sys, time
	port, n = int(sys.argv[1]), int(sys.argv[2])
	held = []
	for i in range(n):
	    held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
	open("flood.%d" % n, "w").write(str(len(held)))
	time.sleep(120)
	PY
	track_pid $!
	wait_for 30 test -s "flood.$2" || fail "the flood of $2 did not connect"
}

t_fd_limit_keeps_status_socket() {
	local port kpid line cap kept
	git init -q --bare -b main origin.git
	port=$(free_port)
	config "status_socket: $PWD/k.sock, http: [\"127.0.0.1:$port\"]" >kilnd.yaml
	# ulimit -n sets the soft and the hard limit: 256 is all kilnd may have
	(ulimit -n 256 && exec "$KILND" --config kilnd.yaml) >kilnd.log 2>&1 &
	kpid=$!
	track_pid "$kpid"
	wait_for 10 "$KILN" health --socket "$PWD/k.sock" || {
		fail "kilnd did not start: $(tail -3 kilnd.log)"
		return
	}
	line=$(grep -o 'HTTP connections: at most [0-9]* (open files limit [0-9]*, [0-9]* kept' kilnd.log)
	if [ -z "$line" ]; then
		fail "no HTTP connection cap logged: $(cat kilnd.log)"
	else
		read -r cap kept < <(sed 's/.*at most \([0-9]*\) (open files limit 256, \([0-9]*\) kept/\1 \2/' <<<"$line")
		[ "$cap" -gt 0 ] && [ "$((cap + kept))" -le 256 ] || fail "cap $cap + reserve $kept exceed 256: $line"
	fi

	flood "$port" 64
	expect_rc 0 timeout 10 "$KILN" health --socket "$PWD/k.sock"
	contains "$OUT" "healthy"
	# past the limit itself: today's 1024 cap let HTTP take every descriptor
	flood "$port" 400
	expect_rc 0 timeout 10 "$KILN" health --socket "$PWD/k.sock"
	contains "$OUT" "healthy"
	expect_rc 0 timeout 10 "$KILN" trigger images --socket "$PWD/k.sock"
	kill -TERM "$kpid"
	wait "$kpid" || fail "kilnd exited $? after SIGTERM"
}

run_all
