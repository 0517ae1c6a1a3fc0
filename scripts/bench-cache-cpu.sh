#!/usr/bin/env bash
# Sluice's CPU per request at the ceiling: no cache, every request an exact hit, every request a
# miss that stores (cache-control: no-cache). Sluice pinned to core 0; the built-in mock and oha
# (32 connections, closed loop, after a 2 s warm-up) on core 1; CPU from /proc/PID/stat.
#   usage: scripts/bench-cache-cpu.sh [BINARY] [RUNS] [SECONDS]   (OHA=path/to/oha)
set -euo pipefail
source "$(dirname "$0")/bench-cache-lib.sh"
bin=${1:-target/release/sluice}; runs=${2:-3}; secs=${3:-6}
OHA=${OHA:-$HOME/.cargo/bin/oha}
work=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
mp=$(port)
taskset -c 1 "$bin" mock --listen "127.0.0.1:$mp" >/dev/null 2>&1 & pids+=($!)
key=sk-sluice-ceiling; hash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
tck=$(getconf CLK_TCK)
measure() { # name route_extra header
  local name=$1 extra=$2 header=$3 gp ap d pid
  d="$work/$name"; mkdir -p "$d"; gp=$(port); ap=$(port)
  bench_config "$d" "$gp" "$ap" "$mp" "$hash" "$extra"
  taskset -c 0 "$bin" serve --config "$d/s.yaml" >"$d/out.log" 2>&1 & pid=$!; pids+=($pid)
  for _ in $(seq 100); do curl -sf "127.0.0.1:$gp/readyz" >/dev/null && break; sleep 0.1; done
  local hdr=(-H "authorization: Bearer $key" -H "content-type: application/json")
  [ -n "$header" ] && hdr+=(-H "$header")
  taskset -c 1 "$OHA" --no-tui -z 2s -c 32 -m POST -d "$body" "${hdr[@]}" "http://127.0.0.1:$gp/v1/chat/completions" >/dev/null
  local out=()
  for r in $(seq "$runs"); do
    local u0 s0 u1 s1 n
    read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
    n=$(taskset -c 1 "$OHA" --no-tui -z "${secs}s" -c 32 -m POST -d "$body" "${hdr[@]}" --output-format json "http://127.0.0.1:$gp/v1/chat/completions" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(d["statusCodeDistribution"].values()), d["statusCodeDistribution"])')
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
    local c=${n%% *}
    out+=("$(python3 -c "u=($u1-$u0)/$tck/$c*1e6; s=($s1-$s0)/$tck/$c*1e6; print('%.1f us = %.1f user + %.1f system (%d req/s)' % (u+s, u, s, $c/$secs))") ${n#* }")
  done
  printf "%s:\n" "$name"; printf "  %s\n" "${out[@]}"
  echo "  hits logged: $(grep -c "\"cache\":\"hit\"" "$d/access.log" || true)"
  kill $pid; wait $pid 2>/dev/null || true
}
measure plain "" ""
measure hit ", cache: { ttl_ms: 600000 }" ""
measure miss ", cache: { ttl_ms: 600000 }" "cache-control: no-cache"
