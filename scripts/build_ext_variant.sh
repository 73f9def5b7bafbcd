#!/bin/sh
# Build the extension into DIR, apart from the in-place build, for
# scripts/asan_pytest.sh (CM_SANITIZE=1) and scripts/cov_pytest.sh
# (CM_COVERAGE=1): setup.py reads those from the environment. The compiler
# is clang unless CC says otherwise; the log, DIR/build.log, is printed if
# the build fails.
#
#   CM_COVERAGE=1 scripts/build_ext_variant.sh DIR
set -eu
cd "$(dirname "$0")/.."
out=$1
rm -rf "$out"
mkdir -p "$out"
CC="${CC:-clang}" "${PYTHON:-python3}" setup.py -q build_ext --build-lib "$out" \
  --build-temp "$out/tmp" >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
