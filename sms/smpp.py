"""SMPP 3.4 provider through aiosmpplib (asyncio ESME): bind_transceiver, submit_sm, receipts, MO.

The sans-I/O half (top of the file) builds the parts a carrier gets and reads what comes back:

- `encode_parts()`: the parts of `sms.segments.split()` (so the count matches what the outbox
  stored), GSM-7 as data_coding 0 (one septet per octet, unpacked), anything else UCS-2 as
  data_coding 8 (UTF-16BE). More than one part: each starts with an 8-bit concatenation UDH
  (05 00 03 ref total seq) and esm_class has UDHI (0x40) set.
- `submit_error()`: a submit_sm_resp status -> `ProviderError` with an HTTP-like status_code so
  `sms.outbox.classify` decides: ESME_RTHROTTLED 0x58 / ESME_RMSGQFUL 0x14 -> 429 (retry),
  ESME_RSYSERR 0x08 / ESME_RSUBMITFAIL 0x45 -> 503 (retry), anything else (ESME_RINVDSTADR 0x0B...)
  -> 400 (permanent). `details["command_status"]` keeps the SMPP status.
- `parse_receipt()` / `RECEIPT_STATES`: the "id:... stat:DELIVRD err:000" text of a receipt.

The I/O half, `SmppProvider`, gives aiosmpplib's `ESME` its own broker and hook: `send()` queues
one submit_sm per part and waits for each submit_sm_resp. The ESME reconnects by itself with
exponential backoff (starting at `reconnect_s`) and sends enquire_link every `enquire_link_s`.
While it is not bound, `send()` raises a retryable `ProviderError` at once; a part that got no
answer within `response_timeout_s` raises a retryable timeout (and is dropped from the queue if
it was not written yet).

A multi-part message is known by the message_id of its first part; receipts of every part map
back to it: the first failed part decides at once, `delivered` is reported when all parts are.

SMPP has no way to list sent messages: `find_sent()` returns [] and reconciliation after a crash
or a timed-out attempt falls back to delivery receipts.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractBroker,
    AbstractHook,
    BindMode,
    DeliverSm,
    DeliverSmResp,
    GenericNack,
    PhoneNumber,
    SmppCommandStatus,
    SmppError,
    SmppMessage,
    SmppSessionState,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.codec import GSM7BitCodec
from aiosmpplib.retrytimer import SimpleExponentialBackoff

from sms.provider import Inbound, OnInbound, OnReceipt, ProviderError, Receipt, Remote, Submitted, deliver
from sms.segments import encode_info, split
from sms.smpp_correlator import Correlator

log = logging.getLogger(__name__)

DATA_CODING_GSM7 = 0x00
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40
BIND_TRANSCEIVER_RESP = (0x80000009).to_bytes(4, "big")

# --- sans-I/O ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    text: str  # this part's characters
    data_coding: int
    esm_class: int
    payload: bytes  # the short_message octets: [UDH] + encoded text


def encode_parts(body: str, ref: int) -> list[Part]:
    """The submit_sm parts of `body`; `ref` (0..255) is the concatenation reference."""
    gsm = encode_info(body).encoding == "GSM-7"
    texts = split(body)
    coding = DATA_CODING_GSM7 if gsm else DATA_CODING_UCS2
    parts: list[Part] = []
    for seq, text in enumerate(texts, start=1):
        octets = GSM7BitCodec().encode(text)[0] if gsm else text.encode("utf-16-be")
        if len(texts) == 1:
            parts.append(Part(text, coding, 0x00, octets))
        else:
            udh = bytes([0x05, 0x00, 0x03, ref & 0xFF, len(texts), seq])
            parts.append(Part(text, coding, ESM_CLASS_UDHI, udh + octets))
    return parts


_RETRY_429 = {SmppCommandStatus.ESME_RTHROTTLED.value, SmppCommandStatus.ESME_RMSGQFUL.value}
_RETRY_503 = {SmppCommandStatus.ESME_RSYSERR.value, 0x45}  # 0x45: ESME_RSUBMITFAIL


def status_name(command_status: int) -> str:
    try:
        return SmppCommandStatus(command_status).name
    except ValueError:
        return f"0x{command_status:08X}"


def submit_error(command_status: int, *, part: int = 1) -> ProviderError:
    """The `ProviderError` for a submit_sm_resp (or generic_nack) status other than ESME_ROK."""
    code = 429 if command_status in _RETRY_429 else 503 if command_status in _RETRY_503 else 400
    name = status_name(command_status)
    return ProviderError(
        f"the SMSC refused submit_sm: {name}", status_code=code,
        details={"command_status": command_status, "status_name": name, "part": part},
    )


# stat of a receipt -> Receipt.status (final states; ENROUTE/ACCEPTD are "sent")
RECEIPT_STATES = {
    "DELIVRD": "delivered",
    "UNDELIV": "undelivered",
    "EXPIRED": "undelivered",
    "REJECTD": "failed",
    "DELETED": "failed",
    "UNKNOWN": "failed",
    "ACCEPTD": "sent",
    "ENROUTE": "sent",
}


def parse_receipt(text: str) -> dict[str, str]:
    """The fields of a receipt text: `id`, `sub`, `dlvrd`, `submit date`, `done date`, `stat`, `err`,
    `text` (keys lower case; `text` is the rest of the line). Unknown shapes give what was found."""
    fields: dict[str, str] = {}
    rest = text
    while ":" in rest:
        key, _, rest = rest.partition(":")
        key = key.strip().lower()
        if key == "text":
            fields[key] = rest
            break
        value, _, rest = rest.partition(" ")
        fields[key] = value
    return fields


def address(number: str) -> PhoneNumber:
    """An SMPP address: "+E.164" -> international/ISDN without the plus, digits -> unknown,
    anything else -> alphanumeric."""
    if number.startswith("+") and number[1:].isdigit():
        return PhoneNumber(number[1:], TON.INTERNATIONAL, NPI.ISDN)
    if number.isdigit():
        return PhoneNumber(number, TON.UNKNOWN, NPI.ISDN)
    return PhoneNumber(number, TON.ALPHANUMERIC, NPI.UNKNOWN)


def e164(number: str, ton: int) -> str:
    return f"+{number}" if ton == TON.INTERNATIONAL and not number.startswith("+") else number


@dataclass(slots=True)
class _Tracked:
    """One (multi-part) message waiting for receipts: `total` parts, the SMSC ids of those accepted
    so far (`parts`, in order) and of those not yet delivered (`pending`). Forgotten when its outcome
    is reported, or `part_ttl_s` after it was sent (a receipt that never comes)."""

    message_id: str
    total: int
    created: float
    parts: list[str] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)

    def outcome(self, part_id: str, status: str) -> str:
        """The message's status once this part's receipt is counted: the first part not delivered
        decides; `delivered` when every part is; else `sent` (no news for the message yet)."""
        if status == "sent":
            return "sent"
        if status != "delivered":
            return status
        self.pending.discard(part_id)
        return "delivered" if len(self.parts) == self.total and not self.pending else "sent"


MAX_TRACKED = 100_000  # messages waiting for receipts; the oldest are forgotten beyond this


# --- aiosmpplib plumbing -----------------------------------------------------------------------


class _Broker(AbstractBroker):
    """A bounded queue of submit_sm; parts whose `send()` has given up are dropped, not sent late."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[tuple[SmppMessage, asyncio.Future[Any] | None]] = asyncio.Queue(maxsize)
        self.futures: dict[str, asyncio.Future[Any]] = {}

    async def enqueue(self, message: SmppMessage) -> None:
        log_id = getattr(message, "log_id", "")
        self._queue.put_nowait((message, self.futures.get(log_id)))

    async def dequeue(self) -> SmppMessage:
        while True:
            message, future = await self._queue.get()
            if future is None or not future.done():
                return message


class _Esme(ESME):
    """aiosmpplib's ESME, except that a deliver_sm is answered once what it carried is stored:
    its deliver_sm_resp waits for the storing task (`storing`, by sequence number), sent by a task
    of its own, so the receive loop reads the next deliver_sm meanwhile and the SMSC's window of
    outstanding deliver_sm is stored in batches. Not stored: ESME_RTHROTTLED (the SMSC keeps it
    and delivers it again) instead of ESME_ROK."""

    storing: dict[int, asyncio.Task[None]]
    answering: set[asyncio.Task[None]]

    async def _send_data(self, smpp_message: SmppMessage) -> None:
        task = self.storing.pop(smpp_message.sequence_num, None) if isinstance(smpp_message, DeliverSmResp) else None
        if task is None:
            await super()._send_data(smpp_message)
            return
        answer = asyncio.get_running_loop().create_task(self._answer(smpp_message, task), name="smpp-answer")
        self.answering.add(answer)
        answer.add_done_callback(self.answering.discard)

    async def _answer(self, response: SmppMessage, stored: asyncio.Task[None]) -> None:
        try:
            await stored
        except Exception as exc:  # noqa: BLE001 - not taken: the SMSC must deliver it again
            log.warning("smpp.deliver-sm-refused", extra={"error": repr(exc)})
            response.command_status = SmppCommandStatus.ESME_RTHROTTLED
        try:
            await super()._send_data(response)
        except Exception as exc:  # noqa: BLE001 - the session is gone: the SMSC redelivers
            log.warning("smpp.deliver-sm-resp-lost", extra={"error": repr(exc)})


class _Hook(AbstractHook):
    def __init__(self, provider: SmppProvider) -> None:
        self.provider = provider

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        return None

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if smpp_message is None and len(pdu) >= 16 and pdu[4:8] == BIND_TRANSCEIVER_RESP:
            # an error bind_transceiver_resp without a body (allowed by SMPP 3.4) does not parse
            # in aiosmpplib: keep its command_status from the header
            self.provider._bind_status = int.from_bytes(pdu[8:12], "big")
        await self.provider._received(smpp_message)

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        self.provider._resolve(getattr(smpp_message, "log_id", ""), error)


# --- the provider ------------------------------------------------------------------------------


class SmppProvider:
    """The `sms.provider.Provider` for an SMSC reached over SMPP 3.4 (bind_transceiver)."""

    name = "smpp"
    can_list = False

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        *,
        system_type: str = "",
        source_addr: str = "",
        enquire_link_s: float = 30.0,
        reconnect_s: float = 1.0,
        response_timeout_s: float = 10.0,
        queue_size: int = 100,
        part_ttl_s: float = 86_400.0,
    ) -> None:
        if reconnect_s <= 0 or enquire_link_s <= 0 or response_timeout_s <= 0:
            raise ValueError("enquire_link_s, reconnect_s and response_timeout_s must be positive")
        self.host, self.port = host, port
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.source_addr = source_addr
        self.enquire_link_s = float(enquire_link_s)
        self.reconnect_s = float(reconnect_s)
        self.response_timeout_s = float(response_timeout_s)
        self.queue_size = queue_size
        self.part_ttl_s = float(part_ttl_s)
        self._esme: _Esme | None = None
        self._broker: _Broker | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_receipt: OnReceipt | None = None
        self._on_inbound: OnInbound | None = None
        self._refs = itertools.cycle(range(256))
        self._log_ids = itertools.count(1)
        self._tracked: dict[str, _Tracked] = {}  # our message_id -> its parts (insertion = age)
        self._parts: dict[str, _Tracked] = {}  # SMSC message_id of a part -> its message
        self._bind_status: int | None = None

    # lifecycle

    @property
    def bound(self) -> bool:
        return self._esme is not None and self._esme.session_state == SmppSessionState.BOUND_TRX

    async def start(self, on_receipt: OnReceipt, on_inbound: OnInbound) -> None:
        """Bind once (a refused bind raises a permanent `ProviderError`: wrong credentials), then keep
        the session up in the background. An SMSC that cannot be reached yet is retried there."""
        if self._task is not None:
            raise RuntimeError("SmppProvider already started")
        self._on_receipt, self._on_inbound = on_receipt, on_inbound
        self._broker = _Broker(self.queue_size)
        self._esme = _Esme(
            smsc_host=self.host, smsc_port=self.port, system_id=self.system_id, password=self.password,
            system_type=self.system_type, bind_mode=BindMode.TRANSCEIVER,
            enquire_link_interval=self.enquire_link_s, socket_timeout=self.response_timeout_s,
            hook=_Hook(self), broker=self._broker, correlator=Correlator(self.system_id),
            log_level=logging.WARNING,
            retry_timer=SimpleExponentialBackoff(min_delay=max(1, int(self.reconnect_s * 1000)), max_increases=5),
        )
        self._esme.storing, self._esme.answering = {}, set()
        self._bind_status = None
        try:
            await self._esme.connect()
        except (SmppError, ValueError) as e:
            status = int(e.command_status) if isinstance(e, SmppError) else self._bind_status
            if status is None:
                raise
            name = status_name(status)
            self._esme = None
            raise ProviderError(f"the SMSC refused the bind: {name}", status_code=401,
                                details={"command_status": status, "status_name": name}) from e
        except (OSError, TimeoutError) as e:
            log.warning("smpp.connect-failed", extra={"host": self.host, "port": self.port, "error": repr(e)})
        self._task = asyncio.create_task(self._esme.start(), name="smpp-esme")
        await asyncio.sleep(0)  # let the ESME take over the bound session (so stop() unbinds it)

    async def stop(self) -> None:
        """Unbind and close; pending sends fail with a retryable error."""
        esme, task, self._esme, self._task = self._esme, self._task, None, None
        if esme is None:
            return
        try:
            async with asyncio.timeout(3.0):
                await esme.stop()
        except TimeoutError:
            log.warning("smpp.stop-timeout")
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the session is over
                pass
        if self._broker is not None:
            for log_id in list(self._broker.futures):
                self._resolve(log_id, ConnectionError("provider stopped"))
        pending = [*esme.storing.values(), *esme.answering]  # unanswered: the SMSC delivers them again
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # sending

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted:
        """Submit every part; the first part's SMSC id is the message's. Receipts are matched to the
        message through the part map, filled as each submit_sm_resp arrives (before any receipt of
        that part can), so they carry our `message_id`. A timed-out part stays in the map until its
        TTL: a late submit_sm_resp and its receipt still find the message."""
        if not self.bound or self._broker is None:
            raise ProviderError("not bound to the SMSC", error="connection", maybe_sent=False,
                                details={"host": self.host, "port": self.port})
        parts = encode_parts(body, next(self._refs))
        self._forget_old(time.monotonic())
        tracked = _Tracked(message_id, len(parts), time.monotonic())
        self._tracked.pop(message_id, None)  # an earlier attempt's parts: this one counts
        self._tracked[message_id] = tracked
        ids = [await self._submit(message_id, n, part, self.source_addr or sender, to)
               for n, part in enumerate(parts, start=1)]
        return Submitted(ids[0], "sent")

    def _forget_old(self, now: float) -> None:
        """The part map stays bounded: messages older than `part_ttl_s`, or beyond MAX_TRACKED."""
        while self._tracked:
            oldest = next(iter(self._tracked.values()))
            if now - oldest.created < self.part_ttl_s and len(self._tracked) < MAX_TRACKED:
                break
            self._forget(oldest)

    def _forget(self, tracked: _Tracked) -> None:
        if self._tracked.get(tracked.message_id) is tracked:
            del self._tracked[tracked.message_id]
        for part_id in tracked.parts:
            if self._parts.get(part_id) is tracked:
                del self._parts[part_id]

    def _accepted(self, log_id: str, smsc_id: str) -> None:
        """A submit_sm_resp (ESME_ROK) for part n of a message: enter it in the part map now, in the
        receive loop, so the part's receipt (which the SMSC sends after it) finds it."""
        message_id, _, rest = log_id.partition("/")
        tracked = self._tracked.get(message_id)
        if tracked is None or not smsc_id:
            return
        tracked.parts.append(smsc_id)
        tracked.pending.add(smsc_id)
        self._parts[smsc_id] = tracked

    async def _submit(self, message_id: str, n: int, part: Part, source: str, to: str) -> str:
        assert self._broker is not None
        log_id = f"{message_id}/{n}/{next(self._log_ids)}"
        submit = SubmitSm(
            short_message=part.text or " ", source=address(source), destination=address(to),
            esm_class=part.esm_class, registered_delivery=0x01,
            encoding="ucs2" if part.data_coding == DATA_CODING_UCS2 else "gsm0338",
            log_id=log_id,
        )
        submit.set_encoded_message(part.payload)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._broker.futures[log_id] = future
        try:
            try:
                await self._broker.enqueue(submit)
            except asyncio.QueueFull as e:
                raise ProviderError("the SMPP send queue is full", status_code=429) from e
            try:
                async with asyncio.timeout(self.response_timeout_s):
                    result = await future
            except TimeoutError as e:
                raise ProviderError("no submit_sm_resp in time", error="timeout",
                                    details={"part": n}) from e
        finally:
            self._broker.futures.pop(log_id, None)
            if not future.done():
                future.cancel()  # the broker drops it if it is still queued
        if isinstance(result, BaseException):
            raise ProviderError(f"submit_sm failed: {result!r}", error=result, details={"part": n}) from result
        command_status, smsc_id = result
        if command_status != 0:
            raise submit_error(command_status, part=n)
        return str(smsc_id)

    def _resolve(self, log_id: str, result: Any) -> None:
        future = self._broker.futures.get(log_id) if self._broker is not None else None
        if future is not None and not future.done():
            future.set_result(result)

    # receiving

    async def _received(self, message: SmppMessage | None) -> None:
        if isinstance(message, (SubmitSmResp, GenericNack)):
            status = int(message.command_status)
            if isinstance(message, GenericNack) and status == 0:
                status = int(SmppCommandStatus.ESME_RSYSERR)
            smsc_id = str(getattr(message, "message_id", "") or "")
            if status == 0 and isinstance(message, SubmitSmResp):
                self._accepted(message.log_id, smsc_id)
            self._resolve(message.log_id, (status, smsc_id))
        elif isinstance(message, DeliverSm):
            # What it carries is read here, in order (the part map); it is stored by a task, and
            # its deliver_sm_resp (ESME_ROK only once stored) waits for that task (`_Esme`).
            item = self._receipt(message) if message.is_receipt() else self._inbound(message)
            callback = self._on_receipt if message.is_receipt() else self._on_inbound
            if self._esme is not None:
                self._esme.storing[message.sequence_num] = asyncio.get_running_loop().create_task(
                    deliver(callback, item), name="smpp-deliver")

    def _receipt(self, message: DeliverSm) -> Receipt:
        """The receipt of one part, as the message's news: `sent` until every part is delivered
        (or one is not). A part this process did not send is reported under its own id."""
        fields = parse_receipt(message.short_message)
        part_id, stat = fields.get("id", ""), fields.get("stat", "").upper()
        status = RECEIPT_STATES.get(stat, "failed" if stat else "sent")
        err = fields.get("err")
        error_code = None if status in ("delivered", "sent") or not err else err
        to = e164(message.source.number, message.source.ton) if message.source else None
        if to and to.isdigit():  # TON unknown: the number a message went to is E.164
            to = "+" + to
        tracked = self._parts.get(part_id)
        if tracked is None:
            return Receipt(part_id, status, error_code, to=to)
        outcome = tracked.outcome(part_id, status)
        if outcome != "sent":
            self._forget(tracked)
        return Receipt(part_id, outcome, error_code if outcome != "delivered" else None,
                       message_id=tracked.message_id, to=to)

    def _inbound(self, message: DeliverSm) -> Inbound:
        sender = e164(message.source.number, message.source.ton)
        to = e164(message.destination.number, message.destination.ton)
        body = message.short_message
        # An SMSC delivers an unacknowledged deliver_sm again with a new sequence number and no
        # id of its own: what it carries is the key that finds the first delivery.
        key = hashlib.sha256("\x00".join((sender, to, body)).encode("utf-8", "surrogatepass")).hexdigest()
        return Inbound(provider_id=f"smpp-mo-{uuid.uuid4().hex}", sender=sender, to=to, body=body,
                       dedup_key=key)

    # the rest of the contract

    async def find_sent(self, to: str, since_iso: str) -> list[Remote]:
        """SMPP cannot list what was sent: always []; reconciliation falls back to receipts."""
        return []

    def webhook_routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return []
