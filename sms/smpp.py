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
import itertools
import logging
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

from sms.provider import Inbound, ProviderError, Receipt, Remote, Submitted
from sms.segments import is_gsm7, split

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
    gsm = is_gsm7(body)
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
    """One (multi-part) message waiting for receipts: part ids not yet delivered. `complete`
    once every part was accepted, so an early receipt for part 1 cannot report the whole."""

    provider_id: str
    pending: set[str] = field(default_factory=set)
    complete: bool = False
    reported: bool = False


EARLY_RECEIPT_S = 2.0  # a receipt may overtake its submit_sm_resp: held this long for its part


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
        self.provider._received(smpp_message)

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        self.provider._resolve(getattr(smpp_message, "log_id", ""), error)


# --- the provider ------------------------------------------------------------------------------


class SmppProvider:
    """The `sms.provider.Provider` for an SMSC reached over SMPP 3.4 (bind_transceiver)."""

    name = "smpp"

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
        self._esme: ESME | None = None
        self._broker: _Broker | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_receipt: Callable[[Receipt], None] = lambda r: None
        self._on_inbound: Callable[[Inbound], None] = lambda m: None
        self._refs = itertools.cycle(range(256))
        self._log_ids = itertools.count(1)
        self._parts: dict[str, _Tracked] = {}  # SMSC message_id of a part -> its message
        self._early: dict[str, tuple[asyncio.TimerHandle, str, str | None]] = {}  # receipts ahead
        self._bind_status: int | None = None

    # lifecycle

    @property
    def bound(self) -> bool:
        return self._esme is not None and self._esme.session_state == SmppSessionState.BOUND_TRX

    async def start(self, on_receipt: Callable[[Receipt], None], on_inbound: Callable[[Inbound], None]) -> None:
        """Bind once (a refused bind raises a permanent `ProviderError`: wrong credentials), then keep
        the session up in the background. An SMSC that cannot be reached yet is retried there."""
        if self._task is not None:
            raise RuntimeError("SmppProvider already started")
        self._on_receipt, self._on_inbound = on_receipt, on_inbound
        self._broker = _Broker(self.queue_size)
        self._esme = ESME(
            smsc_host=self.host, smsc_port=self.port, system_id=self.system_id, password=self.password,
            system_type=self.system_type, bind_mode=BindMode.TRANSCEIVER,
            enquire_link_interval=self.enquire_link_s, socket_timeout=self.response_timeout_s,
            hook=_Hook(self), broker=self._broker, log_level=logging.WARNING,
            retry_timer=SimpleExponentialBackoff(min_delay=max(1, int(self.reconnect_s * 1000)), max_increases=5),
        )
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

    # sending

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted:
        if not self.bound or self._broker is None:
            raise ProviderError("not bound to the SMSC", error="connection",
                                details={"host": self.host, "port": self.port})
        parts = encode_parts(body, next(self._refs))
        tracked = _Tracked("")
        for n, part in enumerate(parts, start=1):
            part_id = await self._submit(message_id, n, part, self.source_addr or sender, to)
            tracked.provider_id = tracked.provider_id or part_id
            tracked.pending.add(part_id)
            self._parts[part_id] = tracked
            early = self._early.pop(part_id, None)
            if early is not None:
                early[0].cancel()
                self._apply_receipt(tracked, part_id, early[1], early[2])
        tracked.complete = True
        self._apply_receipt(tracked, None, "delivered", None)  # all parts already delivered?
        return Submitted(tracked.provider_id, "sent")

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

    def _received(self, message: SmppMessage | None) -> None:
        if isinstance(message, (SubmitSmResp, GenericNack)):
            status = int(message.command_status)
            if isinstance(message, GenericNack) and status == 0:
                status = int(SmppCommandStatus.ESME_RSYSERR)
            self._resolve(message.log_id, (status, getattr(message, "message_id", "")))
        elif isinstance(message, DeliverSm):
            try:
                if message.is_receipt():
                    self._receipt(message)
                else:
                    self._inbound(message)
            except Exception:  # noqa: BLE001 - a callback's bug must not drop the SMPP session
                log.exception("smpp.deliver-sm-failed")

    def _receipt(self, message: DeliverSm) -> None:
        fields = parse_receipt(message.short_message)
        part_id, stat = fields.get("id", ""), fields.get("stat", "").upper()
        status = RECEIPT_STATES.get(stat, "failed" if stat else "sent")
        err = fields.get("err")
        error_code = None if status in ("delivered", "sent") or not err else err
        tracked = self._parts.get(part_id)
        if tracked is None:
            # Either its submit_sm_resp is still on the way (hold it briefly), or the part was
            # sent by an earlier process (then it is reported under the part's own id).
            if len(self._early) >= 10_000:
                self._early.pop(next(iter(self._early)))[0].cancel()
            handle = asyncio.get_running_loop().call_later(
                EARLY_RECEIPT_S, self._early_expired, part_id)
            self._early[part_id] = (handle, status, error_code)
            return
        self._apply_receipt(tracked, part_id, status, error_code)

    def _early_expired(self, part_id: str) -> None:
        held = self._early.pop(part_id, None)
        if held is not None:
            self._on_receipt(Receipt(part_id, held[1], held[2]))

    def _apply_receipt(self, tracked: _Tracked, part_id: str | None, status: str,
                       error_code: str | None) -> None:
        if status == "sent" or tracked.reported:
            return
        if status == "delivered":
            if part_id is not None:
                tracked.pending.discard(part_id)
            if tracked.pending or not tracked.complete:
                return
        elif part_id is None:
            return
        tracked.reported = True
        for pid in [p for p, t in self._parts.items() if t is tracked]:
            del self._parts[pid]
        self._on_receipt(Receipt(tracked.provider_id, status, error_code))

    def _inbound(self, message: DeliverSm) -> None:
        self._on_inbound(Inbound(
            provider_id=f"smpp-mo-{uuid.uuid4().hex}",
            sender=e164(message.source.number, message.source.ton),
            to=e164(message.destination.number, message.destination.ton),
            body=message.short_message,
        ))

    # the rest of the contract

    async def find_sent(self, to: str, since_iso: str) -> list[Remote]:
        """SMPP cannot list what was sent: always []; reconciliation falls back to receipts."""
        return []

    def webhook_routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return []
