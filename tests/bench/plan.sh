#!/usr/bin/env bash
# plan.sh: how long kilnd takes to plan a new head, from the fetch's end to
# the builds recorded (its debug line "planned in N ms"), on the generated
# repository of 10,000 images and 20,000 commits in both forms of changes.sh
# (friendly: as fast-import wrote it; real: repacked -adf --depth=50
# --window=250). kilnd (dry run, polling every 100 ms) follows a bare
# repository whose branch the script moves: ROUNDS times by 1 commit
# (main~1 <-> main) and ROUNDS times by 5,000 (main~5000 <-> main; the
# moves back are diffs of the same size). kilnd's mirror gets the generated
# repository's objects (after its first sight of the branch), so no fetch
# brings objects and the mirror keeps the generated packs. The first plan
# (kilnd's last-seen set to the tip in its database, the branch at the
# commit before) builds kilnd's catalog and is not counted.
#
#   tests/bench/plan.sh [--kilnd KILND] [--compare OLD_KILND] [--work DIR]
#                       [--images N] [--commits N] [--rounds N] [--quick]
#
# --work DIR: as changes.sh (and shares its generated repositories). Prints
# the medians as a markdown table. Needs python3, git and sqlite3. Not run in CI.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kilnd=$here/../../build/kilnd old= keep= images=10000 commits=20000 rounds=5
while [ $# -gt 0 ]; do
	case $1 in
	--kilnd) kilnd=$2; shift 2 ;;
	--compare) old=$2; shift 2 ;;
	--work) keep=$2; shift 2 ;;
	--images) images=$2; shift 2 ;;
	--commits) commits=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--quick) images=1000 commits=2000 rounds=3; shift ;;
	*) echo "unknown argument '$1'" >&2; exit 2 ;;
	esac
done
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
kilnd=$(abs "$kilnd")
[ -x "$kilnd" ] || { echo "no kilnd at $kilnd" >&2; exit 2; }
[ -z "$old" ] || old=$(abs "$old")
big=$((commits / 4))

. "$here/lib.sh"
bench_workdir plan
if [ -n "$keep" ]; then
	mkdir -p "$keep"
	keep=$(cd "$keep" && pwd)
else
	keep=$work
fi
repos=$keep/repos-$images-$commits
if [ ! -e "$repos/done" ]; then
	# changes.sh makes them (and keeps them with --work)
	"$here/changes.sh" --kiln /bin/true --work "$keep" --images "$images" \
		--commits "$commits" --generate-only
fi

# run LABEL KILND FORM: prints "LABEL FORM small_ms big_ms"
run() {
	local label=$1 bin=$2 form=$3 dir=$work/$1-$3 tip root prev far n=0 mirror
	mkdir -p "$dir"
	git clone -q --bare --no-local "$repos/$form.git" "$dir/src.git"
	tip=$(git -C "$dir/src.git" rev-parse main)
	root=$(git -C "$dir/src.git" rev-list --max-parents=0 main)
	prev=$(git -C "$dir/src.git" rev-parse "$tip~1")
	mirror=$dir/state/mirrors/images.git
	cat >"$dir/kilnd.yaml" <<-Y
	state_dir: $dir/state
	builds: {dry_run: true}
	listen: {status_socket: $dir/kiln.sock}
	repositories:
	  - name: images
	    url: $dir/src.git
	    poll_interval: 100ms
	Y
	start() {
		n=0
		"$bin" --config "$dir/kilnd.yaml" --log-level debug >"$dir/kilnd.log" 2>&1 &
		pid=$!
	}
	stop() {
		kill -TERM "$pid"
		wait "$pid" || true
		pid=
	}
	# move SHA: the branch to SHA, then the plan that follows (none: the
	# next plan, whatever moved)
	move() {
		[ -z "$1" ] || git -C "$dir/src.git" update-ref refs/heads/main "$1"
		n=$((n + 1))
		for _ in $(seq 1 12000); do
			[ "$(grep -c "planned in" "$dir/kilnd.log")" -ge "$n" ] && return 0
			kill -0 "$pid" 2>/dev/null || { cat "$dir/kilnd.log" >&2; exit 1; }
			sleep 0.01
		done
		echo "$label $form: no plan for $1 in 120 s" >&2
		exit 1
	}
	# "TOTAL CHANGES" of the last plan (CHANGES: plan_branch alone)
	last() {
		grep -o "planned in [0-9.]* ms (changes [0-9.]* ms)" "$dir/kilnd.log" | tail -1 |
			awk '{ print $3, $6 }'
	}
	# kilnd first sees the branch at its first commit (a small fetch); then
	# its mirror gets the generated packs as they are, at the tip
	git -C "$dir/src.git" update-ref refs/heads/main "$root"
	start
	move "" # first sight
	stop
	rm -rf "$mirror/objects"
	cp -a "$repos/$form.git/objects" "$mirror/objects"
	git -C "$mirror" update-ref refs/heads/main "$tip"
	# kilnd has seen the tip: planning the whole history would queue 10,000
	# dry-run builds, whose bookkeeping would run during the timed plans
	sqlite3 "$dir/state/kilnd.db" "UPDATE branches SET last_seen = '$tip'"
	git -C "$dir/src.git" update-ref refs/heads/main "$prev"
	start
	move "" # builds the catalog (from nothing): not counted
	for _ in $(seq 1 "$rounds"); do
		move "$tip"
		last >>"$dir/small"
		move "$prev"
		last >>"$dir/small"
	done
	far=$(git -C "$dir/src.git" rev-parse "$tip~$big")
	for _ in $(seq 1 "$rounds"); do
		move "$far"
		last >>"$dir/big"
		move "$tip"
		last >>"$dir/big"
	done
	stop
	python3 -c 'import statistics, sys
m = lambda f, k: statistics.median(float(l.split()[k]) for l in open(f))
print(sys.argv[1], sys.argv[2], " ".join("%.1f" % m(f, k) for f in sys.argv[3:] for k in (0, 1)))' \
		"$label" "$form" "$dir/small" "$dir/big"
}

: >"$work/rows"
for form in friendly real; do
	run new "$kilnd" "$form" >>"$work/rows"
	[ -z "$old" ] || run old "$old" "$form" >>"$work/rows"
done
echo
echo "| repository | kilnd | push of 1 commit | of which changes | push of $big commits | of which changes |"
echo "|---|---|---:|---:|---:|---:|"
while read -r label form small smallc bigms bigc; do
	[ "$form" = friendly ] && f="friendly (fast-import, no repack)" || f="real (repack -adf, depth 50)"
	[ "$label" = new ] && l="--kilnd $(basename "$kilnd")" || l="--compare $(basename "$old")"
	echo "| $f | $l | $small ms | $smallc ms | $bigms ms | $bigc ms |"
done <"$work/rows"
echo
echo "kilnd's \"planned in\": from the fetch's end to the builds recorded (\"of which changes\":"
echo "computing the changeset, the rest is mostly recording the builds); medians of $((2 * rounds))"
echo "plans each (the branch moved forth and back $rounds times), taken after its first plan."
