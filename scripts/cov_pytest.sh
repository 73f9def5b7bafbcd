#!/bin/sh
# Run pytest under coverage.py against the extension built with clang's
# source-based coverage (docs/testing.md, "Coverage").
#
#   scripts/cov_pytest.sh                          # build, then the whole suite
#   scripts/cov_pytest.sh tests/test_sim.py -k churn
#   scripts/cov_pytest.sh --build-only             # build, run nothing
#   scripts/cov_pytest.sh --no-build [pytest args] # run on the last build
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
trap restore EXIT
trap 'exit 130' INT TERM
mv "clustermember/$name" "$saved"
cp "$built" "clustermember/$name.new"
mv "clustermember/$name.new" "clustermember/$name"
mkdir -p build/cov/profiles
LLVM_PROFILE_FILE="$PWD/build/cov/profiles/%p.profraw" \
  "${PYTHON:-python3}" -m pytest --cov --cov-report=term "$@"
