"""WebSocket control channel at /v1/control (protocol v1): the I/O shell around gateway.protocol.

`ControlServer`: the listener (admission: connection limits per source and overall), the
lifecycle (start, stop: the connections first, then the commands that run to their end), and the
encoded event frames shared by every subscriber. One `Connection` per peer
(gateway/connection.py); how it serves its requests, gateway/connection_requests.py; what the
server is built with (ServerConfig, ServerHooks), gateway/server_config.py.
"""

from __future__ import annotations

import asyncio
import collections
import urllib.parse
from typing import Any, Awaitable, Callable, Sequence

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request as HttpRequest, Response as HttpResponse
from websockets.protocol import State as WsState

from gateway.commands import CommandRunner, MemoryIdempotencyStore
from gateway.connection import Connection
from gateway.limits import ConnectionLimits, EveryInterval, FailureThrottle, RequestBudgets
from gateway.protocol import codec
from gateway.protocol.methods import Registry
from gateway.server_config import (  # ServerConfig and ServerHooks are importable from here too
    Authenticator, ServerConfig, ServerHooks)
from gateway.ws_write import text_frame

EVENT_TEXT_CACHE = 4096  # encoded events kept for subscribers replaying or lagging a little
log = structlog.get_logger("gateway.server")


class ControlServer:
    """Serves protocol v1 on ws://host:port/v1/control (wss:// with `ServerConfig.ssl`)."""

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticator,
        hooks: ServerHooks | None = None,
        config: ServerConfig | None = None,
    ) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.hooks = hooks or ServerHooks()
        self.config = config or ServerConfig()
        self.commands = CommandRunner(self.hooks.idempotency or MemoryIdempotencyStore(),
                                      max_running=self.config.max_work, grace_s=self.config.work_grace_s)
        self.connections: set[Connection] = set()
        c = self.config
        self.limits = ConnectionLimits(c.max_connections, c.max_connections_per_source)
        self.hello_throttle = FailureThrottle(c.hello_failures_burst, c.hello_failures_per_s)
        self.request_budgets = RequestBudgets(c.request_budgets)
        self._refusals_logged = EveryInterval(10.0)
        self._server: Server | None = None
        self._tasks: set[asyncio.Task] = set()
        # One JSON text per stored event, shared by every subscriber it is sent to.
        self._event_text: collections.OrderedDict[int, tuple[str, bytes]] = collections.OrderedDict()
        # The wire bytes of the last commit's events (the sequence the bus hands every subscriber).
        self._wire: tuple[Sequence[Any], bytes] | None = None

    # -- lifecycle --

    async def start(self) -> None:
        cfg = self.config
        self._server = await serve(
            self._handle, cfg.host, cfg.port,
            process_request=self._process_request,
            ping_interval=cfg.ping_interval, ping_timeout=cfg.ping_timeout,
            close_timeout=cfg.close_timeout, max_size=cfg.max_size, open_timeout=cfg.open_timeout,
            compression=None,  # small JSON messages: deflate cost CPU and ~40 KB per connection
            logger=None, ssl=cfg.ssl,
        )
        log.info("control.server.started", url=self.url)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        await self.commands.finish()  # started commands end before the services behind them
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None
        log.info("control.server.stopped")

    async def __aenter__(self) -> "ControlServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def listening(self) -> bool:
        return self._server is not None and bool(self._server.sockets)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "ws" if self.config.ssl is None else "wss"
        return f"{scheme}://{self.config.host}:{self.port}{self.config.path}"

    def encode_event(self, params: dict) -> str:
        """The notification text of a stored event (its params), encoded once for all subscribers."""
        return self._frame(params["seq"], lambda: codec.encode_event(params))[0]

    def event_frame(self, event: Any) -> tuple[str, bytes]:
        """(text, UTF-8 bytes) of a stored `Event`'s notification, encoded once for all subscribers:
        a subscriber after the first costs a dict lookup, not a params dict nor an encoding. An
        event that carries its stored data JSON (`Event.data_json`) has only its short fields encoded."""
        data_json = getattr(event, "data_json", None)
        if data_json is None:
            return self._frame(event.seq, lambda: codec.encode_event(event.to_params()))
        return self._frame(event.seq, lambda: codec.encode_stored_event(
            event.seq, event.type, event.time, event.session_id, data_json))

    def events_wire(self, events: Sequence[Any]) -> bytes:
        """The WebSocket frames of one commit's stored events, back to back, built once for every
        subscriber the fan-out hands this same sequence to (gateway/ws_write.py `write_frame_now`).
        One commit is kept: the bus hands a slice's subscribers one commit after the other
        (gateway/events.py; it handed each subscriber all of a round's commits in turn, and with
        two commits in a round every subscriber built both frames again, issue 13)."""
        kept = self._wire
        if kept is not None and kept[0] is events:
            return kept[1]
        wire = b"".join(text_frame(self.event_frame(ev)[1]) for ev in events)
        self._wire = (events, wire)
        return wire

    def _frame(self, seq: int, encode: Callable[[], str]) -> tuple[str, bytes]:
        frame = self._event_text.get(seq)
        if frame is None:
            text = encode()
            frame = self._event_text[seq] = (text, text.encode())
            if len(self._event_text) > EVENT_TEXT_CACHE:
                self._event_text.popitem(last=False)
        return frame

    # -- internals --

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _process_request(self, ws: ServerConnection, request: HttpRequest) -> HttpResponse | None:
        if urllib.parse.urlsplit(request.path).path != self.config.path:
            return ws.respond(404, "Not Found\n")
        source = str(ws.remote_address[0]) if ws.remote_address else "?"
        if not self.limits.admit(source, ws, alive=lambda w: w.state is not WsState.CLOSED):
            due, skipped = self._refusals_logged.due()
            if due:
                log.warning("control.conn.refused", source=source, live=len(self.limits),
                            suppressed=skipped)
            return ws.respond(503, "Too many connections\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws)
        self.connections.add(conn)
        conn.log.info("control.conn.open")
        loop = asyncio.get_running_loop()
        writer = loop.create_task(conn._writer(), name=f"writer-{conn.id}")
        hello_timer = loop.call_later(self.config.hello_timeout, conn._hello_late)
        try:
            await conn._read_loop()
        finally:
            hello_timer.cancel()
            self.limits.release(conn.source, ws)
            try:
                await conn._teardown()
            finally:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
                self.connections.discard(conn)
