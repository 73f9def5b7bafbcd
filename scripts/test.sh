#!/usr/bin/env bash
# The whole test suite, after set-up: C unit tests (plain and under
# AddressSanitizer + UndefinedBehaviorSanitizer), the fuzzers for a bounded
# time, lint, pytest, and the Python API tests again against an ASan build of
# the extension. The engine's multi-threaded tests under ThreadSanitizer and
# a valgrind pass over engine start/stop follow the ASan step. Idempotent;
# exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

PY=${PYTHON:-python3}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}  # each; the suite must stay under 15 minutes

echo "== C unit tests"
make -s build/cm_tests
./build/cm_tests

echo "== C unit tests under ASan + UBSan"
make -s build/asan/cm_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ./build/asan/cm_tests

echo "== engine tests under ThreadSanitizer"
make -s ctest-tsan

echo "== engine start/stop and transport under valgrind"
make -s valgrind

echo "== fuzzers, ${FUZZ_SECONDS}s each"
make -s fuzz FUZZ_SECONDS="$FUZZ_SECONDS"

echo "== lint"
make -s format-check
$PY -m ruff check clustermember tests bench examples

echo "== pytest"
$PY -m pytest -q

echo "== pytest against the extension built with ASan + UBSan (engine, transport, binding)"
sh scripts/asan_pytest.sh
