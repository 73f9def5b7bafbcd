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
FUZZ_SECONDS=${FUZZ_SECONDS:-20}  # each; the suite must stay under 15 minutes

# Side by side: both spend most of their time waiting on loopback timers.
echo "== C unit tests, plain and under ASan + UBSan"
make -s build/cm_tests build/asan/cm_tests
./build/cm_tests >build/ctest.log 2>&1 &
plain=$!
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ./build/asan/cm_tests >build/ctest-asan.log 2>&1 &
asan=$!
rc_plain=0 rc_asan=0
wait "$plain" || rc_plain=$?
wait "$asan" || rc_asan=$?
for log in build/ctest.log build/ctest-asan.log; do
  echo "-- $log"
  if [ "$rc_plain" -ne 0 ] || [ "$rc_asan" -ne 0 ]; then cat "$log"; else tail -n 1 "$log"; fi
done
if [ "$rc_plain" -ne 0 ] || [ "$rc_asan" -ne 0 ]; then exit 1; fi

echo "== engine tests under ThreadSanitizer"
make -s ctest-tsan

echo "== engine start/stop and transport under valgrind"
make -s valgrind

echo "== fuzzers, ${FUZZ_SECONDS}s each"
make -s fuzz FUZZ_SECONDS="$FUZZ_SECONDS"

echo "== lint"
make -s format-check
$PY -m ruff check clustermember tests bench examples scripts
$PY -m ruff format --check clustermember tests bench examples scripts
# The package's types as its users see them: the package, the examples and a
# script importing it.
$PY -m mypy --strict clustermember examples/director_worker.py tests/typecheck/user_script.py

echo "== pytest"
$PY -m pytest -q

echo "== pytest against the extension built with ASan + UBSan (engine, transport, binding)"
sh scripts/asan_pytest.sh
