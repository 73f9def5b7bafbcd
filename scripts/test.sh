#!/usr/bin/env bash
# The whole test suite, after set-up: C unit tests (plain and under
# AddressSanitizer + UndefinedBehaviorSanitizer), the engine's
# multi-threaded tests under ThreadSanitizer, a valgrind pass over engine
# start/stop and the transport, the fuzzers for a bounded time, lint,
# pytest, and the Python API tests again against an ASan build of the
# extension. Coverage is counted along the way (docs/testing.md): the plain
# run of the C unit tests is clang's coverage build, pytest runs under
# coverage.py against the extension built with coverage, and the pytest step
# ends with the Python and the per-layer C figures, failing below a floor.
# Steps that mostly wait on timers share the machine with work
# that needs the CPU (see each step). Idempotent; exits non-zero on the
# first failing step.
#
# Each step's wall time is printed when it ends, and all of them with the
# total when the suite ends (also on a failure). The suite must stay under
# SUITE_LIMIT seconds (15 minutes) on a 2-core machine: past it, the run
# fails even if every test passed. A hang cannot hold it much longer: each
# step runs under timeout(1) with what is left of SUITE_LIMIT; when that
# runs out, every process of the step is sent TERM and, if still there
# STEP_KILL_GRACE seconds later, KILL, and the run fails naming the step.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
FUZZ_SECONDS=${FUZZ_SECONDS:-8}  # each of the five
SUITE_LIMIT=${SUITE_LIMIT:-900}
STEP_KILL_GRACE=${STEP_KILL_GRACE:-20}

suite_start=$EPOCHREALTIME
step_names=()
step_seconds=()

seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME COMMAND...: run one step, timed, in a shell of its own (with
# this one's options and functions) under timeout(1), which ends it once
# the suite's time is up. timeout puts the step in a process group of its
# own and sends the group TERM; what is left of the group STEP_KILL_GRACE
# seconds later (a process that ignored it, or one still cleaning up) is
# killed. An interrupt of the suite (^C, TERM) is passed on to the group.
step_group=

# end_group PGID: wait up to STEP_KILL_GRACE seconds for the processes of
# a group already sent TERM to end, then kill what is left of it. Ended
# ones may linger as zombies (an init that is slow to reap them), which
# kill -0 would count: ps tells them apart.
end_group() {
  local i
  for ((i = 0; i < STEP_KILL_GRACE * 10; i++)); do
    ps -e -o pgid=,stat= 2>/dev/null |
      awk -v g="$1" '$1 == g && $2 !~ /^Z/ { n++ } END { exit !n }' || break
    sleep 0.1
  done
  kill -KILL -- "-$1" 2>/dev/null || true
}

step() {
  local name=$1 start=$EPOCHREALTIME took left rc=0
  shift
  left=$(awk -v a="$suite_start" -v b="$EPOCHREALTIME" -v l="$SUITE_LIMIT" \
    'BEGIN { t = int(l - (b - a)); print (t > 0 ? t : 0) }')
  echo "== $name (time left: $left s)"
  if [ "$left" -le 0 ]; then
    echo "FAIL: no time left for step '$name': the suite's limit is $SUITE_LIMIT s" >&2
    return 1
  fi
  timeout --kill-after="$STEP_KILL_GRACE" "$left" bash -euo pipefail -c '"$@"' step "$@" \
    </dev/null &
  step_group=$!
  wait "$step_group" || rc=$?
  took=$(seconds_since "$start")
  step_names+=("$name")
  step_seconds+=("$took")
  echo "-- $name: $took s"
  if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } &&
    awk -v t="$took" -v l="$left" 'BEGIN { exit !(t >= l) }'; then
    echo "FAIL: step '$name' ran out of time: stopped after $took s, when the" \
      "suite reached its limit of $SUITE_LIMIT s" >&2
    end_group "$step_group"
  fi
  step_group=
  return "$rc"
}

interrupted() {
  if [ -n "$step_group" ]; then
    kill -TERM -- "-$step_group" 2>/dev/null || true
  fi
  exit 130
}
trap interrupted INT TERM

report() {
  local rc=$? total i
  total=$(seconds_since "$suite_start")
  echo "== wall time per step"
  for i in "${!step_names[@]}"; do
    printf '%8s s  %s\n' "${step_seconds[$i]}" "${step_names[$i]}"
  done
  if [ "$rc" -ne 0 ]; then
    printf '%8s s  total, stopped by a failure (exit %d)\n' "$total" "$rc"
    exit "$rc"
  fi
  printf '%8s s  total (limit %d s)\n' "$total" "$SUITE_LIMIT"
  if awk -v t="$total" -v l="$SUITE_LIMIT" 'BEGIN { exit !(t > l) }'; then
    echo "FAIL: the suite took $total s, over its limit of $SUITE_LIMIT s" >&2
    exit 1
  fi
}
trap report EXIT

# The C unit tests spend most of their time waiting on loopback timers: 60 s
# of their 90 s is one test watching loss (LONG_C_TEST), so it runs in a
# process of its own beside the others, plain and under ASan alike. Meanwhile,
# at a lower priority so the tests' timers still fire on time, the machine
# builds what the later steps run, checks the lint and runs the fuzzers.
LONG_C_TEST=test_engine.c:engine_loss_causes_no_false_failure

# The plain run counts coverage (make coverage): clang at -O2, each process
# writing what ran to build/cov/profiles.
plain_tests() {
  LLVM_PROFILE_FILE=build/cov/profiles/%p.profraw ./build/cov/cm_tests "$@"
}

asan_tests() {
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ./build/asan/cm_tests "$@"
}

c_units() {
  mkdir -p build
  nice -n 10 bash -c "$(declare -f side_work lint seconds_since); side_work" >build/side.log 2>&1 &
  local side=$! rc_side=0
  rm -rf build/cov/profiles
  if ! make -s -j2 build/cov/cm_tests build/asan/cm_tests; then
    wait "$side" || true
    return 1
  fi
  local all=() rest=() t
  mapfile -t all < <(./build/cov/cm_tests -l)
  for t in "${all[@]}"; do [ "$t" = "$LONG_C_TEST" ] || rest+=("$t"); done
  if [ "${#rest[@]}" -ne $((${#all[@]} - 1)) ]; then
    echo "no C unit test $LONG_C_TEST among the ${#all[@]}" >&2
    wait "$side" || true
    return 1
  fi
  local pids=() logs=(build/ctest.log build/ctest-long.log build/ctest-asan.log
    build/ctest-asan-long.log)
  plain_tests "${rest[@]}" >"${logs[0]}" 2>&1 &
  pids+=($!)
  plain_tests "$LONG_C_TEST" >"${logs[1]}" 2>&1 &
  pids+=($!)
  asan_tests "${rest[@]}" >"${logs[2]}" 2>&1 &
  pids+=($!)
  asan_tests "$LONG_C_TEST" >"${logs[3]}" 2>&1 &
  pids+=($!)
  local rc=0 i
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || rc=1; done
  wait "$side" || rc_side=$?
  for i in "${!logs[@]}"; do
    echo "-- ${logs[$i]}"
    if [ "$rc" -ne 0 ]; then cat "${logs[$i]}"; else tail -n 1 "${logs[$i]}"; fi
  done
  # Every test ran, in one process or the other, in each build.
  local plain asan
  plain=$(cat "${logs[0]}" "${logs[1]}" | awk '/ passed, 0 failed$/ { n += $1 } END { print n + 0 }')
  asan=$(cat "${logs[2]}" "${logs[3]}" | awk '/ passed, 0 failed$/ { n += $1 } END { print n + 0 }')
  if [ "$plain" -ne "${#all[@]}" ] || [ "$asan" -ne "${#all[@]}" ]; then
    echo "C unit tests passed: $plain plain, $asan ASan, of ${#all[@]}" >&2
    rc=1
  fi
  echo "-- meanwhile: builds for the later steps, lint, and the fuzzers (${FUZZ_SECONDS}s each)"
  cat build/side.log
  [ "$rc" -eq 0 ] && [ "$rc_side" -eq 0 ]
}

# Builds of the unit tests for valgrind (gcc), the ThreadSanitizer tests, the
# fuzzers, the ASan extension and the extension with coverage, lint, then the
# fuzzers (one core, FUZZ_SECONDS each). The fuzzers run
# last, alone beside the timer-bound tests: beside the ASan build and lint
# they made less than half as many runs in their time.
side_work() {
  set -euo pipefail
  local start=$EPOCHREALTIME fuzz_start cov
  make -s -j2 build/cm_tests build/tsan/cm_tests fuzz-build
  sh scripts/cov_pytest.sh --build-only &
  cov=$!
  sh scripts/asan_pytest.sh --build-only
  lint
  wait "$cov"
  echo "side work: builds and lint took $(seconds_since "$start") s"
  fuzz_start=$EPOCHREALTIME
  make -s fuzz FUZZ_SECONDS="$FUZZ_SECONDS"
  echo "side work: fuzzers took $(seconds_since "$fuzz_start") s, all of it $(seconds_since "$start") s"
}

# Chained, so a failure stops it wherever it is called from (set -e does
# not act inside a command that is tested, as in "lint || rc=$?").
lint() {
  make -s format-check &&
    $PY -m ruff check clustermember tests bench examples scripts &&
    $PY -m ruff format --check clustermember tests bench examples scripts &&
    # The package's types as its users see them: the package, the examples
    # and a script importing it.
    $PY -m mypy --strict clustermember examples/director_worker.py tests/typecheck/user_script.py
}

# Alone: under valgrind a test runs tens of times slower, and the transport
# tests' flood figures then depend on the CPU left to it (a fuzzer beside
# it made net_refused_initials_turn_retry_on fail).
sanitizers() {
  echo "-- engine tests under ThreadSanitizer"
  make -s ctest-tsan
  echo "-- engine start/stop and transport under valgrind"
  make -s valgrind
}

# Under coverage.py, against the extension built with coverage; then the C
# figures of the unit tests and pytest together, layer by layer. The long
# tests that mostly wait on timers (a minute of 10% loss, crashed nodes
# coming back, partitions between network namespaces: about 130 s) run in
# a second pytest process beside the rest (LONG_PY_TESTS, as for the C
# unit tests above).
LONG_PY_TESTS="tests/test_faults.py::test_ten_percent_loss_gives_no_false_failures_and_still_detects
tests/test_faults.py::test_crashed_node_restarts_with_same_id_and_address[before_failed]
tests/test_faults.py::test_crashed_node_restarts_with_same_id_and_address[after_failed]
tests/test_netns_faults.py"
pytest_coverage() {
  PYTHON=$PY sh scripts/cov_pytest.sh --no-build --lane "$LONG_PY_TESTS" -q --durations=15 &&
    echo "-- C coverage: unit tests and pytest" &&
    make -s coverage-report COV_CHECK=--check
}

# What the steps' shells need from this one.
export PY FUZZ_SECONDS LONG_C_TEST LONG_PY_TESTS
export -f seconds_since plain_tests asan_tests c_units side_work lint sanitizers \
  pytest_coverage
step "set-up" bash scripts/setup.sh
step "C unit tests, plain (counting coverage) and under ASan + UBSan; meanwhile builds, lint and fuzzers" c_units
step "engine tests under ThreadSanitizer, then engine and transport under valgrind" sanitizers
step "pytest under coverage, then the C coverage of the unit tests and pytest" pytest_coverage
step "pytest against the extension built with ASan + UBSan (engine, transport, binding)" \
  sh scripts/asan_pytest.sh --no-build
