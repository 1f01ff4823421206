"""Console audio: binary frames of a control connection bound to a call, both directions.

`media.open` gives a channel number; frames the console sends on that channel go into the call,
and the call's audio comes back on it. `call.listen` is a listen-only channel, so a second
dispatcher can monitor. Audio inside the SIP workers runs at 16 kHz; a channel opened at 8 kHz is
resampled here.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.errors import Conflict, NotFound
from gateway.protocol import media as frames
from sip.errors import SipError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib through 3.12; the project is pinned to 3.11

log = structlog.get_logger(__name__)

MAX_CHANNEL = 0xFFFF  # channel ids 1..65535 (16 bits in the frame header; 0 is never used)
CALL_RATE = 16000
FRAME_MS = 20


@dataclass(eq=False)
class Binding:
    conn: Any  # gateway.connection.Connection
    channel: int
    call_id: str
    direction: str  # both | in (console -> call) | out (call -> console)
    rate: int
    seq: int = 0
    timestamp: int = 0
    up_state: Any = None  # audioop.ratecv state, console -> call
    down_state: Any = None  # call -> console
    stats: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0, "bad": 0})
    sink: Any = None  # a LiveSource when the channel feeds a live broadcast
    on_gone: Any = None  # a conference's console member: called with the cause when the channel goes

    @property
    def sends(self) -> bool:
        return self.direction in ("both", "in")

    @property
    def receives(self) -> bool:
        return self.direction in ("both", "out")

    def public(self) -> dict[str, Any]:
        return {
            "channel": self.channel, "call_id": self.call_id, "direction": self.direction,
            "rate": self.rate, "frame_ms": FRAME_MS, "samples_per_frame": self.rate * FRAME_MS // 1000,
            "encoding": "pcm16le",
        }


class MediaService:
    def __init__(self, calls: Any, broadcasts: Any = None) -> None:
        self._calls = calls  # CallService: require_live(), .sip
        self._broadcasts = broadcasts  # BroadcastService: live_source()
        self._by_conn: dict[Any, dict[int, Binding]] = {}
        self._listeners: dict[str, set[Binding]] = {}
        self._channels = itertools.count(0)

    async def open(self, conn: Any, call_id: str, direction: str = "both", rate: int = 16000) -> dict:
        self._calls.require_live(call_id)
        sip = self._calls._sip()
        bindings = self._bind_conn(conn)
        channel = self._next_channel(bindings)
        b = bindings[channel] = Binding(conn, channel, call_id, direction, rate)  # held across the await
        if b.receives:
            listeners = self._listeners.setdefault(call_id, set())
            if not listeners:
                try:
                    await sip.listen(call_id, True)
                except SipError as err:
                    bindings.pop(channel, None)
                    raise NotFound(str(err), reason="no-such-call", details={"call_id": call_id}) from None
            listeners.add(b)
        log.info("media.opened", call_id=call_id, channel=channel, direction=direction, rate=rate)
        return b.public()

    def open_broadcast(self, conn: Any, broadcast_id: str, rate: int = 16000) -> dict:
        """The console's microphone into a live broadcast (one way: console -> speakers)."""
        live = self._broadcasts.live_source(broadcast_id)
        bindings = self._bind_conn(conn)
        channel = self._next_channel(bindings)
        b = bindings[channel] = Binding(conn, channel, f"broadcast:{broadcast_id}", "in", rate, sink=live)
        log.info("media.opened", broadcast_id=broadcast_id, channel=channel, rate=rate)
        return {**b.public(), "broadcast_id": broadcast_id}

    def open_port(self, conn: Any, port_id: str, rate: int, on_gone: Any) -> dict:
        """A conference's console member: a port in a SIP worker's bridge, addressed like a call
        (send_audio in, on_audio out) and already listening. `on_gone(cause)` runs when the channel
        goes without the member leaving first: `media.close` ("channel-closed") or the connection
        lost ("disconnected")."""
        bindings = self._bind_conn(conn)
        channel = self._next_channel(bindings)
        b = bindings[channel] = Binding(conn, channel, port_id, "both", rate, on_gone=on_gone)
        self._listeners.setdefault(port_id, set()).add(b)
        log.info("media.opened", port_id=port_id, channel=channel, rate=rate)
        return {**b.public(), "call_id": None}

    async def close(self, conn: Any, channel: int) -> dict:
        b = self._by_conn.get(conn, {}).get(channel)
        if b is None:
            raise Conflict("no such media channel on this connection", reason="no-such-channel",
                           details={"channel": channel})
        await self._unbind(b, "channel-closed")
        return {"channel": channel, "closed": True}

    def _bind_conn(self, conn: Any) -> dict[int, Binding]:
        bindings = self._by_conn.get(conn)
        if bindings is None:
            bindings = self._by_conn[conn] = {}
            conn.on_binary(lambda data, c=conn: self._from_console(c, data))
            conn.on_close(self._conn_closed)
        return bindings

    def _next_channel(self, live: dict[int, Binding]) -> int:
        """A 16-bit id (1..65535) not bound on this connection: the counter wraps, so ids still
        in use are skipped, never overwritten; with every id in use the open is refused."""
        for _ in range(MAX_CHANNEL):
            channel = next(self._channels) % MAX_CHANNEL + 1
            if channel not in live:
                return channel
        raise Conflict("every media channel id is in use on this connection",
                       reason="too-many-channels", details={"open": len(live)})

    def call_ended(self, call_id: str) -> None:
        """Drop every binding of a call that ended (no unlisten: the call is gone), or of a console
        member's port that left its conference (its on_gone is not called)."""
        self._listeners.pop(call_id, None)
        for bindings in self._by_conn.values():
            for ch in [ch for ch, b in bindings.items() if b.call_id == call_id]:
                del bindings[ch]

    async def _unbind(self, b: Binding, cause: str) -> None:
        self._by_conn.get(b.conn, {}).pop(b.channel, None)
        if b.on_gone is not None:  # a console member's port: its conference takes it out
            self._listeners.pop(b.call_id, None)
            b.on_gone(cause)
            log.info("media.closed", port_id=b.call_id, channel=b.channel, **b.stats)
            return
        listeners = self._listeners.get(b.call_id)
        if listeners is not None and b in listeners:
            listeners.discard(b)
            if not listeners:
                del self._listeners[b.call_id]
                sip = self._calls.sip
                if sip is not None:
                    try:
                        await sip.listen(b.call_id, False)
                    except SipError:
                        pass  # the call ended meanwhile
        log.info("media.closed", call_id=b.call_id, channel=b.channel, **b.stats)

    async def _conn_closed(self, conn: Any) -> None:
        for b in list(self._by_conn.get(conn, {}).values()):
            await self._unbind(b, "disconnected")
        self._by_conn.pop(conn, None)

    # per frame: keep these cheap -------------------------------------------------------------
    def _from_console(self, conn: Any, data: bytes) -> None:
        try:
            frame = frames.unpack(data)
        except frames.MediaFrameError as err:
            log.debug("media.bad_frame", why=err.why)
            return
        b = self._by_conn.get(conn, {}).get(frame.channel)
        if b is None or not b.sends:
            return
        if b.sink is not None:  # a live broadcast: its source resamples and paces
            b.sink.push(frame.payload, b.rate)
            b.stats["in"] += 1
            return
        pcm = frame.payload
        if b.rate != CALL_RATE:
            pcm, b.up_state = audioop.ratecv(pcm, 2, 1, b.rate, CALL_RATE, b.up_state)
        try:
            self._calls.sip.send_audio(b.call_id, pcm)
            b.stats["in"] += 1
        except SipError:
            b.stats["bad"] += 1

    def on_audio(self, call_id: str, pcm: bytes) -> None:
        """From the supervisor: 20 ms of a call's audio at 16 kHz, to every listening console."""
        for b in self._listeners.get(call_id, ()):
            out = pcm
            if b.rate != CALL_RATE:
                out, b.down_state = audioop.ratecv(pcm, 2, 1, CALL_RATE, b.rate, b.down_state)
            b.conn.send_binary(frames.pack(b.channel, b.seq, b.timestamp, out))
            b.seq += 1
            b.timestamp += len(out) // 2
            b.stats["out"] += 1
