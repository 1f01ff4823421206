"""aiohttp side door for operators and orchestrators: /healthz (alive) and /readyz (ready)."""

from __future__ import annotations

import asyncio

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from gateway.limits import ConnectionLimits, EveryInterval

log = structlog.get_logger("gateway.http")

Check = Callable[[], Awaitable[bool]]

CHECKS_KEY = web.AppKey("checks", dict[str, Check])
BODY_TIMEOUT_KEY = web.AppKey("body_timeout_s", float)


@web.middleware
async def _body_deadline(request: web.Request, handler: Callable) -> web.StreamResponse:
    """A body (a webhook's form) is read whole within the deadline before any handler sees it:
    a client dribbling it is answered 408 and closed instead of holding the connection."""
    if request.body_exists:
        try:
            async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
                await request.read()
        except TimeoutError:
            log.info("http.conn.body-timeout", path=request.path)
            response = web.Response(status=408, text="request body too slow\n")
            response.force_close()
            return response
    return await handler(request)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    results: dict[str, bool] = {}
    for name, check in request.app[CHECKS_KEY].items():
        try:
            results[name] = bool(await check())
        except Exception:  # a failing check means not ready, never a 500
            results[name] = False
    ready = all(results.values())
    return web.json_response(
        {"status": "ready" if ready else "not-ready", "checks": results}, status=200 if ready else 503
    )


Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def make_app(checks: dict[str, Check], routes: list[Route] = (), body_timeout_s: float = 10.0) -> web.Application:
    app = web.Application(client_max_size=256 * 1024, middlewares=[_body_deadline])  # webhooks: small forms
    app[CHECKS_KEY] = checks
    app[BODY_TIMEOUT_KEY] = body_timeout_s
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    for method, path, handler in routes:  # e.g. the SMS provider's webhooks
        app.router.add_route(method, path, handler)
    return app


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float = 10.0  # a new connection's headers must be in by then; a body too
    keepalive_s: float = 15.0  # idle between requests (aiohttp's keepalive_timeout)
    max_connections: int = 1024
    max_connections_per_source: int = 1024


_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol behind a gate: the connection takes a slot of `ConnectionLimits` (or is
    answered 503 and closed), and is aborted if its first request's headers are not complete
    within the header deadline. After the first request, aiohttp's keepalive timeout applies."""

    def __init__(self, listener: "HttpListener") -> None:
        self._listener = listener
        self._inner: asyncio.Protocol | None = None
        self._source = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self._source = str(peer[0]) if peer else "?"
        lst = self._listener
        if not lst.slots.admit(self._source, self):
            lst.refused(self._source)
            transport.write(_REFUSED)
            transport.close()
            return
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(lst.limits.header_timeout_s, self._late)
        self._inner = lst.runner.server()  # aiohttp's low-level server makes one per connection
        self._inner.connection_made(transport)

    def _late(self) -> None:
        log.info("http.conn.header-timeout", source=self._source)
        self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._timer.cancel()
                self._timer = None
            self._tail = seen[-3:]
        self._inner.data_received(data)

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
        if self._inner is not None:
            self._listener.slots.release(self._source, self)
            self._inner.connection_lost(exc)


class HttpListener:
    """The aiohttp app on an asyncio server of our own (for the gate above)."""

    def __init__(self, runner: web.AppRunner, limits: HttpLimits) -> None:
        self.runner, self.limits = runner, limits
        self.slots = ConnectionLimits(limits.max_connections, limits.max_connections_per_source)
        self._refusals = EveryInterval(10.0)
        self.server: asyncio.Server | None = None

    def refused(self, source: str) -> None:
        due, skipped = self._refusals.due()
        if due:
            log.warning("http.conn.refused", source=source, live=len(self.slots), suppressed=skipped)

    async def cleanup(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.runner.cleanup()
        if self.server is not None:
            await self.server.wait_closed()


async def start(host: str, port: int, checks: dict[str, Check], routes: list[Route] = (),
                limits: HttpLimits = HttpLimits()) -> HttpListener:
    """Start serving; returns the listener to `cleanup()` at shutdown."""
    runner = web.AppRunner(make_app(checks, routes, limits.header_timeout_s), access_log=None,
                           keepalive_timeout=limits.keepalive_s,
                           lingering_time=0)  # an unread body is not waited for (10 s by default)
    await runner.setup()
    listener = HttpListener(runner, limits)
    listener.server = await asyncio.get_running_loop().create_server(
        lambda: _Guarded(listener), host, port)
    return listener


def bound_port(listener: HttpListener) -> int:
    """The port actually bound (useful when configured as 0)."""
    if listener.server is None or not listener.server.sockets:
        raise RuntimeError("http: not started")
    return listener.server.sockets[0].getsockname()[1]
