#!/usr/bin/env bash
# Checks deploy/ (scripts/check-deploy.py): the Dockerfile, and the Kubernetes manifests
# against the Kubernetes schemas (kubernetes-validate, from the package registry into the
# test virtualenv; the schemas ship inside it, so validation is offline).
#
#   scripts/check-deploy.sh [SLUICE_BIN]      (default: target/debug/sluice)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_VENV:-$ROOT/target/sdk-venv}"
PYTHON="${PYTHON:-python3}"
log() { echo "check-deploy: $*" >&2; }
cd "$ROOT"
# shellcheck source=scripts/venv.sh
source "$ROOT/scripts/venv.sh"
ensure_venv
if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "1.37.0"; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check kubernetes-validate==1.37.0
fi
PATH="$VENV/bin:$PATH" "$VENV/bin/python" scripts/check-deploy.py "${1:-$ROOT/target/debug/sluice}"
