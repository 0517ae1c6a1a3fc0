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

make_venv() {
  # 1. The standard library's venv (needs ensurepip; Debian splits it into python3-venv).
  if "$PYTHON" -m venv "$VENV" >/dev/null 2>&1 && [[ -x "$VENV/bin/python" ]]; then
    return 0
  fi
  rm -rf "$VENV"
  # 2. venv without pip, then bootstrap pip from the interpreter's own pip if it has one.
  if "$PYTHON" -m venv --without-pip "$VENV" >/dev/null 2>&1 && [[ -x "$VENV/bin/python" ]]; then
    if "$PYTHON" -m pip --version >/dev/null 2>&1; then
      local site
      site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
      if "$PYTHON" -m pip install -q --target "$site" pip >/dev/null 2>&1 \
         && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
      fi
    fi
  fi
  rm -rf "$VENV"
  # 3. The virtualenv package, installed for this user.
  if "$PYTHON" -m pip --version >/dev/null 2>&1; then
    if "$PYTHON" -m virtualenv --version >/dev/null 2>&1 \
       || "$PYTHON" -m pip install -q --user virtualenv >/dev/null 2>&1 \
       || "$PYTHON" -m pip install -q --user --break-system-packages virtualenv >/dev/null 2>&1; then
      if "$PYTHON" -m virtualenv -q "$VENV" && [[ -x "$VENV/bin/python" ]]; then
        return 0
      fi
    fi
  fi
  rm -rf "$VENV"
  # 4. As root on Debian/Ubuntu: install python3-venv and try again.
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing python3-venv with apt-get"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    if "$PYTHON" -m venv "$VENV" && [[ -x "$VENV/bin/python" ]]; then
      return 0
    fi
  fi
  log "could not create a virtualenv at $VENV with $PYTHON"
  return 1
}

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  log "creating virtualenv at $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  make_venv
fi

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
