# scenario.sh: what the end-to-end scenarios share (sourced after the
# engine is up): a bare origin and its clone, busybox images FROM scratch,
# kilnd's configuration for the engine at ENGINE_SOCK (with KILN_BUILDER
# set: that builder, and RUN steps without a network, as the private
# engine has no bridge), and waiting on the
# builds kilnd records. Needs REG (the plain registry) and PEEK.
peek() { python3 "$PEEK" "$@"; }
tags() { peek tags "http://$REG" "$1" | sort | tr '\n' ' ' | sed 's/ $//'; }
EMPTY_TREE=4b825dc642cb6eb9a060e54bf8d69288fbee4904 # FROM: every image of TO

# ---- repositories ----

origin_init() {
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
}

push() {
	(cd c && git add -A && git commit -qm "${1:-change}" && git push -q origin HEAD:main)
}

head_sha() { git -C c rev-parse HEAD; }

# bb_image DIR NAME VERSION [manifest lines...]: busybox FROM scratch
bb_image() {
	local dir=c/$1 name=$2 version=$3
	shift 3
	mkdir -p "$dir"
	cp "$BUSYBOX" "$dir/busybox"
	printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n' >"$dir/Dockerfile"
	{
		echo "name: $name"
		echo "version: \"$version\""
		echo "registry: ${IMAGE_REGISTRY:-$REG}"
		for l in "$@"; do echo "$l"; done
	} >"$dir/manifest.yaml"
}

# on_image DIR NAME VERSION BASE DOCKERFILE-BODY [manifest lines...]
on_image() {
	local dir=c/$1 name=$2 version=$3 base=$4 body=$5
	shift 5
	mkdir -p "$dir"
	printf 'FROM %s\n%s\n' "$base" "$body" >"$dir/Dockerfile"
	{
		echo "name: $name"
		echo "version: \"$version\""
		echo "registry: ${IMAGE_REGISTRY:-$REG}"
		for l in "$@"; do echo "$l"; done
	} >"$dir/manifest.yaml"
}

# ---- kilnd ----

kilnd_config() { # [extra top-level yaml...]
	echo "state_dir: $PWD/state"
	echo "docker: {host: \"unix://${ENGINE_SOCK:-$E/docker.sock}\"}"
	echo "builds: {concurrency: 2, retries: 3, retry_delay: 1s, log_max_size: 1M${KILN_BUILDER:+, builder: $KILN_BUILDER, network: none}}"
	echo "listen: {status_socket: $PWD/kiln.sock}"
	echo "shutdown_grace: 10s"
	for l in "$@"; do echo "$l"; done
	echo "repositories:"
	echo "  - name: images"
	echo "    url: $PWD/origin.git"
	echo "    poll_interval: 500ms"
	echo "    build_on_start: all"
}

start_kilnd() {
	"$KILND" --config kilnd.yaml >>kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "kilnd .* ready:" kilnd.log || fail "kilnd did not start: $(tail -3 kilnd.log)"
}

stop_kilnd() {
	kill -0 "$KPID" 2>/dev/null || fail "kilnd died: $(tail -5 kilnd.log)"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

db() { python3 -c 'import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall():
    print("|".join("" if v is None else str(v) for v in row))' state/kilnd.db "$1"; }

# the newest build of an image folder: state|attempts|error
build_of() { db "SELECT state, attempts, coalesce(error, '') FROM builds WHERE path = '$1' ORDER BY id DESC LIMIT 1"; }
# (one query: two would race with a build inserted between them)
settled() { [ "$(db "SELECT count(*) >= $1 AND coalesce(sum(state IN ('queued', 'running')), 0) = 0 FROM builds")" = 1 ]; }
# wait_settled SECONDS N: N builds or more, none queued or running; on a
# timeout, what kilnd and the newest build log said
wait_settled() {
	wait_for "$1" settled "$2" && return 0
	fail "builds not settled after $1 s: $(db "SELECT id, path, state FROM builds" | tr '\n' ' ')"
	tail -5 kilnd.log | sed 's/^/    kilnd: /' >&2
	tail -5 "$(ls -t state/logs/*.log 2>/dev/null | head -1)" 2>/dev/null | sed 's/^/    log: /' >&2
	return 1
}

