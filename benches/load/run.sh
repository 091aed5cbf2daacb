#!/usr/bin/env bash
# Load comparison: stepgate vs nginx as TLS-terminating reverse proxies in
# front of the same static upstream, driven by the same load generators.
#
#   bash benches/load/run.sh            # 3 alternating rounds, 10 s per run
#   ROUNDS=1 DURATION=5 bash benches/load/run.sh   # a quick look
#
# Writes benches/load/results.md. Everything listens on 127.0.0.1 only,
# every run is bounded in time, and every process started here is stopped
# on exit. Needs root only when it has to apt-get install a tool.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}          # seconds per measured run
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}
SG_PORT=${SG_PORT:-18443}
NGX_PORT=${NGX_PORT:-18444}
# A shared 2-core machine: the load generator competes with the proxy for
# CPU, so keep it at two threads (wrk) / one thread (h2load).
WRK_THREADS=${WRK_THREADS:-2}
KEEPALIVE_CONNS=${KEEPALIVE_CONNS:-50}
CLOSE_CONNS=${CLOSE_CONNS:-10}
H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT_MD="$ROOT/benches/load/results.md"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/stepgate-load.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Bounded wait: 5 s, then force.
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[load] %s\n' "$*" >&2; }

# ------------------------------------------------------------------ tools
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
NGINX=$(command -v nginx)

for port in "$UPSTREAM_PORT" "$SG_PORT" "$NGX_PORT"; do
    if ss -Hltn "sport = :$port" | grep -q .; then
        echo "port $port is in use; set UPSTREAM_PORT/SG_PORT/NGX_PORT" >&2
        exit 1
    fi
done

log "building stepgate (release)"
(cd "$ROOT" && cargo build --release --bin stepgate)
STEPGATE="$TARGET_DIR/release/stepgate"

# ------------------------------------------------------------------ upstream
# nginx answering from memory with one worker: it does far less per request
# than either proxy (no TLS, no proxying), so it is not the bottleneck.
mkdir -p "$WORK/upstream" "$WORK/nginx"
head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/upstream/1k"
# nginx workers drop root and run as nobody; they must be able to read it.
chmod 755 "$WORK" "$WORK/upstream"
chmod 644 "$WORK/upstream/1k"
cat >"$WORK/upstream/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    open_file_cache max=16;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT reuseport;
        root $WORK/upstream;
        location / { default_type application/octet-stream; try_files /1k =404; }
    }
}
EOF
"$NGINX" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" &
PIDS+=($!)

# ------------------------------------------------------------------ stepgate
# First run generates the dev certificate (rcgen, ECDSA P-256) and the
# assertion key next to the config; nginx then serves the same certificate.
cat >"$WORK/stepgate.yaml" <<EOF
listen: 127.0.0.1:$SG_PORT
tls: { cert: gateway.pem, key: gateway-key.pem }
upstream: http://127.0.0.1:$UPSTREAM_PORT
session: { cookie: SESSIONID }
assertion: { key: assertion-key.pem, issuer: stepgate, audience: bench }
routes:
  # A sensitive route so the matcher has work; the load path misses it
  # and is forwarded straight through.
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

wait_port() {
    local port=$1
    for _ in $(seq 1 100); do
        ss -Hltn "sport = :$port" | grep -q . && return 0
        sleep 0.1
    done
    echo "nothing listens on $port after 10 s" >&2
    return 1
}
wait_port "$UPSTREAM_PORT"
wait_port "$SG_PORT"

# ------------------------------------------------------------------ nginx proxy
# Matched to what stepgate does: TLS 1.2/1.3 with the same certificate,
# h2 + http/1.1 by ALPN, HTTP/1.1 keep-alive pool to the upstream, no access
# log (stepgate logs nothing per pass-through request). keepalive_requests
# is raised because stepgate has no per-connection request cap; nginx's
# default of 1000 would make it re-handshake during the keep-alive run.
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    upstream app {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 256;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$NGX_PORT ssl http2;
        ssl_certificate $WORK/gateway.pem;
        ssl_certificate_key $WORK/gateway-key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host \$http_host;
        }
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGX_PID=$!
PIDS+=("$NGX_PID")
wait_port "$NGX_PORT"

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
    done
done

# ------------------------------------------------------------------ measuring
# A proxy's processes: stepgate is one; nginx is the master plus workers.
proxy_pids() {
    case $1 in
    stepgate) echo "$SG_PID" ;;
    nginx) echo "$NGX_PID" $(pgrep -P "$NGX_PID") ;;
    esac
}

# VmHWM is reset per run (clear_refs 5), so each run reports its own peak.
reset_hwm() {
    local p
    for p in $(proxy_pids "$1"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
}

# Sum over processes, in KiB. For nginx the sum counts pages shared by the
# master and workers more than once, so it is an upper bound.
peak_rss_kib() {
    local p total=0 v
    for p in $(proxy_pids "$1"); do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")
        total=$((total + v))
    done
    echo "$total"
}

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

# wrk latency "1.23ms" / "812.00us" / "1.02s" -> ms
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else print "nan" }'
}

RAW="$WORK/raw.tsv"
printf 'round\tscenario\tproxy\trps\tp50_ms\tp99_ms\terrors\tpeak_rss_kib\tcpu_us_per_req\n' >"$RAW"

# One measured run; appends a row to $RAW.
run_one() {
    local round=$1 scenario=$2 proxy=$3 url out rps p50 p99 errors cpu0 cpu1 reqs
    url=$SG_URL
    [[ $proxy == nginx ]] && url=$NGX_URL
    out="$WORK/$scenario-$proxy-$round.txt"
    reset_hwm "$proxy"
    cpu0=$(cpu_ticks "$proxy")
    case $scenario in
    keepalive)
        timeout $((DURATION + 30)) wrk -t "$WRK_THREADS" -c "$KEEPALIVE_CONNS" -d "${DURATION}s" --latency "$url" >"$out"
        ;;
    close)
        timeout $((DURATION + 30)) wrk -t "$WRK_THREADS" -c "$CLOSE_CONNS" -d "${DURATION}s" --latency \
            -H 'Connection: close' "$url" >"$out"
        ;;
    h2)
        timeout $((DURATION + 30)) h2load -t 1 -c "$H2_CONNS" -m "$H2_STREAMS" -D "$DURATION" --warm-up-time=1 \
            --log-file="$out.log" "$url" >"$out"
        ;;
    esac
    cpu1=$(cpu_ticks "$proxy")
    if [[ $scenario == h2 ]]; then
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
    local cpu_us="nan"
    if [[ ${reqs:-0} -gt 0 ]]; then
        cpu_us=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$scenario" "$proxy" "$rps" "$p50" "$p99" \
        "$errors" "$(peak_rss_kib "$proxy")" "$cpu_us" >>"$RAW"
    log "round $round $scenario $proxy: $rps req/s p50 ${p50}ms p99 ${p99}ms errors $errors"
}

SCENARIOS=(keepalive close h2)
for round in $(seq 1 "$ROUNDS"); do
    for scenario in "${SCENARIOS[@]}"; do
        # Alternate who goes first, so a drift in machine load (other
        # builds on the shared cores) does not always favour one side.
        if ((round % 2)); then order=(stepgate nginx); else order=(nginx stepgate); fi
        for proxy in "${order[@]}"; do
            run_one "$round" "$scenario" "$proxy"
            sleep 1
        done
    done
done

# ------------------------------------------------------------------ report
median() { sort -g | awk '{v[NR] = $1} END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v s="$1" -v p="$2" -v c="$3" 'NR > 1 && $2 == s && $3 == p {print $c}' "$RAW"; }
maxcol() { col "$@" | sort -g | tail -1; }

describe() {
    case $1 in
    keepalive) echo "(a) HTTP/1.1 keep-alive, wrk -c $KEEPALIVE_CONNS" ;;
    close) echo "(b) new TLS conn per request, wrk -c $CLOSE_CONNS Connection: close" ;;
    h2) echo "(c) HTTP/2, h2load -c $H2_CONNS -m $H2_STREAMS" ;;
    esac
}

{
    echo "# stepgate vs nginx: TLS reverse proxy load comparison"
    echo
    echo "Generated by \`benches/load/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), stepgate commit $(git -C "$ROOT" rev-parse --short HEAD)."
    echo
    echo "Median of $ROUNDS alternating rounds, ${DURATION} s each. Ratio = stepgate / nginx (req/s: higher is better for stepgate; latency, RSS and CPU: lower is better)."
    echo "Peak RSS is VmHWM per run (reset with clear_refs before each run); for nginx it is the sum over master and workers, max over rounds."
    echo "CPU is the proxy's user+system time over the run divided by completed requests (all of its processes), median over rounds."
    echo
    echo "| scenario | proxy | req/s | p50 ms | p99 ms | errors | peak RSS MiB | CPU µs/req | req/s ratio | CPU/req ratio |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${SCENARIOS[@]}"; do
        sg_rps=$(col "$s" stepgate 4 | median)
        ngx_rps=$(col "$s" nginx 4 | median)
        sg_cpu=$(col "$s" stepgate 9 | median)
        ngx_cpu=$(col "$s" nginx 9 | median)
        for p in stepgate nginx; do
            rps=$(col "$s" "$p" 4 | median)
            p50=$(col "$s" "$p" 5 | median)
            p99=$(col "$s" "$p" 6 | median)
            errs=$(col "$s" "$p" 7 | awk '{s += $1} END {print s + 0}')
            rss=$(awk -v k="$(maxcol "$s" "$p" 8)" 'BEGIN {printf "%.1f", k / 1024}')
            cpu=$(col "$s" "$p" 9 | median)
            ratio="" cpu_ratio=""
            if [[ $p == stepgate ]]; then
                ratio=$(awk -v a="$sg_rps" -v b="$ngx_rps" 'BEGIN {printf "%.2f", a / b}')
                cpu_ratio=$(awk -v a="$sg_cpu" -v b="$ngx_cpu" 'BEGIN {printf "%.2f", a / b}')
            fi
            echo "| $(describe "$s") | $p | $rps | $p50 | $p99 | $errs | $rss | $cpu | $ratio | $cpu_ratio |"
        done
    done
    echo
    echo "How to read this on a shared 2-core machine: the load generator, the upstream and"
    echo "the proxy share two cores (with whatever else runs), so req/s moves with outside load"
    echo "from run to run; CPU µs/req (the proxy's own CPU time per completed request) is the"
    echo "steadier measure of proxy efficiency. In (b) the client's TLS handshakes, not the"
    echo "proxy, set the pace, so its req/s compares the generator more than the proxies."
    echo
    echo "### Per-round raw numbers"
    echo
    echo '```'
    column -t -s $'\t' "$RAW"
    echo '```'
    echo
    echo "### Commands"
    echo
    echo '```'
    echo "upstream: nginx, 1 worker, static 1 KiB file, 127.0.0.1:$UPSTREAM_PORT"
    echo "stepgate: $STEPGATE serve --config stepgate.yaml   (listen 127.0.0.1:$SG_PORT)"
    echo "nginx:    nginx -c nginx.conf   (worker_processes auto, listen 127.0.0.1:$NGX_PORT ssl http2)"
    echo "(a) wrk -t $WRK_THREADS -c $KEEPALIVE_CONNS -d ${DURATION}s --latency https://127.0.0.1:PORT$URL_PATH"
    echo "(b) wrk -t $WRK_THREADS -c $CLOSE_CONNS -d ${DURATION}s --latency -H 'Connection: close' https://127.0.0.1:PORT$URL_PATH"
    echo "(c) h2load -t 1 -c $H2_CONNS -m $H2_STREAMS -D $DURATION --warm-up-time=1 --log-file=LOG https://127.0.0.1:PORT$URL_PATH"
    echo '```'
    echo
    echo "stepgate config:"
    echo
    echo '```yaml'
    cat "$WORK/stepgate.yaml"
    echo '```'
    echo
    echo "nginx proxy config:"
    echo
    echo '```nginx'
    cat "$WORK/nginx/nginx.conf"
    echo '```'
    echo
    echo "### Machine"
    echo
    echo '```'
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel: $(uname -sr)"
    echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "$("$NGINX" -v 2>&1)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "h2load: $(h2load --version 2>&1 | head -1)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo '```'
} >"$OUT_MD"

log "wrote $OUT_MD"
cat "$OUT_MD"
