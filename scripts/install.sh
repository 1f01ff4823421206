#!/usr/bin/env bash
# Install what dispatch-gateway needs on a Debian 12 machine, idempotently.
#
#   scripts/install.sh            system packages to run (kamailio, janus, ffmpeg) + .venv with the gateway
#                                 + the dispatch console built into console/dist (npm ci + vite build)
#   scripts/install.sh --test     also the test peers (sipp, baresip, chromium, sox, ...) + .[test]
#   options: --force  reinstall the Python packages even if up to date
#            --no-apt skip system packages (no root / not Debian: you provide them)
#
# pjsua2 is built from pjproject's source (scripts/build_pjsua2.sh: $PJPROJECT_TARBALL, else
# ../shared/pjproject/pjproject-2.15.1.tar.gz, else the upstream release; cached in
# ~/.cache/dispatch-gateway, a few minutes the first time) and linked at
# .venv/share/dispatch-gateway/pjsua2; the PyPI wheel stays installed as the fallback (no tarball,
# no compiler, or DISPATCH_GATEWAY_PJSUA2=wheel; see sip/worker/pjsua2_choice.py).
#
# A second run is a fast path: packages already installed and an up-to-date .venv (stamped with
# a hash of pyproject.toml) are left alone. Runs as root, or with sudo when not root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.dispatch-gateway-install"

WITH_TEST=0
FORCE=0
APT=1
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST=1 ;;
        --force) FORCE=1 ;;
        --no-apt) APT=0 ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option: $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf 'install.sh: %s\n' "$*" >&2; }

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo -n)
fi

# ---- system packages ---------------------------------------------------------------------------
# janus + janus-tools (janus-pp-rec) + ffmpeg: the video side (video/), recordings post-processed
APT_RUN=(kamailio ca-certificates janus janus-tools ffmpeg)
# chromium: the WebRTC peers of tests/video (driven by Playwright, never a downloaded browser);
# fonts-dejavu-core: the font ffmpeg's drawtext burns the frame number with (benchmarks/video_replay.py);
# fonts-wqy-microhei: a Chinese system font, so the console's zh-CN screenshots show text, not boxes
APT_TEST=(sip-tester baresip kamailio ffmpeg sox espeak-ng iproute2 procps sqlite3 chromium openssl
          fonts-dejavu-core fonts-wqy-microhei)

missing_packages() {
    local p status
    for p in "$@"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
        [ "$status" = "installed" ] || printf '%s\n' "$p"
    done
}

if [ "$APT" -eq 1 ]; then
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        log "no apt/dpkg here (not Debian?): skipping system packages; use --no-apt to silence"
    else
        wanted=("${APT_RUN[@]}")
        [ "$WITH_TEST" -eq 1 ] && wanted+=("${APT_TEST[@]}")
        # python3.11 itself comes from Debian when the machine has none
        if ! command -v python3.11 >/dev/null 2>&1; then
            wanted+=(python3 python3-venv python3-pip)
        fi
        mapfile -t missing < <(missing_packages "${wanted[@]}" | sort -u)
        if [ "${#missing[@]}" -gt 0 ]; then
            log "apt: installing ${missing[*]}"
            "${SUDO[@]}" apt-get update -q
            "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
        else
            log "apt: system packages already installed"
        fi
    fi
fi

# ---- Python 3.11 -------------------------------------------------------------------------------
is_311() { "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' \
    >/dev/null 2>&1; }

PY=""
for cand in python3.11 python3 /usr/local/bin/python3.11 /usr/bin/python3.11; do
    if command -v "$cand" >/dev/null 2>&1 && is_311 "$(command -v "$cand")"; then
        PY="$(command -v "$cand")"
        break
    fi
done
if [ -z "$PY" ]; then
    log "error: no Python 3.11 with venv found (install python3.11 and python3.11-venv)"
    exit 1
fi

# ---- virtual environment -----------------------------------------------------------------------
if [ -x "$VENV/bin/python" ] && is_311 "$VENV/bin/python"; then
    :
else
    log "creating $VENV with $PY"
    "$PY" -m venv --clear "$VENV"
    rm -f "$STAMP"
fi

# The stamp records what was installed: a hash of pyproject.toml and the extras.
HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
want_extras="run"
[ "$WITH_TEST" -eq 1 ] && want_extras="test"

up_to_date() {
    [ -f "$STAMP" ] || return 1
    local have_hash have_extras
    read -r have_hash have_extras < "$STAMP" || return 1
    [ "$have_hash" = "$HASH" ] || return 1
    # a test install includes the run install
    [ "$have_extras" = "$want_extras" ] || [ "$have_extras" = "test" ] || return 1
    [ -x "$VENV/bin/dispatch-gateway" ] || return 1
    "$VENV/bin/python" -c 'import gateway, pjsua2, aiohttp, websockets, structlog, prometheus_client' \
        >/dev/null 2>&1 || return 1
    if [ "$want_extras" = "test" ]; then
        "$VENV/bin/python" -c 'import pytest, pytest_asyncio, numpy, playwright, aiortc' >/dev/null 2>&1 || return 1
    fi
}

if [ "$FORCE" -eq 0 ] && up_to_date; then
    log "python: $VENV up to date"
else
    target="."
    [ "$WITH_TEST" -eq 1 ] && target=".[test]"
    log "pip: installing -e $target into $VENV"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install -q -e "$target")
    printf '%s %s\n' "$HASH" "$want_extras" > "$STAMP"
fi

# ---- pjsua2 from source (the wheel above stays as the fallback) ---------------------------------
PJ_LINK="$VENV/share/dispatch-gateway/pjsua2"
if [ "${DISPATCH_GATEWAY_PJSUA2:-auto}" = "wheel" ]; then
    log "pjsua2: the PyPI wheel (DISPATCH_GATEWAY_PJSUA2=wheel)"
else
    if [ "$APT" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
        build_deps=(swig g++ make curl)
        "$VENV/bin/python" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
            || build_deps+=(python3-dev)
        mapfile -t missing < <(missing_packages "${build_deps[@]}")
        if [ "${#missing[@]}" -gt 0 ]; then
            log "apt: installing ${missing[*]} (to build pjsua2)"
            "${SUDO[@]}" apt-get update -q
            "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
        fi
    fi
    built="$("$ROOT/scripts/build_pjsua2.sh" "$VENV/bin/python")" && rc=0 || rc=$?
    if [ "$rc" -eq 0 ]; then
        mkdir -p "$(dirname "$PJ_LINK")"
        ln -sfn "$built" "$PJ_LINK"
        log "pjsua2: source build $built"
    elif [ "$rc" -eq 3 ]; then
        rm -f "$PJ_LINK"
        log "pjsua2: no pjproject tarball or no compiler: using the PyPI wheel (4 calls per worker)"
    else
        log "error: building pjsua2 from source failed (DISPATCH_GATEWAY_PJSUA2=wheel installs without it)"
        exit 1
    fi
fi

# ---- test peers from npm (Node.js from Debian) ---------------------------------------------------
# The SMPP simulator (tests/peers/smpp_sim, locked by its package-lock.json) and Prism, which
# serves Twilio's own OpenAPI spec in front of the local Twilio stub.
if [ "$WITH_TEST" -eq 1 ]; then
    if ! command -v npm >/dev/null 2>&1; then
        if [ "$APT" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
            log "apt: installing nodejs npm"
            "${SUDO[@]}" apt-get update -q
            "${SUDO[@]}" apt-get install -y -q --no-install-recommends nodejs npm
        else
            log "error: npm not found (the SMPP simulator and Prism need Node.js)"; exit 1
        fi
    fi
    if [ ! -d "$ROOT/tests/peers/smpp_sim/node_modules/smpp" ]; then
        log "npm: SMPP simulator dependencies"
        npm ci --prefix "$ROOT/tests/peers/smpp_sim" --no-audit --no-fund --loglevel=error
    fi
    PRISM_DIR="$ROOT/.cache/prism"
    if [ ! -x "$PRISM_DIR/node_modules/.bin/prism" ]; then
        log "npm: @stoplight/prism-cli@5.14 (Twilio API mock)"
        mkdir -p "$PRISM_DIR"
        npm install --prefix "$PRISM_DIR" --no-audit --no-fund --loglevel=error "@stoplight/prism-cli@5.14.x"
    fi
fi

# ---- the dispatch console (console/: TypeScript, built by Vite into console/dist) ----------------
# npm ci when package-lock.json changed (stamped in node_modules), the build when any source of the
# console (or the protocol schema its types come from) changed (stamped in dist). Without Node.js
# 20.19+ the gateway still runs and /console answers 503 saying how to build it; a test install
# needs the console, so there it is an error.
CONSOLE="$ROOT/console"
console_fail() {
    if [ "$WITH_TEST" -eq 1 ]; then log "error: $*"; exit 1; fi
    log "warning: $* (/console answers 503 until it is built)"
}
node_ok() { node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' 2>/dev/null; }
if [ -f "$CONSOLE/package-lock.json" ]; then
    if ! command -v npm >/dev/null 2>&1 && [ "$APT" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
        log "apt: installing nodejs npm (the console's build)"
        "${SUDO[@]}" apt-get update -q
        "${SUDO[@]}" apt-get install -y -q --no-install-recommends nodejs npm
    fi
    if ! command -v npm >/dev/null 2>&1 || ! node_ok; then
        console_fail "the console needs Node.js 20.19+ and npm to build (have: $(node --version 2>/dev/null || echo none))"
    else
        lock_hash="$(sha256sum "$CONSOLE/package-lock.json" | cut -d' ' -f1)"
        if [ "$(cat "$CONSOLE/node_modules/.dispatch-console-lock" 2>/dev/null)" != "$lock_hash" ]; then
            log "npm: console dependencies (npm ci)"
            npm ci --prefix "$CONSOLE" --no-audit --no-fund --loglevel=error
            printf '%s\n' "$lock_hash" > "$CONSOLE/node_modules/.dispatch-console-lock"
        fi
        src_hash="$(cd "$CONSOLE" && find . -path ./node_modules -prune -o -path ./dist -prune -o -type f -print \
                    | LC_ALL=C sort | xargs sha256sum | cat - "$ROOT/docs/protocol.schema.json" | sha256sum | cut -d' ' -f1)"
        if [ "$FORCE" -eq 1 ] || [ "$(cat "$CONSOLE/dist/.dispatch-console-build" 2>/dev/null)" != "$src_hash" ]; then
            log "npm: building the console (console/dist)"
            if (cd "$CONSOLE" && npm run --silent build >/dev/null); then
                printf '%s\n' "$src_hash" > "$CONSOLE/dist/.dispatch-console-build"
            else
                console_fail "the console's build failed (cd console && npm run build)"
            fi
        else
            log "console: console/dist up to date"
        fi
    fi
fi

log "ready: $VENV/bin/dispatch-gateway"
