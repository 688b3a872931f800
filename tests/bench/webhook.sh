#!/usr/bin/env bash
# webhook.sh: wrk against kilnd's webhook endpoint and against Debian's
# `webhook` (adnanh/webhook) with the equivalent HMAC rule, same machine, same
# run: a signed 7 KB GitHub push payload, concurrency 1, 16 and 64.
#
#   tests/bench/webhook.sh [KILND] [--seconds S]
#
# Both check the X-Hub-Signature-256 HMAC of the body. The request is the
# same each time (one delivery id): kilnd answers the redelivery after a
# database lookup, adnanh/webhook runs its command (/bin/true) each time.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kilnd=${KILND:-$here/../../build/kilnd}
seconds=10
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=$2; shift 2 ;;
	*) kilnd=$1; shift ;;
	esac
done
for tool in wrk webhook python3; do
	command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk webhook)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-webhook.XXXXXX")
kpid= wpid=
cleanup() {
	for p in $kpid $wpid; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
export GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@example.invalid GIT_COMMITTER_NAME=b \
	GIT_COMMITTER_EMAIL=b@example.invalid GIT_CONFIG_NOSYSTEM=1 HOME=$work
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
# a 7 KB push payload, signed; wrk sends it with the headers GitHub sends
python3 - "$work" "$secret" <<'PY'
import hashlib, hmac, json, sys
work, secret = sys.argv[1], sys.argv[2]
commits = [{"id": "%040x" % i, "message": "change %d" % i, "added": [], "removed": [],
            "modified": ["images/img%05d/src/app.txt" % i]} for i in range(40)]
body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
                   "repository": {"full_name": "team/images"}, "commits": commits})
body = body[:7168] if len(body) > 7168 else body + " " * (7168 - len(body))
body = body.rstrip() + "}" * 0
sig = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
lua = """wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-GitHub-Delivery"] = "bench-delivery-1"
wrk.headers["X-Hub-Signature-256"] = "%s"
""" % (json.dumps(body), sig)
open(work + "/post.lua", "w").write(lua)
json.loads(body)  # the payload stays valid JSON
PY

"$kilnd" --config "$work/kilnd.yaml" --log-level warning >"$work/kilnd.log" 2>&1 &
kpid=$!
webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$wport" >"$work/webhook.log" 2>&1 &
wpid=$!
for _ in $(seq 1 50); do
	curl -s -o /dev/null "http://127.0.0.1:$kport/healthz" && curl -s -o /dev/null "http://127.0.0.1:$wport/" && break
	sleep 0.1
done
# both must accept the signed request (and refuse a bad one) before we time them
check() { curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	-H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: bench-delivery-1' -H "X-Hub-Signature-256: $2" \
	--data-binary @"$work/body" "$1"; }
python3 -c "
import re; s = open('$work/post.lua').read()
import json; body = json.loads(re.search(r'wrk.body = (\".*\")\n', s).group(1))
open('$work/body', 'w').write(body)"
sig=$(sed -n 's/.*X-Hub-Signature-256"\] = "\(.*\)"/\1/p' "$work/post.lua")
k=$(check "http://127.0.0.1:$kport/hooks/images" "$sig")
w=$(check "http://127.0.0.1:$wport/hooks/images" "$sig")
kb=$(check "http://127.0.0.1:$kport/hooks/images" "sha256=00")
wb=$(check "http://127.0.0.1:$wport/hooks/images" "sha256=00")
echo "signed request: kilnd $k, adnanh/webhook $w; bad signature: kilnd $kb, adnanh/webhook $wb" >&2
case "$k$w" in 202200 | 200200) ;; *) echo "a server refused the signed request" >&2; exit 1 ;; esac

run() { # URL CONNECTIONS -> "rps p99_ms"
	wrk -t "$(($2 < 2 ? 1 : 2))" -c "$2" -d "${seconds}s" --latency -s "$work/post.lua" "$1" 2>&1 |
		awk '/Requests\/sec/ {rps = $2} / 99%/ {p = $2} END {
			if (p ~ /us$/) { sub(/us$/, "", p); p /= 1000 }
			else if (p ~ /ms$/) { sub(/ms$/, "", p) }
			else if (p ~ /s$/) { sub(/s$/, "", p); p *= 1000 }
			printf "%.0f %.2f\n", rps, p }'
}

# each server alone on the machine while it is measured: kilnd first, then
# adnanh/webhook (whose commands could otherwise still run during kilnd's turn)
kill -STOP "$wpid"
for c in 1 16 64; do
	eval "k$c=\"\$(run http://127.0.0.1:$kport/hooks/images $c)\""
done
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$kpid/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$kpid/status")
kill -STOP "$kpid"
kill -CONT "$wpid"
sleep 1
for c in 1 16 64; do
	eval "w$c=\"\$(run http://127.0.0.1:$wport/hooks/images $c)\""
done
kill -CONT "$kpid"

printf '\n%-6s | %12s %10s | %14s %10s | %8s\n' conns "kilnd req/s" "p99 ms" "webhook req/s" "p99 ms" ratio
echo "----------------------------------------------------------------------------"
for c in 1 16 64; do
	eval "set -- \$k$c \$w$c"
	printf '%-6s | %12s %10s | %14s %10s | %7.1fx\n' "$c" "$1" "$2" "$3" "$4" \
		"$(python3 -c "print($1 / max($3, 1))")"
done
echo
echo "kilnd RSS after the load: $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB); ${seconds}s per cell, wrk --latency p99."
