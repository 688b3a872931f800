#!/usr/bin/env bash
# idle.sh: kilnd watching 200 local repositories with a 10 s poll interval.
# After the first round of polls (the initial fetches), measures over 60 s:
# resident memory, CPU time, and how many fetches happened (there should be
# none: nothing changes).
#
#   tests/bench/idle.sh [KILND] [--repos N] [--seconds S] [--interval 10s]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kilnd=${KILND:-$here/../../build/kilnd}
repos=200 seconds=60 interval=10s
while [ $# -gt 0 ]; do
	case $1 in
	--repos) repos=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--interval) interval=$2; shift 2 ;;
	*) kilnd=$1; shift ;;
	esac
done
[ -x "$kilnd" ] || { echo "no kilnd at $kilnd" >&2; exit 2; }

. "$here/lib.sh"
bench_workdir idle

echo "creating $repos repositories..." >&2
mkdir -p "$work/src/img"
printf 'name: img\nversion: "1"\nregistry: reg.example.com\n' >"$work/src/img/manifest.yaml"
printf 'FROM scratch\n' >"$work/src/img/Dockerfile"
git -C "$work/src" init -q -b main
git -C "$work/src" add -A
git -C "$work/src" commit -q -m one
{
	echo "state_dir: $work/state"
	echo "builds: {dry_run: true}"
	echo "listen: {status_socket: $work/kiln.sock}"
	echo "repositories:"
	for i in $(seq 1 "$repos"); do
		git clone -q --bare "$work/src" "$work/r$i.git"
		printf '  - {name: r%d, url: %s, poll_interval: %s}\n' "$i" "$work/r$i.git" "$interval"
	done
} >"$work/kilnd.yaml"

"$kilnd" --config "$work/kilnd.yaml" >"$work/kilnd.log" 2>&1 &
pid=$!
# warm-up: every repository has been polled, fetched and planned once
for _ in $(seq 1 120); do
	[ "$(grep -c 'first seen' "$work/kilnd.log")" -ge "$repos" ] && break
	sleep 0.5
done
first=$(grep -c 'first seen' "$work/kilnd.log")
[ "$first" -ge "$repos" ] || { echo "only $first of $repos repositories polled" >&2; exit 1; }
sleep 2

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
fetches0=$(grep -c 'fetched' "$work/kilnd.log")
cpu0=$(cpu)
t0=$(date +%s.%N)
rss_max=0
for _ in $(seq 1 "$seconds"); do
	sleep 1
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
	[ "$rss" -gt "$rss_max" ] && rss_max=$rss
done
cpu1=$(cpu)
t1=$(date +%s.%N)
fetches1=$(grep -c 'fetched' "$work/kilnd.log")
polls=$(awk -v s="$seconds" -v r="$repos" -v i="$interval" 'BEGIN { sub(/s$/, "", i); printf "%d", s / i * r }')

python3 - "$repos" "$interval" "$seconds" "$rss_max" "$cpu0" "$cpu1" "$ticks" "$t0" "$t1" \
	"$((fetches1 - fetches0))" "$polls" <<'PY'
import sys
repos, interval, secs, rss, c0, c1, ticks, t0, t1, fetches, polls = sys.argv[1:]
cpu_s = (int(c1) - int(c0)) / int(ticks)
wall = float(t1) - float(t0)
pct = 100 * cpu_s / wall
print()
print("%-34s %12s %10s %8s" % ("kilnd idle", "measured", "target", "ok"))
print("-" * 68)
print("%-34s %12s" % ("repositories, poll interval", "%s, %s" % (repos, interval)))
print("%-34s %12s" % ("polls in the window (about)", polls))
print("%-34s %9.1f MiB %10s %8s" % ("peak RSS", int(rss) / 1024, "< 20 MiB", "yes" if int(rss) < 20 * 1024 else "NO"))
print("%-34s %10.2f %% %10s %8s" % ("CPU (one core) over %.0f s" % wall, pct, "< 1 %", "yes" if pct < 1 else "NO"))
print("%-34s %12s %10s %8s" % ("fetches", fetches, "0", "yes" if fetches == "0" else "NO"))
PY
