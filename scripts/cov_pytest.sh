#!/bin/sh
# Run pytest under coverage.py against the extension built with clang's
# source-based coverage (docs/testing.md, "Coverage").
#
#   scripts/cov_pytest.sh                          # build, then the whole suite
#   scripts/cov_pytest.sh tests/test_sim.py -k churn
#   scripts/cov_pytest.sh --build-only             # build, run nothing
#   scripts/cov_pytest.sh --no-build [pytest args] # run on the last build
#   scripts/cov_pytest.sh --no-build --lane "IDS" [pytest args]
#
# --lane runs the tests IDS (node ids or id prefixes, space-separated) in a
# second pytest process beside the rest: the suite (scripts/test.sh) gives
# it the long tests that mostly wait on timers. Each process keeps its own
# coverage data; they are combined and reported, against the floor, once
# both have ended, and the run fails if either failed.
#
# The build goes to build/cov/ext. For the run it stands in for the in-place
# extension, which is put back when pytest ends, however it ends; both moves
# are renames, so a process that has the extension loaded keeps its copy.
# Every process that loads it, the agents the tests start included, writes
# its counts to build/cov/profiles, beside those of `make coverage`;
# `make coverage-report` then reports the C layers from all of them.
# coverage.py's settings are in pyproject.toml ([tool.coverage]): the
# package's code, in the test process and in the Python processes it starts;
# the run fails below its floor.
set -eu
cd "$(dirname "$0")/.."
out=build/cov/ext
case "${1:-}" in
  --build-only) exec env CM_COVERAGE=1 sh scripts/build_ext_variant.sh "$out" ;;
  --no-build) shift ;;
  *) CM_COVERAGE=1 sh scripts/build_ext_variant.sh "$out" ;;
esac
lane=
if [ "${1:-}" = "--lane" ]; then
  [ -n "${2:-}" ] || {
    echo "--lane needs the test ids to run beside the rest" >&2
    exit 2
  }
  lane=$2
  shift 2
fi
built=$(ls "$out"/clustermember/_core*.so 2>/dev/null) || {
  echo "no coverage build in $out: run without --no-build" >&2
  exit 1
}
name=$(basename "$built")
saved=build/cov/$name.in-place
restore() { if [ -f "$saved" ]; then mv -f "$saved" "clustermember/$name"; fi; }
restore # from a run that was killed before it could
[ -f "clustermember/$name" ] || {
  echo "no in-place extension clustermember/$name: run scripts/setup.sh" >&2
  exit 1
}
lane_pid=
lane_tmp=
cleanup() {
  if [ -n "$lane_pid" ]; then
    # As ^C would: pytest ends its tests' agents before it exits.
    kill -INT "$lane_pid" 2>/dev/null || true
    wait "$lane_pid" 2>/dev/null || true
  fi
  restore
  if [ -n "$lane_tmp" ]; then rm -rf "$lane_tmp" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mv "clustermember/$name" "$saved"
cp "$built" "clustermember/$name.new"
mv "clustermember/$name.new" "clustermember/$name"
mkdir -p build/cov/profiles
export LLVM_PROFILE_FILE="$PWD/build/cov/profiles/%p.profraw"
py=${PYTHON:-python3}
if [ -z "$lane" ]; then
  "$py" -m pytest --cov --cov-report=term "$@"
  exit
fi

# Two processes, each with its own coverage data file (and its own pytest
# temporary directory, short enough for the agents' socket paths). Neither
# reports or checks the floor alone; the combined data does, below.
data=$PWD/build/cov/pydata
rm -rf "$data"
mkdir -p "$data"
lane_tmp=$(mktemp -d /tmp/cmlane.XXXXXX)
set -f # the ids are split on blanks, never globbed ("[param]" is a pattern)
deselect=
for id in $lane; do deselect="$deselect --deselect $id"; done
# A job started with & ignores SIGINT, and so would pytest: it is given the
# default back, so that an interrupt (cleanup) lets it end its agents.
# shellcheck disable=SC2086 # the ids are split on purpose
COVERAGE_FILE=$data/lane "$py" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[1:]])' \
  --cov --cov-report= --cov-fail-under=0 -p no:cacheprovider --basetemp "$lane_tmp/t" \
  -q $lane >build/cov/lane.log 2>&1 &
lane_pid=$!
rc=0
# shellcheck disable=SC2086
COVERAGE_FILE=$data/main "$py" -m pytest --cov --cov-report= --cov-fail-under=0 \
  $deselect "$@" || rc=$?
rc_lane=0
wait "$lane_pid" || rc_lane=$?
lane_pid=
echo "-- beside it: $lane"
if [ "$rc_lane" -ne 0 ]; then
  cat build/cov/lane.log
  echo "(its temporary files are kept: $lane_tmp)"
  lane_tmp=
else
  tail -n 1 build/cov/lane.log
fi
"$py" -m coverage combine --quiet --data-file="$data/all" "$data/main" "$data/lane"
"$py" -m coverage report --data-file="$data/all" || rc=$((rc ? rc : $?))
[ "$rc" -eq 0 ] && [ "$rc_lane" -eq 0 ]
