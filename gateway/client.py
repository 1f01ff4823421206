"""Async Python client of the control channel (tests, CLI).

    client = await GatewayClient.connect("ws://127.0.0.1:8765/v1/control", token)
    client = await GatewayClient.connect("wss://gw.example:8765/v1/control", token, ca_file="ca.pem")
    session = await client.call("session.create", title="fire")
    await client.subscribe(since_seq=0)
    async for event in client.events(): ...

On a network cut the client reconnects with backoff, says hello again and, if it was subscribed,
resubscribes from the last `seq` it saw; duplicates (seq <= last seen) are dropped, so the event
stream has no gap and no duplicate. On `events.overflow` it resubscribes by itself.

A `wss://` URL is verified against the system's CAs, or only the CAs in `ca_file` (PEM) when given
(a gateway with a certificate of its own CA); a certificate not trusted raises `TlsError`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import ssl
from typing import Any, AsyncIterator

import structlog
from websockets.asyncio.client import ClientConnection, connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

from gateway.protocol import codec, media
from gateway.protocol.terminals import INSTRUCTION_NOTIFICATION
from gateway.timeutil import now_iso

log = structlog.get_logger("gateway.client")
_CLOSED = object()


class RemoteError(Exception):
    """The gateway answered with a JSON-RPC error."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}


class Disconnected(ConnectionError):
    """The connection dropped before the reply came (the request may or may not have run)."""


class TlsError(ConnectionError):
    """The TLS connection could not be set up: the gateway's certificate is not trusted, or the
    URL's scheme does not match the listener (ws:// to a TLS port)."""


class GatewayClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        client_name: str = "gateway-client/0.1",
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.05, 5.0),
        call_timeout: float = 30.0,
        max_size: int | None = 1 << 20,
        event_queue: int = 10_000,
        audio_queue: int = 500,
        ca_file: str | None = None,
    ) -> None:
        self.url, self.token, self.client_name = url, token, client_name
        self.reconnect, self.backoff, self.call_timeout = reconnect, backoff, call_timeout
        self.max_size = max_size
        self.ca_file = ca_file
        self._ssl: ssl.SSLContext | None = None
        if url.startswith("wss://"):
            try:
                self._ssl = ssl.create_default_context(cafile=ca_file)  # cafile None: the system's CAs
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(f"ca_file {ca_file!r}: not a readable PEM file of CA certificates "
                               f"({getattr(exc, 'strerror', None) or exc})") from None
        elif ca_file is not None:
            raise ValueError(f"ca_file is for a wss:// URL, not {url!r}")
        self.hello: dict[str, Any] = {}
        self.last_seq: int | None = None
        self.subscribed = False
        self.reconnects = 0
        self.audio_dropped = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: asyncio.Queue = asyncio.Queue(event_queue)
        # A terminal's instructions (`terminal.instruction` notifications), each once: by id.
        self._instructions: asyncio.Queue = asyncio.Queue(event_queue)
        self.instructions_seen: dict[str, dict] = {}
        self.instruction_pushes: collections.Counter[str] = collections.Counter()
        self.confirm_instructions = True  # answer each push with terminal.received
        self._audio: asyncio.Queue = asyncio.Queue(audio_queue)
        self._resync = False
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._supervisor: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._tasks: set[asyncio.Task] = set()
        self.log = log.bind(url=url)

    # -- lifecycle --

    @classmethod
    async def connect(cls, url: str, token: str, **kwargs: Any) -> "GatewayClient":
        client = cls(url, token, **kwargs)
        await client.open()
        return client

    async def open(self) -> None:
        await self._connect_once()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="client-supervisor")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self._ws is not None:
            await self._ws.close()
        tasks = [t for t in (self._supervisor, self._reader, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_pending()
        for q in (self._events, self._audio, self._instructions):
            if q.full():
                q.get_nowait()
            q.put_nowait(_CLOSED)

    async def __aenter__(self) -> "GatewayClient":
        if self._ws is None:
            await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- requests --

    async def call(self, method: str, /, **params: Any) -> dict:
        """Result of `method`, or RemoteError / Disconnected / TimeoutError."""
        async with asyncio.timeout(self.call_timeout):
            await self._connected.wait()
            return await self._request(method, params)

    async def subscribe(self, since_seq: int | None = None) -> dict:
        """events.subscribe; events then arrive through `events()`."""
        params = {} if since_seq is None else {"since_seq": since_seq}
        result = await self.call("events.subscribe", **params)
        self.subscribed = True
        if since_seq is not None and (self.last_seq is None or since_seq > self.last_seq):
            self.last_seq = since_seq
        return result

    async def events(self) -> AsyncIterator[dict]:
        """Event params, in seq order, across reconnects. Ends when the client is closed."""
        while True:
            if self._events.empty() and self._resync and self.connected:
                self._resync = False
                await self.subscribe(self.last_seq)
            item = await self._events.get()
            if item is _CLOSED:
                return
            yield item

    async def send_audio(self, channel: int, seq: int, ts: int, pcm: bytes) -> None:
        if self._ws is None:
            raise Disconnected("not connected")
        await self._ws.send(media.pack(channel, seq, ts, pcm))

    async def audio(self) -> AsyncIterator[media.MediaFrame]:
        """Binary media frames received from the gateway."""
        while True:
            item = await self._audio.get()
            if item is _CLOSED:
                return
            yield item

    # -- terminals --

    async def report(self, lat: float, lon: float, accuracy_m: float, time: str | None = None,
                     **optional: Any) -> dict:
        """terminal.report of this terminal's position (`time`: now unless given)."""
        return await self.call("terminal.report", lat=lat, lon=lon, accuracy_m=accuracy_m,
                               time=time or now_iso(), **optional)

    async def terminals(self, group: str | None = None, page: int = 500) -> list[dict]:
        """The roster (terminal.list), `page` terminals per request (a fleet's whole roster can
        outgrow a frame)."""
        out: list[dict] = []
        params: dict[str, Any] = {"limit": page} if group is None else {"group": group, "limit": page}
        while True:
            reply = await self.call("terminal.list", **params)
            out += reply["terminals"]
            if reply.get("next_after") is None:
                return out
            params["after"] = reply["next_after"]

    async def open_instructions(self, state: str = "open") -> list[dict]:
        """terminal.instructions of this terminal (default: those not acknowledged), every page."""
        out: list[dict] = []
        params: dict[str, Any] = {"state": state}
        while True:
            reply = await self.call("terminal.instructions", **params)
            out += reply["instructions"]
            if reply["next_after"] is None:
                return out
            params["after"] = reply["next_after"]

    async def track(self, terminal_id: str, since: str | None = None, until: str | None = None) -> list[dict]:
        """Every stored position of a terminal in since..until, paging through `next_since`."""
        points: dict[int, dict] = {}
        while True:
            params = {k: v for k, v in (("since", since), ("until", until)) if v is not None}
            page = await self.call("terminal.track", terminal_id=terminal_id, **params)
            points.update((p["id"], p) for p in page["points"])
            if not page["truncated"] or page["next_since"] == since:
                return sorted(points.values(), key=lambda p: (p["time"], p["id"]))
            since = page["next_since"]

    async def instructions(self) -> AsyncIterator[dict]:
        """A terminal's instructions, each once (deduplicated by id across pushes and reconnects;
        each push is confirmed with terminal.received unless `confirm_instructions` is False)."""
        while True:
            item = await self._instructions.get()
            if item is _CLOSED:
                return
            yield item

    async def ack(self, instruction_id: str) -> dict:
        """terminal.ack: this terminal acknowledges an instruction."""
        return await self.call("terminal.ack", instruction_id=instruction_id)

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame as is (tests of malformed input)."""
        assert self._ws is not None
        await self._ws.send(frame)

    # -- internals --

    async def _request(self, method: str, params: dict) -> dict:
        ws = self._ws
        if ws is None:
            raise Disconnected("not connected")
        req_id = next(self._ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            await ws.send(codec.encode_request(req_id, method, params))
            resp: codec.Response = await fut
        except ConnectionClosed as exc:
            raise Disconnected(str(exc)) from None
        finally:
            self._pending.pop(req_id, None)
        if resp.error is not None:
            data = resp.error.get("data") or {}
            raise RemoteError(resp.error["code"], data.get("reason", ""), resp.error["message"],
                              data.get("details"))
        assert resp.result is not None
        return resp.result

    async def _connect_once(self) -> None:
        tls = {} if self._ssl is None else {"ssl": self._ssl}
        try:
            ws = await ws_connect(self.url, max_size=self.max_size, open_timeout=10, compression=None, **tls)
        except ssl.SSLCertVerificationError as exc:
            trust = f"the CAs in {self.ca_file}" if self.ca_file else "the system's CAs (pass a CA file)"
            raise TlsError(f"TLS: the gateway's certificate is not trusted by {trust}: "
                           f"{exc.verify_message or exc}") from None
        except ssl.SSLError as exc:
            raise TlsError(f"TLS: handshake with {self.url} failed: {exc.reason or exc} "
                           "(is the gateway's listener TLS? ws:// vs wss://)") from None
        except InvalidMessage as exc:
            if self._ssl is not None:
                raise
            raise TlsError(f"no valid HTTP answer from {self.url} (if its listener is TLS, use wss://): "
                           f"{exc.__cause__ or exc}") from None
        self._ws = ws
        self._reader = asyncio.get_running_loop().create_task(self._read(ws), name="client-reader")
        try:
            self.hello = await self._request("hello", {"token": self.token, "client": self.client_name})
            self._connected.set()
            if self.subscribed:
                await self._request("events.subscribe",
                                    {} if self.last_seq is None else {"since_seq": self.last_seq})
        except BaseException:
            self._connected.clear()
            await ws.close()
            raise
        self.log.info("client.connected", principal=self.hello.get("principal"), last_seq=self.last_seq)

    async def _supervise(self) -> None:
        while True:
            assert self._reader is not None
            await asyncio.gather(self._reader, return_exceptions=True)
            self._connected.clear()
            self._fail_pending()
            if self._closing or not self.reconnect:
                self.log.info("client.disconnected")
                for q in (self._events, self._audio):
                    if not q.full():
                        q.put_nowait(_CLOSED)
                return
            delay, limit = self.backoff
            while not self._closing:
                await asyncio.sleep(delay)
                try:
                    await self._connect_once()
                    self.reconnects += 1
                    break
                except (OSError, ConnectionClosed, RemoteError, Disconnected, TimeoutError) as exc:
                    self.log.info("client.reconnect.failed", error=str(exc), delay=delay)
                    delay = min(delay * 2, limit)

    def _fail_pending(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Disconnected("connection lost"))
        self._pending.clear()

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    self._on_binary(frame)
                else:
                    self._on_text(frame)
        except ConnectionClosed:
            pass
        finally:
            # Requests on this connection get no reply now: fail them here, not only once the
            # supervisor notices, since the supervisor itself may be waiting on one (the
            # resubscribe of a reconnect).
            self._fail_pending()

    def _on_text(self, frame: str) -> None:
        """One text frame: a reply to a pending request, an event or an instruction."""
        msg = codec.parse_response(frame)
        if isinstance(msg, codec.Response):
            fut = self._pending.get(msg.id) if isinstance(msg.id, int) else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif isinstance(msg, codec.Notification) and msg.method == codec.EVENT_METHOD:
            self._on_event(msg.params)
        elif isinstance(msg, codec.Notification) and msg.method == INSTRUCTION_NOTIFICATION:
            self._on_instruction(msg.params)
        else:
            self.log.warning("client.frame.unexpected", frame=str(frame)[:200])

    def _on_binary(self, frame: bytes) -> None:
        try:
            item = media.unpack(frame)
        except media.MediaFrameError as exc:
            self.log.warning("client.media.bad-frame", why=exc.why)
            return
        try:
            self._audio.put_nowait(item)
        except asyncio.QueueFull:
            self.audio_dropped += 1

    def _on_event(self, params: dict) -> None:
        seq = params.get("seq")
        if params.get("type") == "events.overflow":
            self.log.info("client.events.overflow", seq=seq, last_seq=self.last_seq)
            self._spawn(self.subscribe(self.last_seq))
            return
        if not isinstance(seq, int) or (self.last_seq is not None and seq <= self.last_seq):
            return  # replayed twice around a reconnect: already delivered
        if self._resync:
            return
        try:
            self._events.put_nowait(params)
        except asyncio.QueueFull:
            self._resync = True  # resubscribe from last_seq once the consumer has drained
            return
        self.last_seq = seq

    def _on_instruction(self, params: dict) -> None:
        iid = params.get("instruction_id")
        if not isinstance(iid, str):
            return
        self.instruction_pushes[iid] += 1
        if self.confirm_instructions:  # every push, a repeat too: the first answer may have been lost
            self._spawn(self._confirm(iid))
        if iid in self.instructions_seen:
            return  # at-least-once delivery: seen already
        self.instructions_seen[iid] = params
        with contextlib.suppress(asyncio.QueueFull):
            self._instructions.put_nowait(params)

    async def _confirm(self, instruction_id: str) -> None:
        with contextlib.suppress(RemoteError, Disconnected, TimeoutError):
            await self.call("terminal.received", instruction_id=instruction_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
