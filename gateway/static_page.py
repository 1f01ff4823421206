"""A browser app of this repository served on the http port from memory: the field terminal
(gateway/terminal_page.py, /terminal) and the dispatch console (gateway/console_page.py, /console).

Both read their files once at start (an allow-list of static types, no directory listing), answer
`PREFIX` with a redirect to `PREFIX/`, `PREFIX/config.json` with where the control channel is (the
configured URL, else the host the browser used with the control port), and every file with the
page's security headers. A page says what differs: its headers, its config document, whether it
reads sub-folders, and what to answer while its files are missing. The pure parts (`control_url`,
`origin`, the headers) are tested without sockets.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import structlog
from aiohttp import web

log = structlog.get_logger("gateway.static_page")

_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]{1,253})(:[0-9]{1,5})?$")

Files = dict[str, tuple[bytes, str]]


class ControlAddress(Protocol):
    """What `control_url` needs of a page's config (the terminal's PageConfig, the console's ConsoleConfig)."""

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


def origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def read_files(root: Path, types: Mapping[str, str], max_bytes: int, recursive: bool) -> Files:
    """Every allowed file under `root` (`recursive`: in sub-folders too) by its path relative
    to it (`assets/index-1a2b.js`), with its content type."""
    files: Files = {}
    if not root.is_dir():
        return files
    for path in sorted(root.rglob("*") if recursive else root.iterdir()):
        kind = types.get(path.suffix)
        if kind is None or not path.is_file() or path.stat().st_size > max_bytes:
            continue
        files[path.relative_to(root).as_posix()] = (path.read_bytes(), kind)
    return files


class StaticPage:
    """The routes of one page. `control_port` is asked per request: the control channel binds
    after the http port (a port configured as 0 is known only then)."""

    PREFIX: ClassVar[str]
    ROOT: ClassVar[Path]
    TYPES: ClassVar[Mapping[str, str]]
    MAX_FILE_BYTES: ClassVar[int]
    RECURSIVE: ClassVar[bool] = False  # sub-folders read and served (`{name:.+}`)
    MISSING: ClassVar[tuple[str, str]]  # the log event and why, when index.html is missing

    def __init__(self, cfg: Any, control_port: Callable[[], int | None], files: Files) -> None:
        self.cfg, self._control_port, self.files = cfg, control_port, files

    @classmethod
    async def load(cls, cfg: Any, control_port: Callable[[], int | None], root: Path | None = None) -> Self:
        root = cls.ROOT if root is None else root
        files = await asyncio.to_thread(read_files, root, cls.TYPES, cls.MAX_FILE_BYTES, cls.RECURSIVE)
        if "index.html" not in files:
            event, why = cls.MISSING
            log.warning(event, root=str(root), why=why)
        return cls(cfg, control_port, files)

    # ---- what a page says ---------------------------------------------------------------------

    def headers(self, control: str | None) -> dict[str, str]:
        raise NotImplementedError

    def config_body(self, control: str) -> dict[str, object]:
        raise NotImplementedError

    def unavailable(self, headers: dict[str, str]) -> web.Response | None:
        """The answer to every file while the page cannot be served (None: it can)."""
        return None

    def file_headers(self, name: str, headers: dict[str, str]) -> dict[str, str]:
        return headers

    # ---- the routes ---------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, Callable]]:
        name = "{name:.+}" if self.RECURSIVE else "{name}"
        return [("GET", self.PREFIX, self._redirect), ("GET", self.PREFIX + "/", self._file),
                ("GET", self.PREFIX + "/config.json", self._config), ("GET", f"{self.PREFIX}/{name}", self._file)]

    def _control(self, request: web.Request) -> str | None:
        port = self._control_port()
        return None if port is None else control_url(self.cfg, port, request.host)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(self.PREFIX + "/", headers=self.headers(None))

    async def _file(self, request: web.Request) -> web.Response:
        headers = self.headers(self._control(request))
        refused = self.unavailable(headers)
        if refused is not None:
            return refused
        name = request.match_info.get("name", "index.html")
        found = self.files.get(name)
        if found is None:
            return web.Response(status=404, text="not found\n", headers=headers)
        body, kind = found
        return web.Response(body=body, headers={**self.file_headers(name, headers), "Content-Type": kind})

    async def _config(self, request: web.Request) -> web.Response:
        url = self._control(request)
        headers = {**self.headers(url), "Cache-Control": "no-store"}
        if url is None:
            return web.json_response({"error": "control channel not reachable through this host"},
                                     status=503 if self._control_port() is None else 400, headers=headers)
        return web.Response(text=json.dumps(self.config_body(url)), content_type="application/json",
                            headers=headers)
