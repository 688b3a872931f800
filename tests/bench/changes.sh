#!/usr/bin/env bash
# changes.sh: `kiln changes` against the fast CI pipeline and against bare
# `git diff --name-only`, on a generated repository of 10,000 image folders
# and 20,000 commits, in two forms:
#   friendly  as `git fast-import` wrote it (what older versions of this
#             benchmark measured; labelled, kept for comparison)
#   real      the same history after `git repack -adf --depth=50
#             --window=250`: deep delta chains, as a clone or fetch gives
#
#   tests/bench/changes.sh [--kiln KILN] [--compare OLD_KILN] [--work DIR]
#                          [--images N] [--commits N] [--runs N] [--quick]
#                          [--generate-only]
#
# Peers, run on the same bare repository:
#   pipeline  `git diff --name-only --no-renames FROM TO`; each path mapped
#             to its nearest folder holding a manifest (one `git cat-file
#             --batch-check` for all candidate folders); `sort -u`; the
#             manifests read with one `git cat-file --batch`. It does less
#             than kiln (no .dockerignore, no dependencies, no removed
#             images): the lower bar.
#   git diff  `git diff --name-only --no-renames FROM TO` alone: the same
#             trees and no blob, the floor.
# kiln cold is `kiln changes --no-cache` (a fresh clone in CI: no catalog
# cache), kiln warm the run with the catalog cache of TO in place (kilnd,
# or CI keeping the cache). --compare runs an older kiln in the same rounds.
# Commands run in turn, RUNS rounds; times are medians; RSS is the peak of
# the runs (for the pipeline, its largest process).
#
# check: kiln's added and modified folders are all among the pipeline's, and
# every pipeline folder kiln leaves out has only changes kiln must ignore
# (paths under docs/, excluded by the generated folders' .dockerignore).
#
# --work DIR keeps the generated repositories there for the next run (they
# take minutes to make); without it they go to a temporary directory.
# Needs python3 and git. Not run in CI.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kiln=$here/../../build/kiln old= work= generate_only= images=10000 commits=20000 runs=5
while [ $# -gt 0 ]; do
	case $1 in
	--kiln) kiln=$2; shift 2 ;;
	--compare) old=$2; shift 2 ;;
	--work) work=$2; shift 2 ;;
	--images) images=$2; shift 2 ;;
	--commits) commits=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--quick) images=1000 commits=2000 runs=3; shift ;;
	--generate-only) generate_only=1; shift ;;
	*) echo "unknown argument '$1'" >&2; exit 2 ;;
	esac
done
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
kiln=$(abs "$kiln")
[ -x "$kiln" ] || { echo "no kiln executable at $kiln" >&2; exit 2; }
[ -z "$old" ] || { old=$(abs "$old"); [ -x "$old" ] || { echo "no kiln at $old" >&2; exit 2; }; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }

if [ -z "$work" ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
	trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
export GIT_CONFIG_NOSYSTEM=1 HOME=$work
repos=$work/repos-$images-$commits
if [ ! -e "$repos/done" ]; then
	echo "generating $images images, $commits commits in $repos..." >&2
	rm -rf "$repos"
	mkdir -p "$repos"
	git init -q --bare "$repos/friendly.git"
	git -C "$repos/friendly.git" symbolic-ref HEAD refs/heads/main
	python3 "$here/gen_images_repo.py" "$images" "$commits" |
		git -C "$repos/friendly.git" fast-import --quiet
	echo "repacking (git repack -adf --depth=50 --window=250)..." >&2
	git clone -q --bare --no-local "$repos/friendly.git" "$repos/real.git"
	git -C "$repos/real.git" repack -adfq --depth=50 --window=250
	touch "$repos/done"
fi
[ -z "$generate_only" ] || exit 0

pipeline=$here/fast_pipeline.sh
interleave() { python3 "$here/interleave.py" "$@"; }
ratio() { python3 -c "print('%.2fx' % ($1 / $2) if $2 > 0 else '-')"; }

# check REPO FROM: kiln's folders against the pipeline's
check() {
	local repo=$1 from=$2
	"$kiln" changes --repo "$repo" --no-cache "$from" main >"$work/kiln.out" || [ $? = 1 ]
	GIT_DIR=$repo git diff --name-only --no-renames "$from" main >"$work/paths"
	GIT_DIR=$repo "$pipeline" "$from" main >"$work/pipe.manifests"
	python3 - "$work/kiln.out" "$work/paths" "$work/pipe.manifests" <<-'PY'
	import sys
	kiln = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
	built = {f[1] for f in kiln if f[0] in ("added", "modified")}
	listed = {f[1] for f in kiln}
	paths = [l.rstrip("\n") for l in open(sys.argv[2])]
	# the pipeline's folders: from the names in the manifests it printed
	pipe = set()
	for l in open(sys.argv[3]):
	    if l.startswith("name: img"):
	        i = int(l.split("img")[1])
	        pipe.add("images/g%02d/img%05d" % (i // 100, i))
	ok = built <= pipe
	for d in pipe - listed:
	    ok = ok and all(p.startswith(d + "/docs/") for p in paths if p.startswith(d + "/"))
	print("ok" if ok else "FAIL")
	PY
}

total=$(git -C "$repos/friendly.git" rev-list --count main)
root=$(git -C "$repos/friendly.git" rev-list --max-parents=0 main)
cols="| repository | range | images | git diff | pipeline | kiln cold | kiln warm |"
sep="|---|---|---:|---:|---:|---:|---:|"
[ -z "$old" ] || { cols="$cols old kiln cold | old kiln warm |"; sep="$sep---:|---:|"; }
cols="$cols pipeline / kiln cold | pipeline / kiln warm | kiln warm / git diff | peak RSS MiB: kiln | pipeline |"
sep="$sep---:|---:|---:|---:|---:|"
[ -z "$old" ] || { cols="$cols old kiln |"; sep="$sep---:|"; }
cols="$cols check |"
sep="$sep---|"
table=$cols$'\n'$sep
for form in friendly real; do
	repo=$repos/$form.git
	label=$form
	[ "$form" = friendly ] && label="friendly (fast-import, no repack)"
	[ "$form" = real ] && label="real (repack -adf, depth 50)"
	q=$((commits / 4))
	for spec in "1:main~1" "100:main~100" "$q:main~$q" "whole ($total):$root"; do
		range=${spec%%:*} from=${spec#*:}
		echo "$form $range..." >&2
		ok=$(check "$repo" "$from")
		n=$(wc -l <"$work/kiln.out")
		# the warm runs find TO's catalog in the cache: make it first
		"$kiln" changes --repo "$repo" "$from" main >/dev/null || [ $? = 1 ]
		set -- "diff=GIT_DIR=$repo git diff --name-only --no-renames $from main" \
			"pipe=GIT_DIR=$repo $pipeline $from main" \
			"cold=$kiln changes --repo $repo --no-cache $from main" \
			"warm=$kiln changes --repo $repo $from main"
		[ -z "$old" ] || set -- "$@" "ocold=$old changes --repo $repo --no-cache $from main" \
			"owarm=$old changes --repo $repo $from main"
		interleave "$runs" -- "$@" >"$work/times"
		declare -A ms=() kib=() cpu=()
		while read -r name t k c; do
			ms[$name]=$t kib[$name]=$k cpu[$name]=$c
		done <"$work/times"
		cell() { printf '%.0f ms (%.0f)' "${ms[$1]}" "${cpu[$1]}"; }
		rat() { printf '%s (%s)' "$(ratio "${ms[$1]}" "${ms[$2]}")" "$(ratio "${cpu[$1]}" "${cpu[$2]}")"; }
		mib() { echo $(((kib[$1] > kib[$2] ? kib[$1] : kib[$2]) / 1024)); }
		row="| $label | $range | $n | $(cell diff) | $(cell pipe) | $(cell cold) | $(cell warm) |"
		[ -z "$old" ] || row="$row $(cell ocold) | $(cell owarm) |"
		row="$row $(rat pipe cold) | $(rat pipe warm) | $(rat warm diff) | $(mib cold warm) | $(mib pipe pipe) |"
		[ -z "$old" ] || row="$row $(mib ocold owarm) |"
		row="$row $ok |"
		table=$table$'\n'$row
		unset ms kib
	done
done
echo
echo "$table"
echo
echo "Medians of $runs interleaved runs: wall time, in parentheses CPU time (user + system, which"
echo "load inflates less). \"pipeline / kiln\": above 1 = kiln faster (target >= 1, >= 3 over the"
echo "whole history); \"kiln warm / git diff\": the moonshot is <= 1.5. Peak RSS: kiln over its cold"
echo "and warm runs (target < 64 MiB), the pipeline's largest process."
