#!/usr/bin/env bash
# dashboard_browser.sh: the dashboard in a real browser (headless Chromium
# through Selenium and chromium-driver; lib/dashboard_browser.py says what
# it checks): the pages render, a running build's log grows on screen,
# markup from a folder name and a log is text, the filters work, no request
# leaves 127.0.0.1. kilnd builds on the stand-in engine (lib/
# hostile_engine.py, build_drip: a line every 250 ms for 10 s), one build
# at a time. Root only (Chromium runs with --no-sandbox); a skip fails under
# CI=true.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}" "${KILN:?}"
LIB=$(cd "$(dirname "$0")/lib" && pwd)
EVIL='<img src=x onerror=alert(1)>'

[ "$(id -u)" = 0 ] || skip_all "not root (Chromium runs here with --no-sandbox)"
# Debian's python3, where python3-selenium is (a pyenv or venv python3 on
# PATH has no selenium)
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
command -v chromium >/dev/null && command -v chromedriver >/dev/null ||
	skip_all "chromium or chromium-driver is not installed (packaging/deps.sh --tests)"
"$PY" -c 'import selenium' 2>/dev/null || skip_all "python3-selenium is not installed"

t_browser() {
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
	(cd c && image app app 1 && image "$EVIL" evil 1 && commit 'one <script>alert(2)</script>' &&
		git push -q origin HEAD:main)
	echo build_drip >mode
	python3 "$LIB/hostile_engine.py" "$PWD/e.sock" "$PWD/mode" 2>engine.log &
	track_pid $!
	wait_for 10 test -S e.sock || fail "the stand-in engine did not start: $(cat engine.log)"
	PORT=$(free_port)
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	docker: {host: "unix://$PWD/e.sock"}
	builds: {concurrency: 1, retries: 0, builder: classic}
	listen: {http: ["127.0.0.1:$PORT"], status_socket: $PWD/kiln.sock, dashboard: true}
	repositories:
	  - name: images
	    url: $PWD/origin.git
	    poll_interval: 60s
	    build_on_start: all
	Y
	"$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" || fail "kilnd did not listen: $(tail -3 kilnd.log)"
	"$PY" "$LIB/dashboard_browser.py" "http://127.0.0.1:$PORT" "$EVIL"
	case $? in
	0) ;;
	77) skip "chromium cannot start" ;;
	*) fail "the browser saw the failures above (kilnd: $(grep -c . kilnd.log) log lines)" ;;
	esac
	kill -TERM "$KPID" && wait "$KPID" || fail "kilnd did not stop cleanly"
}

run_all
