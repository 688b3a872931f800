# common.sh: helpers for integration scenarios (sourced). Each scenario is a
# shell function named t_*; run_all runs them in order, each in a fresh
# directory, and prints "N passed, S skipped, M failed". KILN_ONLY=PREFIX runs
# only the scenarios whose name starts with t_PREFIX.
#
# A skip is never a pass: a scenario that cannot run here calls `skip REASON`
# and returns, a script that cannot run at all calls skip_all. Any skip makes
# the script exit 77 (ctest's SKIP_RETURN_CODE); under CI=true a skip is a
# failure instead.
set -u

: "${KILN:?set KILN to the kiln executable}"
# abs_path VAR: a relative path in VAR made absolute, since scenarios run in
# directories of their own (a bare command name is left to PATH)
abs_path() {
	local v
	eval "v=\${$1:-}"
	case $v in
	/* | "") ;;
	*/*) eval "$1=\$PWD/\$v" ;;
	esac
}
abs_path KILN
abs_path KILND
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
# kill_tree PID: PID and every process below it, by pid. PID is stopped
# first so that it cannot start another child while its children are listed.
kill_tree() {
	local c
	kill -STOP "$1" 2>/dev/null || return 0
	for c in $(pgrep -P "$1"); do
		kill_tree "$c"
	done
	kill -TERM "$1" 2>/dev/null
	kill -CONT "$1" 2>/dev/null
}
# at_exit CMD: CMD runs when the script ends, however it ends, after the
# running scenario is stopped and before the tracked processes are
EXIT_HOOKS=
at_exit() {
	EXIT_HOOKS="$EXIT_HOOKS$1;"
}
SCENARIO_PID=
cleanup() {
	trap '' INT TERM HUP # a second ^C must not cut the cleanup short
	[ -n "$SCENARIO_PID" ] && kill_tree "$SCENARIO_PID"
	eval "$EXIT_HOOKS"
	kill_tracked
	chmod -R u+w "$TEST_TMP" 2>/dev/null
	rm -rf --one-file-system "$TEST_TMP"
}
trap cleanup EXIT
# interrupted (^C, ctest's timeout, a closed terminal): exit runs the EXIT trap
trap 'echo "SIGHUP: stopping what the tests started" >&2; exit 129' HUP
trap 'echo "SIGINT: stopping what the tests started" >&2; exit 130' INT
trap 'echo "SIGTERM: stopping what the tests started" >&2; exit 143' TERM
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

# skip REASON: this scenario cannot run here (the caller returns next); it is
# reported as skipped, or fails under CI=true where everything must run
skip() {
	if [ "${CI:-}" = true ]; then
		fail "cannot run under CI=true: $*"
		return
	fi
	echo "  SKIPPED: $*"
	skipped_now=1
}

# not_here REASON: this scenario means nothing in this build (say, a memory
# bound under the sanitizers); reported as such, neither a pass nor a skip
not_here() {
	echo "  not for this build: $*"
	not_here_now=1
}

# skip_all REASON: the whole script cannot run here
skip_all() {
	if [ "${CI:-}" = true ]; then
		echo "FAIL: cannot run under CI=true: $*" >&2
		exit 1
	fi
	echo "SKIPPED: $*"
	exit 77
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

# expect_changes FROM TO: compares kiln's text output with stdin, rc 0, with
# the catalog cache and with --no-cache (no catalog file: the Dockerfiles are
# read only once an image is affected); both runs' messages must agree too.
expect_changes() {
	local want got rc opt err
	want=$(cat)
	for opt in "" --no-cache; do
		err=$TEST_TMP/stderr$opt
		# shellcheck disable=SC2086 # no option: no argument
		got=$("$KILN" changes $opt "$@" 2>"$err")
		rc=$?
		if [ "$rc" != 0 ]; then
			fail "kiln changes $opt $* exited $rc: $(cat "$err")"
		fi
		if [ "$got" != "$want" ]; then
			fail "kiln changes $opt $*: output differs"
			diff <(echo "$want") <(echo "$got") | sed 's/^/    /' >&2
		fi
	done
	cmp -s "$TEST_TMP/stderr" "$TEST_TMP/stderr--no-cache" ||
		fail "kiln changes $*: its messages differ with --no-cache"
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
	# not --detach: the pid is tracked before the daemon listens, so an
	# interruption at any point cannot leave it running
	git daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_PORT" --base-path="$1" \
		--export-all --pid-file="$1/.gitd.pid" "$1" 2>"$1/.gitd.log" &
	GIT_PID=$!
	track_pid "$GIT_PID"
	wait_for 5 test -s "$1/.gitd.pid" || { fail "git daemon did not start: $(cat "$1/.gitd.log")"; return 1; }
	# `git daemon` runs git-daemon as its child and waits: the pid file names
	# the process that serves, the one a scenario stops with SIGSTOP
	GIT_PID=$(cat "$1/.gitd.pid")
	track_pid "$GIT_PID"
}

# run_one T: scenario T in a fresh directory, in the background so that a
# signal reaches the script at once (bash runs a trap only between commands);
# its status is 0 passed, 77 skipped, 78 not for this build, other failed
run_one() {
	local rc
	mkdir "$TEST_TMP/$1"
	(
		cd "$TEST_TMP/$1" || exit 1
		failed_now=0 skipped_now=0 not_here_now=0
		"$1"
		[ "$failed_now" = 0 ] || exit 1
		[ "$skipped_now" = 0 ] || exit 77
		[ "$not_here_now" = 0 ] || exit 78
		exit 0
	) &
	SCENARIO_PID=$!
	wait "$SCENARIO_PID"
	rc=$?
	SCENARIO_PID=
	kill_tracked
	return "$rc"
}

run_all() {
	local t rc verdict extra passed=0 skipped=0 not_here=0
	for t in $(declare -F | awk '{print $3}' | grep "^t_${KILN_ONLY:-}"); do
		run_one "$t"
		rc=$?
		case $rc in
		0) passed=$((passed + 1)) verdict="ok  " ;;
		77) skipped=$((skipped + 1)) verdict=skip ;;
		78) not_here=$((not_here + 1)) verdict="n/a " ;;
		*) FAILS=$((FAILS + 1)) verdict=FAIL ;;
		esac
		echo "$verdict $t"
	done
	if ls "$TEST_TMP"/sanitizer.* >/dev/null 2>&1; then
		echo "sanitizer reports:" >&2
		cat "$TEST_TMP"/sanitizer.* >&2
		FAILS=$((FAILS + 1))
	fi
	extra=
	[ "$not_here" = 0 ] || extra=" ($not_here not for this build)"
	echo "$passed passed, $skipped skipped, $FAILS failed$extra"
	[ "$FAILS" = 0 ] || return 1
	# what was skipped did not pass: the script as a whole is skipped
	[ "$skipped" = 0 ] || exit 77
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
