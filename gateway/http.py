"""aiohttp side door for operators and orchestrators: /healthz (alive) and /readyz (ready), the
SMS provider's webhooks, the uploads (gateway/uploads/http.py) and /metrics (gateway/metrics/); behind limits of our own
(connections, header deadline, a health reserve)."""

from __future__ import annotations

import asyncio
import json
import ssl

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from gateway.limits import ConnectionLimits, EveryInterval, ProbeReserve

log = structlog.get_logger("gateway.http")

# A readiness check: None (or True) while its part is ready, else why not (a str; False: no reason).
Check = Callable[[], Awaitable[str | bool | None]]
CHECK_TIMEOUT_S = 3.0

CHECKS_KEY = web.AppKey("checks", dict[str, Check])
BODY_TIMEOUT_KEY = web.AppKey("body_timeout_s", float)


def streams_body(handler: Callable) -> Callable:
    """Marks a handler that reads its body as a stream, under deadlines and limits of its own
    (uploads): the middleware below does not read that body whole first."""
    handler.streams_body = True  # type: ignore[attr-defined]
    return handler


@web.middleware
async def _body_deadline(request: web.Request, handler: Callable) -> web.StreamResponse:
    """A body (a webhook's form) is read whole within the deadline before any handler sees it:
    a client dribbling it is answered 408 and closed instead of holding the connection. A body
    already in whole (a webhook's small form comes with its headers) is taken without arming a
    timer: three of them per SMS at Twilio's rates, for a read that cannot wait."""
    if request.body_exists and not getattr(handler, "streams_body", False):
        if request.content.is_eof():
            await request.read()
            return await handler(request)
        try:
            async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
                await request.read()
        except TimeoutError:
            log.info("http.conn.body-timeout", path=request.path)
            response = web.Response(status=408, text="request body too slow\n")
            response.force_close()
            return response
    return await handler(request)


HEALTH_PATHS = ("/healthz", "/readyz")


async def _part(check: Check) -> str | None:
    """Why the part is not ready, or None."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            r = await check()
    except TimeoutError:
        return f"its check did not answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # a failing check means not ready, never a 500
        return f"its check failed: {type(exc).__name__}"
    if r is None or r is True:
        return None
    return "not ready" if r is False else str(r)


async def health(checks: dict[str, Check], path: str) -> tuple[int, dict]:
    """(status, JSON body) of /healthz (alive: always ok) or /readyz (every part ready). The
    /readyz body names each part: `checks` {part: bool}, `parts` {part: {"ready", "why"?}} and
    `not_ready` [part, ...]."""
    if path == "/healthz":
        return 200, {"status": "ok"}
    whys = dict(zip(checks, await asyncio.gather(*(_part(c) for c in checks.values()))))
    not_ready = [name for name, why in whys.items() if why is not None]
    return (503 if not_ready else 200), {
        "status": "not-ready" if not_ready else "ready",
        "checks": {name: why is None for name, why in whys.items()},
        "parts": {name: {"ready": True} if why is None else {"ready": False, "why": why}
                  for name, why in whys.items()},
        "not_ready": not_ready}


async def _health_route(request: web.Request) -> web.Response:
    status, body = await health(request.app[CHECKS_KEY], request.path)
    return web.json_response(body, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (method, path, handler) or (method, path, handler, options of add_route: e.g. expect_handler)
Route = tuple[str, str, Handler] | tuple[str, str, Handler, dict[str, Any]]


def make_app(checks: dict[str, Check], routes: list[Route] = (), body_timeout_s: float = 10.0,
             middlewares: Sequence[Callable] = ()) -> web.Application:
    """`middlewares` run outside the body deadline (they see its 408 too)."""
    app = web.Application(client_max_size=256 * 1024,  # webhooks: small forms
                          middlewares=[*middlewares, _body_deadline])
    app[CHECKS_KEY] = checks
    app[BODY_TIMEOUT_KEY] = body_timeout_s
    for path in HEALTH_PATHS:
        app.router.add_get(path, _health_route)
    for method, path, handler, *options in routes:  # the SMS provider's webhooks, the uploads
        app.router.add_route(method, path, handler, **(options[0] if options else {}))
    return app


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float = 10.0  # a new connection's headers must be in by then; a body too
    keepalive_s: float = 15.0  # idle between requests (aiohttp's keepalive_timeout)
    max_connections: int = 1024
    max_connections_per_source: int = 1024
    health_reserve: int = 8  # beyond the limits: connections only for GET /healthz or /readyz


_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_PHRASES = {200: "OK", 503: "Service Unavailable"}
_MAX_REQUEST_LINE = 1024


def health_path(line: bytes) -> str | None:
    """The health path a request line asks for (`GET /healthz HTTP/1.1`, a query allowed), else None."""
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        return None
    path = parts[1].split(b"?", 1)[0].decode("latin-1")
    return path if path in HEALTH_PATHS else None


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol behind a gate: the connection takes a slot of `ConnectionLimits` and is
    aborted if its first request's headers are not complete within the header deadline (after the
    first request, aiohttp's keepalive timeout applies). When no slot is free it may take one of
    the health reserve (`ProbeReserve`): there its first line must be GET /healthz or /readyz,
    answered here without aiohttp and closed; anything else is answered 503 and closed, like a
    connection with no slot at all. So health stays answerable while the listener is full."""

    def __init__(self, listener: "HttpListener") -> None:
        self._listener = listener
        self._inner: asyncio.Protocol | None = None
        self._source = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._probe: bytearray | None = None  # in the reserve: the first line so far
        self._answer: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._source = str(peer[0]) if peer else "?"
        lst = self._listener
        if lst.slots.admit(self._source, self):
            self._inner = lst.runner.server()  # aiohttp's low-level server makes one per connection
            self._inner.connection_made(transport)
        else:
            admitted, gave_way = lst.reserve.admit(self)
            if gave_way is not None:
                gave_way.refuse()  # type: ignore[attr-defined]
            if not admitted:
                self.refuse()
                return
            self._probe = bytearray()
        self._timer = asyncio.get_running_loop().call_later(lst.limits.header_timeout_s, self._late)

    def refuse(self) -> None:
        self._listener.refused(self._source)
        self._probe = None
        self._transport.write(_REFUSED)
        self._transport.close()

    def _late(self) -> None:
        log.info("http.conn.header-timeout", source=self._source)
        self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._probe is not None:
            self._probe_line(data)
        if self._inner is None:
            return
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._timer.cancel()
                self._timer = None
            self._tail = seen[-3:]
        self._inner.data_received(data)

    def _probe_line(self, data: bytes) -> None:
        assert self._probe is not None
        self._probe += data
        line, crlf, _ = bytes(self._probe[:_MAX_REQUEST_LINE + 2]).partition(b"\r\n")
        if not crlf:
            if len(self._probe) > _MAX_REQUEST_LINE:
                self.refuse()
            return
        path = health_path(line)
        if path is None:
            self.refuse()
            return
        self._probe = None
        self._listener.reserve.answering(self)
        self._answer = asyncio.get_running_loop().create_task(self._respond(path), name="http-health-reserve")

    async def _respond(self, path: str) -> None:
        status, body = await health(self._listener.checks, path)
        data = json.dumps(body).encode()
        self._transport.write(
            f"HTTP/1.1 {status} {_PHRASES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        self._transport.close()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._answer is not None:
            self._answer.cancel()
        self._listener.reserve.release(self)
        if self._inner is not None:
            self._listener.slots.release(self._source, self)
            self._inner.connection_lost(exc)


class HttpListener:
    """The aiohttp app on an asyncio server of our own (for the gate above)."""

    def __init__(self, runner: web.AppRunner, limits: HttpLimits, checks: dict[str, Check]) -> None:
        self.runner, self.limits, self.checks = runner, limits, checks
        self.slots = ConnectionLimits(limits.max_connections, limits.max_connections_per_source)
        self.reserve = ProbeReserve(limits.health_reserve)
        self._refusals = EveryInterval(10.0)
        self.server: asyncio.Server | None = None

    def refused(self, source: str) -> None:
        due, skipped = self._refusals.due()
        if due:
            log.warning("http.conn.refused", source=source, live=len(self.slots), suppressed=skipped)

    async def cleanup(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.reserve):  # health requests in the reserve: aiohttp does not know them
            conn._transport.abort()
        await self.runner.cleanup()
        if self.server is not None:
            await self.server.wait_closed()


async def start(host: str, port: int, checks: dict[str, Check], routes: list[Route] = (),
                limits: HttpLimits = HttpLimits(), tls: ssl.SSLContext | None = None,
                middlewares: Sequence[Callable] = ()) -> HttpListener:
    """Start serving (HTTPS with `tls`); returns the listener to `cleanup()` at shutdown."""
    runner = web.AppRunner(make_app(checks, routes, limits.header_timeout_s, middlewares), access_log=None,
                           keepalive_timeout=limits.keepalive_s,
                           lingering_time=0)  # an unread body is not waited for (10 s by default)
    await runner.setup()
    listener = HttpListener(runner, limits, checks)
    # With TLS the gate sees a connection once its handshake is done: that is bounded by the
    # header deadline too, so a client that never finishes it is not held for asyncio's 60 s.
    handshake = {} if tls is None else {"ssl": tls, "ssl_handshake_timeout": limits.header_timeout_s}
    listener.server = await asyncio.get_running_loop().create_server(
        lambda: _Guarded(listener), host, port, **handshake)
    return listener


def bound_port(listener: HttpListener) -> int:
    """The port actually bound (useful when configured as 0)."""
    if listener.server is None or not listener.server.sockets:
        raise RuntimeError("http: not started")
    return listener.server.sockets[0].getsockname()[1]
