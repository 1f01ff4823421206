#!/usr/bin/env bash
# Build the pjsua2 Python module from a pjproject source tarball, for many calls per process.
#
#   scripts/build_pjsua2.sh PYTHON      build (or reuse) and print the directory holding pjsua2.py
#
# The tarball: $PJPROJECT_TARBALL, else ../shared/pjproject/pjproject-2.15.1.tar.gz beside the
# checkout, else the upstream 2.15.1 release (downloaded once into the cache).
# The result is cached outside the checkout, keyed by the tarball's hash, the options below, this
# script and the Python version: ${XDG_CACHE_HOME:-~/.cache}/dispatch-gateway/pjsua2-<key>/, so a
# second install takes seconds. It holds pjsua2.py, _pjsua2*.so (pjproject linked in statically)
# and build.json (the compiled limits: the worker's I/O budget reads them, sip/worker/io_budget.py).
# Exit status 3: no compiler, swig or tarball (the caller falls back to the PyPI wheel).
set -euo pipefail

PY="${1:?usage: build_pjsua2.sh PYTHON}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION=2.15.1
URL="https://github.com/pjsip/pjproject/archive/refs/tags/${VERSION}.tar.gz"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/dispatch-gateway"
log() { printf 'build_pjsua2.sh: %s\n' "$*" >&2; }

# ---- the compiled limits (docs/design.md, "pjsua2 built from source") --------------------------
MAX_CALLS=1024           # PJSUA_MAX_CALLS (the wheel: 4)
CONF_PORTS=2200          # PJSUA_MAX_CONF_PORTS: each call, player, recorder, bridge port takes one
IOQUEUE_HANDLES=4096     # PJ_IOQUEUE_MAX_HANDLES: SIP transports + RTP and RTCP of every call
KEY_FREE_DELAY_MS=500    # PJ_IOQUEUE_KEY_FREE_DELAY (pjproject's default, stated for io_budget.py)
PLAYERS=256              # PJSUA_MAX_PLAYERS / PJSUA_MAX_RECORDERS
CONFIGURE=(--enable-epoll --disable-video --disable-sound --disable-libwebrtc --disable-libyuv
           --disable-opencore-amr --disable-silk --disable-bcg729 --disable-sdl --disable-ffmpeg
           --disable-v4l2 --disable-openh264 --disable-android-mediacodec --disable-darwin-ssl
           --disable-upnp)
# -DNDEBUG: pj_assert off, as in the wheel; PJ_ASSERT_RETURN still checks and returns an error
# (pjsua2 raises it) instead of aborting a process that carries hundreds of calls.
CFLAGS_BUILD="-O2 -fPIC -DNDEBUG"
CONFIG_SITE="$(cat <<EOF
/* dispatch-gateway: scripts/build_pjsua2.sh */
#define PJSUA_MAX_CALLS $MAX_CALLS
#define PJSUA_MAX_CONF_PORTS $CONF_PORTS
#define PJ_IOQUEUE_MAX_HANDLES $IOQUEUE_HANDLES
#define PJ_IOQUEUE_KEY_FREE_DELAY $KEY_FREE_DELAY_MS
#define PJ_IOQUEUE_MAX_EVENTS_IN_SINGLE_POLL 64
#define PJSUA_MAX_PLAYERS $PLAYERS
#define PJSUA_MAX_RECORDERS $PLAYERS
#define PJMEDIA_HAS_VIDEO 0
#define PJMEDIA_AUDIO_DEV_HAS_NULL_AUDIO 1
EOF
)"
# pjsua binds a call's RTP and RTCP as a pair, scanning its port range from where the last pair was,
# and gives up after 100 pairs in use (pjsua_media.c, RTP_RETRY) although the range has free pairs
# further on: with more than 100 calls per worker a new call then fails ("Address already in use")
# while the worker is below its limit. Scan the whole range once (at least 100 tries, as before).
RTP_SCAN_OLD='for (i=0; i<RTP_RETRY; ++i, acc->next_rtp_port += 2) {'
RTP_SCAN_NEW='for (i=0; i<PJ_MAX((int)RTP_RETRY, cfg->port && cfg->port_range ? (int)cfg->port_range/2 + 1 : 0); ++i, acc->next_rtp_port += 2) {'

# ---- the tarball -------------------------------------------------------------------------------
TARBALL="${PJPROJECT_TARBALL:-}"
if [ -z "$TARBALL" ] && [ -f "$ROOT/../shared/pjproject/pjproject-$VERSION.tar.gz" ]; then
    TARBALL="$ROOT/../shared/pjproject/pjproject-$VERSION.tar.gz"
fi
if [ -z "$TARBALL" ]; then
    TARBALL="$CACHE/pjproject-$VERSION.tar.gz"
    if [ ! -s "$TARBALL" ]; then
        mkdir -p "$CACHE"
        log "downloading $URL"
        if ! curl -fsSL --retry 3 -o "$TARBALL.part" "$URL"; then
            rm -f "$TARBALL.part"; log "no tarball (download failed)"; exit 3
        fi
        mv "$TARBALL.part" "$TARBALL"
    fi
fi
[ -r "$TARBALL" ] || { log "no tarball at $TARBALL"; exit 3; }

PYVER="$("$PY" -c 'import sys, sysconfig; print(sys.implementation.cache_tag, sysconfig.get_config_var("EXT_SUFFIX"))')"
KEY="$( { sha256sum < "$TARBALL"; printf '%s\n' "${CONFIGURE[*]}" "$CFLAGS_BUILD" "$CONFIG_SITE" "$RTP_SCAN_NEW" "$PYVER"; } \
      | sha256sum | cut -c1-16)"
OUT="$CACHE/pjsua2-$KEY"
if [ -f "$OUT/build.json" ] && "$PY" -c "import sys; sys.path.insert(0, '$OUT'); import pjsua2" 2>/dev/null; then
    printf '%s\n' "$OUT"; exit 0
fi

for tool in cc c++ make swig; do
    command -v "$tool" >/dev/null 2>&1 || { log "no $tool"; exit 3; }
done
"$PY" -c 'import setuptools, sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null || { log "no Python headers or setuptools for $PY"; exit 3; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pjsua2-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log "building pjsua2 from $TARBALL (a few minutes; cached in $OUT)"
tar -xzf "$TARBALL" -C "$WORK"
SRC="$(find "$WORK" -mindepth 1 -maxdepth 1 -type d | head -1)"
printf '%s\n' "$CONFIG_SITE" > "$SRC/pjlib/include/pj/config_site.h"
MEDIA_C="$SRC/pjsip/src/pjsua-lib/pjsua_media.c"
"$PY" - "$MEDIA_C" "$RTP_SCAN_OLD" "$RTP_SCAN_NEW" <<'PYEOF' || { log "pjsua_media.c has no RTP port scan to widen (another pjproject?)"; exit 1; }
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(1)
open(path, "w").write(text.replace(old, new))
PYEOF
JOBS="$(nproc 2>/dev/null || echo 2)"
(
    cd "$SRC"
    CFLAGS="$CFLAGS_BUILD" CXXFLAGS="$CFLAGS_BUILD" ./configure -q "${CONFIGURE[@]}" >"$WORK/configure.log" 2>&1 \
        || { tail -20 "$WORK/configure.log" >&2; exit 1; }
    # the libraries only: pjproject's test programs and sample apps are not needed
    make dep >"$WORK/make.log" 2>&1 && make -j"$JOBS" lib >>"$WORK/make.log" 2>&1 \
        || { tail -30 "$WORK/make.log" >&2; exit 1; }
    cd pjsip-apps/src/swig/python
    make PYTHON_EXE="$PY" >>"$WORK/make.log" 2>&1 || { tail -30 "$WORK/make.log" >&2; exit 1; }
)
BUILT="$(find "$SRC/pjsip-apps/src/swig/python/build" -name '_pjsua2*.so' | head -1)"
[ -n "$BUILT" ] || { log "the build produced no _pjsua2 module"; exit 1; }
mkdir -p "$OUT.part"
cp "$BUILT" "$SRC/pjsip-apps/src/swig/python/pjsua2.py" "$OUT.part/"
strip --strip-debug "$OUT.part/$(basename "$BUILT")" 2>/dev/null || true  # Python's -g: ~10x the size
cat > "$OUT.part/build.json" <<EOF
{"pjproject": "$VERSION", "tarball_sha256": "$(sha256sum < "$TARBALL" | cut -d' ' -f1)",
 "max_calls": $MAX_CALLS, "conf_ports": $CONF_PORTS, "ioqueue_keys": $IOQUEUE_HANDLES,
 "key_free_delay_ms": $KEY_FREE_DELAY_MS, "players": $PLAYERS, "ioqueue": "epoll",
 "assertions": false, "rtp_scan": "whole range", "configure": "${CONFIGURE[*]}"}
EOF
rm -rf "$OUT"
mv "$OUT.part" "$OUT"
log "built $OUT"
printf '%s\n' "$OUT"
