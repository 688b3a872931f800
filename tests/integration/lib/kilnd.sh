# kilnd.sh: helpers for scenarios that run the real kilnd on one repository
# (sourced after common.sh): a bare origin with two images, pushes, the
# configuration, start and stop with a NOTIFY_SOCKET listener, and the state
# database read with python's sqlite3.
: "${KILND:?set KILND to the kilnd executable}"
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# origin DIR: a bare repository with two images (app builds FROM base)
origin() {
	local dir=$1 work
	work=$(mktemp -d "$TEST_TMP/work.XXXXXX")
	git init -q --bare -b main "$dir"
	git clone -q "$dir" "$work/c" 2>/dev/null
	(
		cd "$work/c" || exit 1
		image base base 1
		manifest base base 1 "tags: [latest]"
		image app app 1 reg.example.com:5000/team/base:latest
		commit initial
		git push -q origin HEAD:main
	)
	echo "$work/c"
}

# push CLONE FILE: commits a change to FILE in the clone and pushes it
push() {
	(cd "$1" && echo "$RANDOM$RANDOM" >>"$2" && git add -A && git commit -qm "change $2" &&
		git push -q origin HEAD:main)
}

# config STATE URL INTERVAL [HTTP-PORT]: one repository, "images"; with a
# port, a listener there and a github webhook whose secret is "topsecret"
config() {
	local http=
	[ -z "${4:-}" ] || http=", http: [\"127.0.0.1:$4\"]"
	cat <<-Y
	state_dir: $1
	builds: {dry_run: true}
	listen: {status_socket: $1.sock$http}
	shutdown_grace: 5s
	repositories:
	  - name: images
	    url: $2
	    poll_interval: $3
	Y
	if [ -n "${4:-}" ]; then
		printf 'topsecret' >"$1.secret"
		echo "    webhook: {provider: github, secret_file: $1.secret}"
	fi
}

start_kilnd() { # CONFIG
	NOTES="$PWD/notify.log"
	: >"$NOTES"
	python3 "$LIB/notify_listen.py" "$PWD/notify.sock" "$NOTES" &
	track_pid $!
	wait_for 5 test -S "$PWD/notify.sock" || fail "notify socket did not appear"
	NOTIFY_SOCKET="$PWD/notify.sock" "$KILND" --config "$1" --log-level debug >>kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "READY=1" "$NOTES" || fail "no READY=1 (log: $(tail -5 kilnd.log))"
}

stop_kilnd() {
	kill -TERM "$KPID"
	wait "$KPID"
	local rc=$?
	[ "$rc" = 0 ] || fail "kilnd exited $rc after SIGTERM"
}

db() { # DB SQL -> rows, fields separated by |; a change is committed
	python3 - "$1" "$2" <<-'PY'
	import sqlite3, sys
	con = sqlite3.connect(sys.argv[1])
	for row in con.execute(sys.argv[2]):
	    print("|".join("" if v is None else str(v) for v in row))
	con.commit()
	PY
}

builds_for() { # STATE COMMIT -> "path state" lines
	db "$1/kilnd.db" "SELECT path, state FROM builds WHERE commit_sha = '$2' ORDER BY path"
}
