#!/usr/bin/env bash
# startup.sh (bench): kiln's start-up (issue #10). For `kiln --help`,
# `kiln --version`, `kiln changes` of an unchanged range (FROM = TO, and two
# commits with the same tree) on a small repository and on a 10,000-image
# one (tests/bench/gen_images_repo.py), `kiln changes` of a changed range
# on each (which the front's fast path leaves to the module), and
# `kiln build --dry-run` of the same unchanged range: median wall time
# (hyperfine -N), mean CPU time (user + system) and the shared objects the
# run loaded (the loader's trace, LD_DEBUG=files), beside the peers
# `git diff --name-only` on the same range, `git --version` and `true`.
# With --compare OTHER_KILN (e.g. a build of main) each kiln row is
# measured for both, in the same rounds.
#
#   tests/bench/startup.sh [KILN] [--compare OTHER_KILN] [--quick]
#
# Rounds: 3 of 200 runs each (--quick: 1 of 30, and 2,000 images), every command once per
# round, so a load that comes and goes touches all of them; the median is
# that of the rounds' medians. Needs hyperfine, git, python3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
KILN=$here/../../build/kiln
OTHER=
rounds=3 runs=200 images=10000
while [ $# -gt 0 ]; do
	case $1 in
	--quick) rounds=1 runs=30 images=2000; shift ;;
	--compare) OTHER=$(realpath "$2"); shift 2 ;;
	*) KILN=$1; shift ;;
	esac
done
KILN=$(realpath "$KILN")
for c in hyperfine git python3; do
	command -v "$c" >/dev/null || { echo "startup.sh needs $c" >&2; exit 2; }
done
[ -x "$KILN" ] || { echo "no kiln at $KILN" >&2; exit 2; }

bench_workdir startup
small=$work/small big=$work/big.git
git init -q "$small"
mkdir -p "$small/app"
printf 'name: app\nversion: "1"\nregistry: r.example\n' >"$small/app/manifest.yaml"
printf 'FROM scratch\n' >"$small/app/Dockerfile"
git -C "$small" add -A
git -C "$small" commit -qm one
git -C "$small" commit -q --allow-empty -m "same tree"
echo "generating $images images..." >&2
git init -q --bare "$big"
git -C "$big" symbolic-ref HEAD refs/heads/main
python3 "$here/gen_images_repo.py" "$images" $((images / 100 + 1)) | git -C "$big" fast-import --quiet
git -C "$big" repack -adq
git -C "$big" commit-tree -p HEAD -m "same tree" "HEAD^{tree}" >"$work/same"
git -C "$big" update-ref refs/heads/same "$(cat "$work/same")"
EMPTY=4b825dc642cb6eb9a060e54bf8d69288fbee4904
# the catalog cache as a CI runner would have it after its first run
"$KILN" changes --repo "$big" HEAD~1 HEAD >/dev/null

# label|command, run from $work
rows=()
kiln_rows() { # KILN TAG
	rows+=("$2 --help|$1 --help")
	rows+=("$2 --version|$1 --version")
	rows+=("$2 changes HEAD HEAD (1 image)|$1 changes --repo $small HEAD HEAD")
	rows+=("$2 changes HEAD~1 HEAD, same tree (1 image)|$1 changes --repo $small HEAD~1 HEAD")
	rows+=("$2 changes HEAD HEAD ($images images)|$1 changes --repo $big HEAD HEAD")
	rows+=("$2 changes HEAD same, same tree ($images images)|$1 changes --repo $big HEAD same")
	# changed ranges: the front leaves them to the module (the fast path's
	# cost when it does not answer)
	rows+=("$2 changes EMPTY HEAD, changed (1 image)|$1 changes --repo $small $EMPTY HEAD")
	rows+=("$2 changes main~1 main~0, changed ($images images)|$1 changes --repo $big main~1 main~0")
	rows+=("$2 build --dry-run HEAD HEAD (1 image)|$1 build --dry-run --repo $small HEAD HEAD")
}
kiln_rows "$KILN" kiln
[ -z "$OTHER" ] || kiln_rows "$OTHER" "other"
rows+=("git diff --name-only HEAD HEAD (1 image)|git -C $small diff --name-only HEAD HEAD")
rows+=("git diff --name-only HEAD same ($images images)|git -C $big diff --name-only HEAD same")
rows+=("git --version|git --version")
rows+=("true|true")

# objects COMMAND: the shared objects a run loads
objects() {
	rm -f "$work"/ld.*
	# shellcheck disable=SC2086
	LD_DEBUG=files LD_DEBUG_OUTPUT=$work/ld $1 >/dev/null 2>&1 || true
	cat "$work"/ld.* 2>/dev/null | grep -cE 'file=.*(needed by|dynamically loaded by)' || true
}

cmds=()
for r in "${rows[@]}"; do
	cmds+=("${r#*|}")
done
for ((k = 1; k <= rounds; k++)); do
	echo "round $k of $rounds ($runs runs per command)" >&2
	hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/round$k.json" "${cmds[@]}" >/dev/null 2>&1
done

echo
echo "$(date -u +%Y-%m-%d) $(uname -m), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); kiln: $KILN${OTHER:+; other: $OTHER}"
echo
echo "| command | median wall ms | mean user+sys ms | objects loaded |"
echo "|---|---:|---:|---:|"
i=0
for r in "${rows[@]}"; do
	wall=$(python3 - "$i" "$work"/round*.json <<-'E'
	import json, statistics, sys
	i = int(sys.argv[1])
	res = [json.load(open(f))["results"][i] for f in sys.argv[2:]]
	med = statistics.median(r["median"] for r in res)
	cpu = statistics.median(r["user"] + r["system"] for r in res)
	print("%.1f | %.1f" % (med * 1e3, cpu * 1e3))
	E
	)
	echo "| ${r%%|*} | $wall | $(objects "${r#*|}") |"
	i=$((i + 1))
done
