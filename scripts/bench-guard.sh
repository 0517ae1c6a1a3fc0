#!/usr/bin/env bash
# Instructions per call of the guard library's input work on the 4 KiB benchmark prompt
# (crates/sluice-guard/examples/instructions.rs), counted by valgrind: N calls minus none, so
# the regexes' compilation drops out. Stable across runs and machine load, unlike time.
#
#   scripts/bench-guard.sh [PARTS...]     default: pii screen set
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "bench-guard: needs valgrind" >&2; exit 2; }
cargo build --release -q -p sluice-guard --example instructions
bin="${CARGO_TARGET_DIR:-target}/release/examples/instructions"
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 | sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' | tr -d ,; }
n=50
for part in "${@:-pii screen set}"; do
  for p in $part; do
    base=$(count "$p" 0)
    many=$(count "$p" "$n")
    echo "$p $(( (many - base) / n )) instructions per call"
  done
done
