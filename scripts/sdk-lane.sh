#!/usr/bin/env bash
# Python SDK test lane: drives a real `sluice serve` + `sluice mock` through the official
# `openai` Python SDK (tests/sdk). Needs python3 and PyPI access for the first run.
#
#   SLUICE_BIN    the sluice binary to test        (default: target/debug/sluice)
#   SLUICE_VENV   where the virtualenv lives       (default: target/sdk-venv)
#   PYTHON        the interpreter to build it from (default: python3)
#
# Extra arguments are passed to pytest. Exit code is pytest's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Paths given by the caller are relative to the caller's directory; the defaults to the repo.
abs_from() { case "$2" in /*) echo "$2" ;; *) echo "$1/$2" ;; esac; }
if [[ -n "${SLUICE_VENV:-}" ]]; then VENV="$(abs_from "$PWD" "$SLUICE_VENV")"; else VENV="$ROOT/target/sdk-venv"; fi
if [[ -n "${SLUICE_BIN:-}" ]]; then BIN="$(abs_from "$PWD" "$SLUICE_BIN")"; else BIN="$ROOT/target/debug/sluice"; fi
PYTHON="${PYTHON:-python3}"
REQS="$ROOT/tests/sdk/requirements.txt"
cd "$ROOT"

log() { echo "sdk-lane: $*" >&2; }

if [[ ! -x "$BIN" ]]; then
  log "sluice binary not found at $BIN (build it first, or set SLUICE_BIN)"
  exit 2
fi

# shellcheck source=scripts/venv.sh
source "$ROOT/scripts/venv.sh"
ensure_venv

# Reinstall only when requirements.txt changed since the last successful install.
STAMP="$VENV/.sdk-lane-requirements"
if [[ ! -f "$STAMP" ]] || ! cmp -s "$REQS" "$STAMP"; then
  log "installing $(grep -cv '^\s*\(#\|$\)' "$REQS") pinned packages"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$STAMP"
fi

export SLUICE_BIN="$BIN"
set +e
"$VENV/bin/python" -m pytest -q tests/sdk "$@"
rc=$?
set -e
exit "$rc"
