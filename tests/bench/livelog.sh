#!/usr/bin/env bash
# livelog.sh (bench): what following a running build's log costs kilnd
# (issue #13: a live log viewer costs no more than `kiln logs -f`). A build
# is put in the state as running, with a log that already holds --log-kib
# KiB (a long build half way) and grows by --rate lines a second (default 20; colour codes
# in them, as builds print). Then, for S seconds, N followers of one kind:
#   none  nobody follows (kilnd's own idle cost, subtracted below);
#   sse   N dashboard viewers: /builds/ID/events, each an open stream from
#         where the log was when it began (as the build page's script asks);
#   logsf N `kiln logs -f ID` over the status socket.
# The cases run interleaved, --rounds times; each round's build is new. The
# cost is kilnd's CPU time (utime + stime of /proc/PID/stat) over the
# window, as % of one core; "per follower" subtracts the same round's none
# and divides by N. After the window the build ends (state succeeded) and
# every follower must have received the log's last line ("check"): the sse
# viewers as the stream's text, `kiln logs -f` as its output.
#
#   tests/bench/livelog.sh [KILND] [--kiln KILN] [--viewers N] [--seconds S]
#                          [--rounds R] [--log-kib K] [--rate LINES-PER-S]
# --rate 0: a build that prints nothing in the window (a long step), where
# a viewer's every look also asks for the state.
#
# Needs python3 and curl. Not run in CI.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
KILND=$here/../../build/kilnd KILN=
viewers=20 seconds=20 rounds=3 logkib=1024 rate=20
while [ $# -gt 0 ]; do
	case $1 in
	--kiln) KILN=$2; shift 2 ;;
	--viewers) viewers=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--log-kib) logkib=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	*) KILND=$1; shift ;;
	esac
done
KILND=$(realpath "$KILND")
KILN=$(realpath "${KILN:-$(dirname "$KILND")/kiln}")
bench_workdir livelog
cd "$work"

bench_origin_one_image
cat >kilnd.yaml <<Y
state_dir: $work/state
builds: {dry_run: true}
listen: {http: ["127.0.0.1:$port"], status_socket: $work/kiln.sock, dashboard: true,
         connections_per_client: 1000}
repositories:
  - {name: r0, url: $work/origin.git, poll_interval: 1h}
Y
"$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
kpid=$!
pid=$kpid
for _ in $(seq 100); do
	curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
	sleep 0.1
done
mkdir -p state/logs

sql() {
	python3 -c 'import sqlite3,sys
c = sqlite3.connect(sys.argv[1], timeout=30)
cur = c.execute(sys.argv[2], sys.argv[3:])
c.commit()
print(cur.lastrowid)' state/kilnd.db "$@"
}

cpu_ticks() {
	awk '{print $14 + $15}' "/proc/$kpid/stat"
}

# one round of one case: prints "case cpu% check"
run_case() {
	local kind=$1 id log wpid vpids= t0 t1 ok=0 i
	id=$(sql "INSERT INTO builds (repository, branch, path, image, commit_sha, change, state,
		attempts, created_at, started_at) VALUES ('r0', 'main', 'a', 'reg.example.com/t/a:1',
		'$(printf '%040d' 0)', 'modified', 'running', 1, 1, 2)")
	log=state/logs/$id.log
	python3 -c 'import sys
with open(sys.argv[1], "w") as f:
    n = 0
    while f.tell() < int(sys.argv[2]) * 1024:
        f.write("\x1b[32m#%d\x1b[0m step %d: RUN something <that> prints a line\n" % (n, n))
        n += 1' "$log" "$logkib"
	# the build's output: --rate lines a second until the file "stop" appears
	python3 -c 'import os,sys,time
n, rate = 0, float(sys.argv[3])
while not os.path.exists(sys.argv[2]):
    if rate > 0:
        with open(sys.argv[1], "a") as f:
            f.write("\x1b[33mlive %d\x1b[0m: compiling module %d of many\n" % (n, n))
        n += 1
    time.sleep(1 / rate if rate > 0 else 0.05)
with open(sys.argv[1], "a") as f:
    f.write("LAST LINE of build\n")' "$log" "stop.$id" "$rate" &
	wpid=$!
	case $kind in
	sse)
		python3 "$here/sse_viewers.py" "$port" "$id" "$viewers" "sse.$id" "$(stat -c %s "$log")" &
		vpids=$!
		;;
	logsf)
		for i in $(seq "$viewers"); do
			"$KILN" logs -f "$id" --socket kiln.sock >"logsf.$id.$i" 2>&1 &
			vpids="$vpids $!"
		done
		;;
	esac
	sleep 1
	t0=$(cpu_ticks)
	sleep "$seconds"
	t1=$(cpu_ticks)
	: >"stop.$id"
	wait "$wpid"
	sql "UPDATE builds SET state = 'succeeded', finished_at = 3 WHERE id = ?" "$id" >/dev/null
	for p in $vpids; do
		wait "$p" || true
	done
	case $kind in
	none) ok=1 ;;
	sse) [ "$(grep -c 'LAST LINE of build' "sse.$id" 2>/dev/null || echo 0)" = "$viewers" ] && ok=1 ;;
	logsf) [ "$(cat logsf."$id".* | grep -c 'LAST LINE of build')" = "$viewers" ] && ok=1 ;;
	esac
	echo "$kind $(python3 -c 'import os,sys; print("%.2f" % ((int(sys.argv[2]) - int(sys.argv[1])) / os.sysconf("SC_CLK_TCK") / int(sys.argv[3]) * 100))' "$t0" "$t1" "$seconds") $ok"
}

: >results
for r in $(seq "$rounds"); do
	for kind in none sse logsf; do
		run_case "$kind" | tee -a results >&2
	done
done
python3 - "$viewers" "$seconds" "$rounds" "$logkib" results "$rate" <<'PY'
import statistics, sys
n, secs, rounds, kib = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rate = sys.argv[6]
rows = [l.split() for l in open(sys.argv[5])]
by = {}
for kind, cpu, ok in rows:
    by.setdefault(kind, []).append((float(cpu), ok == "1"))
none = [c for c, _ in by["none"]]
print("%d followers, %d s windows, %d rounds, a log of %d KiB growing %s lines/s;"
      " kilnd CPU, %% of one core (medians)" % (n, secs, rounds, kib, rate))
print("| followers | kilnd CPU % | per follower, above none | check |")
print("| --- | ---: | ---: | --- |")
labels = {"none": "none", "sse": "%d dashboard viewers (SSE)" % n, "logsf": "%d `kiln logs -f`" % n}
for kind in ("none", "sse", "logsf"):
    cpus = [c for c, _ in by[kind]]
    per = [(c - z) / n for c, z in zip(cpus, none)]
    print("| %s | %.2f | %s | %s |" % (labels[kind], statistics.median(cpus),
          "–" if kind == "none" else "%.3f" % statistics.median(per),
          "ok" if all(o for _, o in by[kind]) else "FAILED"))
PY
