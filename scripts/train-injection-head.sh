#!/usr/bin/env bash
# Trains the injection classifier head (scripts/train-injection-head.py): builds sluice, fetches
# the embedding model (scripts/fetch-models.sh), makes a virtualenv with numpy (from the package
# registry), and writes crates/sluice-guard/heads/injection.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_VENV:-$ROOT/target/sdk-venv}"
PYTHON="${PYTHON:-python3}"
log() { echo "train-injection-head: $*" >&2; }
cd "$ROOT"
# shellcheck source=scripts/venv.sh
source "$ROOT/scripts/venv.sh"
ensure_venv
"$VENV/bin/python" -c 'import numpy' 2>/dev/null || "$VENV/bin/python" -m pip install -q --disable-pip-version-check numpy==2.3.5
scripts/fetch-models.sh
cargo build -q -p sluice
"$VENV/bin/python" scripts/train-injection-head.py "$ROOT/target/debug/sluice" "$ROOT/models/all-minilm-l6-v2"
