#!/usr/bin/env bash
# RSS high-water of the real binary while one hostile mock log attacks its memory (bounded: SECONDS each).
#   bash bench/hostile_rss.sh [CERTSTREAM_BINARY]        (ONLY=TEXT runs the cases whose name contains TEXT)
# Each case: a mock with one log, not growing, 200,000 entries, every entry hostile; certstream follows the whole
# log (--start-back) for SECONDS s; prints VmHWM and the counters that show which budget bit.
set -euo pipefail
cd "$(dirname "$0")/.."
# Both binaries, built here unless given (the mock is its own package of the workspace).
[[ -n ${1:-} && -n ${MOCK:-} ]] || cargo build --profile ci -p certstream --bin certstream -p mock-ct-log
BIN=${1:-target/ci/certstream}
MOCK=${MOCK:-target/ci/mock-ct-log}
SECONDS_PER_CASE=${SECONDS_PER_CASE:-25}
cases=(
  "chain certs 60 KB (parsed, cached)|--rfc6962 1 --tiled 0 --fault huge_chain@r0,bytes=60000"
  "chain certs 256 KiB|--rfc6962 1 --tiled 0 --fault huge_chain@r0,bytes=262144"
  "issuers 60 KB (cached)|--rfc6962 0 --tiled 1 --fault huge_chain@t0,bytes=60000"
  "issuers 128 KiB|--rfc6962 0 --tiled 1 --fault huge_chain@t0,bytes=131072"
  "certificates 2.5 MB|--rfc6962 1 --tiled 0 --page-cap 8 --fault huge_cert@r0,bytes=2500000"
  "no attack|--rfc6962 1 --tiled 1"
)
for case in "${cases[@]}"; do
  name=${case%%|*}
  args=${case#*|}
  [[ -n ${ONLY:-} && $name != *"$ONLY"* ]] && continue
  coproc MOCKP { exec "$MOCK" --listen 127.0.0.1:0 --rate 0 --start-size 200000 $args; }
  read -r line <&"${MOCKP[0]}"
  base=${line#listening }
  out=$(mktemp)
  NO_COLOR=1 "$BIN" --listen 127.0.0.1:0 --log-list "$base/log_list.json" --start-back 200000 >"$out" 2>&1 &
  pid=$!
  sleep "$SECONDS_PER_CASE"
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status || echo 0)
  addr=$(grep -o 'listen=[0-9.:]*' "$out" | head -1 | cut -d= -f2)
  rm -f "$out"
  stats=$(curl -s "http://$addr/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
m = s.get("messages", {})
i = s.get("ingest", {})
logs = s["logs"]
print("delivered", sum(l["delivered"] for l in logs), "published", sum(l["published"] for l in logs),
      "skipped", sum(l["skipped"] for l in logs),
      "| oversized certs", m.get("oversized_certificates"), "chain", m.get("oversized_chain_certificates"),
      "| chain cache evicted", m.get("chain_cache_evicted"), "| issuer cache bytes", i.get("issuer_cache_bytes"),
      "evicted", i.get("issuer_cache_evicted"), "| incomplete chains", sum(l.get("incomplete_chains", 0) for l in logs))')
  printf '%-36s VmHWM %7.1f MiB   %s\n' "$name" "$(echo "$hwm/1024" | bc -l)" "$stats"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  kill "$MOCKP_PID" 2>/dev/null; wait "$MOCKP_PID" 2>/dev/null || true
done
