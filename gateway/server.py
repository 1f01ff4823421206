"""WebSocket control channel at /v1/control (protocol v1): the I/O shell around gateway.protocol.

One `Connection` per peer: a reader (parses frames, answers hello, spawns bounded request
tasks), one writer task draining a bounded outbox, and at most one subscription pump. Everything
it starts it owns and cancels on close, except the commands that run to their end
(`MethodSpec.runs_to_end`): those the server's `CommandRunner` (gateway/commands.py) owns, and
the connection only waits for their reply. State of a connection is a small table (see `_NEXT`);
its outbox and the budgets of replies, events and audio are gateway/outbox.py, its subscription
pump gateway/subscription_pump.py, and what the server is built with (ServerConfig, ServerHooks)
gateway/server_config.py.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import math
import sqlite3
import time
import urllib.parse
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest, Response as HttpResponse
from websockets.protocol import State as WsState

from gateway.commands import CommandRunner, MemoryIdempotencyStore
from gateway.errors import Conflict, GatewayError, NotAuthenticated, RateLimited, Unavailable
from gateway.limits import ConnectionLimits, EveryInterval, FailureThrottle, RequestBudgets
from gateway.outbox import Outbox
from gateway.protocol import codec
from gateway.protocol.methods import HelloParams, Principal, Registry, RequestContext, validate_params
from gateway.server_config import (  # ServerConfig and ServerHooks are importable from here too
    Authenticator, BinaryCallback, CloseCallback, ServerConfig, ServerHooks, maybe_await as _maybe_await)
from gateway.subscription_pump import SubscriptionPump
from gateway.ws_write import write_text_now

PROTOCOL_VERSION = 1
EVENT_TEXT_CACHE = 4096  # encoded events kept for subscribers replaying or lagging a little
log = structlog.get_logger("gateway.server")


def store_full(exc: BaseException) -> bool:
    """sqlite3's SQLITE_FULL: the store's file system (gateway.data_dir) has no room left."""
    return isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


# --- connection state as a table ----------------------------------------------------------------


class ConnState(enum.IntEnum):
    OPEN = 1  # handshake done, waiting for hello
    AUTHENTICATED = 2
    CLOSING = 3
    CLOSED = 4


_NEXT: dict[ConnState, dict[str, ConnState]] = {
    ConnState.OPEN: {"hello-ok": ConnState.AUTHENTICATED, "close": ConnState.CLOSING},
    ConnState.AUTHENTICATED: {"close": ConnState.CLOSING},
    ConnState.CLOSING: {"closed": ConnState.CLOSED},
    ConnState.CLOSED: {},
}


_conn_ids = itertools.count(1)


class Connection:
    """One peer. Services use: principal, start_subscription, on_binary, send_binary, on_close."""

    def __init__(self, server: "ControlServer", ws: ServerConnection) -> None:
        self.id = f"c{next(_conn_ids)}"
        self.server = server
        self._ws = ws
        cfg = server.config
        self.principal: Principal | None = None
        self.client: str | None = None
        self.state = ConnState.OPEN
        self.remote = ws.remote_address
        self.source = str(self.remote[0]) if self.remote else "?"
        self._hello_failures = 0
        self.opened_at = time.monotonic()
        self.log = log.bind(conn_id=self.id, remote=str(self.remote))
        self._outbox = Outbox(cfg.send_queue_size, cfg.send_queue_size + cfg.max_in_flight + 8,
                               cfg.media_queue_size)
        self._inflight: set[asyncio.Task] = set()
        self._pump = SubscriptionPump(self)
        self._sending = False  # the writer is inside ws.send (a peer not reading blocks it there)
        self._binary_cb: BinaryCallback | None = None
        self._close_cbs: list[CloseCallback] = []
        self.stats = collections.Counter()
        self._budget_logged = EveryInterval(10.0)

    # -- state --

    def _transition(self, event: str) -> None:
        new = _NEXT[self.state].get(event)
        if new is None:
            raise RuntimeError(f"connection {self.id}: no transition {self.state.name} --{event}-->")
        self.log.debug("control.conn.state", old=self.state.name, new=new.name)
        self.state = new

    @property
    def closed(self) -> bool:
        return self.state >= ConnState.CLOSING

    # -- API for services --

    def on_close(self, callback: CloseCallback) -> None:
        """`callback(conn)` (sync or async) runs once when the connection ends; newest first."""
        self._close_cbs.append(callback)

    def on_binary(self, callback: BinaryCallback | None) -> None:
        """`callback(frame_bytes)` for every binary frame received (after hello). Must not block."""
        self._binary_cb = callback

    def send_binary(self, data: bytes) -> bool:
        """Queue a binary frame; False (and counted in stats) when the outbox is full."""
        if self.closed or not self._outbox.put_media(bytes(data)):
            self.stats["binary_out_dropped"] += 1
            return False
        self.stats["binary_out"] += 1
        return True

    def send_event(self, params: dict) -> bool:
        """Queue one event notification outside any subscription; False when full."""
        return not self.closed and self._outbox.put(codec.encode_event(params))

    def send_notification(self, method: str, params: dict) -> bool:
        """Queue one notification of `method` (not an event); False when closed or full."""
        return not self.closed and self._outbox.put(codec.encode_notification(method, params))

    def start_subscription(self, events: AsyncIterator[Any]) -> None:
        """Pump `events` (items with `.to_params()` or event param dicts) to the peer.

        Replaces a running subscription. If the outbox stays full longer than
        `subscription_grace_s`, the pump sends one `events.overflow` event (seq = last
        delivered) and stops; the peer resumes with `events.subscribe {since_seq}`.
        """
        self._pump.start(events)

    def stop_subscription(self) -> None:
        self._pump.stop()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the connection without a closing handshake (a peer even a close cannot reach)."""
        if self._ws.transport is not None:
            self._ws.transport.abort()

    # -- internals --

    def _reply(self, text: str) -> None:
        if self.closed:
            return
        if not (len(self._outbox) or self._sending) and write_text_now(self._ws, text.encode()):
            return  # nothing queued before it: written now, no writer wake-up
        if not self._outbox.put(text, urgent=True):
            # The peer does not read its replies: nothing sensible left to do with it.
            self.log.warning("control.conn.send-queue-full", queued=len(self._outbox))
            self.server._spawn(self.close(1008, "send queue full"))

    def _reply_error(self, req_id: Any, err: GatewayError) -> None:
        self._reply(codec.encode_error(req_id, err))

    def _count(self, method: str | None, outcome: str, seconds: float | None = None) -> None:
        """One request answered, for /metrics (`seconds` None: refused before it ran)."""
        if self.server.hooks.on_request is not None:
            self.server.hooks.on_request(method or "", outcome, seconds)

    async def _writer(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                self._sending = True
                await self._ws.send(item)
                self._sending = False
        except ConnectionClosed:
            pass

    async def _read_loop(self) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    await self._on_text(message)
                elif self.principal is None:
                    self.stats["binary_in"] += 1
                    self.stats["binary_in_dropped"] += 1
                    await self._before_hello(None)
                else:
                    self._on_binary_frame(message)
        except ConnectionClosed as exc:
            self.log.info("control.conn.lost", code=exc.rcvd.code if exc.rcvd else None,
                          sent=exc.sent.code if exc.sent else None)

    def _on_binary_frame(self, data: bytes) -> None:
        self.stats["binary_in"] += 1
        if self.principal is None or self._binary_cb is None:
            self.stats["binary_in_dropped"] += 1
            return
        try:
            self._binary_cb(data)
        except Exception:
            self.stats["binary_in_dropped"] += 1
            self.log.exception("control.binary.callback-crashed")

    async def _on_text(self, text: str) -> None:
        msg = codec.parse_message(text)
        if self.principal is None:
            await self._before_hello(msg)
            return
        if not self._within_budget(msg):
            return
        if isinstance(msg, codec.Invalid):
            self.log.info("control.request.invalid", reason=msg.error.reason, msg=msg.error.message)
            self._count(None, "invalid")
            self._reply_error(msg.id, msg.error)
            return
        if isinstance(msg, codec.Notification):
            self.log.debug("control.notification.ignored", method=msg.method)
            return
        if len(self._inflight) >= self.server.config.max_in_flight:
            self.stats["rate_limited"] += 1
            self._count(msg.method, "rate-limited")
            self._reply_error(msg.id, RateLimited(
                "too many requests in flight",
                details={"max_in_flight": self.server.config.max_in_flight}))
            return
        serve = self._start(msg)
        if serve is None:
            return
        task = asyncio.get_running_loop().create_task(serve, name=f"req-{self.id}-{msg.id}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _within_budget(self, msg: codec.Request | codec.Notification | codec.Invalid) -> bool:
        """Every text frame after hello spends one of the principal's request budget (by role,
        shared by its connections). Spent: the frame is answered rate-limited (a notification is
        dropped), neither run nor audited; a count and a log line at most every 10 s remain."""
        assert self.principal is not None
        wait = self.server.request_budgets.take(self.principal.role, self.principal.name, time.monotonic())
        if wait == 0.0:
            return True
        wait = math.ceil(wait * 1000) / 1000  # never "retry after 0"
        self.stats["budget_refused"] += 1
        due, skipped = self._budget_logged.due()
        if due:
            self.log.info("control.request.over-budget", retry_after_s=wait, suppressed=skipped)
        if not isinstance(msg, codec.Notification):
            self._count(msg.method if isinstance(msg, codec.Request) else None, "rate-limited")
            self._reply_error(msg.id, RateLimited("request budget of the role spent", details={
                "retry_after_s": wait, "role": self.principal.role}))
        return False

    def _hello_late(self) -> None:
        if self.principal is None and self.state is ConnState.OPEN:
            self.log.info("control.hello.timeout")
            self.server._spawn(self._ws.close(1008, "no hello in time"))

    async def _before_hello(self, msg: codec.Request | codec.Notification | codec.Invalid | None) -> None:
        """A frame before hello (`None`: a binary one). Each that is not a successful hello is a
        failed attempt, like a bad token: it counts on this connection (beyond
        `max_hello_failures` the next frame closes it, 1008) and spends its source's budget (while
        spent, every frame is answered rate-limited and not even a good token is tried)."""
        cfg, throttle = self.server.config, self.server.hello_throttle
        if self._hello_failures >= cfg.max_hello_failures:
            if self.state is ConnState.OPEN:
                self.log.info("control.hello.too-many-failures", failures=self._hello_failures)
                await self._ws.close(1008, "too many failed hellos")
            return
        req_id = None if isinstance(msg, codec.Notification) or msg is None else msg.id
        answers = isinstance(msg, (codec.Request, codec.Invalid))  # a notification or binary gets none
        wait = throttle.retry_after(self.source, time.monotonic())
        if wait > 0:
            self._hello_failures += 1
            if answers:
                self._reply_error(req_id, RateLimited("too many failed hellos from this address",
                                                      details={"retry_after_s": round(wait, 3)}))
            return
        if isinstance(msg, codec.Request) and msg.method == "hello":
            t0 = time.perf_counter()
            err = await self._hello(msg)
            self._count("hello", "ok" if err is None else "error", time.perf_counter() - t0)
            if err is None:
                return
        elif isinstance(msg, codec.Invalid):
            err = msg.error
        else:
            err = NotAuthenticated("send hello with a token first")
        self._hello_failures += 1
        throttle.failed(self.source, time.monotonic())
        self.log.info("control.hello.failed", reason=err.reason,
                      frame="binary" if msg is None else type(msg).__name__.lower())
        if answers:
            self._reply_error(req_id, err)

    async def _hello(self, req: codec.Request) -> GatewayError | None:
        """None once authenticated (or on our own failure, answered here); the peer's error otherwise."""
        try:
            params = validate_params(self.server.registry.spec("hello"), req.params)
            assert isinstance(params, HelloParams)
            principal = await _maybe_await(self.server.authenticator(params.token))
            if principal is None:
                raise NotAuthenticated("invalid token")
            seq = await _maybe_await(self.server.hooks.current_seq())
        except GatewayError as err:
            return err
        except Exception:
            self.log.exception("control.hello.crashed")
            self._reply_error(req.id, GatewayError("internal error"))
            return None
        self.principal, self.client = principal, params.client
        self._transition("hello-ok")
        self.log = self.log.bind(principal=principal.name, role=principal.role)
        self.log.info("control.hello", client=params.client)
        if self.server.hooks.on_authenticated is not None:
            try:
                await _maybe_await(self.server.hooks.on_authenticated(self))
            except Exception:
                self.log.exception("control.hook.on-authenticated-crashed")
        self._reply(codec.encode_result(req.id, {
            "principal": principal.name, "role": principal.role,
            "gateway_id": self.server.config.gateway_id, "seq": seq, "protocol": PROTOCOL_VERSION,
        }))
        return None

    def _start(self, req: codec.Request) -> Coroutine[Any, Any, None] | None:
        """What serves `req` on this connection: a command that runs to its end is started now,
        owned by the server (received whole, it runs whatever happens to the connection; its
        result is stored under its key), and the connection only waits for its reply."""
        spec = self.server.registry.methods.get(req.method)
        if spec is None or not spec.runs_to_end:
            return self._serve(req)
        if self.server.commands.full:
            # Bounded across connections too: a client cannot pile up work by reconnecting.
            self.stats["rate_limited"] += 1
            self._count(req.method, "rate-limited")
            self._reply_error(req.id, RateLimited(
                "too many commands running", details={"max_work": self.server.config.max_work}))
            return None
        return self._reply_when_done(self.server.commands.start(self._execute(req), f"cmd-{self.id}-{req.id}"))

    async def _reply_when_done(self, work: asyncio.Task[str]) -> None:
        self._reply(await asyncio.shield(work))  # cancelled with the connection: the wait only

    async def _serve(self, req: codec.Request) -> None:
        self._reply(await self._execute(req))

    async def _execute(self, req: codec.Request) -> str:
        """Run one request (audited) and return the reply's text."""
        assert self.principal is not None
        ctx = RequestContext(self.principal, self, req.method, req.id, self.log)
        audit_params: dict = req.params
        audited = req.method != "hello"  # never store a token in the audit log
        outcome: dict | GatewayError
        t0, counted = time.perf_counter(), "ok"
        try:
            if req.method == "hello":
                raise Conflict("already authenticated")
            spec = self.server.registry.spec(req.method)
            audited = spec.audited
            if req.method == "ping":
                result: Any = {}
                if self.server.hooks.on_ping is not None:
                    self.server.hooks.on_ping(self)
            else:
                spec, handler, params = self.server.registry.resolve(req.method, self.principal.role, req.params)
                audit_params = params.model_dump(mode="json", exclude_none=True)
                key = getattr(params, "idempotency_key", None) if spec.starts_work else None
                if key is not None:
                    result = await self.server.commands.idempotent(self.principal.name, key, req.method,
                                                           lambda: handler(ctx, params))
                else:
                    result = await handler(ctx, params)
            if not isinstance(result, dict):
                raise TypeError(f"handler for {req.method} returned {type(result).__name__}, not dict")
            text = codec.encode_result(req.id, result)
            outcome = result
        except GatewayError as err:
            ctx.log.info("control.request.error", reason=err.reason)
            outcome, text, counted = err, codec.encode_error(req.id, err), "error"
        except Exception as exc:
            if store_full(exc):  # the store's disk is full: a part down, refused clearly (rolled back)
                ctx.log.error("control.request.storage-full", method=req.method)
                err = Unavailable("refused: the store's disk is full (gateway.data_dir)", reason="storage-full")
                outcome, text, counted = err, codec.encode_error(req.id, err), "error"
            else:
                ctx.log.exception("control.request.internal-error")
                err = GatewayError("internal error")
                outcome, text, counted = err, codec.encode_error(req.id, err), "internal"
        self._count(req.method, counted, time.perf_counter() - t0)
        if audited and (audited is True or isinstance(outcome, GatewayError)) and self.server.hooks.audit:
            try:
                await self.server.hooks.audit(ctx, req.method, audit_params, outcome)
            except Exception:
                ctx.log.exception("control.audit.failed")
        return text

    async def _teardown(self) -> None:
        if self.state < ConnState.CLOSING:
            self._transition("close")
        self.stop_subscription()
        tasks = list(self._inflight)
        for t in tasks:  # commands that run to their end carry on in the server's tasks
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for cb in reversed(self._close_cbs):
            try:
                await _maybe_await(cb(self))
            except Exception:
                self.log.exception("control.conn.close-callback-crashed")
        if self.principal is not None and self.server.hooks.on_closed is not None:
            try:
                await _maybe_await(self.server.hooks.on_closed(self))
            except Exception:
                self.log.exception("control.hook.on-closed-crashed")
        self._transition("closed")
        self.log.info("control.conn.closed", **dict(self.stats))


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
