#!/bin/sh
# run.sh: the test command. Installs what is missing, builds kiln from scratch
# twice (plain with -Werror, and with AddressSanitizer + UndefinedBehaviorSanitizer)
# and runs the whole suite in both builds, then builds the libFuzzer targets with
# clang and runs each for a bounded time. Any failure or sanitizer report fails.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)

packaging/deps.sh --tests

echo "== build (plain)"
rm -rf build build-sanitize
cmake -S . -B build -DKILN_WERROR=ON
cmake --build build -j"$jobs"
echo "== tests (plain)"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
cmake -S . -B build-sanitize -DKILN_WERROR=ON -DKILN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build build-sanitize -j"$jobs"
echo "== tests (sanitizers)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build-sanitize && ctest --output-on-failure -j"$jobs")

echo "== fuzzing (clang, libFuzzer, bounded)"
if command -v clang >/dev/null; then
	rm -rf build-fuzz
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DKILN_FUZZ=ON -DKILN_WERROR=ON \
		-DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-fuzz -j"$jobs"
	work=$(mktemp -d)
	nfuzz=0
	for f in manifest dockerignore dockerfile http control engine; do
		mkdir -p "$work/$f"
		dict=
		[ -f "$top/tests/fuzz/$f.dict" ] && dict="-dict=$top/tests/fuzz/$f.dict"
		# new inputs go to the scratch directory; the committed corpus is only read
		(cd "$work" && "$top/build-fuzz/tests/fuzz_$f" "$work/$f" "$top/tests/fuzz/corpus/$f" \
			$dict -max_total_time=12 -max_len=4096 -print_final_stats=0 \
			>"$work/$f.log" 2>&1) || {
			tail -40 "$work/$f.log"
			echo "fuzz_$f found a failure" >&2
			exit 1
		}
		echo "fuzz_$f: $(grep -o 'DONE.*' "$work/$f.log" | head -1)"
		nfuzz=$((nfuzz + 1))
	done
	rm -rf "$work" /tmp/kiln-fuzz-control.*
	echo "fuzz: $nfuzz passed, 0 failed"
elif [ "${CI:-}" = true ]; then
	echo "clang is missing under CI" >&2
	exit 1
else
	echo "SKIPPED: fuzzing needs clang"
fi
