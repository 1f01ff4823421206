"""An SMPP 3.4 ESME over asyncio: one transceiver session (`SmppSession`, an asyncio Protocol) and
`Esme`, which binds one and keeps it up.

`SmppSession`:
- requests carry a sequence number of ours (1..0x7FFFFFFF, wrapping); `request()` waits for the
  response with the same number (or a generic_nack), at most `response_timeout_s` (+ up to
  `SWEEP_S`: one periodic check of the deadlines in sending order, not a timer per request,
  which cost ~5 % of the gateway's loop at 1,000 messages/s). A response that
  comes after its request gave up still runs the request's `on_response` (kept for the last
  `LATE_KEPT` requests of the session): a late submit_sm_resp still enters the part map.
- writes are coalesced: every PDU produced in one loop iteration is appended to one buffer, written
  by a single `transport.write` from a `call_soon` (one syscall for a burst of submit_sm and the
  deliver_sm_resp of a read).
- enquire_link every `enquire_link_s` once bound; one unanswered after `response_timeout_s` closes
  the session (the link is dead). The SMSC's enquire_link is answered at once, its unbind too (and
  the session ends); any other request gets a generic_nack ESME_RINVCMDID. A deliver_sm goes to
  `on_deliver(session, pdu)`, which answers it when it chooses (`answer()`); if it raises, the
  deliver_sm is answered ESME_RSYSERR (the SMSC delivers it again) and the session goes on.
- a stream that is not SMPP (`smpp_pdu.PduError`) aborts the connection.

`Esme.connect()` binds once and raises `BindRefused` (the SMSC's command_status; an error
bind_transceiver_resp may have no body) or OSError/TimeoutError; `Esme.run()` keeps a session
bound, reconnecting with exponential backoff (`reconnect_s` doubling up to 32x) after it is lost.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable
from typing import Any

import structlog

from sms.smpp_pdu import (
    BIND_TRANSCEIVER,
    DELIVER_SM,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    ESME_RINVCMDID,
    ESME_RSYSERR,
    GENERIC_NACK,
    RESPONSE,
    UNBIND,
    UNBIND_RESP,
    Decoder,
    Pdu,
    PduError,
    bind_body,
    decode_id,
    deliver_sm_resp,
    pdu,
    status_name,
)

log = structlog.get_logger(__name__)

LATE_KEPT = 10_000  # requests that gave up whose late response still runs their on_response
MAX_SEQUENCE = 0x7FFFFFFF
SWEEP_S = 0.25  # how often requests are checked against their deadline (at most timeout / 4)
BACKOFF_MAX = 32  # reconnect delay: reconnect_s doubling up to this many times reconnect_s

OnResponse = Callable[[Pdu], Any]
OnDeliver = Callable[["SmppSession", Pdu], None]


class BindRefused(Exception):
    """The SMSC answered bind_transceiver with an error status."""

    def __init__(self, command_status: int) -> None:
        super().__init__(f"the SMSC refused the bind: {status_name(command_status)}")
        self.command_status = command_status


class SmppSession(asyncio.Protocol):
    """One SMPP connection, from the socket to bound and back."""

    def __init__(self, on_deliver: OnDeliver, *, enquire_link_s: float, response_timeout_s: float) -> None:
        self.on_deliver = on_deliver
        self.enquire_link_s, self.response_timeout_s = enquire_link_s, response_timeout_s
        self.transport: asyncio.Transport | None = None
        self.bound = False
        self.pending: dict[int, tuple[asyncio.Future[Pdu] | None, OnResponse | None]] = {}
        self._late: dict[int, OnResponse] = {}
        self._decoder = Decoder()
        self._out = bytearray()
        self._flushing = False
        self._sequences = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._link: int | None = None  # the sequence of our enquire_link waiting for its answer
        self._timers: list[asyncio.TimerHandle] = []
        self._deadlines: collections.deque[tuple[float, int]] = collections.deque()  # (when, sequence)
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_s = min(SWEEP_S, response_timeout_s / 4)

    # the transport's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.bound = False
        self.transport = None
        for timer in self._timers:
            timer.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._deadlines.clear()
        pending, self.pending = self.pending, {}
        why = f"the SMPP session closed: {exc!r}" if exc else "the SMPP session closed"
        for future, _ in pending.values():
            if future is not None and not future.done():
                future.set_exception(ConnectionError(why))  # one each: a traceback is per raise
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self._handle(self._decoder.feed(data))
        except PduError as e:
            self._handle(e.pdus)  # those before the bad one
            log.warning("smpp.bad-stream", error=str(e))
            self.abort()

    def _handle(self, pdus: list[Pdu]) -> None:
        for p in pdus:
            if p.command_id & RESPONSE:
                self._response(p)
            elif p.command_id == DELIVER_SM:
                try:
                    self.on_deliver(self, p)
                except Exception:  # a bug reading it must not end the session: the SMSC retries
                    log.exception("smpp.deliver-sm-failed", sequence=p.sequence)
                    self.answer(p.sequence, ESME_RSYSERR)
            elif p.command_id == ENQUIRE_LINK:
                self.send(pdu(ENQUIRE_LINK_RESP, p.sequence))
            elif p.command_id == UNBIND:
                log.info("smpp.unbound-by-smsc")
                self.bound = False
                self.send(pdu(UNBIND_RESP, p.sequence))
                self._loop.call_soon(self.close)  # after the flush of the unbind_resp
            else:
                self.send(pdu(GENERIC_NACK, p.sequence, command_status=ESME_RINVCMDID))

    def _response(self, p: Pdu) -> None:
        entry = self.pending.pop(p.sequence, None)
        if entry is None:
            late = self._late.pop(p.sequence, None)
            if late is not None:
                late(p)
            elif p.command_id != GENERIC_NACK:
                log.debug("smpp.unexpected-response", command_id=hex(p.command_id), sequence=p.sequence)
            return
        future, on_response = entry
        if on_response is not None:
            on_response(p)
        if future is not None and not future.done():
            future.set_result(p)

    # writing

    def send(self, data: bytes) -> None:
        """Queue one PDU; everything queued in this loop iteration goes out in one write."""
        if self.transport is None:
            return  # closed: what it answered is answered again by the SMSC (a redelivery)
        self._out += data
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        data, self._out = self._out, bytearray()
        if self.transport is not None and data:
            self.transport.write(data)

    def answer(self, sequence: int, command_status: int) -> None:
        """The deliver_sm_resp of deliver_sm `sequence`."""
        self.send(deliver_sm_resp(sequence, command_status))

    def next_sequence(self) -> int:
        sequence = next(self._sequences)
        if sequence > MAX_SEQUENCE:
            self._sequences = itertools.count(2)
            sequence = 1
        return sequence

    def _ask(self, command_id: int, body: bytes, on_response: OnResponse | None = None,
             ) -> tuple[int, asyncio.Future[Pdu]]:
        if self.transport is None:
            raise ConnectionError("the SMPP session is closed")
        sequence = self.next_sequence()
        future: asyncio.Future[Pdu] = self._loop.create_future()
        self.pending[sequence] = (future, on_response)
        self.send(pdu(command_id, sequence, body))
        return sequence, future

    async def request(self, command_id: int, body: bytes, on_response: OnResponse | None = None) -> Pdu:
        """Send a request, wait for its response: TimeoutError after `response_timeout_s` (checked
        every `SWEEP_S`, not a timer per request); ConnectionError when the session closes first.
        `on_response` runs in the read, before anything read after it."""
        sequence, future = self._ask(command_id, body, on_response)
        self._deadlines.append((self._loop.time() + self.response_timeout_s, sequence))
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(self._sweep_s, self._sweep)
        try:
            return await future
        except asyncio.CancelledError:
            self._gave_up(sequence)
            raise

    def _sweep(self) -> None:
        """Requests past their deadline raise TimeoutError (all share one timeout: in order)."""
        self._sweeper = None
        now, deadlines = self._loop.time(), self._deadlines
        while deadlines and deadlines[0][0] <= now:
            entry = self._gave_up(deadlines.popleft()[1])
            if entry is not None and entry[0] is not None and not entry[0].done():
                entry[0].set_exception(TimeoutError(f"no response in {self.response_timeout_s} s"))
        if deadlines and self.transport is not None:
            self._sweeper = self._loop.call_later(self._sweep_s, self._sweep)

    def _gave_up(self, sequence: int) -> tuple[asyncio.Future[Pdu] | None, OnResponse | None] | None:
        """A request no longer waited for: a late response still runs its on_response."""
        entry = self.pending.pop(sequence, None)
        if entry is not None and entry[1] is not None:
            self._late[sequence] = entry[1]
            if len(self._late) > LATE_KEPT:
                del self._late[next(iter(self._late))]
        return entry

    # the session's life

    async def bind(self, system_id: str, password: str, system_type: str) -> str:
        """bind_transceiver: the SMSC's system_id, or `BindRefused`."""
        _, future = self._ask(BIND_TRANSCEIVER, bind_body(system_id, password, system_type))
        async with asyncio.timeout(self.response_timeout_s):
            resp = await future
        if resp.command_status != 0:
            raise BindRefused(resp.command_status)
        self.bound = True
        self._timers.append(self._loop.call_later(self.enquire_link_s, self._enquire_link))
        return decode_id(resp.body)

    def _enquire_link(self) -> None:
        """Every `enquire_link_s` while connected; one at a time (the check of an unanswered one
        closes the session)."""
        if self.transport is None:
            return
        if self._link is None:
            sequence = self.next_sequence()
            self._link = sequence
            self.pending[sequence] = (None, self._linked)
            self.send(pdu(ENQUIRE_LINK, sequence))
            self._timers.append(self._loop.call_later(self.response_timeout_s, self._link_check, sequence))
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > self._loop.time()]
        self._timers.append(self._loop.call_later(self.enquire_link_s, self._enquire_link))

    def _linked(self, resp: Pdu) -> None:
        self._link = None

    def _link_check(self, sequence: int) -> None:
        if self._link == sequence:
            log.warning("smpp.enquire-link-unanswered", timeout_s=self.response_timeout_s)
            self.pending.pop(sequence, None)
            self.abort()

    async def unbind(self, timeout: float) -> None:
        """unbind, wait for its unbind_resp (at most `timeout`), close."""
        if self.bound and self.transport is not None:
            self.bound = False
            try:
                _, future = self._ask(UNBIND, b"")
                async with asyncio.timeout(timeout):
                    await future
            except (TimeoutError, ConnectionError) as e:
                log.info("smpp.unbind-unanswered", error=repr(e))
        self.close()
        await asyncio.shield(self.closed)

    def close(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Esme:
    """One transceiver bind to `host:port`, kept up: `session` is the bound session or None."""

    def __init__(self, host: str, port: int, system_id: str, password: str, system_type: str, *,
                 on_deliver: OnDeliver, enquire_link_s: float, reconnect_s: float,
                 response_timeout_s: float) -> None:
        self.host, self.port = host, port
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.on_deliver = on_deliver
        self.enquire_link_s, self.reconnect_s = enquire_link_s, reconnect_s
        self.response_timeout_s = response_timeout_s
        self.session: SmppSession | None = None
        self._log = log.bind(host=host, port=port, system_id=system_id)

    async def connect(self) -> SmppSession:
        """Open a connection and bind it (`BindRefused`, OSError, TimeoutError)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.response_timeout_s):
            _, session = await loop.create_connection(
                lambda: SmppSession(self.on_deliver, enquire_link_s=self.enquire_link_s,
                                    response_timeout_s=self.response_timeout_s),
                self.host, self.port)
        try:
            smsc = await session.bind(self.system_id, self.password, self.system_type)
        except BaseException:
            session.abort()
            raise
        self._log.info("smpp.bound", smsc=smsc)
        self.session = session
        return session

    async def run(self) -> None:
        """Keep a session bound until cancelled."""
        while True:
            if self.session is not None:
                await asyncio.shield(self.session.closed)
                self._log.warning("smpp.session-lost")
                self.session = None
            delay = self.reconnect_s
            while self.session is None:
                await asyncio.sleep(delay)
                try:
                    await self.connect()
                except (OSError, TimeoutError, BindRefused) as e:
                    delay = min(delay * 2, self.reconnect_s * BACKOFF_MAX)
                    self._log.warning("smpp.reconnect-failed", error=repr(e), retry_in_s=delay)

    async def stop(self, timeout: float) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.unbind(timeout)
