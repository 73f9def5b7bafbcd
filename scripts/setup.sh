#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian bookworm machine (run as root):
# system packages (ngtcp2 from bookworm-backports), then the package itself,
# editable, with its test extras. Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.sources
DEB_PACKAGES=(
  build-essential pkg-config
  libuv1-dev libgnutls28-dev
  clang clang-format libclang-rt-14-dev valgrind iproute2 iputils-ping
  serf nftables  # the comparison benchmark: HashiCorp Serf, per-port byte counters
)
# ngtcp2 1.x lives only in bookworm-backports; bookworm itself has 0.12.
BACKPORT_PACKAGES=(libngtcp2-dev libngtcp2-crypto-gnutls-dev)
NGTCP2_MIN=1.11.0

need_apt=0
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt=1
done
if ! pkg-config --atleast-version="$NGTCP2_MIN" libngtcp2 libngtcp2_crypto_gnutls 2>/dev/null; then
  need_apt=1
fi

if [ "$need_apt" -eq 1 ]; then
  if [ ! -f "$BACKPORTS" ]; then
    $SUDO tee "$BACKPORTS" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    "${DEB_PACKAGES[@]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    -t bookworm-backports "${BACKPORT_PACKAGES[@]}"
  # Debian's serf package enables a system agent on port 7946; the benchmark
  # starts its own agents, and a system one would hold our default port.
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl disable --now serf >/dev/null 2>&1 || true
  fi
fi

PY=${PYTHON:-python3}
# Always (re)install: it picks up new dependencies in pyproject.toml and
# rebuilds the extension from the current csrc/. The compat editable mode
# puts the tree on sys.path through a .pth file, which type checkers (mypy)
# follow; the default mode's import hook is invisible to them.
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  --config-settings editable_mode=compat -e '.[test]'
# Compile the package to bytecode, as installing a wheel does: the tests and
# the demo start many agents, and where PYTHONDONTWRITEBYTECODE is set each
# would otherwise compile every module again (about 0.1 s of CPU a start).
$PY -m compileall -q clustermember bench >/dev/null
