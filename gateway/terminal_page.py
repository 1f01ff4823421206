"""The reference field terminal (the browser app in the top-level `terminal/` folder), served on
the http port at /terminal/, with /terminal/config.json telling the page where the control
channel is (another port, or a URL configured for a reverse proxy).

The page's files are read once at start (an allow-list: the folder's .html/.js/.css/.svg, nothing
else, no directory listing) and served from memory with security headers: a Content-Security-
Policy naming no other origin than this one and the control channel (no inline script, no CDN),
no framing, no referrer, no sniffing. The serving is gateway/static_page.py's, shared with the
console. The pure parts (`control_url`, `security_headers`) are tested without sockets;
tests/terminal_page drives the page in Chromium against a real gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.static_page import ControlAddress, StaticPage, control_url, origin

__all__ = ["ControlAddress", "PageConfig", "TerminalPage", "control_url", "security_headers"]


@dataclass(frozen=True)
class PageConfig:
    control_path: str  # e.g. /v1/control
    control_tls: bool  # wss:// when the control channel has a certificate
    control_url: str | None  # http.terminal_control_url: wins over the derived one
    heartbeat_interval_s: float  # terminals.heartbeat_interval_s: the page pings at half of it
    report_interval_s: float  # the page reports a position at most this often
    uploads_max_bytes: int | None = None  # POST /v1/uploads takes at most this; None: no uploads


def security_headers(control: str | None) -> dict[str, str]:
    """Headers of every /terminal response. `connect-src` allows this origin (uploads, config) and
    the control channel's origin, nothing else (camera preview and the phone's voice are
    MediaStreams set as `srcObject`: no URL, nothing for `media-src` to allow)."""
    connect = "'self'" + (f" {origin(control)}" if control else "")
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


class TerminalPage(StaticPage):
    """The /terminal routes: the files of the `terminal/` folder (no sub-folders); 404 for a
    file that is not there."""

    PREFIX = "/terminal"
    ROOT = Path(__file__).resolve().parent.parent / "terminal"
    TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
             ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    MAX_FILE_BYTES = 512 * 1024
    MISSING = ("terminal-page.missing", "no index.html: /terminal answers 404")
    cfg: PageConfig

    def headers(self, control: str | None) -> dict[str, str]:
        return security_headers(control)

    def config_body(self, control: str) -> dict[str, object]:
        return {"protocol": 1, "control_url": control,
                "heartbeat_interval_s": self.cfg.heartbeat_interval_s,
                "report_interval_s": self.cfg.report_interval_s,
                "uploads": None if self.cfg.uploads_max_bytes is None else
                {"url": "/v1/uploads", "max_bytes": self.cfg.uploads_max_bytes}}
