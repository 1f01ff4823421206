"""SMPP 3.4 provider through our own ESME (sms/smpp_session.py, sms/smpp_pdu.py): bind_transceiver,
submit_sm, receipts, MO.

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

The I/O half, `SmppProvider`, runs an `Esme`: `send()` writes one submit_sm per part and waits for
each submit_sm_resp. The ESME reconnects by itself with exponential backoff (starting at
`reconnect_s`) and sends enquire_link every `enquire_link_s`. While it is not bound, `send()`
raises a retryable `ProviderError` at once; `queue_size` submit_sm waiting for their response at
once is the window (beyond it: 429 at once); a part that got no answer within `response_timeout_s`
raises a retryable timeout.

A multi-part message is known by the message_id of its first part; receipts of every part map
back to it: the first failed part decides at once, `delivered` is reported when all parts are.
A deliver_sm is read in the session's read (in order: the part map) and handed to a storing task;
its deliver_sm_resp is written once that task is done: ESME_ROK when stored, ESME_RTHROTTLED when
not (the SMSC delivers it again), none when the provider stops first (the same). The parts of a
concatenated inbound message are answered as they come and reassembled (`sms.smpp_text`).

SMPP has no way to list sent messages: `find_sent()` returns [] and reconciliation after a crash
or a timed-out attempt falls back to delivery receipts.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from sms.provider import Inbound, OnInbound, OnReceipt, ProviderError, Receipt, Remote, Submitted, deliver
from sms.segments import BODIES_KEPT, encode_info, split
from sms.smpp_pdu import (
    ESME_RINVCMDLEN,
    ESME_RMSGQFUL,
    ESME_RSUBMITFAIL,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    GENERIC_NACK,
    NPI_ISDN,
    NPI_UNKNOWN,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    TLV_RECEIPTED_MESSAGE_ID,
    TON_ALPHANUMERIC,
    TON_INTERNATIONAL,
    TON_UNKNOWN,
    Pdu,
    PduError,
    ShortMessage,
    decode_id,
    decode_sm,
    encode_address,
    sm_body,
    status_name,
)
from sms.smpp_session import BindRefused, Esme, SmppSession
from sms.smpp_text import (
    DATA_CODING_GSM7,
    DATA_CODING_UCS2,
    ESM_CLASS_UDHI,
    Reassembly,
    decode_text,
    gsm7_encode,
    split_udh,
)

log = structlog.get_logger(__name__)

__all__ = ["DATA_CODING_GSM7", "DATA_CODING_UCS2", "SmppProvider", "encode_parts", "parse_receipt",
           "status_name", "submit_error"]

# --- sans-I/O ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    text: str  # this part's characters
    data_coding: int
    esm_class: int
    payload: bytes  # the short_message octets: [UDH] + encoded text


def encode_parts(body: str, ref: int) -> list[Part]:
    """The submit_sm parts of `body`; `ref` (0..255) is the concatenation reference."""
    coding, encoded = _encoded(body)
    if len(encoded) == 1:
        return [Part(encoded[0][0], coding, 0x00, encoded[0][1])]
    return [Part(text, coding, ESM_CLASS_UDHI, bytes([0x05, 0x00, 0x03, ref & 0xFF, len(encoded), seq]) + octets)
            for seq, (text, octets) in enumerate(encoded, start=1)]


@functools.lru_cache(maxsize=BODIES_KEPT)
def _encoded(body: str) -> tuple[int, tuple[tuple[str, bytes], ...]]:
    """data_coding and each part's text and octets, once per distinct body (an alert's thousands
    of messages share one)."""
    gsm = encode_info(body).encoding == "GSM-7"
    return (DATA_CODING_GSM7 if gsm else DATA_CODING_UCS2,
            tuple((text, gsm7_encode(text) if gsm else text.encode("utf-16-be")) for text in split(body)))


_RETRY_429 = {ESME_RTHROTTLED, ESME_RMSGQFUL}
_RETRY_503 = {ESME_RSYSERR, ESME_RSUBMITFAIL}


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


def address(number: str) -> bytes:
    """An SMPP address field (TON, NPI, digits): "+E.164" -> international/ISDN without the plus,
    digits -> unknown/ISDN, anything else -> alphanumeric."""
    if number.startswith("+") and number[1:].isdigit():
        return encode_address(number[1:], TON_INTERNATIONAL, NPI_ISDN)
    if number.isdigit():
        return encode_address(number, TON_UNKNOWN, NPI_ISDN)
    return encode_address(number, TON_ALPHANUMERIC, NPI_UNKNOWN)


sender_address = functools.lru_cache(maxsize=64)(address)  # a few senders, every message


def e164(number: str, ton: int) -> str:
    return f"+{number}" if ton == TON_INTERNATIONAL and not number.startswith("+") else number


def is_receipt(esm_class: int) -> bool:
    """A delivery receipt or an intermediate notification (esm_class message type, 5.2.12)."""
    return (esm_class & 0x3C) in (0x04, 0x20)


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
        self._esme: Esme | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_receipt: OnReceipt | None = None
        self._on_inbound: OnInbound | None = None
        self._refs = itertools.cycle(range(256))
        self._tracked: dict[str, _Tracked] = {}  # our message_id -> its parts (insertion = age)
        self._parts: dict[str, _Tracked] = {}  # SMSC message_id of a part -> its message
        self._storing: set[asyncio.Task[None]] = set()  # deliver_sm being stored, unanswered
        self._reassembly = Reassembly()

    # lifecycle

    @property
    def bound(self) -> bool:
        session = self._esme.session if self._esme is not None else None
        return session is not None and session.bound

    async def start(self, on_receipt: OnReceipt, on_inbound: OnInbound) -> None:
        """Bind once (a refused bind raises a permanent `ProviderError`: wrong credentials), then keep
        the session up in the background. An SMSC that cannot be reached yet is retried there."""
        if self._task is not None:
            raise RuntimeError("SmppProvider already started")
        self._on_receipt, self._on_inbound = on_receipt, on_inbound
        esme = Esme(self.host, self.port, self.system_id, self.password, self.system_type,
                    on_deliver=self._deliver_sm, enquire_link_s=self.enquire_link_s,
                    reconnect_s=self.reconnect_s, response_timeout_s=self.response_timeout_s)
        try:
            await esme.connect()
        except BindRefused as e:
            name = status_name(e.command_status)
            raise ProviderError(f"the SMSC refused the bind: {name}", status_code=401,
                                details={"command_status": e.command_status, "status_name": name}) from e
        except (OSError, TimeoutError) as e:
            log.warning("smpp.connect-failed", host=self.host, port=self.port, error=repr(e))
        self._esme = esme
        self._task = asyncio.create_task(esme.run(), name="smpp-esme")

    async def stop(self) -> None:
        """Unbind and close; pending sends fail with a retryable error; a deliver_sm still being
        stored is left unanswered (the SMSC delivers it again)."""
        esme, task, self._esme, self._task = self._esme, self._task, None, None
        if esme is None:
            return
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            async with asyncio.timeout(3.0):
                await esme.stop(timeout=2.0)
        except TimeoutError:
            log.warning("smpp.stop-timeout")
        pending = list(self._storing)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # sending

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted:
        """Submit every part; the first part's SMSC id is the message's. Receipts are matched to the
        message through the part map, filled as each submit_sm_resp is read (before any receipt of
        that part can be), so they carry our `message_id`. A timed-out part stays in the map until
        its TTL: a late submit_sm_resp and its receipt still find the message."""
        if not self.bound:
            raise ProviderError("not bound to the SMSC", error="connection", maybe_sent=False,
                                details={"host": self.host, "port": self.port})
        parts = encode_parts(body, next(self._refs))
        now = time.monotonic()
        self._forget_old(now)
        tracked = _Tracked(message_id, len(parts), now)
        self._tracked.pop(message_id, None)  # an earlier attempt's parts: this one counts
        self._tracked[message_id] = tracked
        source, destination = sender_address(self.source_addr or sender), address(to)
        ids = [await self._submit(tracked, n, part, source, destination) for n, part in enumerate(parts, start=1)]
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

    def _accepted(self, tracked: _Tracked, resp: Pdu) -> None:
        """A submit_sm_resp for one part, in the session's read: an accepted part enters the part
        map now, so the part's receipt (which the SMSC sends after it) finds it."""
        if resp.command_id != SUBMIT_SM_RESP or resp.command_status != 0:
            return
        smsc_id = decode_id(resp.body)
        if smsc_id and self._tracked.get(tracked.message_id) is tracked:
            tracked.parts.append(smsc_id)
            tracked.pending.add(smsc_id)
            self._parts[smsc_id] = tracked

    async def _submit(self, tracked: _Tracked, n: int, part: Part, source: bytes, destination: bytes) -> str:
        session = self._esme.session if self._esme is not None else None
        if session is None or not session.bound:
            raise ProviderError("not bound to the SMSC", error="connection", maybe_sent=False,
                                details={"host": self.host, "port": self.port, "part": n})
        if len(session.pending) >= self.queue_size:
            raise ProviderError("the SMPP send queue is full", status_code=429)
        body = sm_body(source, destination, part.payload, esm_class=part.esm_class, registered_delivery=0x01,
                       data_coding=part.data_coding)
        try:
            resp = await session.request(SUBMIT_SM, body, functools.partial(self._accepted, tracked))
        except TimeoutError as e:
            raise ProviderError("no submit_sm_resp in time", error="timeout", details={"part": n}) from e
        except ConnectionError as e:
            raise ProviderError(f"submit_sm failed: {e!r}", error=e, details={"part": n}) from e
        status = resp.command_status
        if resp.command_id == GENERIC_NACK and status == 0:
            status = ESME_RSYSERR
        if status != 0:
            raise submit_error(status, part=n)
        return decode_id(resp.body)

    # receiving

    def _deliver_sm(self, session: SmppSession, pdu: Pdu) -> None:
        """A deliver_sm, in the session's read: read now (in order: the part map), stored by a task,
        answered once that task is done (`_answer`)."""
        try:
            sm = decode_sm(pdu.body)
        except PduError as e:
            log.warning("smpp.bad-deliver-sm", error=str(e), sequence=pdu.sequence)
            session.answer(pdu.sequence, ESME_RINVCMDLEN)
            return
        if is_receipt(sm.esm_class):
            item: Receipt | Inbound = self._receipt(sm)
            callback = self._on_receipt
        else:
            inbound = self._inbound(sm)
            if inbound is None:  # a part of a concatenated message: taken, the rest to come
                session.answer(pdu.sequence, 0)
                return
            item, callback = inbound, self._on_inbound
        task = asyncio.get_running_loop().create_task(deliver(callback, item), name="smpp-deliver")
        self._storing.add(task)
        task.add_done_callback(functools.partial(self._answer, session, pdu.sequence))

    def _answer(self, session: SmppSession, sequence: int, task: asyncio.Task[None]) -> None:
        self._storing.discard(task)
        if task.cancelled():
            return  # stopped before it was stored: unanswered, the SMSC delivers it again
        error = task.exception()
        if error is not None:  # not taken: the SMSC must deliver it again
            log.warning("smpp.deliver-sm-refused", error=repr(error))
        session.answer(sequence, 0 if error is None else ESME_RTHROTTLED)

    def _receipt(self, sm: ShortMessage) -> Receipt:
        """The receipt of one part, as the message's news: `sent` until every part is delivered
        (or one is not). A part this process did not send is reported under its own id."""
        fields = parse_receipt(decode_text(sm.text_octets, sm.data_coding))
        part_id = fields.get("id") or decode_id(sm.tlvs.get(TLV_RECEIPTED_MESSAGE_ID, b""))
        stat = fields.get("stat", "").upper()
        status = RECEIPT_STATES.get(stat, "failed" if stat else "sent")
        err = fields.get("err")
        error_code = None if status in ("delivered", "sent") or not err else err
        to = e164(sm.source_addr, sm.source_ton) if sm.source_addr else None
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

    def _inbound(self, sm: ShortMessage) -> Inbound | None:
        """An MO message; None for a part of a concatenated one until its last part."""
        sender = e164(sm.source_addr, sm.source_ton)
        to = e164(sm.destination_addr, sm.destination_ton)
        octets, concat = sm.text_octets, None
        if sm.esm_class & ESM_CLASS_UDHI:
            concat, octets = split_udh(octets)
        body: str | None = decode_text(octets, sm.data_coding)
        if concat is not None:
            body = self._reassembly.add(sender, to, concat, body)
            if body is None:
                return None
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
