#!/bin/sh
# quickstart.sh [--keep] [--dry-run]: installs what is missing, builds kiln,
# makes an example images repository from conf/example-images (two commits)
# and asks kiln which images the second commit changed. Then it runs kilnd on
# that repository (127.0.0.1 and files under the build directory only):
# kilnd builds every image once (build_on_start: all), a third commit changes
# the app (its configuration and version), and kilnd builds exactly that
# image; it shows kiln status, kiln builds and the tags in the registry.
#
# With a Docker engine that answers (DOCKER_HOST's unix:// socket, else
# /var/run/docker.sock) and Debian's docker-registry, the builds are real:
# a private registry on 127.0.0.1 (a free port; storage under the build
# directory) receives the pushes. The example manifests name
# registry.example.com:5000, and kilnd pushes where a manifest says (its
# registries: only carry credentials), so the scratch copy of the examples
# names the private registry instead. Without an engine (or with --dry-run)
# it says why and kilnd runs with builds: {dry_run: true}: the same flow,
# recorded but not built.
#
# --keep leaves kilnd (and the registry) running and prints how to stop
# them. What a previous --keep left is stopped first (its pid files, checked
# against their command lines, since pids get reused), so running this twice
# in a row works.
#
# Environment: KILN_BUILD_DIR (default build) is where it builds and keeps
# its files; KILN and KILND naming built executables skip deps and build.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

keep='' dry=''
for a in "$@"; do
	case $a in
	--keep) keep=1 ;;
	--dry-run) dry=1 ;;
	*)
		echo "usage: $0 [--keep] [--dry-run]" >&2
		exit 2
		;;
	esac
done

bdir=${KILN_BUILD_DIR:-build}
if [ -n "${KILN:-}" ] && [ -x "${KILN:-}" ] && [ -n "${KILND:-}" ] && [ -x "${KILND:-}" ]; then
	kiln=$KILN
	kilnd=$KILND
else
	packaging/deps.sh
	cmake -S . -B "$bdir" -DKILN_TESTS=OFF >/dev/null
	cmake --build "$bdir" -j"$(nproc)" >/dev/null
	kiln=$bdir/kiln
	kilnd=$bdir/kilnd
fi
mkdir -p "$bdir"
babs=$(cd "$bdir" && pwd)
qs=$babs/quickstart

# stop_left NAME PIDFILE MARK: a process a previous --keep left, when its
# command line still holds MARK (a file of this quick start), stopped
stop_left() {
	[ -f "$2" ] || return 0
	old=$(cat "$2")
	grep -qF "$3" "/proc/$old/cmdline" 2>/dev/null || return 0
	echo "stopping the $1 a previous --keep left (pid $old)"
	kill -TERM "$old"
	i=0
	while kill -0 "$old" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
}
stop_left kilnd "$qs/kilnd.pid" "$qs/kilnd.yaml"
stop_left registry "$qs/registry.pid" "$qs/registry/config.yml"

case ${DOCKER_HOST:-} in
"") sock=/var/run/docker.sock ;;
unix://*) sock=${DOCKER_HOST#unix://} ;;
*) sock= ;;
esac
# engine_why: why no build can be real here ("" when one can)
engine_why() {
	if [ -z "$sock" ]; then
		echo "DOCKER_HOST=$DOCKER_HOST is no unix:// socket (the quick start uses a local engine only)"
	elif [ ! -S "$sock" ]; then
		echo "no Docker engine at $sock (install one: sudo apt-get install docker.io)"
	elif [ ! -r "$sock" ] || [ ! -w "$sock" ]; then
		echo "$sock: permission denied for $(id -un) (run as root, or: sudo adduser $(id -un) docker, then log in again)"
	elif ! curl -sf --max-time 5 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; then
		echo "the Docker engine at $sock does not answer (start it: sudo systemctl start docker)"
	elif ! command -v docker-registry >/dev/null; then
		echo "no registry to push to (install Debian's: sudo apt-get install docker-registry)"
	fi
}
why=
if [ -n "$dry" ]; then
	why="--dry-run was given"
else
	why=$(engine_why)
fi
reg=
if [ -z "$why" ]; then
	reg=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi

repo="$babs/example-images"
rm -rf "$repo" "$qs"
mkdir -p "$repo" "$qs"
cp -R conf/example-images/. "$repo/"
if [ -n "$reg" ]; then
	# the scratch copy pushes to the private registry (see above)
	find "$repo" \( -name manifest.yaml -o -name Dockerfile \) -exec \
		sed -i "s/registry\.example\.com:5000/$reg/g" {} +
fi
img_reg=${reg:-registry.example.com:5000}
git -C "$repo" init -q -b main
export GIT_AUTHOR_NAME=kiln GIT_AUTHOR_EMAIL=kiln@example.invalid
export GIT_COMMITTER_NAME=kiln GIT_COMMITTER_EMAIL=kiln@example.invalid
git -C "$repo" add -A
git -C "$repo" commit -q -m "Example images"

# The second commit: the base image changes, a note it ignores changes, a
# new image appears.
echo "Now with a new welcome line." >>"$repo/base/rootfs/etc/motd"
echo "More notes." >>"$repo/base/docs/notes.txt"
mkdir -p "$repo/tools/yq"
printf 'name: tools/yq\nversion: "4.40.5"\nregistry: %s/team\n' "$img_reg" \
	>"$repo/tools/yq/manifest.yaml"
printf 'FROM %s/team/examples/base:latest\n' "$img_reg" >"$repo/tools/yq/Dockerfile"
git -C "$repo" add -A
git -C "$repo" commit -q -m "Change the base image, add yq"

echo "\$ kiln changes --repo $bdir/example-images HEAD~1 HEAD"
"$kiln" changes --repo "$repo" HEAD~1 HEAD

# kilnd (and the registry) on the example repository.
kpid='' rpid=''
stop() {
	if [ -n "$kpid" ]; then
		kill -TERM "$kpid" 2>/dev/null || true
		wait "$kpid" 2>/dev/null || true
		rm -f "$qs/kilnd.pid"
		kpid=
	fi
	if [ -n "$rpid" ]; then
		kill -TERM "$rpid" 2>/dev/null || true
		wait "$rpid" 2>/dev/null || true
		rm -f "$qs/registry.pid"
		rpid=
	fi
}
[ -n "$keep" ] || trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for SECONDS WHAT CMD...: polls CMD every 0.2 s; WHAT's log on a timeout
wait_for() {
	n=$(($1 * 5))
	log=$2
	shift 2
	while ! "$@" >/dev/null 2>&1; do
		for p in ${kpid:+kilnd:$kpid} ${rpid:+registry:$rpid}; do
			kill -0 "${p#*:}" 2>/dev/null && continue
			echo "quickstart: the ${p%:*} exited; its log ($qs/${p%:*}.log) ends:" >&2
			tail -5 "$qs/${p%:*}.log" >&2
			exit 1
		done
		n=$((n - 1))
		if [ $n -le 0 ]; then
			echo "quickstart: timed out waiting for: $*; $log ends:" >&2
			tail -5 "$log" >&2
			exit 1
		fi
		sleep 0.2
	done
}

if [ -n "$reg" ]; then
	echo "(the Docker engine at $sock answers: kilnd builds for real and pushes to a private registry on $reg)"
	mkdir -p "$qs/registry/store"
	cat >"$qs/registry/config.yml" <<-Y
		version: 0.1
		log: {level: warn}
		storage: {filesystem: {rootdirectory: $qs/registry/store}}
		http: {addr: "$reg", secret: kiln-quickstart}
	Y
	docker-registry serve "$qs/registry/config.yml" >"$qs/registry.log" 2>&1 &
	rpid=$!
	echo "$rpid" >"$qs/registry.pid"
	wait_for 20 "$qs/registry.log" curl -sf -o /dev/null "http://$reg/v2/"
	engine="docker: {host: \"unix://$sock\"}"
	builds="builds: {retries: 1, retry_delay: 1s}"
else
	echo "$why: kilnd runs a dry run (it plans and records builds, builds nothing)"
	engine=
	builds="builds: {dry_run: true}"
fi
cat >"$qs/kilnd.yaml" <<-Y
	state_dir: $qs/state
	$engine
	$builds
	listen: {status_socket: $qs/kiln.sock}
	shutdown_grace: 5s
	repositories:
	  - name: examples
	    url: $repo
	    poll_interval: 1s
	    build_on_start: all
Y
export KILN_SOCKET="$qs/kiln.sock"

"$kilnd" --config "$qs/kilnd.yaml" >"$qs/kilnd.log" 2>&1 &
kpid=$!
echo "$kpid" >"$qs/kilnd.pid"

# settled N: kilnd planned N builds or more, and none is queued or running
# (counted first: a build counted has been queued before the status is asked)
settled() {
	[ "$("$kiln" builds | tail -n +2 | wc -l)" -ge "$1" ] &&
		"$kiln" status | grep -q "builds: 0 queued, 0 running"
}
# built N: waits until N builds have ended; any that did not succeed is an
# error pointing at its log
built() {
	wait_for 120 "kilnd's log ($qs/kilnd.log)" settled "$1"
	bad=$("$kiln" builds | awk 'NR > 1 && $2 != "succeeded"')
	[ -z "$bad" ] && return 0
	echo "quickstart: a build did not succeed:" >&2
	echo "$bad" >&2
	for id in $(echo "$bad" | cut -d' ' -f1); do
		echo "the end of its log, $qs/state/logs/$id.log:" >&2
		tail -5 "$qs/state/logs/$id.log" >&2
	done
	exit 1
}
all=$(find "$repo" -name manifest.yaml | wc -l)
echo "\$ kilnd --config $bdir/quickstart/kilnd.yaml   # build_on_start: all, so it builds all $all images first"
built "$all"

# The third commit changes the app's configuration, and its version: the
# old version is in the registry already, and tags are immutable.
echo "# and one more setting" >>"$repo/app/app.conf"
sed -i 's/^version: "2.3.0"/version: "2.3.1"/' "$repo/app/manifest.yaml"
git -C "$repo" commit -q -am "Change the app's configuration"
echo "\$ git commit -am \"Change the app's configuration\"; kiln changes HEAD~1 HEAD"
"$kiln" changes --repo "$repo" HEAD~1 HEAD
want=$("$kiln" changes --repo "$repo" HEAD~1 HEAD | wc -l)
echo "\$ kiln trigger examples"
"$kiln" trigger examples
built $((all + want))
echo "\$ kiln status"
"$kiln" status
echo "\$ kiln builds"
"$kiln" builds

if [ -n "$reg" ]; then
	echo "\$ curl http://$reg/v2/_catalog; and for each image: curl http://$reg/v2/NAME/tags/list"
	curl -sf "http://$reg/v2/_catalog"
	for name in $(curl -sf "http://$reg/v2/_catalog" | tr -d '{}[]"' | sed 's/^repositories://' | tr ',' ' '); do
		curl -sf "http://$reg/v2/$name/tags/list"
	done
fi

if [ -n "$keep" ]; then
	if [ -n "$rpid" ]; then
		echo "kilnd (pid $kpid) and the registry (pid $rpid, $reg) keep running; files in $qs; to stop them:"
		echo "kill $kpid $rpid"
	else
		echo "kilnd keeps running (pid $kpid; files in $qs); to stop it:"
		echo "kill $kpid"
	fi
fi
