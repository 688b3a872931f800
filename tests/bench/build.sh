#!/usr/bin/env bash
# build.sh: `kiln build` with BuildKit and with the classic builder against
# `DOCKER_BUILDKIT=0 docker build` on one private Docker engine, for a small
# context, a 1 GiB one, and a package cache (a `RUN --mount=type=cache` that
# BuildKit keeps between builds; the classic builders run the step in full).
#
#   tests/bench/build.sh [KILN] [--runs N] [--big-files N] [--big-bytes N]
#
# Needs root, dockerd (docker.io), the docker CLI and busybox-static, like
# the end-to-end tests; starts its own engine and stops it at the end.
#
# Both sides do the same work: the same folder, the same tag, the same three
# OCI labels (created differs per run for both, so those steps never come
# from the cache), no push, no smoke test. kiln reads the folder from the git
# tree of the commit; the docker CLI from a checkout of it. The runs take
# turns (interleave.py: kiln BuildKit, kiln classic, docker, ...) after one
# untimed warm-up of each, so the engine's layer cache is equally warm for
# all, and more than a second apart: the created label has a resolution of
# one second, and a run in the same second as the one before would find its
# label steps in the cache. Wall time is the median of RUNS runs; RSS is the
# peak of the client process (kiln or docker). BuildKit's RUN steps run with
# network none (the private engine has no bridge).
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

# cache: a step that "downloads packages" (3 s, then 20 MiB) unless the
# package cache has them; each run commits a new stamp copied before it, so
# the step runs every time. BuildKit keeps /cache between builds; the
# classic builder has no cache mounts: its Dockerfile is the same without.
pkg_step='[ -f /cache/pkgs ] || { /bin/busybox sleep 3; /bin/busybox dd if=/dev/zero of=/cache/pkgs bs=1M count=20 2>/dev/null; }; /bin/busybox cp /cache/pkgs /pkgs'
for kind in bk classic; do
	git init -q -b main "$w/cache-$kind"
	mkdir -p "$w/cache-$kind/app"
	cp "$BUSYBOX" "$w/cache-$kind/app/busybox"
	mount=
	[ $kind = bk ] && mount='--mount=type=cache,target=/cache '
	printf 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY stamp /stamp\nRUN %s["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /cache; %s"]\n' \
		"$mount" "$pkg_step" >"$w/cache-$kind/app/Dockerfile"
	printf 'name: bench/cache-%s\nversion: "1"\nregistry: 127.0.0.1:5999\n' $kind >"$w/cache-$kind/app/manifest.yaml"
	date +%s%N >"$w/cache-$kind/app/stamp"
	git -C "$w/cache-$kind" add -A && git -C "$w/cache-$kind" commit -qm cache
done
# restamp: a new commit in both repositories, before each timed run
cat >"$w/restamp.sh" <<R
#!/bin/sh
for r in $w/cache-bk $w/cache-classic; do
	date +%s%N >\$r/app/stamp && git -C \$r commit -qam stamp || exit 1
done
sleep 1.1
R
chmod +x "$w/restamp.sh"

# docker_side DIR TAG REVISION SOURCE: what a CI job runs for the same result
cat >"$w/docker_build.sh" <<'D'
#!/bin/sh
exec docker build -q -t "$2" \
	--label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	--label "org.opencontainers.image.revision=$3" \
	--label "org.opencontainers.image.source=$4" "$1"
D
chmod +x "$w/docker_build.sh"
export DOCKER_HOST=unix://$E/docker.sock DOCKER_BUILDKIT=0

# bench LABEL REPO DIR TAG [BEFORE [CLASSIC-REPO CLASSIC-DIR]]: the three
# clients, one warm-up each (which must succeed: interleave.py lets exit
# status 1 pass), then RUNS interleaved rounds; BEFORE runs untimed before
# each run. The classic builders use CLASSIC-REPO/-DIR when given.
bench() {
	local label=$1 repo=$2 dir=$3 tag=$4 before=${5:-"sleep 1.1"} crepo=${6:-$2} cdir=${7:-$3}
	local from=$empty rev k_bk k_cl d out
	[ -n "${5:-}" ] && from=main~1
	rev=$(git -C "$repo" rev-parse main)
	k_bk="$kiln build --repo $repo --source $source_url --builder buildkit --network none $from main"
	k_cl="$kiln build --repo $crepo --source $source_url --builder classic $from main"
	d="$w/docker_build.sh $cdir $tag $rev $source_url"
	for c in "$k_bk" "$k_cl" "$d"; do
		sh -c "$before" >/dev/null
		sh -c "$c" >"$w/warm.out" 2>&1 || { echo "warm-up failed: $c: $(tail -5 "$w/warm.out")" >&2; exit 1; }
	done
	out=$(python3 "$here/interleave.py" "$runs" --before "$before" -- "bk=$k_bk" "classic=$k_cl" "docker=$d")
	# NAME median_ms max_rss_kib median_cpu_ms, one line each
	set -- $out
	printf '%-30s | %8.0fms %8.0fms %8.0fms | %5dMiB %5dMiB %5dMiB\n' "$label" "$2" "$6" "${10}" \
		$(($3 / 1024)) $(($7 / 1024)) $((${11} / 1024))
}

printf '\n%-30s | %10s %10s %10s | %8s %8s %8s\n' context "kiln BK" "kiln clas." "docker" "BK RSS" "clas. RSS" "dkr RSS"
printf '%s\n' "------------------------------------------------------------------------------------------------"
bench "small (22 files, 2 MB)" "$w/small" "$w/small/app" 127.0.0.1:5999/bench/small:1
bench "big ($big_files files, $((big_bytes >> 20)) MiB)" "$w/big.git" "$w/bigtree/big" \
	127.0.0.1:5999/big:1
bench "package cache (2nd build)" "$w/cache-bk" "$w/cache-bk/app" 127.0.0.1:5999/bench/cache:1 \
	"$w/restamp.sh" "$w/cache-classic" "$w/cache-classic/app"
echo
echo "wall: median of $runs interleaved runs each (kiln BuildKit, kiln classic, docker classic)."
echo "RSS: peak resident set of the client process over all runs (kiln target < 64 MiB)."
echo "package cache: BuildKit's cache mount holds the packages after the warm-up; the classic"
echo "builders (no cache mounts) fetch them on every build."
echo "engine: $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})')"
