#!/usr/bin/env bash
# Load comparison: stepgate vs nginx as TLS-terminating reverse proxies in
# front of the same static upstream, driven by the same load generators, in
# alternating rounds; plus stepgate's sensitive route with a valid up-front
# X-StepUp-Token against stepgate's own pass-through.
#
#   bash benches/load/run.sh                        # 3 rounds, 10 s per run (~7 min)
#   ROUNDS=1 DURATION=5 OUT=/tmp/look bash benches/load/run.sh   # a quick look
#
# Writes benches/load/results.md, results.json and chart.svg (or into $OUT).
# Everything listens on 127.0.0.1 only, every run is bounded in time, and
# every process started here is stopped on exit. Needs root only to
# apt-get install a tool.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}          # seconds per measured run
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}
SG_PORT=${SG_PORT:-18443}
NGX_PORT=${NGX_PORT:-18444}
ADMIN_PORT=${ADMIN_PORT:-18445}
# A shared 2-core machine: the load generator competes with the proxy for
# CPU, so keep it at two threads (wrk) / one thread (h2load).
WRK_THREADS=${WRK_THREADS:-2}
KEEPALIVE_CONNS=${KEEPALIVE_CONNS:-50}
CLOSE_CONNS=${CLOSE_CONNS:-10}
H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}
TOKEN_CONNS=${TOKEN_CONNS:-50}
# Tokens minted per second of a token run; a thread that runs out says so
# ("tokens wrapped" in the per-round table) and the run does not count.
TOKEN_RATE=${TOKEN_RATE:-8000}
# keepalive-16k and h2-16k are the same runs against a 16 KiB body, where
# per-byte costs (DATA frames, flow control, copies) dominate.
SCENARIOS=${SCENARIOS:-"keepalive close h2 keepalive-16k h2-16k token"}
# PERF="token keepalive" also samples stepgate with `perf record` during the
# first round of those scenarios and writes benches/load/perf-SCENARIO.txt
# (flat profile by symbol). The profiled runs are left out of the medians.
PERF=${PERF:-}

if ((DURATION > 240)); then
    echo "DURATION must be at most 240 s: step-up tokens live 300 s" >&2
    exit 2
fi

# shellcheck source=benches/lib.sh
source "$(dirname "$0")/../lib.sh"
bench_init load
HERE="$ROOT/benches/load"
# Where results go; point a quick look elsewhere to keep the committed ones.
OUT=${OUT:-$HERE}
mkdir -p "$OUT"

need_tools nginx:nginx wrk:wrk h2load:nghttp2-client curl:curl python3:python3
NGINX=$(command -v nginx)
PORT_KNOBS=UPSTREAM_PORT/SG_PORT/NGX_PORT/ADMIN_PORT ports_free "$UPSTREAM_PORT" "$SG_PORT" "$NGX_PORT" "$ADMIN_PORT"

# STEPGATE=/path/to/stepgate (with TOKENS_BIN=/path/to/bench_tokens)
# measures a build made earlier, e.g. one side of an A/B, without building.
if [[ -z ${STEPGATE:-} ]]; then
    cargo_release --bin stepgate --example bench_tokens
    STEPGATE="$TARGET_DIR/release/stepgate"
fi
TOKENS_BIN=${TOKENS_BIN:-$TARGET_DIR/release/examples/bench_tokens}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ upstream
mkdir -p "$WORK/state"
start_static_upstream "$UPSTREAM_PORT"

# ------------------------------------------------------------------ stepgate
# First run generates the dev certificate (rcgen, ECDSA P-256) and the
# assertion key next to the config; nginx then serves the same certificate.
# The token issuer is a key made here; tokens are minted per run.
"$TOKENS_BIN" init "$WORK"
# serve no longer makes a certificate it does not find: make one here (ECDSA
# P-256, the same for both proxies).
if [[ ! -f $WORK/gateway.pem ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$WORK/gateway-key.pem" -out "$WORK/gateway.pem" 2>/dev/null
fi
[[ -f $WORK/assertion-key.pem ]] || "$STEPGATE" keygen --out "$WORK/assertion-key.pem" >/dev/null
cat >"$WORK/stepgate.yaml" <<EOF
listen: 127.0.0.1:$SG_PORT
admin_listen: 127.0.0.1:$ADMIN_PORT
tls: { cert: gateway.pem, key: gateway-key.pem }
upstream: http://127.0.0.1:$UPSTREAM_PORT
session: { cookie: SESSIONID }
assertion: { key: assertion-key.pem, issuer: stepgate, audience: bench }
audit: { path: state/audit.jsonl }
stepup:
  token_issuers: [ { issuer: 'https://idp.bench', audience: stepgate-bench, jwks: idp-jwks.json } ]
routes:
  # The sensitive route of the token scenario: a valid up-front token is
  # verified, its jti claimed, the assertion signed, the decision written
  # ahead to the audit trail, then the request is forwarded.
  - name: sensitive-write
    action: bench.write
    match: { methods: [POST], path: /api/write }
    require: { methods: [token], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
  # More routes so the matcher has work; the pass-through paths miss them.
  - name: delete-user
    match: { methods: [POST, DELETE], path: '/admin/users/([^/]+)(/delete)?' }
    require: { methods: [totp] }
  - name: no-sql
    match: { prefix: /admin/sql }
    deny: true
EOF
"$STEPGATE" serve --config "$WORK/stepgate.yaml" 2>"$WORK/stepgate.log" &
SG_PID=$!
PIDS+=("$SG_PID")

wait_port "$SG_PORT"

# ------------------------------------------------------------------ nginx proxy
# The proxy settings are described at nginx_proxy_conf (benches/lib.sh).
nginx_proxy_conf "$WORK/nginx" "$NGX_PORT" "$UPSTREAM_PORT" "worker_processes auto;"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGX_PID=$!
PIDS+=("$NGX_PID")
wait_port "$NGX_PORT"

# ------------------------------------------------------------------ measuring
# A proxy's processes: stepgate is one; nginx is the master plus workers.
proxy_pids() {
    case $1 in
    stepgate) echo "$SG_PID" ;;
    nginx) echo "$NGX_PID" $(pgrep -P "$NGX_PID") ;;
    esac
}

# Sum of a /proc/PID/status field over a proxy's processes, in KiB. For
# nginx the sum counts pages shared by the master and workers more than
# once, so it is an upper bound.
status_kib() {
    local p total=0 v
    for p in $(proxy_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status")
        total=$((total + v))
    done
    echo "$total"
}

# Idle: after start-up, before any request.
sleep 1
IDLE_SG=$(status_kib stepgate VmRSS)
IDLE_NGX=$(status_kib nginx VmRSS)
log "idle RSS: stepgate $IDLE_SG KiB, nginx $IDLE_NGX KiB"

URL_PATH=/static/1k
SG_URL="https://127.0.0.1:$SG_PORT$URL_PATH"
NGX_URL="https://127.0.0.1:$NGX_PORT$URL_PATH"

# Both proxies must actually forward before their numbers mean anything.
for url in "$SG_URL" "$NGX_URL"; do
    for v in --http1.1 --http2; do
        got=$(curl -sk "$v" -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "$url")
        log "check $url $v: $got"
        case $got in
        "200 1024 "*) ;;
        *) echo "proxy check failed for $url ($v): $got" >&2; exit 1 ;;
        esac
        got=$(curl -sk "$v" -o /dev/null -w '%{http_code} %{size_download}' "${url%/1k}/16k")
        [[ $got == "200 16384" ]] || { echo "proxy check failed for ${url%/1k}/16k ($v): $got" >&2; exit 1; }
    done
done

# The token scenario's request: one session, one body. Its challenge names
# the sid and txn every token must be bound to.
SESSION_COOKIE="SESSIONID=bench-session-0001"
printf '%s' '{"user":"u-4711","role":"admin","comment":"load benchmark: a sensitive write with an up-front step-up token"}' \
    >"$WORK/body.json"
TOKEN_PATH=/api/write
BASE_PATH=/api/pass
challenge=$(curl -sk --http1.1 -H "Cookie: $SESSION_COOKIE" -H 'Content-Type: application/json' \
    --data-binary @"$WORK/body.json" "https://127.0.0.1:$SG_PORT$TOKEN_PATH")
read -r BIND_SID BIND_TXN < <(python3 -c 'import json, sys; c = json.loads(sys.argv[1]); print(c["sid"], c["txn"])' "$challenge")
mint() {
    "$TOKENS_BIN" mint --key "$WORK/idp-key.pem" --iss https://idp.bench --aud stepgate-bench \
        --sid "$BIND_SID" --txn "$BIND_TXN" --count "$1" --out "$2"
}
# One token works once: forwarded the first time, held (401) the second.
mint 1 "$WORK/one.tok"
post_token() {
    curl -sk --http1.1 -o /dev/null -w '%{http_code}' -H "Cookie: $SESSION_COOKIE" -H 'Content-Type: application/json' \
        -H "X-StepUp-Token: $(cat "$WORK/one.tok")" --data-binary @"$WORK/body.json" "https://127.0.0.1:$SG_PORT$1"
}
first=$(post_token "$TOKEN_PATH")
again=$(post_token "$TOKEN_PATH")
base=$(post_token "$BASE_PATH")
log "check token: first use $first, replay $again, pass-through $base"
if [[ "$first $again $base" != "200 401 200" ]]; then
    echo "token check failed: expected 200 401 200" >&2
    exit 1
fi

cpu_ticks() {
    local p total=0 v
    for p in $(proxy_pids "$1"); do
        # utime + stime; the comm field may hold spaces, so cut after ')'.
        v=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
        total=$((total + v))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# Context switches (voluntary + involuntary) over every thread of the proxy.
ctx_switches() {
    local p total=0
    for p in $(proxy_pids "$1"); do
        total=$((total + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')))
    done
    echo "$total"
}

# Reset VmHWM (clear_refs 5), so each run reports its own peak.
reset_hwm() {
    local p
    for p in $(proxy_pids "$1"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
}

# TCP connections accepted on this machine (all of loopback): in the
# new-connection scenario it shows that every request had its own.
passive_opens() {
    awk '$1 == "Tcp:" { if (!n) { for (i = 2; i <= NF; i++) col[$i] = i; n = 1 } else print $col["PassiveOpens"] }' /proc/net/snmp
}

# stepgate's durable audit writes so far: "count sum_seconds".
audit_writes() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk '/^stepgate_audit_write_seconds_count / {c = $2} /^stepgate_audit_write_seconds_sum / {s = $2} END {print c + 0, s + 0}'
}

# A flat perf profile: shares by kind of work, then the top symbols.
perf_summary() {
    local data=$1 scenario=$2 flat="$WORK/perf-flat.txt"
    perf report -i "$data" --stdio --no-children -g none --sort dso,symbol 2>/dev/null |
        awk '$1 ~ /%$/' | sed 's/ *- *- *$//' >"$flat"
    echo "# stepgate CPU profile during the $scenario run (perf record -F 499 -p PID, cpu-clock)"
    echo "# share of samples by kind of work:"
    awk '{
        p = $1; sub(/%/, "", p); k = "other"
        if ($0 ~ /p256::|crypto_bigint::|primeorder::|elliptic_curve::|ecdsa::/) k = "ECDSA P-256 (p256 crate)"
        else if ($0 ~ /ECDSA_|ecdsa_|nistz256|ec_GFp|ec_point_|ec_scalar|ec_random|p256_point/) k = "ECDSA P-256 (aws-lc)"
        else if ($0 ~ /aws_lc|rustls/) k = "TLS (rustls, aws-lc)"
        else if ($0 ~ /\[kernel/) k = "kernel (syscalls, network, scheduling, disk)"
        else if ($0 ~ /libc\.so/) k = "libc (malloc, memcpy)"
        else if ($0 ~ /sha2::/) k = "SHA-256"
        else if ($0 ~ /serde_json|serde_core/) k = "JSON"
        else if ($0 ~ /hyper|h2::|tokio|http::/) k = "hyper, h2, tokio, http"
        share[k] += p
    } END { for (k in share) printf "%6.2f%%  %s\n", share[k], k }' "$flat" | sort -rn
    echo "# top symbols:"
    head -40 "$flat"
}

# wrk latency "1.23ms" / "812.00us" / "1.02s" -> ms
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else print "nan" }'
}

RAW="$WORK/raw.tsv"
printf 'round\tscenario\tproxy\trps\tp50_ms\tp99_ms\terrors\tpeak_rss_kib\tcpu_us_per_req\trequests\tconns_per_req\taudit_ms\tnote\n' >"$RAW"

# One measured run; appends a row to $RAW. Scenario "token" is stepgate's
# sensitive route with a fresh token per request; "token-base" sends the
# very same requests (same script, headers and body) to a path no route
# matches, so it is stepgate's own pass-through for that traffic.
run_one() {
    local round=$1 scenario=$2 proxy=$3 url out rps p50 p99 errors cpu0 cpu1 reqs opens0 opens1 note="" audit0 audit1
    url=$SG_URL
    [[ $proxy == nginx ]] && url=$NGX_URL
    [[ $scenario == *-16k ]] && url=${url%/1k}/16k
    out="$WORK/$scenario-$proxy-$round.txt"
    local wait=$((DURATION + 30))
    if [[ $scenario == token ]]; then
        # Fresh tokens for every run: a jti works once, a token lives 300 s.
        mint $(((DURATION + 2) * TOKEN_RATE)) "$WORK/tokens.txt"
    elif [[ $scenario == token-base && ! -s $WORK/tokens.txt ]]; then
        # On the pass-through path the header is stripped unread: the same
        # shape of token is enough, and reusing one is harmless.
        mint 1000 "$WORK/tokens.txt"
    fi
    local perf_pid=""
    if [[ $proxy == stepgate && $round == 1 && " $PERF " == *" $scenario "* ]]; then
        perf record -F 499 -o "$WORK/perf-$scenario.data" -p "$SG_PID" -- sleep "$DURATION" 2>/dev/null &
        perf_pid=$!
    fi
    reset_hwm "$proxy"
    read -r audit0 < <(audit_writes)
    opens0=$(passive_opens)
    cpu0=$(cpu_ticks "$proxy")
    local cs0 cs1
    cs0=$(ctx_switches "$proxy")
    case $scenario in
    keepalive | keepalive-16k)
        timeout $wait wrk -t "$WRK_THREADS" -c "$KEEPALIVE_CONNS" -d "${DURATION}s" --latency "$url" >"$out"
        ;;
    close)
        # The server closes after each answer and wrk opens a new connection;
        # it offers the last TLS 1.3 ticket, so the handshake is a resumption.
        timeout $wait wrk -t "$WRK_THREADS" -c "$CLOSE_CONNS" -d "${DURATION}s" --latency \
            -H 'Connection: close' "$url" >"$out"
        ;;
    h2 | h2-16k)
        # CPU is counted after h2load's 1 s warm-up, like its requests.
        timeout $wait h2load -t 1 -c "$H2_CONNS" -m "$H2_STREAMS" -D "$DURATION" --warm-up-time=1 \
            --log-file="$out.log" "$url" >"$out" &
        local h2=$!
        sleep 1
        cpu0=$(cpu_ticks "$proxy")
        wait "$h2"
        ;;
    token | token-base)
        local path=$TOKEN_PATH
        [[ $scenario == token-base ]] && path=$BASE_PATH
        timeout $wait wrk -t "$WRK_THREADS" -c "$TOKEN_CONNS" -d "${DURATION}s" --latency \
            -s "$HERE/token.lua" "https://127.0.0.1:$SG_PORT$path" \
            -- "$path" "$WORK/tokens.txt" "$WRK_THREADS" "$SESSION_COOKIE" "$WORK/body.json" >"$out"
        if [[ $scenario == token ]] && grep -q '^tokens wrapped' "$out"; then
            note="tokens wrapped: raise TOKEN_RATE"
        fi
        ;;
    esac
    cpu1=$(cpu_ticks "$proxy")
    cs1=$(ctx_switches "$proxy")
    opens1=$(passive_opens)
    if [[ -n $perf_pid ]]; then
        wait "$perf_pid" || true
        perf_summary "$WORK/perf-$scenario.data" "$scenario" >"$OUT/perf-$scenario.txt" || true
        note="profiled"
    fi
    read -r audit1 < <(audit_writes)
    if [[ $scenario == h2* ]]; then
        rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$out")
        reqs=$(awk '/^requests:/ {print $8}' "$out")
        # failed + errored + timed out, plus 4xx/5xx answers.
        errors=$(awk '/^requests:/ {n += $10 + $12 + $14} /^status codes:/ {n += $7 + $9} END {print n + 0}' "$out")
        # Percentiles from the per-request log (third column, microseconds).
        read -r p50 p99 < <(cut -f3 "$out.log" | sort -n | awk '{v[NR] = $1}
            END { if (NR == 0) { print "nan nan"; exit }
                  i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
                  i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
                  printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }')
        rm -f "$out.log"
    else
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        reqs=$(awk '/requests in/ {print $1}' "$out")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
        # Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers.
        errors=$(awk '/Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10}
            /Non-2xx or 3xx/ {n += $5} END {print n + 0}' "$out")
    fi
    local cpu_us="nan" conns="nan" audit_ms="-"
    if [[ ${reqs:-0} -gt 0 ]]; then
        cpu_us=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
        conns=$(awk -v o=$((opens1 - opens0)) -v n="$reqs" 'BEGIN {printf "%.3f", o / n}')
    fi
    if [[ $scenario == token ]]; then
        audit_ms=$(awk -v a="$audit0" -v b="$audit1" 'BEGIN {split(a, x, " "); split(b, y, " ");
            n = y[1] - x[1]; if (n > 0) printf "%.3f", (y[2] - x[2]) / n * 1000; else print "-"}')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$scenario" "$proxy" "$rps" "$p50" "$p99" \
        "$errors" "$(status_kib "$proxy" VmHWM)" "$cpu_us" "$reqs" "$conns" "$audit_ms" "$note" >>"$RAW"
    log "round $round $scenario $proxy: $rps req/s p50 ${p50}ms p99 ${p99}ms errors $errors cpu ${cpu_us}us/req" \
        "context switches/req $(awk -v c=$((cs1 - cs0)) -v n="${reqs:-0}" 'BEGIN {if (n > 0) printf "%.2f", c / n; else print "nan"}') $note"
}

# The token runs come after every pass-through round: each leaves its
# claimed jti values in the replay store until they expire, and that memory
# must not show up in the pass-through runs' peak RSS.
passthrough=() token=()
for scenario in $SCENARIOS; do
    if [[ $scenario == token ]]; then token+=("$scenario"); else passthrough+=("$scenario"); fi
done
for group in passthrough token; do
    declare -n list=$group
    for round in $(seq 1 "$ROUNDS"); do
        for scenario in "${list[@]}"; do
            # Alternate who goes first, so a drift in machine load (other
            # builds on the shared cores) does not always favour one side.
            if [[ $scenario == token ]]; then
                pair=("token stepgate" "token-base stepgate")
            else
                pair=("$scenario stepgate" "$scenario nginx")
            fi
            if ((round % 2 == 0)); then pair=("${pair[1]}" "${pair[0]}"); fi
            for run in "${pair[@]}"; do
                read -r s p <<<"$run"
                run_one "$round" "$s" "$p"
                sleep 1
            done
        done
    done
    unset -n list
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ report
cat >"$WORK/meta.json" <<EOF
{
  "commit": "$(git -C "$ROOT" rev-parse --short HEAD)",
  "rounds": $ROUNDS, "duration_s": $DURATION,
  "idle_rss_kib": { "stepgate": $IDLE_SG, "nginx": $IDLE_NGX },
  "params": { "wrk_threads": $WRK_THREADS, "keepalive_conns": $KEEPALIVE_CONNS, "close_conns": $CLOSE_CONNS,
              "h2_conns": $H2_CONNS, "h2_streams": $H2_STREAMS, "token_conns": $TOKEN_CONNS, "token_rate": $TOKEN_RATE },
  "machine": {
    "nproc": $(nproc),
    "cpu": "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)",
    "kernel": "$(uname -sr)",
    "memory": "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)",
    "load_before": "$LOAD_BEFORE",
    "load_after": "$LOAD_AFTER",
    "nginx": "$("$NGINX" -v 2>&1 | sed 's/.*: //')",
    "wrk": "$(wrk -v 2>&1 | head -1 | awk '{print $2}')",
    "h2load": "$(h2load --version 2>&1 | head -1 | sed 's/^h2load //')",
    "rustc": "$(rustc --version 2>/dev/null || echo unknown)"
  }
}
EOF
cp "$WORK/stepgate.yaml" "$WORK/stepgate-config.txt"
sed "s#$WORK#\$WORK#g" "$WORK/nginx/nginx.conf" >"$WORK/nginx-config.txt"
python3 "$HERE/report.py" "$WORK" "$OUT"
python3 "$HERE/chart.py" "$OUT/results.json" "$OUT/chart.svg"
log "wrote $OUT/results.md, results.json and chart.svg"
