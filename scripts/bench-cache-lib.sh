# Shared by the cache's CPU benchmarks (sourced): the 250 B chat body of the ceiling runs, a free
# loopback port, and a gateway's config in front of the built-in mock.

body='{"model":"mock-gpt","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one short sentence about the sea, in plain words, for a child who has never seen it; keep it under twenty words please."}],"max_tokens":16,"temperature":0.2}'

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_config DIR GATEWAY_PORT ADMIN_PORT MOCK_PORT KEY_HASH ROUTE_EXTRA [TOP_EXTRA]: writes
# DIR/s.yaml — key auth, one route, the access log, the ledger on SQLite, a price table (issue
# 12's default); TOP_EXTRA is a top-level section added as it is (e.g. `telemetry: …`).
bench_config() {
  cat > "$1/s.yaml" <<YAML
server: { listen: 127.0.0.1:$2 }
admin: { listen: 127.0.0.1:$3 }
store: { sqlite_path: $1/peer.db }
logging: { access_log: $1/access.log }
ledger: { dir: $1/ledger }
deployments: [{ name: mock, provider: openai, base_url: "http://127.0.0.1:$4/v1", model: mock-gpt }]
models: [{ name: mock-gpt, deployments: [mock] }]
prices: { models: [{ model: mock-gpt, input: 0.15, output: 0.6 }] }
routes: [{ name: bench, match: { paths: ["/v1/*"] }, stream_idle_timeout_ms: 600000$6 }]
keys: [{ id: bench, hash: "sha256:$5", tenant: bench, team: bench }]
${7:-}
YAML
}
