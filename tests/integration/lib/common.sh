# common.sh: helpers for integration scenarios (sourced). Each scenario is a
# shell function named t_*; run_all runs them in order, each in a fresh
# directory, and prints "N passed, M failed". KILN_ONLY=PREFIX runs
# only the scenarios whose name starts with t_PREFIX.
set -u

: "${KILN:?set KILN to the kiln executable}"
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kiln-it.XXXXXX")
# Every background process a scenario starts is listed here and stopped, by
# pid, when the scenario ends (and again when the script exits).
kill_tracked() {
	local p
	[ -f "$TEST_TMP/pids" ] || return 0
	while read -r p; do
		kill -TERM "$p" 2>/dev/null
	done <"$TEST_TMP/pids"
	sleep 0.2
	while read -r p; do
		kill -KILL "$p" 2>/dev/null
	done <"$TEST_TMP/pids"
	: >"$TEST_TMP/pids"
}
track_pid() {
	echo "$1" >>"$TEST_TMP/pids"
}
trap 'kill_tracked; chmod -R u+w "$TEST_TMP" 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
# a test killed by ctest's timeout or ^C still cleans up: exit runs the EXIT trap
trap 'exit 143' TERM
trap 'exit 130' INT
export GIT_AUTHOR_NAME=kiln GIT_AUTHOR_EMAIL=kiln@example.invalid
export GIT_COMMITTER_NAME=kiln GIT_COMMITTER_EMAIL=kiln@example.invalid
export GIT_CONFIG_NOSYSTEM=1 HOME="$TEST_TMP"
git config --global init.defaultBranch main
git config --global protocol.file.allow always

# Under the sanitizer build every report lands in a file; any file fails the run,
# also for calls whose exit status a scenario does not check.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:log_path=$TEST_TMP/sanitizer"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:log_path=$TEST_TMP/sanitizer:print_stacktrace=1"

# free_port: a loopback TCP port nothing listens on now (the kernel's choice,
# not a random guess that may collide with another test's listener)
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

FAILS=0
failed_now=0

fail() {
	echo "  FAIL: $*" >&2
	failed_now=1
}

# new_repo: a fresh repository in the current directory
new_repo() {
	git init -q .
}

# manifest DIR NAME VERSION [extra yaml lines...]
manifest() {
	local dir=$1 name=$2 version=$3
	shift 3
	mkdir -p "$dir"
	{
		echo "name: $name"
		echo "version: \"$version\""
		echo "registry: reg.example.com:5000/team"
		for l in "$@"; do echo "$l"; done
	} >"$dir/manifest.yaml"
}

# image DIR NAME VERSION [FROM-line]: a manifest plus a Dockerfile
image() {
	local dir=$1 name=$2 version=$3 from=${4:-scratch}
	manifest "$dir" "$name" "$version"
	printf 'FROM %s\nCOPY . /\n' "$from" >"$dir/Dockerfile"
}

commit() {
	git add -A && git commit -q --allow-empty -m "${1:-change}"
}

# expect_changes FROM TO: compares kiln's text output with stdin, rc 0
expect_changes() {
	local want got rc
	want=$(cat)
	got=$("$KILN" changes "$@" 2>"$TEST_TMP/stderr")
	rc=$?
	if [ "$rc" != 0 ]; then
		fail "kiln changes $* exited $rc: $(cat "$TEST_TMP/stderr")"
	fi
	if [ "$got" != "$want" ]; then
		fail "kiln changes $*: output differs"
		diff <(echo "$want") <(echo "$got") | sed 's/^/    /' >&2
	fi
}

# expect_rc RC CMD...: runs CMD, checks its exit status; output in $OUT / $ERR
expect_rc() {
	local want=$1 rc
	shift
	"$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
	rc=$?
	OUT=$(cat "$TEST_TMP/out")
	ERR=$(cat "$TEST_TMP/err")
	[ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want (stderr: $ERR)"
}

contains() {
	case "$1" in *"$2"*) return 0 ;; esac
	fail "expected to find '$2' in: $1"
}

# serve_git DIR: `git daemon` exporting the repositories under DIR on
# 127.0.0.1 (stopped with the scenario); sets GIT_PORT and GIT_PID, fails if
# it won't start
serve_git() {
	GIT_PORT=$(free_port)
	git daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_PORT" --base-path="$1" \
		--export-all --pid-file="$1/.gitd.pid" --detach "$1" &&
		wait_for 5 test -s "$1/.gitd.pid" || { fail "git daemon did not start"; return 1; }
	GIT_PID=$(cat "$1/.gitd.pid")
	track_pid "$GIT_PID"
}

run_all() {
	local t passed=0
	for t in $(declare -F | awk '{print $3}' | grep "^t_${KILN_ONLY:-}"); do
		mkdir "$TEST_TMP/$t"
		failed_now=0
		(
			cd "$TEST_TMP/$t" || exit 1
			"$t"
			exit "$failed_now"
		) || failed_now=1
		kill_tracked
		if [ "$failed_now" = 0 ]; then
			passed=$((passed + 1))
			echo "ok   $t"
		else
			FAILS=$((FAILS + 1))
			echo "FAIL $t"
		fi
	done
	if ls "$TEST_TMP"/sanitizer.* >/dev/null 2>&1; then
		echo "sanitizer reports:" >&2
		cat "$TEST_TMP"/sanitizer.* >&2
		FAILS=$((FAILS + 1))
	fi
	echo "$passed passed, $FAILS failed"
	[ "$FAILS" = 0 ]
}

# wait_for SECONDS CMD...: true once CMD succeeds, false after SECONDS
wait_for() {
	local limit=$1 i=0
	shift
	while ! "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -ge $((limit * 20)) ] && return 1
		sleep 0.05
	done
	return 0
}
