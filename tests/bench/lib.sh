# lib.sh (bench): sourced by the benchmarks that run kilnd. bench_workdir NAME
# makes the directory $work, removed when the script exits, after the
# processes whose pids are in $pid (space-separated) are stopped; git there
# gets a fixed identity and HOME is $work.
bench_workdir() {
	work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-$1.XXXXXX")
	pid=
	trap bench_cleanup EXIT
	trap 'exit 130' INT # so that the EXIT trap runs
	trap 'exit 143' TERM
	export GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@example.invalid GIT_COMMITTER_NAME=b \
		GIT_COMMITTER_EMAIL=b@example.invalid GIT_CONFIG_NOSYSTEM=1 HOME=$work
}

bench_cleanup() {
	local p
	for p in $pid; do
		# not a bare `&& wait`: its status 143 would end the trap under set -e
		kill -TERM "$p" 2>/dev/null && { wait "$p" 2>/dev/null || true; }
	done
	rm -rf "$work"
}

# bench_tie PID: stops PID (TERM) once this script is gone, however it went:
# a script killed with SIGKILL runs no trap, and left a git daemon behind.
bench_tie() {
	local me=$$
	(
		trap '' INT TERM
		while kill -0 "$me" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done
		kill -TERM "$1" 2>/dev/null
	) >/dev/null 2>&1 </dev/null &
}

# bench_origin_one_image: in $work, origin.git (bare) with one image folder
# `a` on main, and $port, a loopback port free now
bench_origin_one_image() {
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
	(cd c && mkdir a && printf 'name: a\nversion: "1"\nregistry: reg.example.com/t\n' >a/manifest.yaml &&
		printf 'FROM scratch\n' >a/Dockerfile && git add -A && git commit -qm one &&
		git push -q origin HEAD:main)
	port=$(bench_free_port)
}

# bench_free_port: a loopback port free now
bench_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
