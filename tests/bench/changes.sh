#!/usr/bin/env bash
# changes.sh: `kiln changes` against the usual CI pipeline on a generated
# repository of 10,000 image folders and 20,000 commits.
#
#   tests/bench/changes.sh [KILN] [--images N] [--commits N] [--runs N]
#
# The pipeline is what CI jobs commonly do: `git diff --name-only FROM TO`,
# map each path to its nearest folder holding a manifest (in a checkout of
# TO), `sort -u`, read each manifest. It does less than kiln (no .dockerignore,
# no dependencies), which makes it the lower bar. Both read the same packed
# repository. Times are medians of RUNS runs; kiln's "cold" is its first run
# with no cache, "warm" the median of the runs after it. RSS is the peak.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN:-$here/../../build/kiln}
images=10000 commits=20000 runs=5
while [ $# -gt 0 ]; do
	case $1 in
	--images) images=$2; shift 2 ;;
	--commits) commits=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	*) kiln=$1; shift ;;
	esac
done
kiln=$(cd "$(dirname "$kiln")" && pwd)/$(basename "$kiln")
[ -x "$kiln" ] || { echo "no kiln executable at $kiln" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GIT_CONFIG_NOSYSTEM=1 HOME=$work

echo "generating $images images, $commits commits..." >&2
git init -q --bare "$work/repo.git"
git -C "$work/repo.git" symbolic-ref HEAD refs/heads/main
python3 "$here/gen_images_repo.py" "$images" "$commits" | git -C "$work/repo.git" fast-import --quiet
git -C "$work/repo.git" repack -adq
git -C "$work/repo.git" worktree add -q "$work/checkout" main 2>/dev/null ||
	git clone -q --shared "$work/repo.git" "$work/checkout"

cat >"$work/pipeline.sh" <<'P'
#!/usr/bin/env bash
# FROM TO, run in a checkout of TO
git diff --name-only "$1" "$2" | while IFS= read -r p; do
	d=${p%/*}
	[ "$d" = "$p" ] && d=.
	while [ ! -f "$d/manifest.yaml" ]; do
		[ "$d" = . ] && { d=; break; }
		case $d in */*) d=${d%/*} ;; *) d=. ;; esac
	done
	[ -n "$d" ] && printf '%s\n' "$d"
done | sort -u | sed 's|$|/manifest.yaml|' | xargs -r -d '\n' cat
P
chmod +x "$work/pipeline.sh"

root=$(git -C "$work/repo.git" rev-list --max-parents=0 main)
total=$(git -C "$work/repo.git" rev-list --count main)
measure() { python3 "$here/measure.py" "$@"; }

printf '\n%-22s %7s | %10s %10s %8s | %10s %8s | %7s\n' range images \
	"kiln cold" "kiln warm" "kiln RSS" pipeline "pipe RSS" speedup
printf '%s\n' "----------------------------------------------------------------------------------------------------"
for spec in "1:main~1" "100:main~100" "5000:main~5000" "whole ($total):$root"; do
	label=${spec%%:*} from=${spec#*:}
	"$kiln" changes --repo "$work/repo.git" --no-cache "$from" main >"$work/kiln.out"
	n=$(wc -l <"$work/kiln.out")
	# sanity: every image kiln builds has a changed path in the pipeline's list
	(cd "$work/checkout" && "$work/pipeline.sh" "$from" main >/dev/null)
	(cd "$work/checkout" && git diff --name-only "$from" main | cut -d/ -f1-3 | sort -u) >"$work/pipe.dirs"
	awk -F'\t' '$1 == "added" || $1 == "modified" {print $2}' "$work/kiln.out" | sort -u |
		comm -23 - "$work/pipe.dirs" | grep -q . &&
		{ echo "kiln lists an image the diff does not touch ($label)" >&2; exit 1; }
	# cold: the first run after dropping kiln's cache
	cold=$(measure 1 --before "rm -rf $work/repo.git/kiln" -- "$kiln" changes --repo "$work/repo.git" "$from" main)
	warm=$(measure "$runs" -- "$kiln" changes --repo "$work/repo.git" "$from" main)
	pipe=$(cd "$work/checkout" && measure "$runs" -- "$work/pipeline.sh" "$from" main)
	set -- $cold; cold_ms=$1 cold_rss=$2
	set -- $warm; warm_ms=$1 warm_rss=$2
	set -- $pipe; pipe_ms=$1 pipe_rss=$2
	rss=$(( (cold_rss > warm_rss ? cold_rss : warm_rss) / 1024 ))
	printf '%-22s %7s | %8.1fms %8.1fms %6dMiB | %8.1fms %6dMiB | %6.1fx\n' "$label" "$n" \
		"$cold_ms" "$warm_ms" "$rss" "$pipe_ms" $((pipe_rss / 1024)) \
		"$(python3 -c "print($pipe_ms / $warm_ms)")"
done
echo
echo "kiln warm and pipeline: median of $runs runs; kiln cold: first run without cache."
echo "RSS: peak resident set of one run (kiln: max of cold and warm)."
