#!/usr/bin/env bash
# Set up (idempotent), then run the demo: a local cluster you can watch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m clustermember demo "$@"
