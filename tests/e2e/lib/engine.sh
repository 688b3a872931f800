# engine.sh: a private Docker engine and two private registries for the
# end-to-end tests (sourced after tests/integration/lib/common.sh).
#
# dockerd runs with its own socket, data root and exec root under one
# directory, --bridge=none --iptables=false so it touches no host
# networking; nothing can be pulled, so images are built FROM scratch with
# Debian's static busybox. One registry is plain HTTP on 127.0.0.1, the other
# TLS (a CA made here, placed in /etc/docker/certs.d for its address) with
# htpasswd authentication. engine_teardown stops everything it started, by
# pid, and removes the certs.d entry.

BUSYBOX=/bin/busybox

# engine_skip_reason: why no engine can run here ("" when one can)
engine_skip_reason() {
	[ "$(id -u)" = 0 ] || { echo "not root (dockerd needs root)"; return; }
	needs_commands "docker.io, docker-registry, openssl, apache2-utils" dockerd docker-registry openssl htpasswd
}

# needs_commands PACKAGES COMMAND...: the first missing command (and the
# packages that bring them), or the missing static busybox; "" when all are there
needs_commands() {
	local pkgs=$1 c
	shift
	for c in "$@"; do
		command -v "$c" >/dev/null || { echo "no $c (packages $pkgs)"; return; }
	done
	if [ ! -x "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
		echo "no static $BUSYBOX (package busybox-static)"
		return
	fi
	echo ""
}

# registries_start: the plain registry and the htpasswd TLS one, under
# TEST_TMP; sets REG, TREG and TLS_AUTH (peek.py's options for the TLS one)
registries_start() {
	local plain tls
	plain=$(free_port)
	registry_start "$TEST_TMP/reg" "$plain" || return 1
	tls=$(free_port)
	registry_start "$TEST_TMP/treg" "$tls" tls || return 1
	REG=127.0.0.1:$plain
	TREG=127.0.0.1:$tls
	TLS_AUTH=(--ca "$TEST_TMP/treg/ca.crt" --auth kiln:s3cret-pw)
}

# engine_start DIR: starts dockerd; sets ENGINE_DIR, ENGINE_PID, DOCKER_HOST
engine_start() {
	ENGINE_DIR=$1
	mkdir -p "$ENGINE_DIR/data" "$ENGINE_DIR/exec"
	[ -f "$ENGINE_DIR/daemon.json" ] || echo '{}' >"$ENGINE_DIR/daemon.json"
	dockerd --config-file "$ENGINE_DIR/daemon.json" --data-root "$ENGINE_DIR/data" \
		--exec-root "$ENGINE_DIR/exec" --host "unix://$ENGINE_DIR/docker.sock" \
		--pidfile "$ENGINE_DIR/docker.pid" --bridge=none --iptables=false \
		--ip6tables=false >>"$ENGINE_DIR/dockerd.log" 2>&1 &
	ENGINE_PID=$!
	track_engine_pid "$ENGINE_PID"
	export DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
	wait_for 60 curl -sf --unix-socket "$ENGINE_DIR/docker.sock" http://localhost/_ping -o /dev/null || {
		echo "dockerd did not start: $(tail -5 "$ENGINE_DIR/dockerd.log")" >&2
		return 1
	}
}

# engine_stop [SIGNAL]: stops dockerd (and the containerd it started) and
# waits; SIGNAL (default TERM) KILL is a crash
engine_stop() {
	[ -n "${ENGINE_PID:-}" ] || return 0
	kill -"${1:-TERM}" "$ENGINE_PID" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$ENGINE_PID" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$ENGINE_PID" 2>/dev/null
	wait "$ENGINE_PID" 2>/dev/null
	ENGINE_PID=
	rm -f "$ENGINE_DIR/docker.pid"
	stop_strays
	# pids wrap quickly on a busy test host: a stale pid file naming a pid
	# that now belongs to someone else makes the next dockerd wait for a
	# containerd that is not there ("containerd is still running")
	rm -f "$ENGINE_DIR/exec/containerd/containerd.pid"
}

# Processes of ours that outlive dockerd (its containerd and shims) are
# found by the engine directory in their command line, and stopped by pid.
stop_strays() {
	local p
	for p in $(pgrep -f "$ENGINE_DIR/" 2>/dev/null); do
		[ "$p" != $$ ] && kill -TERM "$p" 2>/dev/null
	done
	sleep 0.3
	for p in $(pgrep -f "$ENGINE_DIR/" 2>/dev/null); do
		[ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null
	done
}

ENGINE_PIDS=
track_engine_pid() { ENGINE_PIDS="$ENGINE_PIDS $1"; }

# registry_start DIR PORT [tls|auth]: a docker-registry on 127.0.0.1:PORT;
# tls: HTTPS with htpasswd, auth: htpasswd on plain HTTP (BuildKit in 20.10
# speaks plain HTTP to a loopback registry, whatever certs.d holds)
registry_start() {
	local dir=$1 port=$2 tls=${3:-} url ca=
	mkdir -p "$dir/store"
	{
		echo "version: 0.1"
		echo "log: {level: error}"
		echo "storage: {filesystem: {rootdirectory: $dir/store}, delete: {enabled: true}}"
		echo "http:"
		echo "  addr: 127.0.0.1:$port"
		echo "  secret: kiln-test"
		[ "$tls" = tls ] && echo "  tls: {certificate: $dir/reg.crt, key: $dir/reg.key}"
		[ -n "$tls" ] && echo "auth: {htpasswd: {realm: kiln-test, path: $dir/htpasswd}}"
	} >"$dir/config.yml"
	[ -n "$tls" ] && htpasswd -Bbn kiln "s3cret-pw" >"$dir/htpasswd" 2>/dev/null
	if [ "$tls" = tls ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kiln test CA" \
			-keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null &&
			openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
				-keyout "$dir/reg.key" -out "$dir/reg.csr" 2>/dev/null &&
			printf 'subjectAltName=IP:127.0.0.1\n' >"$dir/san.ext" &&
			openssl x509 -req -in "$dir/reg.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
				-CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/reg.crt" 2>/dev/null ||
			return 1
		CERTS_D="/etc/docker/certs.d/127.0.0.1:$port"
		mkdir -p "$CERTS_D" && cp "$dir/ca.crt" "$CERTS_D/ca.crt"
		url="https://127.0.0.1:$port/v2/"
		ca=$dir/ca.crt
	else
		url="http://127.0.0.1:$port/v2/"
	fi
	docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
	track_engine_pid $!
	wait_for 20 curl -s ${ca:+--cacert "$ca"} -o /dev/null "$url" || {
		echo "registry on $port did not start: $(tail -3 "$dir/registry.log")" >&2
		return 1
	}
}

# engine_teardown: everything engine.sh started (also when a scenario
# restarted dockerd in a subshell, or the run was interrupted half-way)
engine_teardown() {
	local p
	[ -n "${ENGINE_DIR:-}" ] || return 0
	# the dockerd running now is the pid file's; a remembered pid is used only
	# while it is still a dockerd of this directory (pids get reused)
	if [ -f "$ENGINE_DIR/docker.pid" ]; then
		ENGINE_PID=$(cat "$ENGINE_DIR/docker.pid")
	elif [ -n "${ENGINE_PID:-}" ] && ! grep -qF "$ENGINE_DIR/" "/proc/$ENGINE_PID/cmdline" 2>/dev/null; then
		ENGINE_PID=
	fi
	engine_stop
	stop_strays
	for p in $ENGINE_PIDS; do
		kill -TERM "$p" 2>/dev/null
	done
	sleep 0.2
	for p in $ENGINE_PIDS; do
		kill -KILL "$p" 2>/dev/null
	done
	[ -n "${CERTS_D:-}" ] && rm -rf "$CERTS_D"
	engine_umount
	rm -rf --one-file-system "$ENGINE_DIR"
	return 0
}

# engine_umount: every mount under the engine's directory (layers, network
# namespaces), innermost first; lazily if one is still busy
engine_umount() {
	local m
	for m in $(awk -v d="$ENGINE_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
}
