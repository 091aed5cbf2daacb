#!/usr/bin/env bash
# Exhaustion figures: a release `stepgate serve` in front of a static
# upstream, attacked in turn by each of benches/exhaustion/attack.py's
# attacks (from 127.0.0.2 and other 127.x addresses) while a well-behaved
# client (127.0.0.60) sends GET /public on a keep-alive connection. For
# each attack: the gateway's peak RSS (VmRSS from /proc, sampled every
# 0.2 s) and the well-behaved client's latency p50/p99 and errors.
#
#   bash benches/exhaustion/run.sh                 # 10 s per attack
#   DURATION=5 STEPGATE=target/release/stepgate bash benches/exhaustion/run.sh
#
# Prints a Markdown table (also written to $WORK/results.md). Everything
# listens on 127.0.0.1 only and every process started here is stopped.
set -euo pipefail

DURATION=${DURATION:-10}
UPSTREAM_PORT=${UPSTREAM_PORT:-18090}
SG_PORT=${SG_PORT:-18453}
ATTACKS=${ATTACKS:-"none rapid-reset continuation settings idle slow-headers huge-body hold-flood long-query nested-json"}

# shellcheck source=benches/lib.sh
source "$(dirname "$0")/../lib.sh"
bench_init exhaustion
HERE="$ROOT/benches/exhaustion"
need_tools nginx:nginx python3:python3 openssl:openssl
ports_free "$UPSTREAM_PORT" "$SG_PORT"
if [[ -z ${STEPGATE:-} ]]; then
    cargo_release --bin stepgate
    STEPGATE="$TARGET_DIR/release/stepgate"
fi
ulimit -n "$(ulimit -Hn)"

start_static_upstream "$UPSTREAM_PORT"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/gateway-key.pem" -out "$WORK/gateway.pem" 2>/dev/null
"$STEPGATE" keygen --out "$WORK/assertion-key.pem" >/dev/null
mkdir -p "$WORK/state"
cat >"$WORK/stepgate.yaml" <<YAML
listen: 127.0.0.1:$SG_PORT
tls: { cert: gateway.pem, key: gateway-key.pem }
upstream: http://127.0.0.1:$UPSTREAM_PORT
session: { cookie: SESSIONID }
assertion: { key: assertion-key.pem, issuer: stepgate, audience: bench }
audit: { path: state/audit.jsonl }
limits: { max_holds: 1000, header_read_timeout: 5s, body_read_timeout: 5s }
routes:
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    when: [ { json: { pointer: /amount, gt: 0 } } ]
    require: { methods: [totp] }
    hold: { mode: challenge, timeout: 2m }
YAML
"$STEPGATE" serve --config "$WORK/stepgate.yaml" 2>"$WORK/stepgate.log" &
SG_PID=$!
PIDS+=("$SG_PID")
wait_port "$SG_PORT"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SG_PID/status"; }

{
    echo "| attack | gateway peak RSS (MiB) | client p50 (ms) | client p99 (ms) | client requests | client errors |"
    echo "|---|---:|---:|---:|---:|---:|"
} >"$WORK/results.md"
for attack in $ATTACKS; do
    log "$attack"
    attacker=""
    if [[ $attack != none ]]; then
        python3 "$HERE/attack.py" "$attack" 127.0.0.1 "$SG_PORT" "$((DURATION + 2))" &
        attacker=$!
        PIDS+=("$attacker")
        sleep 2
    fi
    python3 "$HERE/attack.py" probe 127.0.0.1 "$SG_PORT" "$DURATION" >"$WORK/probe.txt" &
    probe=$!
    peak=0
    while kill -0 "$probe" 2>/dev/null; do
        r=$(rss_kib)
        ((r > peak)) && peak=$r
        sleep 0.2
    done
    wait "$probe"
    [[ -n $attacker ]] && { wait "$attacker" || true; }
    read -r p50 p99 n errors <"$WORK/probe.txt"
    echo "| $attack | $((peak / 1024)) | $p50 | $p99 | $n | $errors |" >>"$WORK/results.md"
    kill -0 "$SG_PID" || { log "stepgate died during $attack"; exit 1; }
    sleep 3
done
echo "uptime: $(uptime)" >>"$WORK/results.md"
cat "$WORK/results.md"
