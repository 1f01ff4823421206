"""One peer of the control channel (gateway/server.py): a `Connection`.

A reader (parses frames, answers hello, spawns bounded request tasks: gateway/connection_requests.py),
one writer task draining a bounded outbox, and at most one subscription pump. Everything it starts
it owns and cancels on close, except the commands that run to their end (`MethodSpec.runs_to_end`):
those the server's `CommandRunner` (gateway/commands.py) owns, and the connection only waits for
their reply. Its states are a small table (gateway/connection_state.py); its outbox and the budgets
of replies, events and audio are gateway/outbox.py, its subscription pump
gateway/subscription_pump.py.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from gateway.connection_requests import RequestServing
from gateway.connection_state import NEXT, ConnState
from gateway.errors import GatewayError
from gateway.limits import EveryInterval
from gateway.outbox import Outbox
from gateway.protocol import codec
from gateway.protocol.methods import Principal
from gateway.server_config import BinaryCallback, CloseCallback, maybe_await as _maybe_await
from gateway.subscription_pump import SubscriptionPump
from gateway.ws_write import write_text_now

if TYPE_CHECKING:
    from gateway.server import ControlServer

log = structlog.get_logger("gateway.server")

_conn_ids = itertools.count(1)


class Connection(RequestServing):
    """One peer. Services use: principal, start_subscription, on_binary, send_binary, on_close."""

    def __init__(self, server: ControlServer, ws: ServerConnection) -> None:
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
        new = NEXT[self.state].get(event)
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

