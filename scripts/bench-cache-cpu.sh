#!/usr/bin/env bash
# Sluice's CPU per request at the ceiling: no cache, every request an exact hit, every request a
# miss that stores (cache-control: no-cache). Sluice pinned to core 0; the built-in mock and oha
# (32 connections, closed loop, after a 2 s warm-up) on core 1; CPU from /proc/PID/stat.
#   usage: scripts/bench-cache-cpu.sh [BINARY] [RUNS] [SECONDS]   (OHA=path/to/oha)
set -euo pipefail
bin=${1:-target/release/sluice}; runs=${2:-3}; secs=${3:-6}
OHA=${OHA:-$HOME/.cargo/bin/oha}
work=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mp=$(port)
taskset -c 1 "$bin" mock --listen "127.0.0.1:$mp" >/dev/null 2>&1 & pids+=($!)
key=sk-sluice-ceiling; hash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
body='{"model":"mock-gpt","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one short sentence about the sea, in plain words, for a child who has never seen it; keep it under twenty words please."}],"max_tokens":16,"temperature":0.2}'
tck=$(getconf CLK_TCK)
measure() { # name route_extra header
  local name=$1 extra=$2 header=$3 gp ap d pid
  d="$work/$name"; mkdir -p "$d"; gp=$(port); ap=$(port)
  cat > "$d/s.yaml" <<YAML
server: { listen: 127.0.0.1:$gp }
admin: { listen: 127.0.0.1:$ap }
store: { sqlite_path: $d/peer.db }
logging: { access_log: $d/access.log }
ledger: { dir: $d/ledger }
deployments: [{ name: mock, provider: openai, base_url: "http://127.0.0.1:$mp/v1", model: mock-gpt }]
models: [{ name: mock-gpt, deployments: [mock] }]
prices: { models: [{ model: mock-gpt, input: 0.15, output: 0.6 }] }
routes: [{ name: bench, match: { paths: ["/v1/*"] }, stream_idle_timeout_ms: 600000$extra }]
keys: [{ id: bench, hash: "sha256:$hash", tenant: bench, team: bench }]
YAML
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
