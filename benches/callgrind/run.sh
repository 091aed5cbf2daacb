#!/usr/bin/env bash
# Instruction-count regression guard for the pass-through path.
#
#   bash benches/callgrind/run.sh             # measure, print Ir per request
#   bash benches/callgrind/run.sh --compare   # ... and the delta vs baseline.txt
#   bash benches/callgrind/run.sh --update    # ... and rewrite baseline.txt
#   STEPGATE=/path/to/stepgate bash benches/callgrind/run.sh   # measure a given binary
#   WITH_NGINX=1 bash benches/callgrind/run.sh  # also nginx as the same proxy, for reference
#
# Runs the release binary under `valgrind --tool=callgrind` in front of a
# static upstream (nginx, one worker) and drives fixed workloads with h2load:
#   h1   HTTP/1.1 keep-alive over TLS, one connection, $H1_REQS requests
#   h2   HTTP/2 over TLS, one connection, 10 streams at a time, $H2_REQS requests
#   new  a new TLS connection per request (HTTP/1.1), $NEW_REQS times, one at a time
# Counters are zeroed after a warm-up and dumped after each workload
# (callgrind_control), so start-up and shutdown are not counted.
# Instruction counts do not depend on machine load, unlike wall-clock
# numbers; what still moves them a little (thread scheduling, TLS key
# shares, hash seeds) is reported by running twice: RUNS=2 (default 1).
# Not a pass/fail gate.
set -euo pipefail

MODE=${1:-}
RUNS=${RUNS:-1}
H1_REQS=${H1_REQS:-2000}
H2_REQS=${H2_REQS:-2000}
NEW_REQS=${NEW_REQS:-50}
TOP=${TOP:-15}
UPSTREAM_PORT=${UPSTREAM_PORT:-18180}
SG_PORT=${SG_PORT:-18543}
NGX_PORT=${NGX_PORT:-18544}

# shellcheck source=benches/lib.sh
source "$(dirname "$0")/../lib.sh"
# Under valgrind a server takes longer to stop (and to start).
STOP_WAIT=100
bench_init callgrind
BASELINE="$ROOT/benches/callgrind/baseline.txt"

need_tools valgrind:valgrind nginx:nginx h2load:nghttp2-client curl:curl openssl:openssl

if [[ -z ${STEPGATE:-} ]]; then
    cargo_release --bin stepgate
    STEPGATE="$TARGET_DIR/release/stepgate"
fi

start_static_upstream "$UPSTREAM_PORT"

# serve makes no certificate or key it does not find (a missing one is a
# mistake it reports), so the bench makes them, as the load script does.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/gateway-key.pem" -out "$WORK/gateway.pem" 2>/dev/null
"$STEPGATE" keygen --out "$WORK/assertion-key.pem" >/dev/null

# The same configuration as the load comparison: a sensitive route and a
# deny route the workload misses.
cat >"$WORK/stepgate.yaml" <<EOF
listen: 127.0.0.1:$SG_PORT
tls: { cert: gateway.pem, key: gateway-key.pem }
upstream: http://127.0.0.1:$UPSTREAM_PORT
session: { cookie: SESSIONID }
assertion: { key: assertion-key.pem, issuer: stepgate, audience: bench }
routes:
  - name: delete-user
    match: { methods: [POST, DELETE], path: '/admin/users/([^/]+)(/delete)?' }
    require: { methods: [totp] }
  - name: no-sql
    match: { prefix: /admin/sql }
    deny: true
EOF

# Ir of one dump file: the "totals:" line callgrind writes.
total_ir() { awk '/^totals:/ {print $2}' "$1"; }

# One run: every workload against one server under callgrind.
# Usage: measure OUT PORT COMMAND...; writes "scenario requests Ir" lines to
# OUT, top functions to OUT.top.
measure() {
    local out=$1 port=$2 cg="$WORK/cg.out" pid
    shift 2
    local URL="https://127.0.0.1:$port/static/1k"
    rm -f "$cg"*
    valgrind --tool=callgrind --callgrind-out-file="$cg" --dump-instr=no "$@" 2>"$WORK/server.log" &
    pid=$!
    PIDS+=("$pid")
    if ! wait_port "$port" 600; then
        echo "-- the server's output under valgrind:" >&2
        tail -20 "$WORK/server.log" >&2
        exit 1
    fi
    # Warm-up: the upstream connection, lazily built state, first-use paths.
    h2load --h1 -n 20 -c 1 "$URL" >/dev/null
    h2load -n 20 -c 1 -m 10 "$URL" >/dev/null
    for scenario in h1 h2 new; do
        callgrind_control -z "$pid" >/dev/null
        case $scenario in
        h1) h2load --h1 -n "$H1_REQS" -c 1 "$URL" >"$WORK/$scenario.txt"; n=$H1_REQS ;;
        h2) h2load -n "$H2_REQS" -c 1 -m 10 "$URL" >"$WORK/$scenario.txt"; n=$H2_REQS ;;
        new)
            : >"$WORK/$scenario.txt"
            for _ in $(seq 1 "$NEW_REQS"); do h2load --h1 -n 1 -c 1 "$URL" >>"$WORK/$scenario.txt"; done
            n=$NEW_REQS
            ;;
        esac
        local ok
        ok=$(awk '/^status codes:/ {s += $3} END {print s + 0}' "$WORK/$scenario.txt")
        if [[ $ok -ne $n ]]; then
            echo "$scenario: $ok of $n requests got 2xx" >&2
            cat "$WORK/$scenario.txt" >&2
            exit 1
        fi
        callgrind_control -d "$scenario" "$pid" >/dev/null
        local dump
        dump=$(ls -t "$cg".* | head -1)
        echo "$scenario $n $(total_ir "$dump")" >>"$out"
        {
            echo "## $scenario: top $TOP functions by exclusive Ir (of $(total_ir "$dump"))"
            # Functions that were on a thread's stack when the counters
            # were zeroed (the runtime's poll loop) come out of a mid-run
            # dump with the whole total as their own cost; they are not
            # hot spots, so entries at 50% or more are left out.
            callgrind_annotate --threshold=100 --inclusive=no "$dump" 2>/dev/null |
                awk -v top="$TOP" '/^-+$/ {sec++} sec >= 3 && NF && $1 ~ /^[0-9,]+$/ {
                    p = $2; gsub(/[(%)]/, "", p); if (p + 0 < 50 && n++ < top) print }'
            echo
        } >>"$out.top"
    done
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

for r in $(seq 1 "$RUNS"); do
    log "run $r of $RUNS"
    measure "$WORK/run$r.txt" "$SG_PORT" "$STEPGATE" serve --config "$WORK/stepgate.yaml"
done

# The reference: nginx as the same TLS proxy (the load comparison's
# settings, one process, same certificate), same workloads.
if [[ -n ${WITH_NGINX:-} ]]; then
    nginx_proxy_conf "$WORK/nginx" "$NGX_PORT" "$UPSTREAM_PORT" "master_process off;
worker_processes 1;"
    log "nginx reference"
    measure "$WORK/nginx.txt" "$NGX_PORT" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
fi

# ------------------------------------------------------------------ report
report="$WORK/report.txt"
{
    echo "# stepgate pass-through, instructions per request (callgrind Ir), commit $(git -C "$ROOT" rev-parse --short HEAD)"
    printf '%-4s %8s' scenario reqs
    for r in $(seq 1 "$RUNS"); do printf ' %12s' "run$r"; done
    ((RUNS > 1)) && printf ' %9s' spread
    [[ -f $WORK/nginx.txt ]] && printf ' %12s %8s' nginx ratio
    echo
    for s in h1 h2 new; do
        n=$(awk -v s="$s" '$1 == s {print $2}' "$WORK/run1.txt")
        printf '%-4s %8s' "$s" "$n"
        vals=()
        for r in $(seq 1 "$RUNS"); do
            v=$(awk -v s="$s" '$1 == s {printf "%.0f", $3 / $2}' "$WORK/run$r.txt")
            vals+=("$v")
            printf ' %12s' "$v"
        done
        if ((RUNS > 1)); then
            printf ' %8s%%' "$(printf '%s\n' "${vals[@]}" | sort -n | awk '{v[NR] = $1} END {printf "%.2f", (v[NR] - v[1]) * 100 / v[1]}')"
        fi
        if [[ -f $WORK/nginx.txt ]]; then
            ngx=$(awk -v s="$s" '$1 == s {printf "%.0f", $3 / $2}' "$WORK/nginx.txt")
            printf ' %12s %8s' "$ngx" "$(awk -v a="${vals[0]}" -v b="$ngx" 'BEGIN {printf "%.2f", a / b}')"
        fi
        echo
    done
} >"$report"
cat "$report"
echo
cat "$WORK/run1.txt.top"
if [[ -f $WORK/nginx.txt.top ]]; then
    echo "# nginx"
    cat "$WORK/nginx.txt.top"
fi

# The run-1 per-request figure per scenario, "scenario ir_per_request".
current() { awk '{printf "%s %.0f\n", $1, $3 / $2}' "$WORK/run1.txt"; }

case $MODE in
--compare)
    if [[ ! -f $BASELINE ]]; then
        echo "no baseline at $BASELINE (run with --update)" >&2
        exit 1
    fi
    echo "## vs baseline ($(head -1 "$BASELINE" | sed 's/^# //'))"
    current | while read -r s v; do
        b=$(awk -v s="$s" '$1 == s {print $2}' "$BASELINE")
        if [[ -z $b ]]; then
            echo "$s: $v Ir/req (no baseline)"
        else
            awk -v s="$s" -v v="$v" -v b="$b" 'BEGIN {printf "%-4s %10d Ir/req  baseline %10d  delta %+6.1f%%\n", s, v, b, (v - b) * 100 / b}'
        fi
    done
    ;;
--update)
    {
        echo "# commit $(git -C "$ROOT" rev-parse --short HEAD), $(date -u '+%Y-%m-%d'); scenario Ir_per_request"
        current
    } >"$BASELINE"
    log "wrote $BASELINE"
    ;;
"") ;;
*)
    echo "usage: $0 [--compare|--update]" >&2
    exit 2
    ;;
esac
