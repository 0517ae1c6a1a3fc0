#!/usr/bin/env bash
# Baseline sanity figures for the data path (issue 2): direct-to-mock vs through Sluice, wrk
# closed-loop at 1 and 16 connections, 1 KB chat bodies, non-streamed. The gateway is pinned
# to core 0, mock and wrk to core 1; the gateway's CPU time is read from /proc.
# Not the full benchmark (no coordinated-omission correction, no nginx reference) — see
# BENCHMARKS.md. Needs: wrk (Debian package), taskset. Stops what it starts, by PID.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS="${RUNS:-3}"
DURATION="${DURATION:-5s}"
cargo build --release -p sluice >/dev/null
BIN="$PWD/target/release/sluice"
dir="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
open(f"{d}/body.json", "w").write(json.dumps({"model": "chat", "max_tokens": 16,
    "messages": [{"role": "user", "content": "x" * 900}]}))
open(f"{d}/post.lua", "w").write(f'''wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-sluice-bench-key"
f = io.open("{d}/body.json", "r"); wrk.body = f:read("*a"); f:close()
''')
PY
cat > "$dir/gw.yaml" <<YAML
server: { listen: "127.0.0.1:18080" }
admin: { listen: "127.0.0.1:19090" }
store: { sqlite_path: "$dir/keys.db" }
logging: { access_log: "$dir/access.log" }
deployments:
  - { name: m, provider: openai, base_url: "http://127.0.0.1:19999/v1", model: up }
models:
  - { name: chat, deployments: [m] }
keys:
  - { id: bench, hash: "$("$BIN" keys hash sk-sluice-bench-key 2>/dev/null)" }
YAML
taskset -c 1 "$BIN" mock --listen 127.0.0.1:19999 --chunks 8 2>/dev/null & pids+=($!)
taskset -c 0 "$BIN" serve --config "$dir/gw.yaml" >/dev/null 2>&1 & gw=$!; pids+=($gw)
sleep 1
cpu() { awk '{print $14+$15}' "/proc/$gw/stat"; }
tick=$(getconf CLK_TCK)
printf '%-4s %-4s %-7s %10s %9s %9s %12s\n' conn run target req/s p50 p99 gw_cpu/req
for conc in 1 16; do
  for run in $(seq "$RUNS"); do
    for target in direct sluice; do
      port=19999; [[ $target == sluice ]] && port=18080
      c0=$(cpu)
      out=$(taskset -c 1 wrk -t1 -c"$conc" -d"$DURATION" --latency -s "$dir/post.lua" "http://127.0.0.1:$port/v1/chat/completions")
      c1=$(cpu)
      reqs=$(awk '/requests in/{print $1}' <<<"$out")
      rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
      p50=$(awk '/ 50%/{print $2}' <<<"$out"); p99=$(awk '/ 99%/{print $2}' <<<"$out")
      per=$(awk -v t="$((c1 - c0))" -v hz="$tick" -v n="$reqs" 'BEGIN{printf "%.1fus", t / hz / n * 1e6}')
      [[ $target == direct ]] && per="-"
      printf '%-4s %-4s %-7s %10s %9s %9s %12s\n' "$conc" "$run" "$target" "$rps" "$p50" "$p99" "$per"
    done
  done
done
