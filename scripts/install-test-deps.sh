#!/usr/bin/env bash
# Install what wxgate's tests need, only when missing (idempotent; safe to run repeatedly).
#
#   Debian packages: nginx redis-server caddy chromium wrk
#                    nghttp2-client curl openssl (h2load and the benchmark's login and
#                    certificate; scripts/test checks the PGO build with it)
#                    redis-sentinel redis-tools (tests/redis_sentinel.rs runs three sentinels,
#                    tests/redis_cluster.rs creates a cluster with redis-cli; never the services)
#                    tomcat10 (tests/tomcat.rs runs its own Tomcat, as the current user, from
#                    /usr/share/tomcat10 with a temporary CATALINA_BASE; never the system service)
#                    fonts-wqy-microhei fonts-noto-color-emoji (CJK and emoji glyphs, so the
#                    browser test's screenshot of "你好, Alice 🐼 小爱" is not tofu boxes)
#                    (nodejs npm too, only when no `npm` is on PATH; playwright-core needs
#                    Node.js >= 20, newer than bookworm's nodejs 18)
#   npm:             tests/e2e/node_modules (playwright-core only; never a browser download:
#                    the browser is Debian's /usr/bin/chromium)
#
# Services: the tests start their own nginx / redis / caddy on random loopback ports and never
# use the system instances. While installing, this script forbids package scripts from starting
# services (a temporary /usr/sbin/policy-rc.d answering 101, when none exists), so nothing new
# is auto-started; instances that were already running are left alone and reported.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E_DIR="$ROOT/tests/e2e"
DEBIAN_PACKAGES=(nginx redis-server redis-sentinel redis-tools caddy chromium wrk nghttp2-client curl openssl tomcat10 fonts-wqy-microhei fonts-noto-color-emoji)

log() { printf 'install-test-deps: %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "not root and no sudo: cannot install Debian packages" >&2
    fi
fi

# --- Debian packages -------------------------------------------------------------------------
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

POLICY=/usr/sbin/policy-rc.d
POLICY_CREATED=0
cleanup() {
    if [ "$POLICY_CREATED" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY" || true
    fi
}
trap cleanup EXIT

if [ "${#missing[@]}" -gt 0 ]; then
    log "missing Debian packages: ${missing[*]}"
    if [ ! -e "$POLICY" ]; then
        # Keep apt from auto-starting nginx/redis/caddy/tomcat10 (ports 80/6379/8080).
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
        "${SUDO[@]}" chmod 755 "$POLICY"
        POLICY_CREATED=1
        log "service auto-start disabled for the duration of the install ($POLICY)"
    fi
    log "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    log "apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
    log "installed: ${missing[*]}"
else
    log "Debian packages already installed: ${DEBIAN_PACKAGES[*]}"
fi

for bin in /usr/bin/chromium /usr/sbin/nginx /usr/bin/redis-server /usr/bin/caddy /usr/bin/wrk /usr/bin/h2load \
    /usr/share/tomcat10/bin/catalina.sh; do
    if [ ! -x "$bin" ]; then
        log "expected $bin after installing; it is not there" >&2
        exit 1
    fi
done

# Report (but leave alone) system instances that happen to be running.
for svc in nginx redis-server caddy; do
    if pids="$(pgrep -x "$svc" 2>/dev/null)"; then
        log "note: a system $svc is running (pids: $(echo "$pids" | tr '\n' ' ')); left alone: tests use their own instances on random ports"
    fi
done

# --- npm: tests/e2e ---------------------------------------------------------------------------
if [ -d "$E2E_DIR/node_modules/playwright-core" ]; then
    log "tests/e2e/node_modules already present"
else
    export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
    if [ -f "$E2E_DIR/package-lock.json" ]; then
        log "npm ci in tests/e2e"
        (cd "$E2E_DIR" && npm ci --no-audit --no-fund)
    else
        log "npm install in tests/e2e (no lockfile)"
        (cd "$E2E_DIR" && npm install --no-audit --no-fund)
    fi
    if [ ! -d "$E2E_DIR/node_modules/playwright-core" ]; then
        log "npm finished but tests/e2e/node_modules/playwright-core is missing" >&2
        exit 1
    fi
    log "installed tests/e2e/node_modules"
fi

log "done: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium (version unknown)'), node $(node --version)"
