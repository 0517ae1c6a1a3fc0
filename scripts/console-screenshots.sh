#!/usr/bin/env bash
# Screenshots of every console page, for the docs: runs the console's browser tests (which
# write them to target/console-screenshots/) and copies them to docs/console/ for a commit.
#
#   scripts/console-screenshots.sh          run the tests, then copy
#   scripts/console-screenshots.sh --copy   copy what the last run left
#
# Needs what the SDK lane needs, and Debian's chromium and chromium-driver (scripts/test.sh
# installs them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHOTS="$ROOT/target/console-screenshots"
if [[ "${1:-}" != "--copy" ]]; then
  [[ -x target/debug/sluice ]] || cargo build -p sluice --locked
  rm -rf "$SHOTS"
  scripts/sdk-lane.sh tests/sdk/test_console.py
fi
shopt -s nullglob
shots=("$SHOTS"/*.png)
if ((${#shots[@]} == 0)); then
  echo "console-screenshots: no screenshots in $SHOTS" >&2
  exit 1
fi
mkdir -p docs/console
cp "${shots[@]}" docs/console/
echo "console-screenshots: ${#shots[@]} pages copied to docs/console/"
