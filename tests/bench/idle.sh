#!/usr/bin/env bash
# idle.sh: kilnd watching 200 repositories that do not change, poll interval
# 10 s, in three cases side by side:
#   local  paths on this machine: kilnd sees their ref files unchanged and does
#          not even ask them (the friendly case, kept for comparison);
#   git    git:// URLs served by `git daemon` on 127.0.0.1: every poll is a
#          connection and a ref advertisement;
#   http   http:// URLs served by git http-backend (a CGI behind tests/bench/
#          git_http.py, Python's threaded HTTP server): every poll is a GET of
#          info/refs?service=git-upload-pack.
# After the first round of polls (the initial fetches) each case is measured
# over a window: CPU time of kilnd alone (utime + stime of /proc/PID/stat; the
# servers' CPU is theirs, not kilnd's) as % of one core, VmRSS at the end and
# VmHWM (peak since start, the first round included), polls and fetches in the
# window (from /metrics; fetches should be 0: nothing changes). With --runs R
# the cases run interleaved R times and the table shows medians.
#
#   tests/bench/idle.sh [KILND] [--repos N] [--seconds S] [--interval 10s]
#                       [--runs R] [--cases local,git,http] [--quick]
# --quick: 20 s windows, one run. Needs git (with git-daemon and
# git-http-backend), python3 and curl.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kilnd=${KILND:-$here/../../build/kilnd}
repos=200 seconds=60 interval=10s runs=3 cases=local,git,http
while [ $# -gt 0 ]; do
	case $1 in
	--repos) repos=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--interval) interval=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--cases) cases=$2; shift 2 ;;
	--quick) seconds=20 runs=1; shift ;;
	*) kilnd=$1; shift ;;
	esac
done
[ -x "$kilnd" ] || { echo "no kilnd at $kilnd" >&2; exit 2; }
for tool in git python3 curl; do
	command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

. "$here/lib.sh"
bench_workdir idle

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "creating $repos repositories..." >&2
mkdir -p "$work/src/img" "$work/served"
printf 'name: img\nversion: "1"\nregistry: reg.example.com\n' >"$work/src/img/manifest.yaml"
printf 'FROM scratch\n' >"$work/src/img/Dockerfile"
git -C "$work/src" init -q -b main
git -C "$work/src" add -A
git -C "$work/src" commit -q -m one
for i in $(seq 1 "$repos"); do
	git clone -q --bare "$work/src" "$work/served/r$i.git"
done

# servers for the remote cases, up for the whole run (their start is not
# kilnd's business)
gport=$(free_port)
git daemon --reuseaddr --listen=127.0.0.1 --port="$gport" --base-path="$work/served" \
	--export-all "$work/served" >/dev/null 2>"$work/gitd.log" &
pid="$pid $!"
hport=$(free_port)
python3 "$here/git_http.py" "$work/served" "$hport" >/dev/null 2>"$work/http.log" &
pid="$pid $!"
for _ in $(seq 1 50); do
	git ls-remote "git://127.0.0.1:$gport/r1.git" >/dev/null 2>&1 &&
		git ls-remote "http://127.0.0.1:$hport/r1.git" >/dev/null 2>&1 && break
	sleep 0.2
done
git ls-remote "git://127.0.0.1:$gport/r1.git" >/dev/null
git ls-remote "http://127.0.0.1:$hport/r1.git" >/dev/null

url_of() { # CASE I
	case $1 in
	local) echo "$work/served/r$2.git" ;;
	git) echo "git://127.0.0.1:$gport/r$2.git" ;;
	http) echo "http://127.0.0.1:$hport/r$2.git" ;;
	esac
}

metric() { # NAME: its value (summed over labels), or "" when kilnd has none
	curl -fsS "http://127.0.0.1:$mport/metrics" |
		awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2; f = 1 } END { if (f) printf "%d", s }'
}

ticks=$(getconf CLK_TCK)
results=$work/results
: >"$results"

# one_case CASE RUN: appends "CASE RUN cpu_pct rss_kib hwm_kib polls fetches wall" to $results
one_case() {
	local c=$1 d=$work/run-$1-$2 kpid first cpu0 cpu1 t0 t1 p0 p1 f0 f1 rss hwm
	mkdir -p "$d"
	mport=$(free_port)
	{
		echo "state_dir: $d/state"
		echo "builds: {dry_run: true}"
		echo "listen: {http: [\"127.0.0.1:$mport\"], status_socket: $d/kiln.sock}"
		echo "repositories:"
		for i in $(seq 1 "$repos"); do
			printf '  - {name: r%d, url: "%s", poll_interval: %s}\n' "$i" "$(url_of "$c" "$i")" "$interval"
		done
	} >"$d/kilnd.yaml"
	"$kilnd" --config "$d/kilnd.yaml" >"$d/kilnd.log" 2>&1 &
	kpid=$!
	pid="$pid $kpid"
	# warm-up: every repository has been polled, fetched and planned once
	for _ in $(seq 1 1200); do # 10 min: over http the plans queue behind 200 slow fetches
		[ "$(grep -c "first seen" "$d/kilnd.log")" -ge "$repos" ] && break
		sleep 0.5
	done
	first=$(grep -c "first seen" "$d/kilnd.log" || true)
	[ "$first" -ge "$repos" ] || {
		echo "$c: only $first of $repos repositories polled; kilnd's log:" >&2
		tail -5 "$d/kilnd.log" >&2; tail -5 "$work/http.log" >&2
		exit 1
	}
	sleep 2
	p0=$(metric kiln_polls_total) f0=$(metric kiln_fetches_total)
	cpu0=$(awk '{print $14 + $15}' "/proc/$kpid/stat")
	t0=$(date +%s.%N)
	sleep "$seconds"
	cpu1=$(awk '{print $14 + $15}' "/proc/$kpid/stat")
	t1=$(date +%s.%N)
	p1=$(metric kiln_polls_total) f1=$(metric kiln_fetches_total)
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$kpid/status")
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$kpid/status")
	kill -TERM "$kpid"
	wait "$kpid" || true
	pid=${pid% "$kpid"}
	# a kilnd without kiln_polls_total (older): polls estimated from the interval
	[ -n "$p0" ] || p0=x p1=x
	awk -v c="$c" -v r="$2" -v c0="$cpu0" -v c1="$cpu1" -v tk="$ticks" -v t0="$t0" -v t1="$t1" \
		-v rss="$rss" -v hwm="$hwm" -v p0="$p0" -v p1="$p1" -v f0="$f0" -v f1="$f1" \
		'BEGIN { w = t1 - t0; printf "%s %s %.3f %d %d %s %d %.1f\n", c, r,
			100 * (c1 - c0) / tk / w, rss, hwm, p0 == "x" ? "x" : p1 - p0, f1 - f0, w }' >>"$results"
	echo "$c run $2: $(tail -1 "$results")" >&2
	rm -rf "$d"
}

for r in $(seq 1 "$runs"); do
	for c in ${cases//,/ }; do
		one_case "$c" "$r"
	done
done

python3 - "$results" "$repos" "$interval" "$seconds" "$runs" <<'PY'
import statistics, sys
path, repos, interval, secs, runs = sys.argv[1:]
rows = {}
for line in open(path):
    c, r, cpu, rss, hwm, polls, fetches, wall = line.split()
    rows.setdefault(c, []).append((float(cpu), int(rss), int(hwm), polls, int(fetches)))
label = {"local": "local paths (friendly: refs unchanged, not asked)",
         "git": "git:// (git daemon, 127.0.0.1)",
         "http": "http:// (git http-backend CGI, 127.0.0.1)"}
med = lambda xs: statistics.median(xs)
print()
print("kilnd idle: %s repositories, poll interval %s, %s s windows, median of %s run(s)"
      % (repos, interval, secs, runs))
print()
print("| case | CPU, % of one core | VmRSS | VmHWM | polls in window | fetches | target met |")
print("|---|---:|---:|---:|---:|---:|---|")
for c in ("local", "git", "http"):
    if c not in rows:
        continue
    v = rows[c]
    cpu = med([x[0] for x in v]); rss = med([x[1] for x in v]); hwm = med([x[2] for x in v])
    polls = [x[3] for x in v]
    polls = "%d" % med([int(p) for p in polls]) if "x" not in polls else "n/a"
    fetches = max(x[4] for x in v)
    ok = cpu < 1 and rss < 20 * 1024 and hwm < 20 * 1024 and fetches == 0
    print("| %s | %.2f %% | %.1f MiB | %.1f MiB | %s | %d | %s |"
          % (label[c], cpu, rss / 1024, hwm / 1024, polls, fetches, "yes" if ok else "NO"))
print()
print("target: under 1 % of one core, under 20 MiB (VmRSS and VmHWM), no fetch")
PY
