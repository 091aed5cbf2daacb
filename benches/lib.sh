# Shared by the benchmark scripts under benches/: sourced, not run.
#
#   source "$(dirname "$0")/../lib.sh"
#   bench_init NAME            # ROOT, TARGET_DIR, WORK=/tmp/stepgate-NAME.*, log, exit cleanup
#
# Every process a script starts goes into PIDS; on exit each is sent TERM,
# given $STOP_WAIT tenths of a second, then killed, and $WORK is removed
# (kept when KEEP is set).

bench_init() {
    BENCH_NAME=$1
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    WORK=$(mktemp -d "/tmp/stepgate-$BENCH_NAME.XXXXXX")
    PIDS=()
    STOP_WAIT=${STOP_WAIT:-50}
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 "$STOP_WAIT"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}

log() { printf '[%s] %s\n' "$BENCH_NAME" "$*" >&2; }

# need_tools COMMAND:PACKAGE...: apt-get installs the packages of the
# commands that are missing (needs root only then).
need_tools() {
    local spec need=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || need+=("${spec#*:}")
    done
    if ((${#need[@]})); then
        log "installing ${need[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
    fi
}

# cargo_release ARGS...: a release build of the named targets.
cargo_release() {
    log "building stepgate (release)"
    (cd "$ROOT" && cargo build --release "$@")
}

# ports_free PORT...: exit if something already listens on one of them.
ports_free() {
    local port
    for port in "$@"; do
        if ss -Hltn "sport = :$port" | grep -q .; then
            echo "port $port is in use; set ${PORT_KNOBS:-its *_PORT variable}" >&2
            exit 1
        fi
    done
}

# wait_port PORT [TENTHS]: until something listens on PORT (default 10 s).
wait_port() {
    local port=$1 tries=${2:-100}
    for _ in $(seq 1 "$tries"); do
        ss -Hltn "sport = :$port" | grep -q . && return 0
        sleep 0.1
    done
    echo "nothing listens on $port after $((tries / 10)) s" >&2
    return 1
}

# start_static_upstream PORT: nginx answering from memory with one worker,
# in $WORK/upstream. It does far less per request than either proxy (no
# TLS, no proxying), so it is not the bottleneck. GET of any path is a
# 1 KiB file, GET /static/16k a 16 KiB one; POST /api/... a short JSON
# answer. Returns once it listens.
start_static_upstream() {
    local port=$1 dir="$WORK/upstream"
    mkdir -p "$dir"
    head -c 1024 /dev/zero | tr '\0' 'x' >"$dir/1k"
    head -c 16384 /dev/zero | tr '\0' 'x' >"$dir/16k"
    # nginx workers drop root and run as nobody; they must be able to read it.
    chmod 755 "$WORK" "$dir"
    chmod 644 "$dir/1k" "$dir/16k"
    # The long keep-alive timeout lets a proxy slowed down by valgrind keep
    # its pooled upstream connection.
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    open_file_cache max=16;
    server {
        listen 127.0.0.1:$port reuseport;
        root $dir;
        location /api/ { default_type application/json; return 200 '{"ok":true}'; }
        location = /static/16k { default_type application/octet-stream; try_files /16k =404; }
        location / { default_type application/octet-stream; try_files /1k =404; }
    }
}
EOF
    nginx -p "$dir" -c "$dir/nginx.conf" &
    PIDS+=($!)
    wait_port "$port"
}

# nginx_proxy_conf DIR PORT UPSTREAM_PORT PROCESS_LINES: nginx as the same
# TLS proxy stepgate is, written to DIR/nginx.conf. Matched to what
# stepgate does: TLS 1.2/1.3 with stepgate's certificate ($WORK/gateway.pem),
# h2 + http/1.1 by ALPN, HTTP/1.1 keep-alive pool to the upstream, no access
# log (stepgate logs nothing per pass-through request). keepalive_requests
# is raised because stepgate has no per-connection request cap; nginx's
# default of 1000 would make it re-handshake during a keep-alive run.
# PROCESS_LINES are the process-model directives, one per line.
nginx_proxy_conf() {
    local dir=$1 port=$2 upstream=$3 processes=$4
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
$processes
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    upstream app {
        server 127.0.0.1:$upstream;
        keepalive 256;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$port ssl http2;
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
}
