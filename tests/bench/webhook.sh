#!/usr/bin/env bash
# webhook.sh: wrk against kilnd's webhook endpoint and against Debian's
# `webhook` (adnanh/webhook) with the equivalent HMAC rule, same machine, same
# run: a signed 7 KB GitHub push payload, concurrency 1, 16 and 64.
#
#   tests/bench/webhook.sh [KILND] [--seconds S] [--runs N] [--quick]
#
# The real workload: every request carries a new X-GitHub-Delivery (wrk's
# request() makes one per request, unique across threads, connections and
# runs), so kilnd records each one durably before its 202. adnanh/webhook
# checks the same X-Hub-Signature-256 HMAC (rule payload-hmac-sha256) and runs
# its command, /bin/true, for each hit: it has no mode that answers without
# running one, and that is the verify path the issue measured. The friendly
# row repeats one delivery id (kilnd answers the redelivery from memory);
# adnanh/webhook does the same work for any id, so its c=16 figure is the one
# beside it.
#
# Cells are medians of --runs runs (default 3, kilnd and adnanh/webhook
# interleaved, each alone: the other is stopped with SIGSTOP). After the
# unique-id runs the script checks that kilnd's database holds exactly the
# deliveries it acknowledged (kiln_webhook_deliveries_total{result=accepted})
# and that wrk saw no more 2xx than that. fsyncs per request: a separate
# short c=16 run under `strace -f -c -e trace=fsync,fdatasync` (all of
# kilnd's threads), calls divided by the requests acknowledged in it.
# --quick: 3 s cells, one run. Needs wrk, webhook, python3, curl, strace.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kilnd=${KILND:-$here/../../build/kilnd}
seconds=10 runs=3
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--quick) seconds=3 runs=1; shift ;;
	*) kilnd=$1; shift ;;
	esac
done
for tool in wrk webhook python3 curl strace; do
	command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk webhook strace)" >&2; exit 2; }
done
. "$here/lib.sh"
bench_workdir webhook
secret=bench-secret-0123456789
kport=$((30000 + RANDOM % 10000))
wport=$((kport + 1))

git init -q --bare -b main "$work/origin.git"
git clone -q "$work/origin.git" "$work/c" 2>/dev/null
(cd "$work/c" && mkdir a && printf 'name: a\nversion: "1"\nregistry: r.example.com\n' >a/manifest.yaml &&
	echo 'FROM scratch' >a/Dockerfile && git add -A && git commit -qm one && git push -q origin HEAD:main)
printf '%s' "$secret" >"$work/hook.secret"
cat >"$work/kilnd.yaml" <<Y
state_dir: $work/state
builds: {dry_run: true}
listen: {http: ["127.0.0.1:$kport"], status_socket: $work/kiln.sock}
repositories:
  - name: images
    url: $work/origin.git
    poll_interval: 1h
    webhook: {provider: github, secret_file: hook.secret}
Y
cat >"$work/hooks.json" <<J
[{"id": "images", "execute-command": "/bin/true", "response-message": "ok",
  "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "$secret",
                             "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}}]
J
# a 7 KB push payload, signed; wrk sends it with the headers GitHub sends.
# unique.lua: a new delivery id per request ("<run>-<thread>-<n>"); its
# done() prints the 2xx/3xx count. friendly.lua: one id, always.
python3 - "$work" "$secret" <<'PY'
import hashlib, hmac, json, sys
work, secret = sys.argv[1], sys.argv[2]
commits = [{"id": "%040x" % i, "message": "change %d" % i, "added": [], "removed": [],
            "modified": ["images/img%05d/src/app.txt" % i]} for i in range(40)]
body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
                   "repository": {"full_name": "team/images"}, "commits": commits})
body = body[:7168] if len(body) > 7168 else body + " " * (7168 - len(body))
json.loads(body)  # the payload stays valid JSON
sig = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
open(work + "/body", "w").write(body)
open(work + "/sig", "w").write(sig)
common = """wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = "%s"
""" % (json.dumps(body), sig)
open(work + "/friendly.lua", "w").write(common + 'wrk.headers["X-GitHub-Delivery"] = "bench-delivery-1"\n')
open(work + "/unique.lua", "w").write(common + """
local threads, next_id = {}, 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
local run, n = "", 0
function init(args)
  run = args[1] or "r"
end
function request()
  n = n + 1
  wrk.headers["X-GitHub-Delivery"] = string.format("%s-%d-%d", run, tid, n)
  return wrk.format()
end
function done(summary, latency, requests)
  io.write(string.format("ok2xx %d\\n", summary.requests - summary.errors.status))
end
""")
PY
sig=$(cat "$work/sig")

"$kilnd" --config "$work/kilnd.yaml" --log-level warning >"$work/kilnd.log" 2>&1 &
kpid=$!
webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$wport" >"$work/webhook.log" 2>&1 &
wpid=$!
pid="$kpid $wpid"
for _ in $(seq 1 100); do
	curl -s -o /dev/null "http://127.0.0.1:$kport/healthz" && curl -s -o /dev/null "http://127.0.0.1:$wport/" && break
	sleep 0.1
done
# both must accept the signed request (and refuse a bad one) before we time them
check() { curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	-H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: $3" -H "X-Hub-Signature-256: $2" \
	--data-binary @"$work/body" "$1"; }
k=$(check "http://127.0.0.1:$kport/hooks/images" "$sig" bench-delivery-1)
w=$(check "http://127.0.0.1:$wport/hooks/images" "$sig" bench-delivery-1)
kb=$(check "http://127.0.0.1:$kport/hooks/images" "sha256=00" bench-bad)
wb=$(check "http://127.0.0.1:$wport/hooks/images" "sha256=00" bench-bad)
echo "signed request: kilnd $k, adnanh/webhook $w; bad signature: kilnd $kb, adnanh/webhook $wb" >&2
case "$k$w" in 202200) ;; *) echo "a server refused the signed request" >&2; exit 1 ;; esac

accepted() { # kilnd's count of 202s
	curl -s "http://127.0.0.1:$kport/metrics" |
		awk '/^kiln_webhook_deliveries_total\{result="accepted"\}/ {print $2}'
}
commits() { # kilnd's delivery transactions (0 before it counted them)
	curl -s "http://127.0.0.1:$kport/metrics" | awk '/^kiln_webhook_commits_total / {n = $2} END {print n + 0}'
}
db_count() {
	python3 -c "import sqlite3, sys; d = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)
print(d.execute(\"SELECT count(*) FROM deliveries WHERE source = 'webhook'\").fetchone()[0])" \
		"$work/state/kilnd.db"
}
seq_run=0
wrk_2xx=0
run() { # URL CONNECTIONS SCRIPT [SECONDS] -> "rps p99_ms"; adds kilnd's unique.lua 2xx to wrk_2xx
	local out
	seq_run=$((seq_run + 1))
	out=$(wrk -t "$(($2 < 2 ? 1 : 2))" -c "$2" -d "${4:-$seconds}s" --latency -s "$work/$3" "$1" -- "r$seq_run")
	case $1$3 in *:$kport/*unique.lua) wrk_2xx=$((wrk_2xx + $(awk '/^ok2xx/ {print $2}' <<<"$out"))) ;; esac
	awk '/Requests\/sec/ {rps = $2} / 99%/ {p = $2} END {
		if (p ~ /us$/) { sub(/us$/, "", p); p /= 1000 }
		else if (p ~ /ms$/) { sub(/ms$/, "", p) }
		else if (p ~ /s$/) { sub(/s$/, "", p); p *= 1000 }
		printf "%.0f %.2f\n", rps, p }' <<<"$out"
}
alone() { # kilnd|webhook: the other one stopped
	if [ "$1" = kilnd ]; then kill -STOP "$wpid"; kill -CONT "$kpid"; else kill -STOP "$kpid"; kill -CONT "$wpid"; fi
	sleep 0.5
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

before_db=$(db_count) before_acc=$(accepted) before_commits=$(commits)
for r in $(seq 1 "$runs"); do
	for c in 1 16 64; do
		alone kilnd
		run "http://127.0.0.1:$kport/hooks/images" "$c" unique.lua >>"$work/k$c"
		alone webhook
		run "http://127.0.0.1:$wport/hooks/images" "$c" unique.lua >>"$work/w$c"
	done
done
alone kilnd
sleep 2 # the last answers wrk stopped waiting for; kilnd trims its heap 1 s after them
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$kpid/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$kpid/status")
acc=$(($(accepted) - before_acc)) db=$(($(db_count) - before_db)) ok2xx=$wrk_2xx ncommits=$(($(commits) - before_commits))
for r in $(seq 1 "$runs"); do
	run "http://127.0.0.1:$kport/hooks/images" 16 friendly.lua >>"$work/kf"
done
# fsyncs per acknowledged delivery, all threads, a short unique-id run
acc0=$(accepted)
strace -f -c -e trace=fsync,fdatasync -o "$work/strace" -p "$kpid" 2>/dev/null &
spid=$!
pid="$pid $spid"
sleep 1
run "http://127.0.0.1:$kport/hooks/images" 16 unique.lua 3 >/dev/null
sleep 0.5
kill -INT "$spid"
wait "$spid" 2>/dev/null || true
syncs=$(awk '$NF == "fsync" || $NF == "fdatasync" {n += $4} END {print n + 0}' "$work/strace")
acc_s=$(($(accepted) - acc0))
kill -CONT "$wpid"

col() { awk -v f="$2" '{print $f}' "$work/$1" | median; }
echo
echo "| delivery ids | conns | kilnd req/s | kilnd p99 ms | adnanh/webhook req/s | adnanh/webhook p99 ms | ratio |"
echo "|---|---|---|---|---|---|---|"
for c in 1 16 64; do
	kr=$(col "k$c" 1) kp=$(col "k$c" 2) wr=$(col "w$c" 1) wp=$(col "w$c" 2)
	printf '| new per request | %s | %s | %s | %s | %s | %sx |\n' "$c" "$kr" "$kp" "$wr" "$wp" \
		"$(python3 -c "print('%.2f' % ($kr / max($wr, 1)))")"
done
kr=$(col kf 1) kp=$(col kf 2) wr=$(col w16 1) wp=$(col w16 2)
printf '| friendly: one repeated id | 16 | %s | %s | %s | %s | %sx |\n' "$kr" "$kp" "$wr" "$wp" \
	"$(python3 -c "print('%.2f' % ($kr / max($wr, 1)))")"
echo
echo "kilnd RSS 2 s after the unique-id load: $((rss / 1024)) MiB ($rss KiB; peak $((hwm / 1024)) MiB)."
echo "fsync+fdatasync per acknowledged delivery (strace, c=16, 3 s): $syncs / $acc_s = $(python3 -c "print('%.3f' % ($syncs / max($acc_s, 1)))")."
echo "kilnd's own count (kiln_webhook_commits_total, unique-id runs): $ncommits delivery commits for $acc deliveries = $(python3 -c "print('%.3f' % ($ncommits / max($acc, 1)))") per delivery (0 on a kilnd that does not count them)."
echo "deliveries: kilnd acknowledged (202) $acc, recorded in its database $db, wrk counted $ok2xx 2xx" \
	"(wrk does not count answers still in flight when it stops: up to 64 fewer)."
echo "${seconds}s per cell, median of $runs run(s), wrk --latency p99."
if [ "$acc" != "$db" ] || [ "$ok2xx" -gt "$acc" ]; then
	echo "MISMATCH: acknowledged and recorded deliveries differ" >&2
	exit 1
fi
