"""The dispatch console (the front-end project in the top-level `console/` folder), served on the
http port at /console/ from its build output `console/dist/` (scripts/install.sh runs `npm ci`
and `npm run build`), with /console/config.json telling the page where the control channel is.

The console speaks only the public control channel (docs/protocol.md): this module serves files
and one small JSON document, nothing else. The build output is read once at start (an allow-list
of static types, no directory listing) and served from memory with the security headers of the
/terminal page: no other origin than this one and the control channel, no inline script, no CDN,
no framing. When the build output is missing, every /console URL answers 503 with how to build it
(the gateway runs without the console; a health check does not depend on it). The serving is
gateway/static_page.py's, shared with /terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.static_page import StaticPage, origin
from gateway.terminal_page import security_headers

BUILD = Path(__file__).resolve().parent.parent / "console" / "dist"
PREFIX = "/console"
NOT_BUILT = ("the console is not built: run scripts/install.sh (or `npm ci && npm run build` in "
             "console/), then restart the gateway\n")


@dataclass(frozen=True)
class ConsoleConfig:
    control_path: str  # e.g. /v1/control
    control_tls: bool  # wss:// when the control channel has a certificate
    control_url: str | None  # http.console_control_url: wins over the derived one
    map_tiles: str | None = None  # http.console_map_tiles: the map's tiles ({z}/{x}/{y}); None: none


def console_headers(control: str | None, tiles: str | None = None) -> dict[str, str]:
    """The /terminal page's headers, with what a console needs more: `blob:` images and media
    (photos and recordings fetched with a token), a worklet or worker from this origin (audio),
    the microphone (push-to-talk), images from the map tiles' origin when configured; no
    geolocation."""
    headers = security_headers(control)
    connect = "'self'" + (f" {origin(control)}" if control else "")
    img = "'self' blob: data:" + (f" {origin(tiles)}" if tiles and "://" in tiles else "")
    headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {img}; "
        f"media-src 'self' blob:; font-src 'self'; worker-src 'self' blob:; connect-src {connect}; "
        "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    headers["Permissions-Policy"] = "geolocation=(), camera=(), microphone=(self)"
    return headers


class ConsolePage(StaticPage):
    """The /console routes: the build output, sub-folders included (`assets/`); while it is
    missing, 503 naming the build command for every file."""

    PREFIX = PREFIX
    ROOT = BUILD
    TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
             ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
             ".woff2": "font/woff2", ".json": "application/json", ".wasm": "application/wasm"}
    MAX_FILE_BYTES = 8 * 1024 * 1024
    RECURSIVE = True
    MISSING = ("console.not-built", "no index.html: /console answers 503")
    cfg: ConsoleConfig

    @property
    def built(self) -> bool:
        return "index.html" in self.files

    def headers(self, control: str | None) -> dict[str, str]:
        return console_headers(control, self.cfg.map_tiles)

    def unavailable(self, headers: dict[str, str]) -> web.Response | None:
        return None if self.built else web.Response(status=503, text=NOT_BUILT, headers=headers)

    def file_headers(self, name: str, headers: dict[str, str]) -> dict[str, str]:
        if name.startswith("assets/"):  # content-hashed names: a new build has new names
            return {**headers, "Cache-Control": "public, max-age=31536000, immutable"}
        return headers

    def config_body(self, control: str) -> dict[str, object]:
        body: dict[str, object] = {"protocol": 1, "control_url": control}
        if self.cfg.map_tiles:
            body["map_tiles"] = self.cfg.map_tiles
        return body
