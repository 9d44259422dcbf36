#!/usr/bin/env bash
# wxgate benchmark (see bench/README.md). Everything listens on 127.0.0.1 only; every process
# this script starts is stopped on exit.
#
#   bench/run.sh [compare]  A upstream direct / B nginx proxy_pass TLS / C nginx auth_request
#                           + wxgate /auth / D wxgate inline TLS (memory store) / R D on a local
#                           redis-server with the session cache (cache_ms=5000) / S the same
#                           without it (cache_ms=0), in alternating rounds
#   bench/run.sh sessions   setup D with 1 000 and with 1 000 000 live sessions; RSS
#   bench/run.sh logins     login cost: logins/s through /callback; CPU of gateway vs mock
#   bench/run.sh profile    CPU per request by component for D, E and B; D: perf, syscalls, mallocs
#   bench/run.sh instructions  D under callgrind: CPU instructions per proxied request (exact, so
#                           a change of 1% shows; the machine's noise does not)
#   bench/run.sh handshakes every request on a new TLS connection (wrk, Connection: close): CPU
#                           per connection (accept, handshake, one request, close) and p99 of B
#                           and the gateways, in alternating rounds
#   bench/run.sh burst      BURST_CONNECTIONS clients connect at once, then keep-alive requests
#                           (h2load --h1, every request logged): how long the connections took
#                           and the requests' p99 during the burst and after it, B against the
#                           gateways, in alternating rounds
#   bench/run.sh serve      start A-D, log in, print URLs/cookies/pids, wait (experiments by hand)
#   bench/run.sh pgo-train  the training load of scripts/build-pgo.sh (WXGATE_BIN = the
#                           instrumented binary): D, R, S, C, HTTP/2, no session, logins
#
# Knobs (environment): ROUNDS=5 DURATION=10 (seconds per wrk run) CONNECTIONS="64 256 1000"
# (compare: each count in turn; the other modes use the first) THREADS=2
# H2=1 H2_CONNECTIONS=32 H2_STREAMS=10 (compare: the HTTP/2 part, h2load against B2 = nginx with
# http2 on, D, and E2 = the floor over HTTP/2 when E is in SETUPS)
# SETUPS="A B C D R S" (compare: which setups, e.g. "B D" for quick A/B work on the hot path;
# E = the stack floor, on request; P = D built with PGO, $PGO_BIN from scripts/build-pgo.sh)
# handshakes: SETUPS="B D" (any of B C D E P R S) HS_CONNECTIONS=16 (connections at a time)
# burst: SETUPS="B D" (any of B C D E P R S) BURST_CONNECTIONS=1000 BURST_WINDOW_MS=1000 (the
#        first this many ms of a run count as the burst)
# WXGATE_BIN (the gateway binary; default target/release/wxgate) PGO_BIN (setup P's;
# default target/pgo/wxgate) LOGIN_LOAD_BIN (default target/release/examples/login_load)
# FLOOR_BIN (setup E's; default target/release/examples/floor_proxy; target/pgo/floor_proxy
# from `scripts/build-pgo.sh floor` is the floor built with PGO)
# PGO_TRAIN_SECS=4 (pgo-train: seconds per load)
# WARMUP=2 PORT_BASE=18000 ACCESS_LOG=0|1 SKIP_BUILD=0|1 KEEP_RUN_DIR=0|1 NGINX_WORKERS=auto
# sessions: SESSIONS_SMALL=1000 SESSIONS_LARGE=1000000 ROTATE_MAX=100000 LOGIN_CONCURRENCY=128
#           LOGIN_BATCH=150000 MAX_SESSIONS=1000000
# logins: LOGINS=20000   profile: PROFILE_SECS=8 PERF_FREQ=499
# instructions: INSTR_SECS=10 INSTR_PROTO=h1|h2 (h2: h2load over HTTP/2 instead of wrk)
#               INSTR_SETUP=D|E (E: the stack floor, to see what wxgate adds per function)
#               INSTR_CONNECTIONS=8 (connections of the measured load; h2: 10 streams each;
#               with 64 or more, INSTR_SECS=45 or more: the handshakes run under valgrind too)
#               INSTR_CACHE=0|1 (1: valgrind's cache simulation too: L1 misses per request and
#               callgrind's cycle estimate; slower)
set -euo pipefail

MODE=${1:-compare}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
ROUNDS=${ROUNDS:-5}
if [[ -z ${SETUPS+set} ]]; then
    SETUPS="A B C D R S"
    [[ $MODE == handshakes || $MODE == burst ]] && SETUPS="B D"
fi
HS_CONNECTIONS=${HS_CONNECTIONS:-16}
BURST_CONNECTIONS=${BURST_CONNECTIONS:-1000}
BURST_WINDOW_MS=${BURST_WINDOW_MS:-1000}
# The modes that run the setups of SETUPS (prepare_setups).
SETUP_MODE=0
[[ $MODE == compare || $MODE == handshakes || $MODE == burst ]] && SETUP_MODE=1
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64 256 1000}
H2=${H2:-1}
H2_CONNECTIONS=${H2_CONNECTIONS:-32}
H2_STREAMS=${H2_STREAMS:-10}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2}
PORT_BASE=${PORT_BASE:-18000}
ACCESS_LOG=${ACCESS_LOG:-0}
NGINX_WORKERS=${NGINX_WORKERS:-auto}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_RUN_DIR=${KEEP_RUN_DIR:-0}
SESSIONS_SMALL=${SESSIONS_SMALL:-1000}
SESSIONS_LARGE=${SESSIONS_LARGE:-1000000}
MAX_SESSIONS=${MAX_SESSIONS:-1000000}
ROTATE_MAX=${ROTATE_MAX:-100000}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-128}
LOGIN_BATCH=${LOGIN_BATCH:-150000}
LOGINS=${LOGINS:-20000}
PROFILE_SECS=${PROFILE_SECS:-8}
PERF_FREQ=${PERF_FREQ:-499}
INSTR_SECS=${INSTR_SECS:-10}
INSTR_PROTO=${INSTR_PROTO:-h1}
INSTR_SETUP=${INSTR_SETUP:-D}
INSTR_CONNECTIONS=${INSTR_CONNECTIONS:-8}
INSTR_CACHE=${INSTR_CACHE:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${WXGATE_BIN:-$TARGET_DIR/release/wxgate}
PGO_BIN=${PGO_BIN:-$TARGET_DIR/pgo/wxgate}
PGO_TRAIN_SECS=${PGO_TRAIN_SECS:-4}
LOAD=${LOGIN_LOAD_BIN:-$TARGET_DIR/release/examples/login_load}
FLOOR_RELEASE=$TARGET_DIR/release/examples/floor_proxy
FLOOR=${FLOOR_BIN:-$FLOOR_RELEASE}

UPSTREAM_PORT=$((PORT_BASE + 80))
MOCK_PORT=$((PORT_BASE + 100))
B_PORT=$((PORT_BASE + 443))
C_PORT=$((PORT_BASE + 444))
D_PORT=$((PORT_BASE + 445))
AUTH_PORT=$((PORT_BASE + 446))
E_PORT=$((PORT_BASE + 447))
R_PORT=$((PORT_BASE + 448))
S_PORT=$((PORT_BASE + 449))
B2_PORT=$((PORT_BASE + 450))
P_PORT=$((PORT_BASE + 451))
REDIS_PORT=$((PORT_BASE + 379))
MOCK_URL=http://127.0.0.1:$MOCK_PORT
WEBSITE_APPID=wx1000000000000001
WEBSITE_SECRET=mock-website-secret-000000000000001

case $MODE in
compare | handshakes | burst | sessions | logins | profile | instructions | serve | pgo-train) ;;
-h | --help | help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    exit 0
    ;;
*)
    echo "usage: bench/run.sh [compare|handshakes|burst|sessions|logins|profile|instructions|serve|pgo-train]" >&2
    exit 2
    ;;
esac

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$BENCH/results/$STAMP-$MODE
RUN=$(mktemp -d /tmp/wxgate-bench.XXXXXX)
chmod 755 "$RUN"
mkdir -p "$RESULTS" "$RUN/tmp" "$RUN/certs"

# ------------------------------------------------------------------------------------------
# processes

PIDS=()
NAMES=()
PERF_PROBES=0
PROBE_GROUP=probe_libc

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local i order
    order=$(printf '%s\n' "${!PIDS[@]}" | sort -rn)
    for i in $order; do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for i in $order; do
        local n=0
        while kill -0 "${PIDS[i]}" 2>/dev/null && ((n < 50)); do
            sleep 0.1
            n=$((n + 1))
        done
        if kill -0 "${PIDS[i]}" 2>/dev/null; then
            log "${NAMES[i]} (pid ${PIDS[i]}) did not stop; killing"
            kill -KILL "${PIDS[i]}" 2>/dev/null || true
        fi
        wait "${PIDS[i]}" 2>/dev/null || true
    done
    if ((PERF_PROBES)); then
        perf probe -q -d "$PROBE_GROUP:*" >/dev/null 2>&1 || true
    fi
    mkdir -p "$RESULTS/logs"
    cp "$RUN"/*.log "$RUN"/*.conf "$RUN"/*.toml "$RESULTS/logs/" 2>/dev/null || true
    if [[ $KEEP_RUN_DIR == 1 ]]; then
        log "run directory kept: $RUN"
    else
        rm -rf "$RUN"
    fi
    log "results in ${RESULTS#"$ROOT"/}"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: run in the background, output to $RUN/NAME.log, remember the pid.
start() {
    local name=$1
    shift
    "$@" >"$RUN/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
    eval "PID_${name//-/_}=$!"
}

pid_of() {
    local v="PID_${1//-/_}"
    echo "${!v}"
}

# stop NAME: stop one process started by start() and forget its pid.
stop() {
    local i pid
    pid=$(pid_of "$1")
    for i in "${!PIDS[@]}"; do
        if [[ ${PIDS[i]} == "$pid" ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            unset 'PIDS[i]' 'NAMES[i]'
        fi
    done
}

# wait_http URL [SECONDS]: until something answers (any HTTP status), at most SECONDS (10).
wait_http() {
    local url=$1 tries=$((${2:-10} * 10)) n=0
    until [[ $(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$url" 2>/dev/null || true) =~ ^[1-5] ]]; do
        n=$((n + 1))
        ((n < tries)) || die "nothing answers at $url (see $RUN/*.log)"
        sleep 0.1
    done
}

check_ports() {
    local p
    for p in "$@"; do
        if [[ -n $(ss -Htln "sport = :$p") ]]; then
            die "port $p is in use (set PORT_BASE)"
        fi
    done
}

# ------------------------------------------------------------------------------------------
# build, certificates, configuration

build() {
    if [[ $SKIP_BUILD == 1 ]]; then
        # Only what this mode runs.
        local need=("$BIN") f
        [[ $MODE == sessions || $MODE == logins || $MODE == pgo-train ]] && need+=("$LOAD")
        if [[ $MODE == profile || ($SETUP_MODE == 1 && " $SETUPS " == *" E "*) ||
            ($MODE == instructions && $INSTR_SETUP == E) ]]; then
            need+=("$FLOOR")
        fi
        for f in "${need[@]}"; do
            [[ -x $f ]] || die "SKIP_BUILD=1 but $f is missing"
        done
    else
        log "cargo build --release --bin wxgate --example login_load --example floor_proxy"
        (cd "$ROOT" && cargo build --release --quiet --bin wxgate --example login_load --example floor_proxy)
    fi
    if [[ $SETUP_MODE == 1 && " $SETUPS " == *" P "* && ! -x $PGO_BIN ]]; then
        die "setup P needs $PGO_BIN: run scripts/build-pgo.sh first (or set PGO_BIN)"
    fi
}

gen_certs() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$RUN/certs/server.key" -out "$RUN/certs/server.crt" 2>/dev/null
}

nginx_conf() { # TEMPLATE OUT
    local access=off
    [[ $ACCESS_LOG == 1 ]] && access="$RUN/$(basename "$2" .conf).access.log"
    sed -e "s|@RUN@|$RUN|g" -e "s|@NGINX_WORKERS@|$NGINX_WORKERS|g" \
        -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@B_PORT@|$B_PORT|g" \
        -e "s|@C_PORT@|$C_PORT|g" -e "s|@AUTH_PORT@|$AUTH_PORT|g" -e "s|@B2_PORT@|$B2_PORT|g" \
        -e "s|@ACCESS_LOG@|$access|g" "$1" >"$2"
}

start_nginx() { # NAME (upstream|front)
    local name=$1
    nginx_conf "$BENCH/nginx/$name.conf.in" "$RUN/$name.conf"
    nginx -t -q -p "$RUN" -e "$RUN/$name.error.log" -c "$RUN/$name.conf" ||
        die "nginx -t failed for $name"
    start "nginx-$name" nginx -p "$RUN" -e "$RUN/$name.error.log" -c "$RUN/$name.conf" -g 'daemon off;'
}

# gateway_conf FILE LISTEN_PORT PUBLIC_URL TLS(0|1) [CACHE_MS: the Redis store with that cache]
gateway_conf() {
    local file=$1 port=$2 public=$3 tls=$4 cache_ms=${5:-}
    {
        echo "[server]"
        echo "listen = \"127.0.0.1:$port\""
        echo "public_url = \"$public\""
        if [[ $tls == 1 ]]; then
            echo "tls_cert = \"$RUN/certs/server.crt\""
            echo "tls_key = \"$RUN/certs/server.key\""
        fi
        echo "shutdown_grace_secs = 1"
        # wrk is one client IP: the per-IP limit (512 by default, for real clients) would close
        # every connection beyond it at once (connect errors at -c1000). nginx has no such limit.
        echo "max_connections_per_ip = 100000"
        echo
        echo "[upstream]"
        echo "url = \"http://127.0.0.1:$UPSTREAM_PORT\""
        echo
        echo "[wechat]"
        echo "api_base = \"$MOCK_URL\""
        echo "open_base = \"$MOCK_URL\""
        echo
        echo "[wechat.website]"
        echo "appid = \"$WEBSITE_APPID\""
        echo "secret = \"$WEBSITE_SECRET\""
        echo
        echo "[session]"
        echo "cookie_secret = \"$(openssl rand -hex 32)\""
        echo "max_sessions = $MAX_SESSIONS"
        if [[ -n $cache_ms ]]; then
            echo "store = \"redis\""
            echo "redis_url = \"redis://127.0.0.1:$REDIS_PORT/0\""
            echo "cache_ms = $cache_ms"
        fi
        echo
        # Every bench login comes from 127.0.0.1: the per-client login limit would cap them.
        echo "[access]"
        echo "login_rate_per_minute = 0"
    } >"$file"
}

start_gateway() { # NAME PORT PUBLIC_URL TLS [CACHE_MS]; GATEWAY_BIN= another binary (P)
    local name=$1
    gateway_conf "$RUN/$name.toml" "$2" "$3" "$4" "${5:-}"
    local level=warn
    [[ $ACCESS_LOG == 1 ]] && level=info
    start "$name" env RUST_LOG="$level" "${GATEWAY_BIN:-$BIN}" run --config "$RUN/$name.toml"
}

start_mock() {
    start mock env RUST_LOG=warn "$BIN" mock-wechat --listen "127.0.0.1:$MOCK_PORT"
}

# ------------------------------------------------------------------------------------------
# logging in like a browser: /login → mock page → pick alice → /callback

header() { # NAME < curl -D output: first value of that header
    grep -i "^$1:" | sed -n 1p | cut -d' ' -f2- | tr -d '\r'
}

set_cookie() { # NAME < curl -D output
    grep -i '^set-cookie:' | tr -d '\r' | sed -n -E "s/^[Ss]et-[Cc]ookie: *$1=([^;]*).*/\1/p" | sed -n 1p
}

# browser_login PUBLIC_URL PORT → prints the session cookie value
browser_login() {
    local base=$1 port=$2 h loc binding page href cookie
    local resolve=(--resolve "localhost:$port:127.0.0.1")
    h=$(curl -sk "${resolve[@]}" -D - -o /dev/null "$base/_wxgate/login?rd=%2Fwhoami")
    loc=$(header location <<<"$h")
    binding=$(set_cookie _wxgate_login <<<"$h")
    [[ $loc == "$MOCK_URL/connect/qrconnect?"* && -n $binding ]] ||
        die "login at $base: expected a 302 to the mock and a _wxgate_login cookie, got: $h"
    page=$(curl -s "${loc%%#*}")
    href=$(grep -o 'id="user-alice" href="[^"]*"' <<<"$page" | sed -E 's/.*href="([^"]*)"/\1/; s/&amp;/\&/g')
    [[ -n $href ]] || die "mock login page has no user-alice link: $page"
    h=$(curl -s -D - -o /dev/null "$MOCK_URL$href")
    loc=$(header location <<<"$h")
    [[ $loc == "$base/_wxgate/callback?"* ]] || die "mock confirm: expected a 302 to $base/_wxgate/callback, got: $h"
    h=$(curl -sk "${resolve[@]}" -D - -o /dev/null -H "Cookie: _wxgate_login=$binding" "$loc")
    cookie=$(set_cookie _wxgate <<<"$h")
    [[ $(sed -n 1p <<<"$h") == *" 302"* && -n $cookie ]] || die "callback: expected 302 + _wxgate cookie, got: $h"
    echo "$cookie"
}

# ------------------------------------------------------------------------------------------
# checks before measuring

expect() { # DESCRIPTION EXPECTED ACTUAL
    if [[ $2 == "$3" ]]; then
        log "ok    $1: $3"
    else
        die "check failed: $1: expected '$2', got '$3'"
    fi
}

code() { curl -sk -o /dev/null -w '%{http_code}' "$@"; }

tls_info() { # URL → "TLSv1.3 / TLS_AES_256_GCM_SHA384 / ALPN"
    curl -skv -o /dev/null "$1" 2>&1 | sed -n -E 's/^\* SSL connection using (.*)/\1/p' | sed -n 1p
}

verify_d() { verify_gateway D "$D_PORT" "$1"; } # COOKIE

# verify_gateway LABEL PORT COOKIE: an inline wxgate (D's configuration) with that session.
verify_gateway() {
    local l=$1 d=https://127.0.0.1:$2 c=$3 h
    expect "$l without cookie (API client)" 401 "$(code "$d/")"
    expect "$l without cookie (browser)" 302 "$(code -H 'Accept: text/html' "$d/")"
    expect "$l /_wxgate/auth with cookie" 202 "$(code -H "Cookie: _wxgate=$c" "$d/_wxgate/auth")"
    h=$(curl -sk -D - -o /dev/null -H "Cookie: _wxgate=$c" "$d/_wxgate/auth")
    [[ -n $(header x-wechat-openid <<<"$h") ]] || die "$l /_wxgate/auth: no X-WeChat-OpenId in: $h"
    expect "$l / with cookie" "200 ok" "$(curl -sk -w '%{http_code} ' -o /dev/null -H "Cookie: _wxgate=$c" "$d/")$(curl -sk -H "Cookie: _wxgate=$c" "$d/")"
    h=$(curl -sk -D - -o /dev/null -H "Cookie: _wxgate=$c; other=1" -H 'X-WeChat-OpenId: spoofed' "$d/whoami")
    [[ -n $(header x-seen-openid <<<"$h") && $(header x-seen-openid <<<"$h") != spoofed ]] ||
        die "$l: upstream did not receive the injected X-WeChat-OpenId: $h"
    expect "$l upstream sees X-WeChat-Source" website "$(header x-seen-source <<<"$h")"
    expect "$l upstream sees Cookie without _wxgate" "other=1" "$(header x-seen-cookie <<<"$h")"
    log "ok    $l upstream sees X-WeChat-OpenId: $(header x-seen-openid <<<"$h")"
    log "      $l TLS: $(tls_info "$d/")"
}

verify_c() { # COOKIE
    local c=$1 u=https://127.0.0.1:$C_PORT h
    expect "C without cookie" 302 "$(code "$u/")"
    expect "C with a bad cookie" 302 "$(code -H "Cookie: _wxgate=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$u/")"
    expect "C / with cookie" "ok" "$(curl -sk -H "Cookie: _wxgate=$c" "$u/")"
    expect "C / with cookie, status" 200 "$(code -H "Cookie: _wxgate=$c" "$u/")"
    h=$(curl -sk -D - -o /dev/null -H "Cookie: _wxgate=$c" "$u/whoami")
    [[ -n $(header x-seen-openid <<<"$h") ]] || die "C: upstream did not receive X-WeChat-OpenId: $h"
    expect "C upstream sees X-WeChat-Source" website "$(header x-seen-source <<<"$h")"
    log "ok    C upstream sees X-WeChat-OpenId: $(header x-seen-openid <<<"$h")"
    log "      C TLS: $(tls_info "$u/")"
}

verify_ab() {
    expect "A / (upstream direct)" ok "$(curl -s "http://127.0.0.1:$UPSTREAM_PORT/")"
    expect "B / (nginx proxy_pass)" ok "$(curl -sk "https://127.0.0.1:$B_PORT/")"
    log "      B TLS: $(tls_info "https://127.0.0.1:$B_PORT/")"
}

# ------------------------------------------------------------------------------------------
# wrk and its numbers

busy_warning() {
    if pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; then
        log "WARNING: a cargo/rustc build is running on this machine: numbers will be noisy"
        echo "warning: cargo/rustc running at $(date -u +%T)" >>"$RESULTS/env.txt"
    fi
}

# The connection count of the current wrk/h2load runs (compare sets it for each of
# CONNECTIONS; the other modes use the first), and the load tool: wrk (HTTP/1.1) or h2load
# (HTTP/2, H2_STREAMS concurrent streams per connection).
CONNS=${CONNECTIONS%% *}
TOOL=wrk

# run_load LABEL URL OUTFILE [extra args...]: one wrk (or h2load) run with $CONNS connections.
run_load() {
    local label=$1 url=$2 out=$3
    shift 3
    local TIMEFORMAT='%U %S'
    if [[ $TOOL == h2load ]]; then
        # --log-file: one line per request (start, status, microseconds), for the percentiles
        # h2load itself does not print.
        { time h2load -c"$CONNS" -m"$H2_STREAMS" -t"$THREADS" -D "$DURATION" \
            --log-file="$out.log" "$url" "$@" >"$out" 2>&1; } 2>"$out.time" ||
            die "h2load failed for $label: $(cat "$out")"
    else
        { time wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url" "$@" >"$out" 2>&1; } 2>"$out.time" ||
            die "wrk failed for $label: $(cat "$out")"
    fi
}

# parse_wrk FILE → "rps p50_ms p90_ms p99_ms non2xx socket_errors requests"
parse_wrk() {
    awk '
    function ms(v,   n, u) {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") return n / 1000
        if (u == "ms") return n
        if (u == "s") return n * 1000
        if (u == "m") return n * 60000
        return n
    }
    /^ +50% / { p50 = ms($2) }
    /^ +90% / { p90 = ms($2) }
    /^ +99% / { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
    / requests in / { reqs = $1 }
    END { printf "%.1f %.3f %.3f %.3f %d %d %d\n", rps, p50, p90, p99, non2xx, err, reqs }' "$1"
}

# parse_h2load FILE → the same fields as parse_wrk; the percentiles from h2load's per-request
# log (FILE.log: start µs, status, duration µs).
parse_h2load() {
    local pct
    pct=$(cut -f3 "$1.log" | sort -n | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "0 0 0"; exit }
        printf "%.3f %.3f %.3f", a[int(NR * 0.50) + 1] / 1000, a[int(NR * 0.90) + 1] / 1000, a[int(NR * 0.99) + 1] / 1000 }')
    rm -f "$1.log"
    awk -v pct="$pct" '
    /^finished in / { rps = $4 }
    /^requests: / { done = $6; errored = $12; timeout = $14 }
    /^status codes: / { gsub(/,/, ""); s23 = $3 + $5 }
    END { split(pct, p, " ")
          printf "%.1f %.3f %.3f %.3f %d %d %d\n", rps, p[1], p[2], p[3], done - s23, errored + timeout, done }' "$1"
}

median() { # numbers on stdin → median
    sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# tree_ticks PID... → "user system" CPU ticks of these processes and their children
tree_ticks() {
    local p c u=0 k=0 a b
    for p in "$@"; do
        for c in "$p" $(pgrep -P "$p" || true); do
            if read -r a b < <(awk '{ print $14, $15 }' "/proc/$c/stat" 2>/dev/null); then
                u=$((u + a))
                k=$((k + b))
            fi
        done
    done
    echo "$u $k"
}

# Which processes are "the proxy" of a setup (for CPU per request): label → pids.
declare -A PROXY_PIDS=()

# measure LABEL URL ROUND [load tool args...]: one run, appended to $RESULTS/runs.tsv with the
# CPU time per request of the proxy under test, of the upstream nginx and of the load tool.
measure() {
    local label=$1 url=$2 round=$3
    shift 3
    local out=$RESULTS/$TOOL-c$CONNS-r$round-$label.txt
    local proxy=${PROXY_PIDS[$label]:-} upstream pu0 ps0 pu1 ps1 uu0 us0 uu1 us1
    upstream=$(pid_of nginx-upstream)
    # shellcheck disable=SC2086 # word splitting wanted: a list of pids
    read -r pu0 ps0 < <(tree_ticks $proxy)
    read -r uu0 us0 < <(tree_ticks "$upstream")
    run_load "$label" "$url" "$out" "$@"
    # shellcheck disable=SC2086
    read -r pu1 ps1 < <(tree_ticks $proxy)
    read -r uu1 us1 < <(tree_ticks "$upstream")
    local line
    if [[ $MODE == burst && $TOOL == h2load ]]; then
        burst_record "$label" "$round" "$out"
    elif [[ $MODE == burst ]]; then
        awk -v l="$label" -v r="$round" '/^tail / { for (i = 2; i <= 5; i++) { sub(/^[^=]*=/, "", $i) } print l "\t" r "\t" $2 "\t" $3 "\t" $4 "\t" $5 }' "$out" >>"$RESULTS/wrk-tail.tsv"
    fi
    if [[ $TOOL == h2load ]]; then line=$(parse_h2load "$out"); else line=$(parse_wrk "$out"); fi
    read -r rps p50 p90 p99 non2xx errs reqs <<<"$line"
    local wu ws cpu
    read -r wu ws <"$out.time"
    cpu=$(awk -v n="$reqs" -v pu=$((pu1 - pu0)) -v ps=$((ps1 - ps0)) -v u=$((uu1 - uu0 + us1 - us0)) \
        -v w="$(awk -v a="$wu" -v b="$ws" 'BEGIN { print a + b }')" -v t="$(getconf CLK_TCK)" 'BEGIN {
            if (n == 0) n = 1
            printf "%.1f %.1f %.1f %.1f %.1f", 1e6 * (pu + ps) / t / n, 1e6 * pu / t / n, 1e6 * ps / t / n, 1e6 * u / t / n, 1e6 * w / n }')
    read -r pcpu pusr psys ucpu wcpu <<<"$cpu"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$CONNS" "$round" "$rps" "$p50" "$p90" "$p99" \
        "$non2xx" "$errs" "$pcpu" "$ucpu" "$wcpu" "$pusr" "$psys" >>"$RESULTS/runs.tsv"
    log "c=$CONNS round $round $label: $rps req/s  p50 ${p50}ms  p90 ${p90}ms  p99 ${p99}ms  non-2xx $non2xx  errors $errs  CPU us/req: proxy $pcpu (user $pusr sys $psys) upstream $ucpu $TOOL $wcpu"
    if ((non2xx > 0 || errs > 0)); then
        log "WARNING: $label had $non2xx non-2xx responses and $errs socket errors (see $out)"
    fi
}

# The columns measure() appends to runs.tsv.
runs_header() {
    printf 'setup\tconnections\tround\trps\tp50_ms\tp90_ms\tp99_ms\tnon2xx\terrors\tproxy_cpu_us_per_req\tupstream_cpu_us_per_req\tload_cpu_us_per_req\tproxy_user_us_per_req\tproxy_sys_us_per_req\n' >"$RESULTS/runs.tsv"
}

# summary LABEL... → table of medians per label over the rounds run with $CONNS connections
# (from runs.tsv); remembers them for med().
summary() {
    printf '%-24s %10s %8s %8s %8s %7s %7s %-23s %11s %9s\n' "setup (c=$CONNS)" "req/s" "p50 ms" "p90 ms" "p99 ms" non2xx errors "proxy CPU us/req" "upstream us" "load us"
    local l
    for l in "$@"; do
        local rows
        rows=$(awk -F'\t' -v l="$l" -v c="$CONNS" '$1 == l && $2 == c' "$RESULTS/runs.tsv")
        col() { cut -f"$1" <<<"$rows" | median; }
        local rps p50 p90 p99 bad errs pc uc wc pus pks
        rps=$(col 4) p50=$(col 5) p90=$(col 6) p99=$(col 7)
        bad=$(cut -f8 <<<"$rows" | awk '{ s += $1 } END { print s + 0 }')
        errs=$(cut -f9 <<<"$rows" | awk '{ s += $1 } END { print s + 0 }')
        pc=$(col 10) uc=$(col 11) wc=$(col 12) pus=$(col 13) pks=$(col 14)
        printf '%-24s %10.0f %8.3f %8.3f %8.3f %7d %7d %7.1f =%5.1fu+%5.1fs %11.1f %9.1f\n' "$l" "$rps" "$p50" "$p90" "$p99" "$bad" "$errs" "$pc" "$pus" "$pks" "$uc" "$wc"
        local k=${l//[^A-Za-z0-9]/_}_$CONNS
        eval "MED_RPS_$k=$rps MED_P99_$k=$p99 MED_CPU_$k=$pc MED_UP_$k=$uc MED_LOAD_$k=$wc"
    done
}

med() { # KIND LABEL → the median computed by summary() for $CONNS connections
    local v="MED_$1_${2//[^A-Za-z0-9]/_}_$CONNS"
    echo "${!v:-nan}"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }

env_info() {
    {
        echo "date: $(date -u +%FT%TZ)"
        echo "mode: $MODE"
        echo "git: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet -- src 2>/dev/null || echo ' (src modified)')"
        echo "kernel: $(uname -sr)"
        echo "cpus: $(nproc) ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sed -n 1p))"
        echo "memory: $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
        echo "nginx: $(nginx -v 2>&1)"
        echo "wrk: $(wrk -v 2>&1 | sed -n 1p)"
        echo "rustc: $(rustc --version 2>/dev/null)"
        echo "wrk settings: -t$THREADS -c($CONNECTIONS) -d${DURATION}s --latency, keep-alive"
        [[ $MODE == compare && $H2 == 1 ]] && echo "h2load settings: -t$THREADS -c$H2_CONNECTIONS -m$H2_STREAMS -D $DURATION ($(h2load --version 2>&1 | sed -n 1p))"
        echo "rounds: $ROUNDS  access logs: $([[ $ACCESS_LOG == 1 ]] && echo 'on (files)' || echo 'off (nginx access_log off, wxgate RUST_LOG=warn)')"
        echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        [[ -x $BIN ]] && echo "binary before build: $BIN ($(date -u -r "$BIN" +%FT%TZ))"
    } >>"$RESULTS/env.txt"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
thp_kib() { awk '/^AnonHugePages:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
sessions_gauge() {
    curl -sk "https://127.0.0.1:$D_PORT/_wxgate/metrics" | awk '/^wxgate_sessions /{ print $2 }'
}
proxied_count() {
    curl -sk "https://127.0.0.1:$D_PORT/_wxgate/metrics" |
        awk '/^wxgate_requests_total\{/ && /route="proxy"/ && /class="2xx"/ { print $2 }'
}

# login_run NAME ARGS... : login_load with CPU accounting of the gateway (D) and the mock.
# Sets LR_OUT (its stdout), prints a summary line.
login_run() {
    local name=$1
    shift
    local gw mock t0 g0 m0 t1 g1 m1 wall
    gw=$(pid_of gateway-d)
    mock=$(pid_of mock)
    g0=$(cpu_ticks "$gw")
    m0=$(cpu_ticks "$mock")
    t0=$(date +%s.%N)
    local TIMEFORMAT='%U %S'
    { time "$LOAD" --gateway "https://127.0.0.1:$D_PORT" --mock "$MOCK_URL" "$@" \
        >"$RUN/$name.out" 2>"$RUN/$name.log"; } 2>"$RUN/$name.time" ||
        die "login_load failed: $(tail -n5 "$RUN/$name.log")"
    t1=$(date +%s.%N)
    g1=$(cpu_ticks "$gw")
    m1=$(cpu_ticks "$mock")
    cp "$RUN/$name.out" "$RUN/$name.log" "$RESULTS/"
    LR_OUT=$(cat "$RUN/$name.out")
    local tck lu ls
    tck=$(getconf CLK_TCK)
    read -r lu ls <"$RUN/$name.time"
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    local n
    n=$(sed -n -E 's/^(logins|mints)_ok=([0-9]+).*/\2/p' "$RUN/$name.out")
    awk -v n="$n" -v w="$wall" -v g=$((g1 - g0)) -v m=$((m1 - m0)) -v lu="$lu" -v ls="$ls" -v t="$tck" -v name="$name" 'BEGIN {
        printf "%s: %d in %.1fs = %.0f/s | CPU (%% of one core): gateway %.0f%%  mock %.0f%%  login_load %.0f%% | CPU ms per item: gateway %.3f  mock %.3f  login_load %.3f\n",
            name, n, w, n / w, 100 * g / t / w, 100 * m / t / w, 100 * (lu + ls) / w,
            1000 * g / t / n, 1000 * m / t / n, 1000 * (lu + ls) / n }' | tee -a "$RESULTS/summary.txt"
}

# ------------------------------------------------------------------------------------------
# modes

# Start A, B, C and D, log in, check them (sets COOKIE_C and COOKIE_D).
start_all() {
    check_ports "$UPSTREAM_PORT" "$MOCK_PORT" "$B_PORT" "$B2_PORT" "$C_PORT" "$D_PORT" "$AUTH_PORT"
    start_nginx upstream
    start_mock
    start_gateway gateway-d "$D_PORT" "https://localhost:$D_PORT" 1
    start_gateway gateway-auth "$AUTH_PORT" "https://localhost:$C_PORT" 0
    start_nginx front
    wait_http "http://127.0.0.1:$UPSTREAM_PORT/"
    wait_http "$MOCK_URL/"
    wait_http "https://127.0.0.1:$D_PORT/_wxgate/healthz"
    wait_http "http://127.0.0.1:$AUTH_PORT/_wxgate/healthz"
    wait_http "https://127.0.0.1:$B_PORT/"

    log "logging in through the mock (browser flow with curl)"
    COOKIE_D=$(browser_login "https://localhost:$D_PORT" "$D_PORT")
    COOKIE_C=$(browser_login "https://localhost:$C_PORT" "$C_PORT")
    verify_ab
    verify_c "$COOKIE_C"
    verify_d "$COOKIE_D"
}

# The upstream, the mock and D, nothing else (sessions, logins).
start_d_alone() {
    check_ports "$UPSTREAM_PORT" "$MOCK_PORT" "$D_PORT"
    start_nginx upstream
    start_mock
    start_gateway gateway-d "$D_PORT" "https://localhost:$D_PORT" 1
    wait_http "http://127.0.0.1:$UPSTREAM_PORT/"
    wait_http "$MOCK_URL/"
    wait_http "https://127.0.0.1:$D_PORT/_wxgate/healthz"
}

# R and S: wxgate like D, on the Redis store of a local redis-server (no persistence), with the
# session cache (R, cache_ms=5000) and without it (S, cache_ms=0). Sets COOKIE_R and COOKIE_S.
start_redis_setups() {
    command -v redis-server >/dev/null || die "redis-server is not installed (scripts/install-test-deps.sh)"
    check_ports "$REDIS_PORT" "$R_PORT" "$S_PORT"
    start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
    local n=0
    until [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; do
        n=$((n + 1))
        ((n < 100)) || die "redis-server did not start (see $RUN/redis.log)"
        sleep 0.1
    done
    start_gateway gateway-r "$R_PORT" "https://localhost:$R_PORT" 1 5000
    start_gateway gateway-s "$S_PORT" "https://localhost:$S_PORT" 1 0
    wait_http "https://127.0.0.1:$R_PORT/_wxgate/healthz"
    wait_http "https://127.0.0.1:$S_PORT/_wxgate/healthz"
    COOKIE_R=$(browser_login "https://localhost:$R_PORT" "$R_PORT")
    COOKIE_S=$(browser_login "https://localhost:$S_PORT" "$S_PORT")
    expect "R (redis, cached) with its session" 200 "$(code -H "Cookie: _wxgate=$COOKIE_R" "https://127.0.0.1:$R_PORT/")"
    expect "S (redis, no cache) with its session" 200 "$(code -H "Cookie: _wxgate=$COOKIE_S" "https://127.0.0.1:$S_PORT/")"
    expect "R without a session (browser)" 302 "$(code -H 'Accept: text/html' "https://127.0.0.1:$R_PORT/")"
}

# E: the stack floor (examples/floor_proxy.rs), on the same certificate and upstream.
start_floor() {
    check_ports "$E_PORT"
    start floor "$FLOOR" --listen "127.0.0.1:$E_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT" \
        --cert "$RUN/certs/server.crt" --key "$RUN/certs/server.key"
    wait_http "https://127.0.0.1:$E_PORT/"
}

# P: D's gateway and configuration, built with PGO (scripts/build-pgo.sh). Sets COOKIE_P.
start_pgo() {
    check_ports "$P_PORT"
    GATEWAY_BIN=$PGO_BIN start_gateway gateway-p "$P_PORT" "https://localhost:$P_PORT" 1
    wait_http "https://127.0.0.1:$P_PORT/_wxgate/healthz"
    COOKIE_P=$(browser_login "https://localhost:$P_PORT" "$P_PORT")
    verify_gateway P "$P_PORT" "$COOKIE_P"
}

# Everything up, for experiments by hand (perf, strace, wrk with other settings); Ctrl-C stops.
mode_serve() {
    start_all
    {
        echo "A=http://127.0.0.1:$UPSTREAM_PORT/"
        echo "B=https://127.0.0.1:$B_PORT/"
        echo "C=https://127.0.0.1:$C_PORT/"
        echo "D=https://127.0.0.1:$D_PORT/"
        echo "COOKIE_C=$COOKIE_C"
        echo "COOKIE_D=$COOKIE_D"
        echo "PID_D=$(pid_of gateway-d)"
        echo "PID_AUTH=$(pid_of gateway-auth)"
        echo "PID_NGINX_FRONT=$(pid_of nginx-front)"
        echo "PID_NGINX_UPSTREAM=$(pid_of nginx-upstream)"
        echo "MOCK=$MOCK_URL"
    } | tee "$RESULTS/serve.env"
    log "serving; variables in ${RESULTS#"$ROOT"/}/serve.env; Ctrl-C (or SIGTERM to $$) stops"
    start idle sleep infinity
    wait "$(pid_of idle)" || true
}

# Start the setups of $SETUPS: fills the caller's `url`, `cookie` (associative arrays) and
# `order` (the labels, in SETUPS' order), and PROXY_PIDS.
prepare_setups() {
    start_all
    local cd=$COOKIE_D cc=$COOKIE_C
    url=(
        [A-upstream]="http://127.0.0.1:$UPSTREAM_PORT/"
        [B-nginx-proxy]="https://127.0.0.1:$B_PORT/"
        [C-nginx-auth_request]="https://127.0.0.1:$C_PORT/"
        [D-wxgate]="https://127.0.0.1:$D_PORT/"
        [E-floor]="https://127.0.0.1:$E_PORT/"
        [R-wxgate-redis-cache]="https://127.0.0.1:$R_PORT/"
        [S-wxgate-redis-nocache]="https://127.0.0.1:$S_PORT/"
        [P-wxgate-pgo]="https://127.0.0.1:$P_PORT/"
    )
    cookie=(
        [A-upstream]=$cd [B-nginx-proxy]=$cd [C-nginx-auth_request]=$cc [D-wxgate]=$cd [E-floor]=$cd
    )
    order=()
    local s
    for s in $SETUPS; do
        case $s in
        A) order+=(A-upstream) ;;
        B) order+=(B-nginx-proxy) ;;
        C) order+=(C-nginx-auth_request) ;;
        D) order+=(D-wxgate) ;;
        E) order+=(E-floor) ;;
        R) order+=(R-wxgate-redis-cache) ;;
        S) order+=(S-wxgate-redis-nocache) ;;
        P) order+=(P-wxgate-pgo) ;;
        *) die "SETUPS: unknown setup '$s' (A B C D E P R S)" ;;
        esac
    done
    ((${#order[@]} > 0)) || die "SETUPS is empty"
    PROXY_PIDS=(
        [B-nginx-proxy]="$(pid_of nginx-front)"
        [C-nginx-auth_request]="$(pid_of nginx-front) $(pid_of gateway-auth)"
        [D-wxgate]="$(pid_of gateway-d)"
    )
    if [[ " $SETUPS " == *" E "* ]]; then
        start_floor
        PROXY_PIDS[E-floor]=$(pid_of floor)
    fi
    if [[ " $SETUPS " == *" R "* || " $SETUPS " == *" S "* ]]; then
        start_redis_setups
        cookie[R-wxgate-redis-cache]=$COOKIE_R
        cookie[S-wxgate-redis-nocache]=$COOKIE_S
        # The proxy's CPU includes redis-server's: a Redis round trip is part of the request.
        PROXY_PIDS[R-wxgate-redis-cache]="$(pid_of gateway-r) $(pid_of redis)"
        PROXY_PIDS[S-wxgate-redis-nocache]="$(pid_of gateway-s) $(pid_of redis)"
    fi
    if [[ " $SETUPS " == *" P "* ]]; then
        start_pgo
        cookie[P-wxgate-pgo]=$COOKIE_P
        PROXY_PIDS[P-wxgate-pgo]=$(pid_of gateway-p)
    fi
}

mode_compare() {
    local -A url=() cookie=()
    local order=()
    prepare_setups
    local cd=$COOKIE_D
    runs_header
    for CONNS in $CONNECTIONS; do
        log "HTTP/1.1, $CONNS connections"
        alternate_rounds "${order[@]}"
    done
    # HTTP/2: h2load against nginx with `http2` on (B2, proxy_pass like B), wxgate (D, which
    # offers h2 by ALPN on its one port) and, with E in SETUPS, the stack floor (E2, the same
    # process as E: it serves h2 by ALPN too).
    local h2order=()
    if [[ $H2 == 1 ]]; then
        TOOL=h2load CONNS=$H2_CONNECTIONS
        [[ " $SETUPS " == *" B "* ]] && h2order+=(B2-nginx-h2)
        [[ " $SETUPS " == *" D "* ]] && h2order+=(D-wxgate-h2)
        [[ " $SETUPS " == *" P "* ]] && h2order+=(P2-wxgate-pgo-h2)
        [[ " $SETUPS " == *" E "* ]] && h2order+=(E2-floor-h2)
        url[P2-wxgate-pgo-h2]=${url[P-wxgate-pgo]} cookie[P2-wxgate-pgo-h2]=${cookie[P-wxgate-pgo]:-}
        PROXY_PIDS[P2-wxgate-pgo-h2]=${PROXY_PIDS[P-wxgate-pgo]:-}
        url[E2-floor-h2]=${url[E-floor]:-} cookie[E2-floor-h2]=$cd
        PROXY_PIDS[E2-floor-h2]=${PROXY_PIDS[E-floor]:-}
        url[B2-nginx-h2]="https://127.0.0.1:$B2_PORT/"
        url[D-wxgate-h2]=${url[D-wxgate]}
        cookie[B2-nginx-h2]=$cd cookie[D-wxgate-h2]=$cd
        PROXY_PIDS[B2-nginx-h2]=${PROXY_PIDS[B-nginx-proxy]}
        PROXY_PIDS[D-wxgate-h2]=${PROXY_PIDS[D-wxgate]}
        log "HTTP/2 (h2load -c$CONNS -m$H2_STREAMS)"
        alternate_rounds "${h2order[@]}"
        TOOL=wrk
    fi
    # The gateways must still hold the sessions (nothing measured was a 401/302).
    verify_d "$cd" >/dev/null 2>&1 || die "D lost its session during the run"

    {
        echo
        echo "wxgate bench compare: $ROUNDS rounds x ${DURATION}s per setup and connection count, setups alternating, medians"
        echo "proxy CPU = user+system time of the proxy's processes (/proc/PID/stat) / requests served"
        for CONNS in $CONNECTIONS; do
            echo
            echo "HTTP/1.1, wrk -t$THREADS -c$CONNS, keep-alive"
            summary "${order[@]}"
            compare_lines
        done
        if [[ $H2 == 1 ]] && ((${#h2order[@]} > 0)); then
            CONNS=$H2_CONNECTIONS
            echo
            echo "HTTP/2, h2load -t$THREADS -c$CONNS -m$H2_STREAMS (percentiles from h2load's per-request log)"
            summary "${h2order[@]}"
            if [[ " ${h2order[*]} " == *" E2-floor-h2 "* && " ${h2order[*]} " == *" B2-nginx-h2 "* ]]; then
                echo "stack floor over HTTP/2 E2/B2 (tokio+rustls+hyper h2 doing nothing else, $(floor_kind) / nginx): req/s $(ratio "$(med RPS E2-floor-h2)" "$(med RPS B2-nginx-h2)")x   CPU/req $(ratio "$(med CPU E2-floor-h2)" "$(med CPU B2-nginx-h2)")x"
            fi
            if [[ " ${h2order[*]} " == *" D-wxgate-h2 "* && " ${h2order[*]} " == *" B2-nginx-h2 "* ]]; then
                h2_target_lines D D-wxgate-h2 "wxgate"
                h2_budget D D-wxgate-h2
            fi
            if [[ " ${h2order[*]} " == *" P2-wxgate-pgo-h2 "* && " ${h2order[*]} " == *" B2-nginx-h2 "* ]]; then
                h2_target_lines P P2-wxgate-pgo-h2 "wxgate built with PGO"
                h2_budget P P2-wxgate-pgo-h2
                if [[ " ${h2order[*]} " == *" D-wxgate-h2 "* ]]; then
                    echo "paired P/D  (the same code without PGO): $(paired3 P2-wxgate-pgo-h2 D-wxgate-h2)"
                fi
            fi
        fi
    } | tee -a "$RESULTS/summary.txt"
}

# What a new connection costs: every request on a connection of its own (the client sends
# Connection: close; the proxy closes after the answer), HS_CONNECTIONS at a time. The CPU per
# request is then the CPU per connection: accept, the TLS handshake, one request, the close. B
# and wxgate use the same certificate (ECDSA P-256) and the client negotiates the same (TLS 1.3,
# X25519). wrk reuses a connection's TLS session when it reconnects, and both proxies accept it:
# after a connection's first, the handshakes are resumed ones (a fresh X25519 exchange, no
# certificate or signature).
mode_handshakes() {
    [[ " $SETUPS " != *" A "* ]] || die "handshakes: A has no TLS (SETUPS from B C D E P R S)"
    local -A url=() cookie=()
    local order=()
    prepare_setups
    runs_header
    CONNS=$HS_CONNECTIONS
    LOAD_ARGS=(-H "Connection: close")
    log "HTTP/1.1, every request on a new TLS connection, $CONNS at a time"
    alternate_rounds "${order[@]}"
    LOAD_ARGS=()
    verify_d "$COOKIE_D" >/dev/null 2>&1 || die "D lost its session during the run"
    {
        echo
        echo "wxgate bench handshakes: $ROUNDS rounds x ${DURATION}s per setup, setups alternating, medians"
        echo "wrk -t$THREADS -c$CONNS, Connection: close: one request per TLS connection, so proxy CPU us/req"
        echo "is the CPU of a whole connection (accept, handshake, request, close)"
        summary "${order[@]}"
        local l
        if [[ " ${order[*]} " == *" B-nginx-proxy "* ]]; then
            for l in "${order[@]}"; do
                [[ $l == B-nginx-proxy ]] && continue
                echo "${l%%-*}/B  connections/s $(ratio "$(med RPS "$l")" "$(med RPS B-nginx-proxy)")x  p99 $(ratio "$(med P99 "$l")" "$(med P99 B-nginx-proxy)")x  CPU per connection $(ratio "$(med CPU "$l")" "$(med CPU B-nginx-proxy)")x   paired: $(paired3 "$l" B-nginx-proxy)"
            done
        fi
    } | tee -a "$RESULTS/summary.txt"
}

# A burst of new connections: BURST_CONNECTIONS clients connect at once (a restart, a deploy,
# the morning rush), then send requests on keep-alive. h2load --h1 logs every request with its
# start time, so the requests of the first BURST_WINDOW_MS (when the handshakes and the first
# requests compete) are told apart from the rest. wrk's latency counts from a request's first
# byte: a proxy that finishes its handshakes later lets fewer requests start during the burst
# and so has fewer slow requests, without being faster. Hence also how long the connections
# took: h2load's time for connect (TCP and TLS handshake) and to the first response byte.
mode_burst() {
    [[ " $SETUPS " != *" A "* ]] || die "burst: A has no TLS (SETUPS from B C D E P R S)"
    local -A url=() cookie=()
    local order=()
    prepare_setups
    printf 'setup\tround\tconnect_mean_ms\tconnect_max_ms\tfirst_byte_mean_ms\tfirst_byte_max_ms\tburst_requests\tburst_p99_ms\tafter_p99_ms\tp999_ms\tmax_ms\n' >"$RESULTS/burst.tsv"
    printf 'setup\tround\tp99_ms\tp995_ms\tp999_ms\tmax_ms\n' >"$RESULTS/wrk-tail.tsv"
    CONNS=$BURST_CONNECTIONS
    {
        echo
        echo "wxgate bench burst: $ROUNDS rounds x ${DURATION}s per setup and load tool, setups alternating, medians"
    } | tee -a "$RESULTS/summary.txt"

    runs_header
    TOOL=h2load H2_STREAMS=1 LOAD_ARGS=(--h1)
    log "h2load --h1: $CONNS connections opened at once, then keep-alive requests"
    alternate_rounds "${order[@]}"
    {
        echo
        echo "h2load --h1 -t$THREADS -c$CONNS: all connections opened at once, then keep-alive requests"
        summary "${order[@]}"
        echo
        echo "the burst: connections ready (TCP + TLS) and first answers; request p99 in the first ${BURST_WINDOW_MS} ms of a run and after"
        burst_summary "${order[@]}"
    } | tee -a "$RESULTS/summary.txt"
    mv "$RESULTS/runs.tsv" "$RESULTS/runs-h2load.tsv"

    runs_header
    TOOL=wrk LOAD_ARGS=(-s "$BENCH/tail.lua")
    log "wrk: the same, with the tail beyond p99"
    alternate_rounds "${order[@]}"
    LOAD_ARGS=()
    {
        echo
        echo "wrk -t$THREADS -c$CONNS (as compare at $CONNS connections), and the tail beyond its p99"
        summary "${order[@]}"
        wrk_tail_summary "${order[@]}"
    } | tee -a "$RESULTS/summary.txt"
    mv "$RESULTS/runs.tsv" "$RESULTS/runs-wrk.tsv"
    verify_d "$COOKIE_D" >/dev/null 2>&1 || die "D lost its session during the run"
}

# tsv_medians FILE LABEL COL...: the median of each column COL over the rows of setup LABEL
# (FILE: a header line, then setup, round, values), space-separated.
tsv_medians() {
    local file=$1 label=$2 c
    shift 2
    for c in "$@"; do
        awk -F'\t' -v l="$label" -v c="$c" 'NR > 1 && $1 == l { print $c }' "$file" | median
    done | paste -sd' '
}

# wrk_tail_summary LABEL...: medians of wrk-tail.tsv per setup.
wrk_tail_summary() {
    printf '%-24s %9s %9s %9s %9s\n' setup "p99" "p99.5" "p99.9" "max"
    local l m
    for l in "$@"; do
        read -ra m <<<"$(tsv_medians "$RESULTS/wrk-tail.tsv" "$l" 3 4 5 6)"
        printf '%-24s %9.3f %9.3f %9.3f %9.3f\n' "$l" "${m[@]}"
    done
}

# burst_record LABEL ROUND OUT: one line of burst.tsv from h2load's output and its request log
# (OUT.log: start µs since the epoch, status, duration µs), before parse_h2load removes it.
burst_record() {
    local label=$1 round=$2 out=$3 times
    times=$(awk '
        function ms(v,   n, u) {
            n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
            if (u == "us") return n / 1000
            if (u == "s") return n * 1000
            return n
        }
        /^time for connect:/ { cm = ms($6); cx = ms($5) }
        /^time to 1st byte:/ { fm = ms($7); fx = ms($6) }
        END { printf "%.1f %.1f %.1f %.1f", cm, cx, fm, fx }' "$out")
    # Requests that started within the window, and the others: count and p99 of each.
    local split=$RUN/burst-split.txt nb bp rest
    sort -n -k1,1 "$out.log" | awk -v w="$BURST_WINDOW_MS" 'NR == 1 { t0 = $1 } { print ($1 - t0 < w * 1000 ? "b" : "a"), $3 / 1000 }' >"$split"
    p99_of() { awk -v k="$1" '$1 == k { print $2 }' "$split" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print 0; exit } printf "%.3f", a[int(NR * 0.99) + 1] }'; }
    nb=$(awk '$1 == "b"' "$split" | wc -l)
    bp=$(p99_of b)
    rest=$(p99_of a)
    local tail
    tail=$(cut -f3 "$out.log" | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "0 0"; exit } printf "%.3f %.3f", a[int(NR * 0.999) + 1] / 1000, a[NR] / 1000 }')
    local cm cx fm fx p999 mx
    read -r cm cx fm fx <<<"$times"
    read -r p999 mx <<<"$tail"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$round" "$cm" "$cx" "$fm" "$fx" "$nb" "$bp" "$rest" "$p999" "$mx" >>"$RESULTS/burst.tsv"
    log "burst round $round $label: connect mean ${cm}ms max ${cx}ms; first byte mean ${fm}ms max ${fx}ms; $nb requests in the first ${BURST_WINDOW_MS}ms, p99 ${bp}ms; after it p99 ${rest}ms; p99.9 ${p999}ms max ${mx}ms"
}

# burst_ratio KIND LABEL → LABEL's median of KIND (from burst_summary) / B's
burst_ratio() {
    local a="BURST_$1_${2//[^A-Za-z0-9]/_}" b="BURST_$1_B_nginx_proxy"
    ratio "${!a:-nan}" "${!b:-nan}"
}

# burst_summary LABEL...: medians of burst.tsv per setup, and the ratios to B (medians).
burst_summary() {
    printf '%-24s %12s %12s %12s %12s %9s %10s %10s %9s %9s\n' setup "connect ms" "conn max" "1st byte ms" "1st max" "burst req" "burst p99" "after p99" "p99.9" "max"
    local l m
    for l in "$@"; do
        read -ra m <<<"$(tsv_medians "$RESULTS/burst.tsv" "$l" 3 4 5 6 7 8 9 10 11)"
        printf '%-24s %12.1f %12.1f %12.1f %12.1f %9.0f %10.3f %10.3f %9.3f %9.3f\n' "$l" "${m[@]}"
        local k=${l//[^A-Za-z0-9]/_}
        eval "BURST_CONN_$k=${m[0]} BURST_FIRST_$k=${m[2]} BURST_P99_$k=${m[5]} BURST_AFTER_$k=${m[6]} BURST_MAX_$k=${m[8]}"
    done
    [[ " $* " == *" B-nginx-proxy "* ]] || return 0
    for l in "$@"; do
        [[ $l == B-nginx-proxy ]] && continue
        echo "${l%%-*}/B  connect $(burst_ratio CONN "$l")x  first byte $(burst_ratio FIRST "$l")x  burst p99 $(burst_ratio P99 "$l")x  after p99 $(burst_ratio AFTER "$l")x  max $(burst_ratio MAX "$l")x"
    done
}

# The training load of scripts/build-pgo.sh, against $BIN (its instrumented build): what a
# gateway does all day, PGO_TRAIN_SECS per load. Each wxgate writes its profile as it exits.
mode_pgo_train() {
    start_all # A B C D and C's wxgate; the browser login flow and the checks of each
    local secs=$PGO_TRAIN_SECS t name url ck conns
    local d=https://127.0.0.1:$D_PORT/
    local targets=("D $d $COOKIE_D" "C https://127.0.0.1:$C_PORT/ $COOKIE_C")
    if command -v redis-server >/dev/null; then
        start_redis_setups
        targets+=("R https://127.0.0.1:$R_PORT/ $COOKIE_R" "S https://127.0.0.1:$S_PORT/ $COOKIE_S")
    else
        log "no redis-server: the Redis store is not trained"
    fi
    for t in "${targets[@]}"; do
        read -r name url ck <<<"$t"
        for conns in 64 256; do
            log "training: $name, HTTP/1.1, $conns connections, ${secs}s"
            wrk -t"$THREADS" -c"$conns" -d"${secs}s" -H "Cookie: _wxgate=$ck" "$url" >"$RUN/train.txt" 2>&1 ||
                die "wrk failed: $(cat "$RUN/train.txt")"
        done
        [[ $name == C ]] && continue # nginx serves C's HTTP/2; its wxgate is plain HTTP/1.1
        log "training: $name, HTTP/2, 32 x 10 streams, ${secs}s"
        h2load -t"$THREADS" -c32 -m10 -D "$secs" -H "cookie: _wxgate=$ck" "$url" >"$RUN/train.txt" 2>&1 ||
            die "h2load failed: $(cat "$RUN/train.txt")"
    done
    log "training: D without a session (API client: 401; browser: 302 to the login), ${secs}s each"
    wrk -t"$THREADS" -c64 -d"${secs}s" "$d" >"$RUN/train.txt" 2>&1 || die "wrk failed: $(cat "$RUN/train.txt")"
    wrk -t"$THREADS" -c64 -d"${secs}s" -H 'Accept: text/html' "$d" >"$RUN/train.txt" 2>&1 ||
        die "wrk failed: $(cat "$RUN/train.txt")"
    log "training: logins through D (login_load)"
    "$LOAD" --gateway "https://127.0.0.1:$D_PORT" --mock "$MOCK_URL" --logins $((2000 * secs)) \
        --concurrency 64 --progress-secs 0 >"$RUN/train.txt" 2>&1 || die "login_load failed: $(tail -n5 "$RUN/train.txt")"
    verify_d "$COOKIE_D" >/dev/null 2>&1 || die "D lost its session during the training"
    log "training done; the gateways write their profiles as they stop"
}

# paired3 A B → "req/s …x  p99 …x  CPU/req …x": the per-round ratios A/B (see `paired`).
paired3() {
    echo "req/s $(paired 4 "$1" "$2")x  p99 $(paired 7 "$1" "$2")x  CPU/req $(paired 10 "$1" "$2")x"
}

# h1_target_lines LETTER SETUP DESCRIPTION: the issue's HTTP/1.1 targets for a wxgate setup
# against B (nginx proxy_pass), at $CONNS connections.
h1_target_lines() {
    local l=$1 s=$2 b=B-nginx-proxy
    echo "throughput  $l/B ($3 / nginx proxy_pass):   $(ratio "$(med RPS "$s")" "$(med RPS $b)")x"
    echo "p99 ms      $l $(med P99 "$s")   B $(med P99 $b)   (target: $l <= B) $(verdict "$(med P99 "$s")" le "$(med P99 $b)")"
    echo "CPU us/req  $l $(med CPU "$s")   B $(med CPU $b)   (target: $l <= B) $(verdict "$(med CPU "$s")" le "$(med CPU $b)")   $l/B $(ratio "$(med CPU "$s")" "$(med CPU $b)")x (aim 0.8x)"
    echo "paired      median of the per-round ratios $l/B: $(paired3 "$s" $b)"
}

# h2_target_lines LETTER SETUP DESCRIPTION: the HTTP/2 target (>= 1.3x B2's requests).
h2_target_lines() {
    local l=$1 s=$2 b=B2-nginx-h2 r
    r=$(ratio "$(med RPS "$s")" "$(med RPS $b)")
    echo "throughput  $l/B2 over HTTP/2 ($3 / nginx http2 proxy_pass): ${r}x   (target >= 1.3) $(verdict "$r" ge 1.3)"
    echo "CPU us/req  $l $(med CPU "$s")   B2 $(med CPU $b)"
    echo "paired      median of the per-round ratios $l/B2: $(paired3 "$s" $b)"
}

# h2_budget LABEL SETUP → what the HTTP/2 target (LABEL >= 1.3x B2's requests per second) leaves
# wxgate to spend. The load tool, the upstream and the proxy share the machine's cores, and all
# of them are busy (the "cores" figures): requests per second follow the CPU all three spend per
# request. At 1.3x B2's rate, with LABEL's own upstream and h2load costs, LABEL's proxy may spend
# at most the budget printed; the floor's CPU (E2) shows whether the stack alone fits in it.
h2_budget() {
    local n=$1 s=$2 b p u l pd ud ld e
    b=B2-nginx-h2
    p=$(med CPU $b) u=$(med UP $b) l=$(med LOAD $b)
    pd=$(med CPU "$s") ud=$(med UP "$s") ld=$(med LOAD "$s")
    e=$(med CPU E2-floor-h2)
    awk -v n="$n" -v p="$p" -v u="$u" -v l="$l" -v pd="$pd" -v ud="$ud" -v ld="$ld" -v e="$e" \
        -v rb="$(med RPS $b)" -v rd="$(med RPS "$s")" 'BEGIN {
        if (p == "nan" || pd == "nan") exit
        printf "CPU us/req of all three (proxy + upstream + h2load): B2 %.1f = %.1f + %.1f + %.1f (cores busy %.2f)   %s %.1f = %.1f + %.1f + %.1f (cores busy %.2f)\n", p + u + l, p, u, l, (p + u + l) * rb / 1e6, n, pd + ud + ld, pd, ud, ld, (pd + ud + ld) * rd / 1e6
        printf "HTTP/2 budget: at 1.3x B2 with %s'"'"'s upstream and h2load costs, %s'"'"'s proxy may spend %.1f us/req (%s spends %.1f", n, n, (p + u + l) / 1.3 - ud - ld, n, pd
        if (e != "nan" && e != "") printf ", the floor E2 %.1f", e
        print ")"
    }'
}

# Extra arguments of every load run of alternate_rounds (handshakes: Connection: close).
LOAD_ARGS=()

# alternate_rounds SETUP...: a warm-up of each, then ROUNDS rounds alternating the setups, with
# $TOOL, $CONNS and LOAD_ARGS; reads the caller's url and cookie maps (see prepare_setups).
alternate_rounds() {
    local s r
    for s in "$@"; do
        DURATION=$WARMUP run_load "$s" "${url[$s]}" "$RUN/warmup.txt" -H "cookie: _wxgate=${cookie[$s]}" "${LOAD_ARGS[@]}"
    done
    busy_warning
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in "$@"; do
            measure "$s" "${url[$s]}" "$r" -H "cookie: _wxgate=${cookie[$s]}" "${LOAD_ARGS[@]}"
            sleep 1
        done
        busy_warning
    done
}

# verdict VALUE ge|le LIMIT → "met" / "NOT MET"
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "nan") { print "(n/a)"; exit }
        ok = (op == "ge") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
        print ok ? "met" : "NOT MET" }'
}

# paired COLUMN A B → the median over rounds of A's value / B's value in the same round (at
# $CONNS connections): robust to the machine speeding up or slowing down during the run, which
# moves the plain medians of A and B apart.
paired() {
    awk -F'\t' -v col="$1" -v a="$2" -v b="$3" -v c="$CONNS" '
        $2 == c && $1 == a { va[$3] = $col }
        $2 == c && $1 == b { vb[$3] = $col }
        END { for (r in va) if ((r in vb) && vb[r] > 0) print va[r] / vb[r] }' "$RESULTS/runs.tsv" |
        median | awk '{ if ($1 == "nan") print "nan"; else printf "%.2f", $1 }'
}

# The comparison lines under one HTTP/1.1 table (for $CONNS connections).
compare_lines() {
    local d b c
    d=$(med RPS D-wxgate) b=$(med RPS B-nginx-proxy) c=$(med RPS C-nginx-auth_request)
    if [[ " $SETUPS " == *" B "* && " $SETUPS " == *" D "* ]]; then
        h1_target_lines D D-wxgate "wxgate"
    fi
    if [[ " $SETUPS " == *" B "* && " $SETUPS " == *" P "* ]]; then
        h1_target_lines P P-wxgate-pgo "wxgate built with PGO"
    fi
    if [[ " $SETUPS " == *" D "* && " $SETUPS " == *" P "* ]]; then
        echo "paired P/D  (the same code without PGO): $(paired3 P-wxgate-pgo D-wxgate)"
    fi
    if [[ " $SETUPS " == *" C "* && " $SETUPS " == *" D "* ]]; then
        echo "throughput  D/C (wxgate / nginx auth_request): $(ratio "$d" "$c")x"
    fi
    if [[ " $SETUPS " == *" R "* ]]; then
        echo "throughput  R/D (Redis store, cache_ms=5000 / memory store): $(ratio "$(med RPS R-wxgate-redis-cache)" "$d")x   (target >= 0.9)   paired R/D $(paired 4 R-wxgate-redis-cache D-wxgate)x   p99 R $(med P99 R-wxgate-redis-cache) ms   CPU R $(med CPU R-wxgate-redis-cache) us/req"
    fi
    if [[ " $SETUPS " == *" S "* ]]; then
        echo "throughput  S/D (Redis store, cache_ms=0 / memory store):    $(ratio "$(med RPS S-wxgate-redis-nocache)" "$d")x   (every request reads Redis)"
    fi
    if [[ " $SETUPS " == *" E "* ]]; then
        local e l s line
        e=$(med RPS E-floor)
        line="stack floor E (tokio+rustls+hyper doing nothing else, $(floor_kind))"
        [[ " $SETUPS " == *" B "* ]] && line+=": E/B $(ratio "$e" "$b")x (nginx proxy_pass)"
        echo "$line"
        for s in D-wxgate P-wxgate-pgo; do
            l=${s%%-*}
            [[ " $SETUPS " == *" $l "* ]] || continue
            echo "            $l/E: req/s $(ratio "$(med RPS $s)" "$e")x   CPU/req $(ratio "$(med CPU $s)" "$(med CPU E-floor)")x   paired $l/E: $(paired3 $s E-floor)"
        done
    fi
}

# floor_kind → which floor binary setup E ran: the release build, or FLOOR_BIN's path.
floor_kind() {
    if [[ $FLOOR == "$FLOOR_RELEASE" ]]; then
        echo "cargo build --release"
    else
        echo "FLOOR_BIN=${FLOOR#"$ROOT"/}"
    fi
}

# session_rounds URL N COOKIE COOKIE_FILE: warm up, then ROUNDS x (one cookie, rotating cookies).
session_rounds() {
    local url=$1 n=$2 cookie=$3 file=$4 r
    wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -H "Cookie: _wxgate=$cookie" "$url" >/dev/null
    busy_warning
    for ((r = 1; r <= ROUNDS; r++)); do
        measure "D-$n-one" "$url" "$r" -H "Cookie: _wxgate=$cookie"
        sleep 1
        measure "D-$n-rotate" "$url" "$r" -s "$BENCH/rotate.lua" -- "$file"
        sleep 1
    done
}

mode_sessions() {
    start_d_alone
    local gw
    gw=$(pid_of gateway-d)
    local d=https://127.0.0.1:$D_PORT/
    echo "RSS of an idle gateway: $(rss_kib "$gw") KiB" | tee -a "$RESULTS/summary.txt"

    log "creating $SESSIONS_SMALL sessions with login_load"
    login_run logins-small --logins "$SESSIONS_SMALL" --concurrency "$LOGIN_CONCURRENCY" \
        --cookies-out "$RUN/cookies-small.txt" --progress-secs 0
    local last
    last=$(sed -n 's/^last_cookie=//p' <<<"$LR_OUT")
    verify_d "$last"
    sleep 2
    echo "sessions in store (gauge): $(sessions_gauge)  RSS: $(rss_kib "$gw") KiB" | tee -a "$RESULTS/summary.txt"

    runs_header
    local n
    for n in "$SESSIONS_SMALL" "$SESSIONS_LARGE"; do
        PROXY_PIDS[D-$n-one]=$gw
        PROXY_PIDS[D-$n-rotate]=$gw
    done
    session_rounds "$d" "$SESSIONS_SMALL" "$last" "$RUN/cookies-small.txt"

    local more=$((SESSIONS_LARGE - SESSIONS_SMALL)) done_=0 batch=0 size t0 t1
    log "creating $more more sessions with login_load (total $SESSIONS_LARGE), in batches of $LOGIN_BATCH"
    : >"$RUN/cookies-large.txt"
    t0=$(date +%s.%N)
    while ((done_ < more)); do
        batch=$((batch + 1))
        size=$((more - done_ < LOGIN_BATCH ? more - done_ : LOGIN_BATCH))
        if ((batch > 1)); then
            # The mock keeps used codes and tokens in bounded caches (200 000 entries) that stop
            # admitting new ones when full: a fresh mock per batch (sessions live in the gateway).
            stop mock
            start_mock
            wait_http "$MOCK_URL/"
        fi
        login_run "logins-large-$batch" --logins "$size" --concurrency "$LOGIN_CONCURRENCY" \
            --cookies-out "$RUN/cookies-batch.txt" --progress-secs 0
        cat "$RUN/cookies-batch.txt" >>"$RUN/cookies-large.txt"
        done_=$((done_ + size))
        grep -q '_failed=0 ' <<<"$LR_OUT" || log "WARNING: failed logins in batch $batch: $LR_OUT"
    done
    t1=$(date +%s.%N)
    awk -v n="$(wc -l <"$RUN/cookies-large.txt")" -v a="$t0" -v b="$t1" 'BEGIN {
        printf "logins-large total: %d sessions created in %.0fs = %.0f logins/s (mock restarts included)\n", n, b - a, n / (b - a) }' |
        tee -a "$RESULTS/summary.txt"
    last=$(sed -n 's/^last_cookie=//p' <<<"$LR_OUT")
    verify_d "$last" >/dev/null 2>&1 || die "the last login's session does not work"
    local count
    sleep 2 # moka applies pending writes lazily: let the count settle
    count=$(sessions_gauge)
    {
        echo "sessions in store (gauge): $count  RSS: $(rss_kib "$gw") KiB  (VmHWM $(hwm_kib "$gw") KiB, in transparent huge pages $(thp_kib "$gw") KiB)"
    } | tee -a "$RESULTS/summary.txt"
    cat "$RUN/cookies-small.txt" "$RUN/cookies-large.txt" | shuf -n "$ROTATE_MAX" >"$RUN/cookies-rotate.txt"
    session_rounds "$d" "$SESSIONS_LARGE" "$last" "$RUN/cookies-rotate.txt"
    local rss_end
    rss_end=$(rss_kib "$gw")
    {
        echo
        echo "wxgate bench sessions: $ROUNDS rounds x ${DURATION}s, wrk -t$THREADS -c$CONNS, keep-alive, medians"
        echo "(-one: every request with the same session cookie; -rotate: each request a different one of"
        echo " $(wc -l <"$RUN/cookies-small.txt") resp. $(wc -l <"$RUN/cookies-rotate.txt") cookies, via bench/rotate.lua)"
        summary "D-${SESSIONS_SMALL}-one" "D-${SESSIONS_SMALL}-rotate" "D-${SESSIONS_LARGE}-one" "D-${SESSIONS_LARGE}-rotate"
        echo
        echo "throughput ${SESSIONS_LARGE}/${SESSIONS_SMALL} sessions, one cookie: $(ratio "$(med RPS "D-${SESSIONS_LARGE}-one")" "$(med RPS "D-${SESSIONS_SMALL}-one")")x   rotating: $(ratio "$(med RPS "D-${SESSIONS_LARGE}-rotate")" "$(med RPS "D-${SESSIONS_SMALL}-rotate")")x   (target >= 0.9)"
        echo "gateway RSS with $count sessions: $((rss_end / 1024)) MiB (VmHWM $(($(hwm_kib "$gw") / 1024)) MiB)   (target <= 512 MiB)"
    } | tee -a "$RESULTS/summary.txt"
}

mode_logins() {
    start_d_alone
    login_run warmup --logins 2000 --concurrency "$LOGIN_CONCURRENCY" --progress-secs 0 >/dev/null
    busy_warning
    {
        echo "wxgate bench logins: $LOGINS logins, concurrency $LOGIN_CONCURRENCY, gateway over TLS (keep-alive)"
        echo "per login: mock mint (POST /mock/code), GET /_wxgate/login, GET /_wxgate/callback"
        echo "(the callback makes the gateway call the mock twice: access_token and userinfo)"
    } | tee -a "$RESULTS/summary.txt"
    login_run mint-only --mint-only --logins "$LOGINS" --concurrency "$LOGIN_CONCURRENCY" --progress-secs 0
    login_run logins --logins "$LOGINS" --concurrency "$LOGIN_CONCURRENCY" --progress-secs 0
    echo "sessions in store: $(sessions_gauge)" | tee -a "$RESULTS/summary.txt"
}

# attribute LABEL URL PID COOKIE: profile one proxy (PID and its children) under wrk: its CPU
# time per request, split by component ($RESULTS/attrib-LABEL.tsv: component, us/request).
attribute() {
    local label=$1 url=$2 pid=$3 cookie=$4 secs=$PROFILE_SECS pids u0 s0 u1 s1 rps us
    pids=$({ echo "$pid"; pgrep -P "$pid" || true; } | paste -sd,)
    wrk -t"$THREADS" -c"$CONNS" -H "Cookie: _wxgate=$cookie" -d"${WARMUP}s" "$url" >/dev/null
    start "wrk-$label" wrk -t"$THREADS" -c"$CONNS" -H "Cookie: _wxgate=$cookie" -d"$((secs + 2))s" "$url"
    sleep 1
    read -r u0 s0 < <(tree_ticks "$pid")
    perf record -q -F "$PERF_FREQ" -p "$pids" -o "$RUN/attrib-$label.data" -- sleep "$secs" 2>/dev/null || true
    read -r u1 s1 < <(tree_ticks "$pid")
    wait "$(pid_of "wrk-$label")" || true
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$RUN/wrk-$label.log")
    # CPU time in the perf window / requests in it (wrk's rate over its whole run).
    us=$(awk -v t=$((u1 - u0 + s1 - s0)) -v hz="$(getconf CLK_TCK)" -v r="${rps:-0}" -v s="$secs" \
        'BEGIN { if (r > 0) printf "%.1f", 1e6 * t / hz / (r * s); else print 0 }')
    perf report -i "$RUN/attrib-$label.data" --no-children --sort dso,symbol --percent-limit 0 --stdio 2>/dev/null |
        awk -v us="$us" -f "$BENCH/attribute.awk" | sort -t$'\t' -k2 -rn >"$RESULTS/attrib-$label.tsv"
    printf '%s\t%s\n' "total CPU per request" "$us" >>"$RESULTS/attrib-$label.tsv"
    log "$label: $rps req/s under perf, $us us CPU per request"
}

# attribution_table LABEL... → components (rows) x setups (columns), us per request.
attribution_table() {
    local l files=()
    for l in "$@"; do files+=("$RESULTS/attrib-$l.tsv"); done
    awk -F'\t' -v labels="$*" '
        FNR == 1 { f++ }
        { v[$1, f] = $2; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        END {
            k = split(labels, lab, " ")
            printf "%-38s", "CPU us per request"
            for (i = 1; i <= k; i++) printf " %14s", lab[i]
            printf "\n"
            for (j = 1; j <= n; j++) {
                printf "%-38s", order[j]
                for (i = 1; i <= k; i++) printf " %14.2f", v[order[j], i] + 0
                printf "\n"
            }
        }' "${files[@]}"
}

mode_profile() {
    start_all
    start_floor
    local cd=$COOKIE_D gw d=https://127.0.0.1:$D_PORT/
    gw=$(pid_of gateway-d)
    local wrk_args=(-t"$THREADS" -c"$CONNS" -H "Cookie: _wxgate=$cd")
    busy_warning
    local n0 n1 secs=$PROFILE_SECS

    # 0. Where the CPU goes, per request, in wxgate (D), in the stack floor (E: tokio + rustls +
    #    hyper forwarding and nothing else) and in nginx proxy_pass (B), one after the other.
    log "CPU attribution: D, E, B under perf, ${secs}s each"
    attribute D-wxgate "$d" "$gw" "$cd"
    attribute E-floor "https://127.0.0.1:$E_PORT/" "$(pid_of floor)" "$cd"
    attribute B-nginx-proxy "https://127.0.0.1:$B_PORT/" "$(pid_of nginx-front)" "$cd"
    {
        echo "CPU time per request of each proxy, split by component (perf -F $PERF_FREQ, ${secs}s each, wrk -t$THREADS -c$CONNS)"
        attribution_table D-wxgate E-floor B-nginx-proxy
    } | tee -a "$RESULTS/summary.txt"

    # 1. CPU profile (software clock: this VM has no hardware counters), DWARF call graphs.
    log "perf record -F $PERF_FREQ --call-graph dwarf for ${secs}s"
    start wrk-perf wrk "${wrk_args[@]}" -d"$((secs + 3))s" --latency "$d"
    sleep 1
    n0=$(proxied_count)
    perf record -q -F "$PERF_FREQ" --call-graph dwarf,16384 -p "$gw" -o "$RUN/perf.data" -- sleep "$secs" 2>"$RUN/perf-record.log" || true
    n1=$(proxied_count)
    wait "$(pid_of wrk-perf)" || true
    echo "perf window: $((n1 - n0)) proxied requests in ${secs}s (under perf)" | tee -a "$RESULTS/summary.txt"
    perf report -i "$RUN/perf.data" --no-children --sort dso,symbol -g none --percent-limit 0.3 --stdio \
        >"$RESULTS/perf-self.txt" 2>/dev/null || true
    perf report -i "$RUN/perf.data" --children --sort symbol -g none --percent-limit 1 --stdio \
        >"$RESULTS/perf-children.txt" 2>/dev/null || true
    perf report -i "$RUN/perf.data" --no-children --sort dso -g none --stdio \
        >"$RESULTS/perf-dso.txt" 2>/dev/null || true
    perf report -i "$RUN/perf.data" --no-children --sort symbol -g caller,0.5,callee --percent-limit 2 --stdio \
        >"$RESULTS/perf-callgraph.txt" 2>/dev/null || true
    cp "$RUN/perf.data" "$RESULTS/" 2>/dev/null || true

    # 2. Syscalls per request (strace slows the gateway down; the ratio is what counts).
    log "strace -c -f for 5s"
    start wrk-strace wrk "${wrk_args[@]}" -d9s "$d"
    sleep 2
    n0=$(proxied_count)
    timeout -s INT 5 strace -c -f -q -p "$gw" -o "$RESULTS/strace-c.txt" || true
    n1=$(proxied_count)
    wait "$(pid_of wrk-strace)" || true
    local reqs=$((n1 - n0))
    {
        echo "strace window: $reqs proxied requests"
        awk -v n="$reqs" 'NR > 2 && $NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
            printf "  %-16s %9d calls  %6.2f per request\n", $NF, $4, $4 / n }' "$RESULTS/strace-c.txt"
    } | tee -a "$RESULTS/summary.txt"

    # 3. Sizes of reads and writes (TLS records) for one short window; -ff: one file per thread,
    #    so no call is split into unfinished/resumed halves.
    start wrk-strace2 wrk -t1 -c4 -H "Cookie: _wxgate=$cd" -d4s "$d"
    sleep 1
    n0=$(proxied_count)
    timeout -s INT 1 strace -ff -qq -p "$gw" -e trace=read,write,writev,recvfrom,sendto,sendmsg,recvmsg \
        -e signal=none -o "$RUN/strace-io" || true
    n1=$(proxied_count)
    wait "$(pid_of wrk-strace2)" || true
    cat "$RUN"/strace-io.* >"$RESULTS/strace-io.txt" 2>/dev/null || true
    {
        echo "read/write calls in a 1s window at 4 connections (~$((n1 - n0)) requests): count, syscall, bytes returned"
        echo "(8-byte writes are tokio waking a parked worker through its eventfd)"
        sed -n -E 's/^([a-z]+)\([0-9]+,.* = (-?[0-9]+).*/\1 \2/p' "$RESULTS/strace-io.txt" |
            sort | uniq -c | sort -rn | awk 'NR <= 12'
    } | tee -a "$RESULTS/summary.txt"

    # 4. Heap allocations per request: uprobes on the allocator the binary uses (mimalloc's
    #    mi_*_aligned when it is the global allocator, else libc's malloc family).
    local target group probes=() allocs=() events
    if grep -q ' T mi_malloc_aligned$' < <(nm "$BIN" 2>/dev/null); then
        target=$BIN
        group=probe_wxgate
        probes=(mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned mi_free)
        allocs=(mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned)
    else
        target=$(ldd "$BIN" | awk '/libc\.so/ { print $3 }')
        group=probe_libc
        probes=(malloc calloc realloc free)
        allocs=(malloc calloc realloc)
    fi
    local probe_args=() p
    for p in "${probes[@]}"; do probe_args+=(-a "$p"); done
    if [[ -n $target ]] && perf probe -q -x "$target" "${probe_args[@]}" >/dev/null 2>&1; then
        PERF_PROBES=1
        PROBE_GROUP=$group
        events=$(printf "$group:%s," "${probes[@]}")
        start wrk-malloc wrk "${wrk_args[@]}" -d8s "$d"
        sleep 2
        n0=$(proxied_count)
        perf stat -x, -e "${events%,}" -p "$gw" -o "$RESULTS/perf-malloc.csv" -- sleep 4 || true
        n1=$(proxied_count)
        wait "$(pid_of wrk-malloc)" || true
        reqs=$((n1 - n0))
        {
            echo "allocator calls in the window ($reqs proxied requests; $(basename "$target")):"
            awk -F, -v n="$reqs" -v g="$group" '$3 ~ g { printf "  %-32s %10d  %6.2f per request\n", $3, $1, $1 / n }' "$RESULTS/perf-malloc.csv"
        } | tee -a "$RESULTS/summary.txt"
        # Who allocates: the first caller of the allocation functions, 1s with call graphs.
        start wrk-malloc2 wrk "${wrk_args[@]}" -d5s "$d"
        sleep 1
        local rec=()
        for p in "${allocs[@]}"; do rec+=(-e "$group:$p"); done
        perf record -q "${rec[@]}" --call-graph dwarf,8192 -p "$gw" -o "$RUN/malloc.data" -- sleep 1 2>/dev/null || true
        wait "$(pid_of wrk-malloc2)" || true
        perf script -i "$RUN/malloc.data" -F event,ip,sym --no-inline 2>/dev/null | awk -v g="$group" '
            $1 ~ "^" g ":" { ev = $1; sub(/:$/, "", ev); want = 2; n++; next }
            NF == 0 { want = 0; next }
            want == 2 { want = 1; next }                     # the allocation function itself
            want == 1 { $1 = ""; sub(/^ /, ""); if ($0 ~ /^(__rustc::|__rdl_|__rust_)/) next; c[ev " <- " substr($0, 1, 140)]++; want = 0 }
            END { for (k in c) printf "%6.1f%%  %s\n", 100 * c[k] / n, k }' |
            sort -rn | awk 'NR <= 25' >"$RESULTS/malloc-callers.txt" || true
        {
            echo "allocation sites (share of allocation calls; times the per-request count above = calls per request):"
            cat "$RESULTS/malloc-callers.txt"
        } | tee -a "$RESULTS/summary.txt"
        perf probe -q -d "$group:*" >/dev/null 2>&1 || true
        PERF_PROBES=0
    else
        log "uprobes on the allocator are not available; skipping allocation counts"
    fi
    echo "profile files: perf-self.txt perf-children.txt perf-callgraph.txt strace-c.txt strace-io.txt" >>"$RESULTS/summary.txt"
}

# D (or, with INSTR_SETUP=E, the floor) alone under valgrind's callgrind, one worker: instructions
# per proxied request. Throughput and CPU time on this shared VM move by 20-30% between runs; an
# instruction count moves by 0.1%, so it is what tells whether a change to the hot path made it
# cheaper. (It does not see the kernel,
# cache misses or the cost of memcpy's `rep movsb`, which counts as one instruction.)
mode_instructions() {
    command -v valgrind >/dev/null || die "instructions needs valgrind (apt-get install valgrind)"
    [[ $INSTR_SETUP == D || $INSTR_SETUP == E ]] || die "INSTR_SETUP must be D or E"
    [[ $INSTR_CACHE == 0 || $INSTR_CACHE == 1 ]] || die "INSTR_CACHE must be 0 or 1"
    [[ $INSTR_CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "INSTR_CONNECTIONS must be a positive whole number"
    local vg=(valgrind --tool=callgrind --callgrind-out-file="$RUN/callgrind.out")
    [[ $INSTR_CACHE == 1 ]] && vg+=(--cache-sim=yes)
    check_ports "$UPSTREAM_PORT" "$MOCK_PORT" "$D_PORT" "$E_PORT"
    start_nginx upstream
    wait_http "http://127.0.0.1:$UPSTREAM_PORT/"
    local cd gw d out reqs ir dump
    if [[ $INSTR_SETUP == E ]]; then
        # The floor: the same load, the cookie is sent and ignored.
        start floor "${vg[@]}" "$FLOOR" --workers 1 --listen "127.0.0.1:$E_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT" \
            --cert "$RUN/certs/server.crt" --key "$RUN/certs/server.key"
        d=https://127.0.0.1:$E_PORT/
        wait_http "$d" 60
        cd=unused gw=$(pid_of floor)
    else
        start_mock
        gateway_conf "$RUN/gateway-d.toml" "$D_PORT" "https://localhost:$D_PORT" 1
        start gateway-d env RUST_LOG=warn WXGATE_SERVER__WORKERS=1 "${vg[@]}" \
            "$BIN" run --config "$RUN/gateway-d.toml"
        wait_http "$MOCK_URL/"
        wait_http "https://127.0.0.1:$D_PORT/_wxgate/healthz" 60 # valgrind starts slowly
        d=https://127.0.0.1:$D_PORT/
        cd=$(browser_login "https://localhost:$D_PORT" "$D_PORT")
        verify_d "$cd"
        gw=$(pid_of gateway-d)
    fi
    wrk -t1 -c"$INSTR_CONNECTIONS" -d3s -H "Cookie: _wxgate=$cd" "$d" >/dev/null
    busy_warning
    # Two windows, a short and a long one, each a new wrk with new TLS connections: the
    # difference between them is requests only (the handshakes, ~3M instructions each, cancel).
    local short=$((INSTR_SECS / 3 > 2 ? INSTR_SECS / 3 : 2)) w secs ir1 n1 ir2 n2 ev ev1 ev2
    for w in 1 2; do
        secs=$short
        ((w == 2)) && secs=$INSTR_SECS
        callgrind_control -z "$gw" >/dev/null
        if [[ $INSTR_PROTO == h2 ]]; then
            # HTTP/2 (h2load, INSTR_CONNECTIONS connections x 10 streams), a fixed count per
            # second of window.
            out=$(h2load -c"$INSTR_CONNECTIONS" -m10 -n $((secs * 1500)) -H "cookie: _wxgate=$cd" "$d")
            reqs=$(awk '/^status codes:/ { print $3 }' <<<"$out")
        else
            out=$(wrk -t1 -c"$INSTR_CONNECTIONS" -d"${secs}s" -H "Cookie: _wxgate=$cd" "$d")
            reqs=$(awk '/ requests in /{ print $1 }' <<<"$out")
        fi
        callgrind_control -d "$gw" >/dev/null
        dump=$(ls -t "$RUN"/callgrind.out.* 2>/dev/null | sed -n 1p)
        [[ -n $dump && ${reqs:-0} -gt 0 ]] || die "no callgrind dump or no requests (wrk: $out)"
        # The totals line: every event counted, instructions first.
        ev=$(awk '/^(summary|totals):/ { $1 = ""; sub(/^ /, ""); print; exit }' "$dump")
        ir=${ev%% *}
        log "window ${secs}s: $reqs requests, $ir instructions"
        if ((w == 1)); then
            ir1=$ir n1=$reqs ev1=$ev
            rm -f "$dump"
        else
            ir2=$ir n2=$reqs ev2=$ev
        fi
    done
    ((n2 > n1)) || die "the long window served no more requests than the short one"
    ir=$(((ir2 - ir1) / (n2 - n1)))
    reqs=$n2
    cp "$dump" "$RESULTS/callgrind.out"
    {
        echo "callgrind, $INSTR_SETUP with one worker, $INSTR_PROTO (wrk -t1 -c$INSTR_CONNECTIONS / h2load -c$INSTR_CONNECTIONS -m10): ${short} $n1 requests, ${INSTR_SECS} $n2 requests"
        echo "instructions per proxied request (long - short window): $ir"
        if [[ $INSTR_CACHE == 1 ]]; then
            # Events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw. Cycle estimate as callgrind's
            # (Ir + 10 per L1 miss + 100 per last-level miss): an L1 miss that hits L2 costs
            # about 10 cycles, so a request whose code does not fit the 32 KiB instruction
            # cache costs more than its instruction count says.
            awk -v a="$ev1" -v b="$ev2" -v n=$((n2 - n1)) 'BEGIN {
                split(a, x, " "); split(b, y, " ")
                for (i = 1; i <= 9; i++) d[i] = (y[i] - x[i]) / n
                printf "cache simulation per request (long - short window): I1 misses %.0f, D1 misses %.0f (read %.0f, write %.0f), last-level misses %.1f; cycle estimate %.0f\n", d[4], d[5] + d[6], d[5], d[6], d[7] + d[8] + d[9], d[1] + 10 * (d[4] + d[5] + d[6]) + 100 * (d[7] + d[8] + d[9])
            }'
        fi
        echo "top functions in the long window, per request (self, handshakes included; callgrind_annotate $RESULTS/callgrind.out for all):"
        callgrind_annotate --threshold=100 "$dump" 2>/dev/null |
            awk -v n="$reqs" '/^ *[0-9,]+ \( *[0-9.]+%\)  / && !/\(100\.0%\)/ {
                v = $1; gsub(/,/, "", v); f = $0; sub(/^.*%\)  /, "", f); sub(/^[^:]*:/, "", f)
                if (k++ < 25) printf "  %7.0f  %s\n", v / n, substr(f, 1, 110) }'
    } | tee -a "$RESULTS/summary.txt"
}

# ------------------------------------------------------------------------------------------

env_info
build
gen_certs
"mode_${MODE//-/_}"
