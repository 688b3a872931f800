#!/bin/sh
# run.sh: the test command. Installs what is missing, builds kiln from scratch
# twice (plain with -Werror, and with AddressSanitizer + UndefinedBehaviorSanitizer)
# and runs the whole suite in both builds, then builds the libFuzzer targets with
# clang and runs each for a bounded time. Any failure or sanitizer report fails.
# Skipped tests are listed at the end of each ctest run; under CI=true any skip
# fails the run.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)

packaging/deps.sh --tests

# run_ctest DIR: the suite in build directory DIR. ctest counts a skip (exit
# 77, "***Skipped") as no failure, so skipped tests are read from its output
# and listed; "***Not Run" is listed too, though ctest already fails on it.
run_ctest() {
	{
		rc=0
		(cd "$1" && ctest --output-on-failure -j"$jobs") 2>&1 || rc=$?
		echo "$rc" >"$1/ctest.rc"
	} | tee "$1/ctest.log"
	rc=$(cat "$1/ctest.rc")
	skipped=$(grep -E 'Test +#[0-9]+: .*\*\*\*(Skipped|Not Run)' "$1/ctest.log" || true)
	if [ -n "$skipped" ]; then
		echo "== NOT RUN in $1:"
		echo "$skipped"
		# the reasons: ctest shows no output for a skip, its log keeps it
		awk '/^[0-9]+\/[0-9]+ Testing: / { t = $3 } /^ *SKIPPED:/ { print "   " t ": " $0 }' \
			"$1/Testing/Temporary/LastTest.log"
		if [ "${CI:-}" = true ]; then
			echo "tests did not run under CI=true: a skip is a failure there" >&2
			exit 1
		fi
	fi
	[ "$rc" = 0 ] || exit "$rc"
}

echo "== build (plain)"
rm -rf build build-sanitize
cmake -S . -B build -DKILN_WERROR=ON
cmake --build build -j"$jobs"
echo "== tests (plain)"
run_ctest build

echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
cmake -S . -B build-sanitize -DKILN_WERROR=ON -DKILN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build build-sanitize -j"$jobs"
echo "== tests (sanitizers)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
run_ctest build-sanitize

echo "== fuzzing (clang, libFuzzer, bounded)"
if command -v clang >/dev/null; then
	rm -rf build-fuzz
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DKILN_FUZZ=ON -DKILN_WERROR=ON \
		-DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-fuzz -j"$jobs"
	work=$(mktemp -d)
	passed=0 failed=0
	# every fuzz_* target tests/CMakeLists.txt builds, with its seed corpus and
	# dictionary when they exist; new inputs go to the scratch directory, the
	# committed corpus is only read
	for bin in "$top"/build-fuzz/tests/fuzz_*; do
		if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
			continue
		fi
		f=${bin##*/fuzz_}
		seeds='' dict=''
		[ -d "$top/tests/fuzz/corpus/$f" ] && seeds=$top/tests/fuzz/corpus/$f
		[ -f "$top/tests/fuzz/$f.dict" ] && dict=-dict=$top/tests/fuzz/$f.dict
		mkdir -p "$work/$f"
		# shellcheck disable=SC2086 # $seeds and $dict are one word or none
		if (cd "$work" && "$bin" "$work/$f" $seeds $dict -max_total_time=12 -max_len=4096 \
			-print_final_stats=0 >"$work/$f.log" 2>&1); then
			passed=$((passed + 1))
			echo "fuzz_$f: $(grep -o 'DONE.*' "$work/$f.log" | head -1)${dict:+ (with $f.dict)}"
		else
			failed=$((failed + 1))
			tail -40 "$work/$f.log"
			echo "fuzz_$f found a failure" >&2
		fi
	done
	rm -rf "$work" /tmp/kiln-fuzz-control.* /tmp/kiln-fuzz-http.* /dev/shm/kiln-fuzz-http.* \
		/tmp/kiln-fuzz-pack.* /dev/shm/kiln-fuzz-pack.*
	echo "fuzz: $passed passed, $failed failed"
	if [ "$failed" != 0 ] || [ "$passed" = 0 ]; then
		echo "fuzzing failed (or no fuzz_* target was built)" >&2
		exit 1
	fi
elif [ "${CI:-}" = true ]; then
	echo "clang is missing under CI" >&2
	exit 1
else
	echo "SKIPPED: fuzzing needs clang"
fi
