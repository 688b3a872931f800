#!/usr/bin/env bash
# repack.sh: kilnd following a repository through FETCHES pushes, each fetched
# on its own (the branch moves one commit ahead, kilnd's next poll, 100 ms
# apart, fetches it, the script waits until the mirror has it), once
# with the default repack_packs (32) and once with repack_packs: 0 (never,
# as before repacking existed). Every EVERY fetches, with kilnd idle, it
# samples the mirror's pack count and the median time of `kiln changes
# --no-cache` over the whole history read from the mirror, and how long
# those EVERY fetches took. Not run in CI.
#
#   tests/bench/repack.sh [--kiln KILN] [--kilnd KILND] [--fetches N] [--every N]
#                         [--images N] [--runs N]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kiln=$here/../../build/kiln kilnd=$here/../../build/kilnd
fetches=2000 every=250 images=200 runs=5
while [ $# -gt 0 ]; do
	case $1 in
	--kiln) kiln=$2; shift 2 ;;
	--kilnd) kilnd=$2; shift 2 ;;
	--fetches) fetches=$2; shift 2 ;;
	--every) every=$2; shift 2 ;;
	--images) images=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	*) echo "unknown argument '$1'" >&2; exit 2 ;;
	esac
done
[ -x "$kiln" ] && [ -x "$kilnd" ] || { echo "no kiln/kilnd at $kiln, $kilnd" >&2; exit 2; }

. "$here/lib.sh"
bench_workdir repack

# The pushes are made beforehand, as one history: the run moves the branch
# along it one commit at a time (git update-ref replaces the ref file, which
# is what kilnd's poll of a local repository looks at).
echo "generating $images images, $((50 + fetches)) commits..." >&2
git init -q --bare "$work/seed.git"
git -C "$work/seed.git" symbolic-ref HEAD refs/heads/main
python3 "$here/gen_images_repo.py" "$images" $((50 + fetches)) |
	git -C "$work/seed.git" fast-import --quiet
git -C "$work/seed.git" rev-list --reverse main >"$work/commits"

# run MODE REPACK_PACKS: one kilnd through all the fetches; samples go to
# $work/MODE.samples as "fetches packs changes_ms seconds"
run() {
	local mode=$1 packs_max=$2 dir=$work/$1 n=0 t0 t1 sha ref root
	local -a commits
	mkdir "$dir"
	git clone -q --bare "$work/seed.git" "$dir/src.git"
	mapfile -t commits <"$work/commits"
	git -C "$dir/src.git" update-ref refs/heads/main "${commits[49]}"
	cat >"$dir/kilnd.yaml" <<-Y
	state_dir: $dir/state
	builds: {dry_run: true}
	listen: {status_socket: $dir/kiln.sock}
	repositories:
	  - name: images
	    url: $dir/src.git
	    poll_interval: 100ms
	    repack_packs: $packs_max
	Y
	"$kilnd" --config "$dir/kilnd.yaml" --log-level debug >"$dir/kilnd.log" 2>&1 &
	pid=$!
	ref=$dir/state/mirrors/images.git/refs/heads/main
	root=${commits[0]}
	wait_ref() { # SHA: the mirror's branch is there
		local got
		for _ in $(seq 1 2000); do
			got=
			{ read -r got <"$ref"; } 2>/dev/null || true
			[ "$got" = "$1" ] && return 0
			sleep 0.01
		done
		echo "$mode: the mirror never got $1" >&2
		exit 1
	}
	wait_idle() { # the last state change went to idle: nothing writes the mirror
		for _ in $(seq 1 6000); do
			grep "watch 'images': .* -> " "$dir/kilnd.log" | tail -1 | grep -q -- "-> idle$" &&
				return 0
			sleep 0.01
		done
		echo "$mode: kilnd never went idle" >&2
		exit 1
	}
	wait_ref "${commits[49]}"
	sample() {
		local packs ms
		wait_idle
		packs=$(find "$dir/state/mirrors/images.git/objects/pack" -name '*.pack' | wc -l)
		set -- $(python3 "$here/measure.py" "$runs" -- "$kiln" changes \
			--repo "$dir/state/mirrors/images.git" --no-cache "$root" main)
		ms=$1
		echo "$n $packs $ms $(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')" >>"$work/$mode.samples"
	}
	t0=$(date +%s.%N) t1=$t0
	sample
	while [ "$n" -lt "$fetches" ]; do
		n=$((n + 1))
		sha=${commits[49 + n]}
		git -C "$dir/src.git" update-ref refs/heads/main "$sha"
		wait_ref "$sha"
		if [ $((n % every)) = 0 ]; then
			t1=$(date +%s.%N)
			sample
			t0=$(date +%s.%N)
		fi
	done
	grep -o "repacked the mirror: .*" "$dir/kilnd.log" >"$work/$mode.repacks" || true
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
	echo "$mode: done, $(wc -l <"$work/$mode.repacks") repacks" >&2
}

run repack 32
run off 0

python3 - "$work/repack.samples" "$work/off.samples" "$work/repack.repacks" "$every" <<'PY'
import re, statistics, sys
rows = [dict((int(f[0]), f[1:]) for f in (l.split() for l in open(p))) for p in sys.argv[1:3]]
every = sys.argv[4]
print()
print("%8s | %12s %12s | %17s %17s | %14s %14s" % ("fetches", "packs", "packs", "kiln changes ms",
      "kiln changes ms", "s per %s" % every, "s per %s" % every))
print("%8s | %12s %12s | %17s %17s | %14s %14s" % ("", "repack 32", "never", "repack 32",
      "never", "repack 32", "never"))
print("-" * 108)
for n in sorted(rows[0]):
    a, b = rows[0][n], rows[1].get(n, ["-", "-", "-"])
    sec = lambda r: "-" if n == 0 else "%.1f" % float(r[2])
    print("%8d | %12s %12s | %17s %17s | %14s %14s" % (n, a[0], b[0], a[1], b[1], sec(a), sec(b)))
ms = [int(m) for m in re.findall(r"in (\d+) ms", open(sys.argv[3]).read())]
if ms:
    print("\nrepacks (repack 32): %d, each %d ms median, %d ms at most" % (
        len(ms), statistics.median(ms), max(ms)))
PY
