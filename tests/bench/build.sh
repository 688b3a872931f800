#!/usr/bin/env bash
# build.sh: `kiln build` against `DOCKER_BUILDKIT=0 docker build` on one
# private Docker engine, for a small context and a 1 GiB one.
#
#   tests/bench/build.sh [KILN] [--runs N] [--big-files N] [--big-bytes N]
#
# Needs root, dockerd (docker.io), the docker CLI and busybox-static, like
# the end-to-end tests; starts its own engine and stops it at the end.
#
# Both sides do the same work: the same folder, the same tag, the same three
# OCI labels (created differs per run for both, so those steps never come
# from the cache), no push, no smoke test. kiln reads the folder from the git
# tree of the commit; the docker CLI from a checkout of it. The runs
# alternate (kiln, docker, kiln, ...) after one untimed warm-up of each, so
# the engine's layer cache is equally warm for both, and more than a second
# apart: the created label has a resolution of one second, and a run in the
# same second as the one before would find its label steps in the cache. Wall time is the median
# of RUNS runs; RSS is the peak of the client process (kiln or docker).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kiln=$here/../../build/kiln
runs=5 big_files=20000 big_bytes=$((1 << 30))
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=$2; shift 2 ;;
	--big-files) big_files=$2; shift 2 ;;
	--big-bytes) big_bytes=$2; shift 2 ;;
	*) kiln=$1; shift ;;
	esac
done
kiln=$(cd "$(dirname "$kiln")" && pwd)/$(basename "$kiln")
[ -x "$kiln" ] || { echo "no kiln executable at $kiln" >&2; exit 2; }
export KILN=$kiln
. "$here/../integration/lib/common.sh"
. "$here/../e2e/lib/engine.sh"
set +u

reason=$(engine_skip_reason)
command -v docker >/dev/null || reason=${reason:-"no docker CLI (package docker.io)"}
if [ -n "$reason" ]; then
	echo "SKIPPED: $reason"
	exit 0
fi

E=$(mktemp -d /tmp/kiln-b.XXXXXX)
# errexit must not cut the cleanup short (a kill of a pid already gone fails)
trap 'set +e; engine_teardown; kill_tracked; rm -rf "$TEST_TMP"' EXIT
engine_start "$E" >&2 || exit 1
export GIT_CONFIG_NOSYSTEM=1
w=$TEST_TMP
empty=4b825dc642cb6eb9a060e54bf8d69288fbee4904
source_url=https://git.example.com/team/images.git

# small: busybox and a few files, one COPY and one RUN
git init -q -b main "$w/small"
mkdir -p "$w/small/app/etc"
cp "$BUSYBOX" "$w/small/app/busybox"
for i in $(seq 1 20); do echo "setting $i" >"$w/small/app/etc/conf$i"; done
printf 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY etc /etc/app/\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' \
	>"$w/small/app/Dockerfile"
printf 'name: bench/small\nversion: "1"\nregistry: 127.0.0.1:5999\n' >"$w/small/app/manifest.yaml"
git -C "$w/small" add -A && git -C "$w/small" commit -qm small

# big: one commit written by fast-import, its files also in a checkout
echo "generating a context of $big_bytes bytes in $big_files files..." >&2
git init -q --bare -b main "$w/big.git"
python3 "$here/../e2e/lib/bigrepo.py" big "$big_files" "$big_bytes" 127.0.0.1:5999 --tree "$w/bigtree" |
	git -C "$w/big.git" fast-import --quiet

# docker_side DIR TAG REVISION: what a CI job runs for the same result
cat >"$w/docker_build.sh" <<'D'
#!/bin/sh
exec docker build -q -t "$2" \
	--label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	--label "org.opencontainers.image.revision=$3" \
	--label "org.opencontainers.image.source=$4" "$1"
D
chmod +x "$w/docker_build.sh"
export DOCKER_HOST=unix://$E/docker.sock DOCKER_BUILDKIT=0

bench() { # LABEL REPO DIR TAG
	local label=$1 repo=$2 dir=$3 tag=$4 rev out
	rev=$(git -C "$repo" rev-parse main)
	local k=("$kiln" build --repo "$repo" --source "$source_url" "$empty" main)
	local d=("$w/docker_build.sh" "$dir" "$tag" "$rev" "$source_url")
	"${k[@]}" >"$w/kiln.out" 2>&1 || { echo "kiln build failed: $(tail -5 "$w/kiln.out")" >&2; exit 1; }
	"${d[@]}" >/dev/null 2>&1 || { echo "docker build failed" >&2; exit 1; }
	out=$(python3 "$here/alternate.py" "$runs" --pause 1.1 "${k[@]}" :: "${d[@]}")
	set -- $out
	printf '%-28s | %9.0fms %9.0fms %6.2f | %6dMiB %6dMiB\n' "$label" "$1" "$3" \
		"$(python3 -c "print($1 / $3)")" $(($2 / 1024)) $(($4 / 1024))
}

printf '\n%-28s | %11s %11s %6s | %9s %9s\n' context "kiln build" "docker" ratio "kiln RSS" "docker RSS"
printf '%s\n' "-----------------------------------------------------------------------------------"
bench "small (22 files, 2 MB)" "$w/small" "$w/small/app" 127.0.0.1:5999/bench/small:1
bench "big ($big_files files, $((big_bytes >> 20)) MiB)" "$w/big.git" "$w/bigtree/big" \
	127.0.0.1:5999/big:1
echo
echo "wall: median of $runs alternating runs each; ratio = kiln / docker (target <= 1.0)."
echo "RSS: peak resident set of the client process over all runs (kiln target < 64 MiB)."
echo "engine: $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})'), classic builder"
