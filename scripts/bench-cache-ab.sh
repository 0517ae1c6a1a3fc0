#!/usr/bin/env bash
# What a cache miss costs over no cache, in CPU per request at the ceiling: two gateways up at
# once on core 0 — one whose route does not cache, one whose route caches and whose every
# request is a miss that stores (`cache-control: no-cache`) — loaded in alternation by oha
# (32 connections, closed loop; with RATE=N, at N req/s) on core 1 with the built-in mock. The
# order alternates each round (AB BA …) so drift and order cancel; CPU from /proc/PID/stat.
# Prints each round and the medians of the paired differences (miss − no cache).
# Another route setting instead of the cache (ROUTE_EXTRA=", guardrails: [pii-redact]"): what
# that setting costs per request, the same way.
# A top-level section instead (TOP_EXTRA='telemetry: { otlp: { endpoint: "{mock}" } }', with
# ROUTE_EXTRA= empty; `{mock}` is the built-in mock's URL, which is also an OTLP sink): what
# that costs. BIN_B=path runs the second gateway from another binary (old vs new, same config
# with ROUTE_EXTRA= empty).
# Calibration (SPIN_NS=N): the second gateway does not cache either but spins N ns of CPU per
# request instead — what this measure charges for a known amount of work. It needs a binary
# built with `cargo build --release --features calibrate` (others ignore the spin; run A/A with
# SPIN_NS=0 to see the measure's own spread).
#   usage: scripts/bench-cache-ab.sh [BINARY] [ROUNDS] [SECONDS]   (OHA=path/to/oha, RATE=req/s,
#          SPIN_NS=ns, ROUTE_EXTRA=yaml)
set -euo pipefail
source "$(dirname "$0")/bench-cache-lib.sh"
bin=${1:-target/release/sluice}; rounds=${2:-16}; secs=${3:-4}
OHA=${OHA:-$HOME/.cargo/bin/oha}; rate=${RATE:-}; spin=${SPIN_NS:-}
work=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
mp=$(port)
taskset -c 1 "$bin" mock --listen "127.0.0.1:$mp" >/dev/null 2>&1 & pids+=($!)
key=sk-sluice-ceiling; hash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
tck=$(getconf CLK_TCK)
declare -A port_of pid_of
for name in plain miss; do
  d="$work/$name"; mkdir -p "$d"; gp=$(port); ap=$(port)
  extra=""; top=""; ns=0; exe=$bin
  if [ "$name" = miss ]; then
    if [ -n "$spin" ]; then ns=$spin; else extra=${ROUTE_EXTRA-", cache: { ttl_ms: 600000 }"}; fi
    top=${TOP_EXTRA:-}; top=${top//\{mock\}/http://127.0.0.1:$mp}; exe=${BIN_B:-$bin}
  fi
  bench_config "$d" "$gp" "$ap" "$mp" "$hash" "$extra" "$top"
  SLUICE_CALIBRATE_SPIN_NS=$ns taskset -c 0 "$exe" serve --config "$d/s.yaml" >"$d/out.log" 2>&1 & pid_of[$name]=$!; pids+=(${pid_of[$name]})
  port_of[$name]=$gp
  for _ in $(seq 100); do curl -sf "127.0.0.1:$gp/readyz" >/dev/null && break; sleep 0.1; done
done
hdr=(-H "authorization: Bearer $key" -H "content-type: application/json" -H "cache-control: no-cache")
url() { echo "http://127.0.0.1:${port_of[$1]}/v1/chat/completions"; }
for name in plain miss; do
  taskset -c 1 "$OHA" --no-tui -z 2s -c 32 -m POST -d "$body" "${hdr[@]}" "$(url $name)" >/dev/null
done
echo "round config cpu_us user_us system_us req_per_s"
for r in $(seq "$rounds"); do
  order="plain miss"; [ $((r % 2)) = 0 ] && order="miss plain"
  for name in $order; do
    pid=${pid_of[$name]}
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    n=$(taskset -c 1 "$OHA" --no-tui -z "${secs}s" -c 32 ${rate:+-q "$rate"} -m POST -d "$body" "${hdr[@]}" \
      --output-format json "$(url $name)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["statusCodeDistribution"].get("200",0))')
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    python3 -c "u=($u1-$u0)/$tck/$n*1e6; s=($s1-$s0)/$tck/$n*1e6; print('$r $name %.1f %.1f %.1f %d' % (u+s, u, s, $n/$secs))"
  done
done | tee "$work/rounds"
python3 - "$work/rounds" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
by = {}
for r in rows:
    by.setdefault(r[0], {})[r[1]] = [float(x) for x in r[2:]]
pairs = [v for v in by.values() if len(v) == 2]
med = lambda f: st.median(f(p) for p in pairs)
print("medians: no cache %.1f us (%.1f user), miss %.1f us (%.1f user); %d vs %d req/s" % (
    med(lambda p: p["plain"][0]), med(lambda p: p["plain"][1]), med(lambda p: p["miss"][0]),
    med(lambda p: p["miss"][1]), med(lambda p: p["plain"][3]), med(lambda p: p["miss"][3])))
print("miss - no cache, paired medians: %+.1f us total, %+.1f us user, %+.1f us system" % tuple(
    med(lambda p, i=i: p["miss"][i] - p["plain"][i]) for i in range(3)))
PY
