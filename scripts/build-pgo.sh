#!/usr/bin/env bash
# Build wxgate with profile-guided optimisation (PGO): target/pgo/wxgate.
#
#   scripts/build-pgo.sh          # wxgate → target/pgo/wxgate
#   scripts/build-pgo.sh floor    # the benchmark's stack floor → target/pgo/floor_proxy
#
# 1. An instrumented build (rustc -Cprofile-generate) into target/pgo/gen.
# 2. Training: `bench/run.sh pgo-train` runs that binary as a TLS gateway in front of nginx, with
#    the mock WeChat, and drives what a gateway does all day: logged-in requests over HTTP/1.1
#    and HTTP/2 (memory store, Redis store with and without its cache), nginx auth_request
#    checks, requests without a session (401 and the browser's 302), and logins; once with the
#    access log off and once with it on. Each wxgate process writes its counters when it exits.
# 3. llvm-profdata (rustup's llvm-tools component, added when missing) merges them.
# 4. The optimised build (rustc -Cprofile-use) into target/pgo/use, copied to target/pgo/wxgate.
#
# `floor` does the same for `examples/floor_proxy.rs` (setup E of bench/run.sh), trained on what
# it does (`bench/run.sh compare` with SETUPS=E, one round: HTTP/1.1 and HTTP/2), so that
# wxgate built with PGO can be set against its stack built the same way
# (`FLOOR_BIN=target/pgo/floor_proxy bench/run.sh`).
#
# Same code and features as `cargo build --release`; the compiler lays out and inlines the code
# by the measured counts. Needs what the benchmark needs (nginx, wrk, h2load, curl, openssl;
# redis-server for the Redis part, skipped without it) and about twice a release build's time.
# Knobs: PGO_TRAIN_SECS=4 (seconds per training load), PORT_BASE=18000, LLVM_PROFDATA (path),
# CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET_DIR/pgo
HOST=$(rustc -vV | sed -n 's/^host: //p')
# What is built, and where: the cargo target, its path inside a target directory, the
# subdirectory prefix under $OUT (gen, use, profiles) and the installed name.
case ${1:-wxgate} in
wxgate) CARGO_WHAT=(--bin wxgate) BUILT=wxgate PREFIX="" NAME=wxgate ;;
floor) CARGO_WHAT=(--example floor_proxy) BUILT=examples/floor_proxy PREFIX=floor- NAME=floor_proxy ;;
*)
    echo "usage: scripts/build-pgo.sh [floor]" >&2
    exit 2
    ;;
esac
PROFILES=$OUT/${PREFIX}profiles

log() { printf 'build-pgo: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

profdata() {
    if [[ -n ${LLVM_PROFDATA:-} ]]; then
        [[ -x $LLVM_PROFDATA ]] || die "LLVM_PROFDATA=$LLVM_PROFDATA is not an executable"
        echo "$LLVM_PROFDATA"
        return
    fi
    # rustc's own LLVM: a profile must be read by the LLVM that wrote it (or a newer one).
    local p
    p="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
    if [[ ! -x $p ]]; then
        command -v rustup >/dev/null ||
            die "no $p and no rustup to add it: install rustc's llvm-tools or set LLVM_PROFDATA"
        log "rustup component add llvm-tools (llvm-profdata for rustc's LLVM)"
        rustup component add llvm-tools >&2
    fi
    [[ -x $p ]] || die "llvm-profdata is still missing at $p"
    echo "$p"
}

PROFDATA=$(profdata)
# `--target` keeps the flags off build scripts and proc macros: only the binary built (with
# every crate it links) is instrumented and optimised. Prints the binary's path.
cargo_pgo() { # gen|use RUSTFLAGS...
    local dir=$OUT/$PREFIX$1
    shift
    RUSTFLAGS="${RUSTFLAGS:-} $*" cargo build --release --locked --quiet --target "$HOST" \
        --target-dir "$dir" "${CARGO_WHAT[@]}"
    echo "$dir/$HOST/release/$BUILT"
}

# The training load for the instrumented binary $1: what the compare measures.
train() {
    if [[ $NAME == floor_proxy ]]; then
        # One round of the compare with the floor alone: HTTP/1.1 at 64 and 256, then HTTP/2.
        FLOOR_BIN=$1 SETUPS=E ROUNDS=1 WARMUP=1 DURATION="${PGO_TRAIN_SECS:-4}" \
            CONNECTIONS="64 256" bench/run.sh compare
        return
    fi
    # The login client: a debug build is fast enough for it (and `cargo test` has usually
    # built it already).
    log "    the training's login client (cargo build --example login_load)"
    cargo build --locked --quiet --example login_load
    local access_log
    for access_log in 0 1; do
        WXGATE_BIN=$1 LOGIN_LOAD_BIN=$TARGET_DIR/debug/examples/login_load SKIP_BUILD=1 \
            ACCESS_LOG=$access_log bench/run.sh pgo-train
    done
}

log "1/4 instrumented build ($OUT/${PREFIX}gen)"
gen=$(cargo_pgo gen "-Cprofile-generate=$PROFILES")

log "2/4 training"
rm -rf "$PROFILES"
mkdir -p "$PROFILES"
train "$gen"
ls "$PROFILES"/*.profraw >/dev/null 2>&1 || die "the training wrote no profile to $PROFILES"

log "3/4 merging the profiles"
"$PROFDATA" merge -o "$OUT/$NAME.profdata" "$PROFILES"

log "4/4 optimised build ($OUT/${PREFIX}use)"
built=$(cargo_pgo use "-Cprofile-use=$OUT/$NAME.profdata")
install -m 0755 "$built" "$OUT/$NAME"
log "done: $OUT/$NAME"
