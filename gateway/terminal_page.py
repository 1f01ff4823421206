"""The reference field terminal (the browser app in the top-level `terminal/` folder), served on
the http port at /terminal/, with /terminal/config.json telling the page where the control
channel is (another port, or a URL configured for a reverse proxy).

The page's files are read once at start (an allow-list: the folder's .html/.js/.css/.svg, nothing
else, no directory listing) and served from memory with security headers: a Content-Security-
Policy naming no other origin than this one and the control channel (no inline script, no CDN),
no framing, no referrer, no sniffing. The pure parts (`control_url`, `security_headers`) are
tested without sockets; tests/terminal_page drives the page in Chromium against a real gateway.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog
from aiohttp import web

log = structlog.get_logger("gateway.terminal_page")

ROOT = Path(__file__).resolve().parent.parent / "terminal"
PREFIX = "/terminal"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
MAX_FILE_BYTES = 512 * 1024
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]{1,253})(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class PageConfig:
    control_path: str  # e.g. /v1/control
    control_tls: bool  # wss:// when the control channel has a certificate
    control_url: str | None  # http.terminal_control_url: wins over the derived one
    heartbeat_interval_s: float  # terminals.heartbeat_interval_s: the page pings at half of it
    report_interval_s: float  # the page reports a position at most this often
    uploads_max_bytes: int | None = None  # POST /v1/uploads takes at most this; None: no uploads


class ControlAddress(Protocol):
    """What `control_url` needs of a page's config (PageConfig here, the console's ConsoleConfig)."""

    @property
    def control_path(self) -> str: ...
    @property
    def control_tls(self) -> bool: ...
    @property
    def control_url(self) -> str | None: ...


def control_url(cfg: ControlAddress, port: int, request_host: str) -> str | None:
    """Where the page finds the control channel: the configured URL, else the host name the
    browser used for this page (its Host header, port dropped) with the control port. None when
    the Host header is no plain host name or address (nothing unchecked goes into a header)."""
    if cfg.control_url:
        return cfg.control_url
    m = _HOST_RE.match(request_host or "")
    if m is None:
        return None
    return f"{'wss' if cfg.control_tls else 'ws'}://{m.group(1)}:{port}{cfg.control_path}"


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def security_headers(control: str | None) -> dict[str, str]:
    """Headers of every /terminal response. `connect-src` allows this origin (uploads, config) and
    the control channel's origin, nothing else (camera preview and the phone's voice are
    MediaStreams set as `srcObject`: no URL, nothing for `media-src` to allow)."""
    connect = "'self'" + (f" {_origin(control)}" if control else "")
    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
           f"media-src 'self'; connect-src {connect}; manifest-src 'self'; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "geolocation=(self), camera=(self), microphone=(self)",
        "Cache-Control": "no-cache",
    }


def _read_files(root: Path) -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    if not root.is_dir():
        return files
    for path in sorted(root.iterdir()):
        kind = TYPES.get(path.suffix)
        if kind is None or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            continue
        files[path.name] = (path.read_bytes(), kind)
    return files


class TerminalPage:
    """The /terminal routes. `control_port` is asked per request: the control channel binds
    after the http port (a port configured as 0 is known only then)."""

    def __init__(self, cfg: PageConfig, control_port: Callable[[], int | None],
                 files: dict[str, tuple[bytes, str]]) -> None:
        self.cfg, self._control_port, self.files = cfg, control_port, files

    @classmethod
    async def load(cls, cfg: PageConfig, control_port: Callable[[], int | None],
                   root: Path = ROOT) -> TerminalPage:
        files = await asyncio.to_thread(_read_files, root)
        if "index.html" not in files:
            log.warning("terminal-page.missing", root=str(root), why="no index.html: /terminal answers 404")
        return cls(cfg, control_port, files)

    def routes(self) -> list[tuple[str, str, Callable]]:
        return [("GET", PREFIX, self._redirect), ("GET", PREFIX + "/", self._file),
                ("GET", PREFIX + "/config.json", self._config), ("GET", PREFIX + "/{name}", self._file)]

    def _control(self, request: web.Request) -> str | None:
        port = self._control_port()
        return None if port is None else control_url(self.cfg, port, request.host)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(PREFIX + "/", headers=security_headers(None))

    async def _file(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info.get("name", "index.html"))
        headers = security_headers(self._control(request))
        if found is None:
            return web.Response(status=404, text="not found\n", headers=headers)
        body, kind = found
        return web.Response(body=body, headers={**headers, "Content-Type": kind})

    async def _config(self, request: web.Request) -> web.Response:
        url = self._control(request)
        headers = {**security_headers(url), "Cache-Control": "no-store"}
        if url is None:
            return web.json_response({"error": "control channel not reachable through this host"},
                                     status=503 if self._control_port() is None else 400, headers=headers)
        body = {"protocol": 1, "control_url": url,
                "heartbeat_interval_s": self.cfg.heartbeat_interval_s,
                "report_interval_s": self.cfg.report_interval_s,
                "uploads": None if self.cfg.uploads_max_bytes is None else
                {"url": "/v1/uploads", "max_bytes": self.cfg.uploads_max_bytes}}
        return web.Response(text=json.dumps(body), content_type="application/json", headers=headers)
