#!/bin/sh
# quickstart.sh [--keep] [--dry-run]: installs what is missing, builds kiln,
# makes an example images repository from conf/example-images (two commits)
# and asks kiln which images the second commit changed; then runs kilnd on
# that repository (127.0.0.1 and files under the build directory only, no
# root needed), makes a third commit (the app's configuration) and shows
# kilnd planning and building exactly the image it affects.
#
# kilnd runs with builds: {dry_run: true}: the example images push to
# registry.example.com and are not runnable, so a real build has nothing to
# push to. --dry-run is accepted (and is the only mode today).
#
# --keep leaves kilnd running and prints how to stop it. A kilnd a previous
# --keep left is stopped first (its pid file, checked against its command
# line, since pids get reused), so running this twice in a row works.
#
# Environment: KILN_BUILD_DIR (default build) is where it builds and keeps
# its files; KILN and KILND naming built executables skip deps and build.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

keep=
for a in "$@"; do
	case $a in
	--keep) keep=1 ;;
	--dry-run) ;;
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

# A kilnd left by --keep: stopped before its state is removed.
if [ -f "$qs/kilnd.pid" ]; then
	old=$(cat "$qs/kilnd.pid")
	if grep -qF "$qs/kilnd.yaml" "/proc/$old/cmdline" 2>/dev/null; then
		echo "stopping the kilnd a previous --keep left (pid $old)"
		kill -TERM "$old"
		i=0
		while kill -0 "$old" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
	fi
fi

repo="$babs/example-images"
rm -rf "$repo" "$qs"
mkdir -p "$repo"
cp -R conf/example-images/. "$repo/"
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
printf 'name: tools/yq\nversion: "4.40.5"\nregistry: registry.example.com:5000/team\n' \
	>"$repo/tools/yq/manifest.yaml"
printf 'FROM registry.example.com:5000/team/examples/base:latest\n' >"$repo/tools/yq/Dockerfile"
git -C "$repo" add -A
git -C "$repo" commit -q -m "Change the base image, add yq"

echo "\$ kiln changes --repo $bdir/example-images HEAD~1 HEAD"
"$kiln" changes --repo "$repo" HEAD~1 HEAD

# kilnd on the example repository.
if [ -S /var/run/docker.sock ] && curl -sf --max-time 3 --unix-socket /var/run/docker.sock \
	http://x/_ping >/dev/null 2>&1; then
	echo "(a Docker engine answers, but the example images cannot be pushed anywhere: kilnd runs a dry run)"
else
	echo "(no usable Docker engine at /var/run/docker.sock: kilnd runs a dry run)"
fi
mkdir -p "$qs"
cat >"$qs/kilnd.yaml" <<-Y
	state_dir: $qs/state
	builds: {dry_run: true}
	listen: {status_socket: $qs/kiln.sock}
	shutdown_grace: 5s
	repositories:
	  - name: examples
	    url: $repo
	    poll_interval: 1s
Y
export KILN_SOCKET="$qs/kiln.sock"

kpid=
stop() {
	[ -n "$kpid" ] || return 0
	kill -TERM "$kpid" 2>/dev/null || true
	wait "$kpid" 2>/dev/null || true
	rm -f "$qs/kilnd.pid"
	kpid=
}
[ -n "$keep" ] || trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$kilnd" --config "$qs/kilnd.yaml" >"$qs/kilnd.log" 2>&1 &
kpid=$!
echo "$kpid" >"$qs/kilnd.pid"

# wait_for SECONDS CMD...: polls CMD every 0.2 s
wait_for() {
	n=$(($1 * 5))
	shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		if [ $n -le 0 ]; then
			echo "quickstart: timed out waiting for: $*; kilnd's log ($qs/kilnd.log) ends:" >&2
			tail -5 "$qs/kilnd.log" >&2
			exit 1
		fi
		sleep 0.2
	done
}
wait_for 20 grep -q "first seen" "$qs/kilnd.log"

# The third commit changes the app's configuration: only app is rebuilt.
echo "# and one more setting" >>"$repo/app/app.conf"
git -C "$repo" commit -q -am "Change the app's configuration"
echo "\$ git commit -am \"Change the app's configuration\"; kiln changes HEAD~1 HEAD"
"$kiln" changes --repo "$repo" HEAD~1 HEAD
want=$("$kiln" changes --repo "$repo" HEAD~1 HEAD | wc -l)
echo "\$ kiln trigger examples"
"$kiln" trigger examples

# settled: kilnd planned as many builds as kiln changes lists, all ended
settled() {
	"$kiln" builds --json | python3 -c '
import json, sys
b = json.load(sys.stdin)
sys.exit(not (len(b) >= int(sys.argv[1]) and all(x["state"] not in ("queued", "running") for x in b)))
' "$want"
}
wait_for 30 settled
echo "\$ kiln status"
"$kiln" status
echo "\$ kiln builds"
"$kiln" builds

if [ -n "$keep" ]; then
	echo "kilnd keeps running (pid $kpid; files in $qs); to stop it:"
	echo "kill $kpid"
fi
