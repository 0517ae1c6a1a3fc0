#!/usr/bin/env bash
# Instructions the gateway executes per request, counted by callgrind: a figure that does not
# drift with a noisy, shared machine (the same binary and inputs give the same count), for
# comparing two builds of the hot path. Runs `sluice serve` under callgrind on the default
# config of issue 12 (key auth, one route, access log, metrics, the ledger on SQLite, a price
# table) in front of the built-in mock, sends N1 then N2 chat requests over one keep-alive
# connection, and prints (I(N2) - I(N1)) / (N2 - N1): for the whole process, and for the request
# path alone (the connection tasks, inclusive; the ledger's writer thread left out).
#   usage: scripts/bench-instructions.sh [BINARY] [N1] [N2]
# ROUTE_EXTRA adds to the route's map (e.g. ', cache: { ttl_ms: 600000 }'); HEADER adds one request
# header (e.g. 'cache-control: no-cache': with a cache, every request a miss that stores).
# KEEP=PATH keeps each run's callgrind profile as PATH.N1 and PATH.N2 (for callgrind_annotate).
set -euo pipefail
bin=${1:-target/release/sluice}
n1=${2:-200}
n2=${3:-1200}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mock_port=$(port)
"$bin" mock --listen "127.0.0.1:$mock_port" >/dev/null 2>&1 & echo $! > "$work/mock.pid"
key=sk-sluice-bench-instructions
hash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)

count() {
    local n=$1 dir="$work/run-$1" gw_port admin_port
    mkdir -p "$dir"
    gw_port=$(port); admin_port=$(port)
    cat > "$dir/sluice.yaml" <<YAML
server: { listen: 127.0.0.1:$gw_port }
admin: { listen: 127.0.0.1:$admin_port }
store: { sqlite_path: $dir/sluice-peer.db }
logging: { access_log: $dir/sluice-access.log }
ledger: { dir: $dir/ledger }
deployments: [{ name: mock, provider: openai, base_url: "http://127.0.0.1:$mock_port/v1", model: mock-gpt }]
models: [{ name: mock-gpt, deployments: [mock] }]
prices: { models: [{ model: mock-gpt, input: 0.15, output: 0.6 }] }
routes: [{ name: bench, match: { paths: ["/v1/*"] }, stream_idle_timeout_ms: 600000${ROUTE_EXTRA:-} }]
keys: [{ id: bench, hash: "sha256:$hash", tenant: bench, team: bench }]
YAML
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$bin" serve --config "$dir/sluice.yaml" >"$dir/out.log" 2>&1 & echo $! > "$dir.pid"
    python3 - "$gw_port" "$n" "$key" "${HEADER:-}" <<'PY'
import http.client, json, sys, time
port, n, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = json.dumps({"model": "mock-gpt", "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write one short sentence about the sea."}],
    "max_tokens": 16, "temperature": 0.2})
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/readyz"); r = c.getresponse(); r.read()
        if r.status == 200: break
    except OSError:
        pass
    if time.time() > deadline: sys.exit("the gateway did not start")
    time.sleep(0.5)
headers = {"authorization": "Bearer " + key, "content-type": "application/json"}
if sys.argv[4]:
    name, value = sys.argv[4].split(":", 1)
    headers[name.strip()] = value.strip()
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, headers)
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit(f"status {r.status}")
PY
    kill -TERM "$(cat "$dir.pid")"
    while kill -0 "$(cat "$dir.pid")" 2>/dev/null; do sleep 0.5; done
    rm -f "$dir.pid"
    # Every thread's file: callgrind writes one per thread with --separate-threads=no (default: one).
    [ -n "${KEEP:-}" ] && cp "$dir/callgrind.out" "$KEEP.$n"
    # The whole process, and the request path alone (what the connection tasks ran, inclusive:
    # without the ledger's writer thread, whose batches vary from run to run).
    echo "$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/callgrind.out")" \
        "$(callgrind_annotate --inclusive=yes --threshold=100 "$dir/callgrind.out" 2>/dev/null \
            | awk '/edge::accepted_connection::\{\{closure\}\}/ {gsub(",", "", $1); print $1; exit}')"
}
read -r i1 p1 < <(count "$n1")
read -r i2 p2 < <(count "$n2")
echo "instructions: $n1 requests $i1, $n2 requests $i2"
echo "per request: $(( (i2 - i1) / (n2 - n1) ))"
[ -n "$p1" ] && [ -n "$p2" ] && echo "per request, the request path alone: $(( (p2 - p1) / (n2 - n1) ))"
