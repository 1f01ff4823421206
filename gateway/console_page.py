"""The dispatch console (the front-end project in the top-level `console/` folder), served on the
http port at /console/ from its build output `console/dist/` (scripts/install.sh runs `npm ci`
and `npm run build`), with /console/config.json telling the page where the control channel is.

The console speaks only the public control channel (docs/protocol.md): this module serves files
and one small JSON document, nothing else. The build output is read once at start (an allow-list
of static types, no directory listing) and served from memory with the security headers of the
/terminal page: no other origin than this one and the control channel, no inline script, no CDN,
no framing. When the build output is missing, every /console URL answers 503 with how to build it
(the gateway runs without the console; a health check does not depend on it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from gateway.terminal_page import _origin, control_url, security_headers

log = structlog.get_logger("gateway.console_page")

BUILD = Path(__file__).resolve().parent.parent / "console" / "dist"
PREFIX = "/console"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".woff2": "font/woff2", ".json": "application/json", ".wasm": "application/wasm"}
MAX_FILE_BYTES = 8 * 1024 * 1024
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
    connect = "'self'" + (f" {_origin(control)}" if control else "")
    img = "'self' blob: data:" + (f" {_origin(tiles)}" if tiles and "://" in tiles else "")
    headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {img}; "
        f"media-src 'self' blob:; font-src 'self'; worker-src 'self' blob:; connect-src {connect}; "
        "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    headers["Permissions-Policy"] = "geolocation=(), camera=(), microphone=(self)"
    return headers


def read_build(root: Path) -> dict[str, tuple[bytes, str]]:
    """Every allowed file under `root` by its path relative to it (`assets/index-1a2b.js`)."""
    files: dict[str, tuple[bytes, str]] = {}
    if not root.is_dir():
        return files
    for path in sorted(root.rglob("*")):
        kind = TYPES.get(path.suffix)
        if kind is None or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            continue
        files[path.relative_to(root).as_posix()] = (path.read_bytes(), kind)
    return files


class ConsolePage:
    """The /console routes. `control_port` is asked per request: the control channel binds after
    the http port (a port configured as 0 is known only then)."""

    def __init__(self, cfg: ConsoleConfig, control_port: Callable[[], int | None],
                 files: dict[str, tuple[bytes, str]]) -> None:
        self.cfg, self._control_port, self.files = cfg, control_port, files

    @classmethod
    async def load(cls, cfg: ConsoleConfig, control_port: Callable[[], int | None],
                   root: Path = BUILD) -> ConsolePage:
        files = await asyncio.to_thread(read_build, root)
        if "index.html" not in files:
            log.warning("console.not-built", root=str(root), why="no index.html: /console answers 503")
        return cls(cfg, control_port, files)

    @property
    def built(self) -> bool:
        return "index.html" in self.files

    def routes(self) -> list[tuple[str, str, Callable]]:
        return [("GET", PREFIX, self._redirect), ("GET", PREFIX + "/", self._file),
                ("GET", PREFIX + "/config.json", self._config), ("GET", PREFIX + "/{name:.+}", self._file)]

    def _control(self, request: web.Request) -> str | None:
        port = self._control_port()
        return None if port is None else control_url(self.cfg, port, request.host)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(PREFIX + "/", headers=console_headers(None, self.cfg.map_tiles))

    async def _file(self, request: web.Request) -> web.Response:
        headers = console_headers(self._control(request), self.cfg.map_tiles)
        if not self.built:
            return web.Response(status=503, text=NOT_BUILT, headers=headers)
        name = request.match_info.get("name", "index.html")
        found = self.files.get(name)
        if found is None:
            return web.Response(status=404, text="not found\n", headers=headers)
        body, kind = found
        if name.startswith("assets/"):  # content-hashed names: a new build has new names
            headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return web.Response(body=body, headers={**headers, "Content-Type": kind})

    async def _config(self, request: web.Request) -> web.Response:
        url = self._control(request)
        headers = {**console_headers(url, self.cfg.map_tiles), "Cache-Control": "no-store"}
        if url is None:
            return web.json_response({"error": "control channel not reachable through this host"},
                                     status=503 if self._control_port() is None else 400, headers=headers)
        body: dict[str, object] = {"protocol": 1, "control_url": url}
        if self.cfg.map_tiles:
            body["map_tiles"] = self.cfg.map_tiles
        return web.Response(text=json.dumps(body), content_type="application/json", headers=headers)
