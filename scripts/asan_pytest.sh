#!/bin/sh
# Run pytest against the extension built with AddressSanitizer and UBSan.
#
#   scripts/asan_pytest.sh                       # the API tests
#   scripts/asan_pytest.sh tests/test_api_input.py -k close
#   scripts/asan_pytest.sh --build-only          # build, run nothing
#   scripts/asan_pytest.sh --no-build            # run on the last build
#
# The ASan build goes to a separate directory (CM_ASAN_DIR, default
# /tmp/cm-asan) and is put first on PYTHONPATH, so the normal in-place build
# is untouched. --build-only and --no-build split the two halves, so the
# build can overlap other work (scripts/test.sh). Python itself is not instrumented: the ASan runtime is
# preloaded, and leak detection is off because the interpreter keeps memory
# alive until exit by design. python -P keeps the working directory off
# sys.path, so the ASan copy of the package is the one imported.
set -eu
cd "$(dirname "$0")/.."
out="${CM_ASAN_DIR:-/tmp/cm-asan}"
CC="${CC:-clang}"
export CC
case "${1:-}" in
  --build-only) exec env CM_SANITIZE=1 sh scripts/build_ext_variant.sh "$out" ;;
  --no-build) shift ;;
  *) CM_SANITIZE=1 sh scripts/build_ext_variant.sh "$out" ;;
esac
ls "$out"/clustermember/_core*.so >/dev/null 2>&1 || {
  echo "no ASan build in $out: run without --no-build" >&2
  exit 1
}
# The package's Python files come from the tree (as they are now); only
# _core comes from the ASan build (a namespace overlay would shadow the
# package, so copy it in).
rm -rf "$out/pkg"
mkdir -p "$out/pkg"
cp -r clustermember "$out/pkg/"
rm -f "$out"/pkg/clustermember/_core*.so
cp "$out"/clustermember/_core*.so "$out/pkg/clustermember/"
runtime="$($CC -print-file-name=libclang_rt.asan-x86_64.so)"
[ -f "$runtime" ] || { echo "ASan runtime not found: $runtime" >&2; exit 1; }
if [ "$#" -eq 0 ]; then
  set -- tests/test_api_input.py tests/test_api_cluster.py tests/test_api_failure.py \
    tests/test_api_engine.py tests/test_user_events.py
fi
LD_PRELOAD="$runtime" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}" \
PYTHONPATH="$out/pkg${PYTHONPATH:+:$PYTHONPATH}" \
  "${PYTHON:-python3}" -P -m pytest -q -p no:cacheprovider "$@"
