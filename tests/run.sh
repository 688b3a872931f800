#!/bin/sh
# run.sh: the test command. Installs what is missing, builds kiln from scratch
# twice (plain with -Werror, and with AddressSanitizer + UndefinedBehaviorSanitizer)
# and runs the whole suite in both builds. Any failure or sanitizer report fails.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)

packaging/deps.sh

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
