#!/usr/bin/env bash
# dashboard.sh (bench): the dashboard's pages with 100,000 builds in the
# state (issue #13: a page of 50 builds in < 10 ms server time). kilnd (dry
# run, one repository) makes its database; the builds are then written into
# it (10 repositories, 400 image folders, 1% failed, a log for the newest),
# kilnd starts again with listen.dashboard, and each page is asked for
# over one keep-alive connection: the time from the request's last byte to
# the answer's last byte (localhost: the server's time plus a loopback
# round trip). Rounds: every page once per round, so a load that comes and
# goes touches all of them; the table has the median and the 90th
# percentile of each.
#
#   tests/bench/dashboard.sh [KILND] [--builds N] [--rounds N]
#
# Needs python3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
KILND=$here/../../build/kilnd
builds=100000 rounds=200
while [ $# -gt 0 ]; do
	case $1 in
	--builds) builds=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	*) KILND=$1; shift ;;
	esac
done
KILND=$(realpath "$KILND")
bench_workdir dashboard
cd "$work"

bench_origin_one_image
cat >kilnd.yaml <<Y
state_dir: $work/state
builds: {dry_run: true}
listen: {http: ["127.0.0.1:$port"], status_socket: $work/kiln.sock, dashboard: true}
repositories:
  - {name: r0, url: $work/origin.git, poll_interval: 1h}
Y
# once to make the database, then stopped while the builds are written
"$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
pid=$!
for _ in $(seq 100); do
	curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
	sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || true
pid=
python3 - "$work/state/kilnd.db" "$builds" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
now = int(time.time())
rows = []
for i in range(n):
    state = "failed" if i % 100 == 7 else "succeeded"
    rows.append(("r%d" % (i % 10), "main", "images/p%d" % (i % 400),
                 "reg.example.com/t/p%d:%d" % (i % 400, i // 400), "%040x" % i, "modified",
                 state, 1, now - n + i, now - n + i, now - n + i + 30,
                 "step 3 failed" if state == "failed" else None,
                 None if state == "failed" else "sha256:%064x" % i, "buildkit"))
c.executemany("INSERT INTO builds (repository, branch, path, image, commit_sha, change, state,"
              " attempts, created_at, started_at, finished_at, error, digest, builder)"
              " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
c.commit()
PY
top=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT max(id) FROM builds").fetchone()[0])' "$work/state/kilnd.db")
mkdir -p state/logs
python3 -c 'import sys
with open(sys.argv[1], "w") as f:
    for i in range(2000):
        f.write("\x1b[32m#%d\x1b[0m step %d: RUN something <that> prints a line\n" % (i, i))' "state/logs/$top.log"
"$KILND" --config kilnd.yaml >>kilnd.log 2>&1 &
pid=$!
for _ in $(seq 100); do
	curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
	sleep 0.1
done
python3 - "$port" "$rounds" "$top" "$builds" <<'PY'
import http.client, statistics, sys, time
port, rounds, top, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pages = [
    ("/builds", "newest 50"),
    ("/builds?before=%d" % (top - n // 2), "50 from the middle"),
    ("/builds?before=%d" % (top - n + 60), "the oldest page"),
    ("/builds?state=failed", "state=failed (1%)"),
    ("/builds?state=failed&before=%d" % (top - n // 2), "state=failed, middle"),
    ("/builds?repository=r3", "repository (1 of 10)"),
    ("/builds?image=images/p123", "image folder (1 of 400)"),
    ("/builds?image=reg.example.com/t/p5:%d" % ((n - 1) // 400), "image reference (1 build)"),
    ("/builds?repository=r7&state=failed", "repository + state"),
    ("/builds/%d" % (top - n // 2), "one build"),
    ("/builds/%d" % top, "one build, 2,000-line log"),
    ("/builds/%d/log?offset=0" % top, "live log from 0"),
    ("/", "repositories"),
]
conn = http.client.HTTPConnection("127.0.0.1", port)
times = {p: [] for p, _ in pages}
sizes = {}
for r in range(rounds + 3):
    for p, _ in pages:
        t0 = time.perf_counter()
        conn.request("GET", p)
        resp = conn.getresponse()
        body = resp.read()
        dt = time.perf_counter() - t0
        if resp.status != 200:
            sys.exit("%s: %d %s" % (p, resp.status, body[:200]))
        sizes[p] = len(body)
        if r >= 3:  # the first rounds warm the page cache
            times[p].append(dt * 1000)
print("%d builds, %d rounds; ms from request to the whole answer (loopback)" % (n, rounds))
print("| page | query | bytes | median ms | p90 ms |")
print("| --- | --- | ---: | ---: | ---: |")
for p, what in pages:
    t = sorted(times[p])
    print("| %s | `%s` | %d | %.2f | %.2f |" % (what, p, sizes[p], statistics.median(t),
                                              t[int(len(t) * 0.9)]))
PY
