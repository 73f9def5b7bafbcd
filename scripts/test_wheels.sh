#!/usr/bin/env bash
# Every wheel as a user meets it, for each CPython found (3.10 to 3.13: the
# system's python3 and pyenv's; CM_WHEEL_PYTHONS limits it, as for
# scripts/build_wheels.sh): build them all with scripts/build_wheels.sh, then
# for each, a fresh venv of that Python, `pip install --no-index` of the wheel
# from a local wheelhouse of its dependencies (`pip download`), and
# tests/wheel_check.py where the system's ngtcp2, GnuTLS and libuv are hidden
# (tests/_wheel.py, as tests/test_wheel.py does for one Python).
#
#   sudo scripts/test_wheels.sh      # root: the check needs unshare -m
#
# Writes bench/results/wheels-<commit>.json (per version: wheel, size, pass or
# fail, time) and the table in docs/install.md. Not run by the test suite
# (minutes); idempotent: each run replaces what it writes. Exits non-zero if a
# version failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

scripts/build_wheels.sh
# shellcheck disable=SC2046 # one "PYTHON WHEEL" a line, no spaces in either
set -- $(cat build/wheels-raw/built.txt)
commit=$(git rev-parse --short HEAD)
exec "$PY" tests/_wheel.py --out "bench/results/wheels-$commit.json" \
  --doc docs/install.md --command "scripts/test_wheels.sh" "$@"
