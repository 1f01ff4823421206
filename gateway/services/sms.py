"""SMS dispatch: a durable outbox in front of one provider (Twilio or SMPP).

Every message is written to the store (state `queued`) before any provider sees it. One owned
task sends what is due, holding each sender to `sms.rate_per_s`; a message is marked `sending`
(durably) before the provider is called, so after a crash the ones caught in `sending` are
reconciled with the provider (`find_sent`) before anything is sent again. Receipts and inbound
messages arrive from the provider (webhooks or SMPP) and become `sms.status` / `sms.inbound`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
import uuid
from typing import Any

import structlog

from gateway.directory import Directory
from gateway.errors import InvalidParams, NotFound, Unavailable
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.store import Store
from gateway.timeutil import iso_to_epoch, now_iso
from sms import numbers, segments, templates
from sms.config import SmsConfig
from sms.errors import SmsError
from sms.outbox import (
    MESSAGE_MACHINE,
    MessageInput,
    MessageState,
    RetryPolicy,
    SenderRates,
    classify,
)
from sms.provider import Inbound, Provider, ProviderError, Receipt, Remote

log = structlog.get_logger(__name__)

FINAL = frozenset({"delivered", "undelivered", "failed"})
_RECEIPT_INPUT = {"delivered": MessageInput.DELIVERED, "undelivered": MessageInput.UNDELIVERED,
                  "failed": MessageInput.FAILED}
_UNSURE = ("timeout", "connection", "TimeoutError", "ConnectionError", "OSError")  # maybe sent
EVENT_QUEUE = 10_000


def _bad(err: SmsError) -> InvalidParams:
    return InvalidParams(err.message, reason=err.reason, details=err.details)


class SmsService:
    def __init__(self, store: Store, bus: EventBus, sessions: SessionService, directory: Directory,
                 config: SmsConfig, provider: Provider | None) -> None:
        self._store, self._bus, self._sessions, self._directory = store, bus, sessions, directory
        self.config = config
        self.provider = provider
        self._policy = RetryPolicy(config.max_attempts, config.base_delay_s, config.max_delay_s)
        self._rates = SenderRates(config.rate_per_s, config.burst)
        self._rng = random.Random()
        self._due: list[tuple[float, str, str]] = []  # (next_attempt_at, message_id, sender)
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(config.in_flight)
        self._inbox: asyncio.Queue[Receipt | Inbound] = asyncio.Queue(EVENT_QUEUE)
        self._tasks: set[asyncio.Task[Any]] = set()
        # Receipts that overtook their submit reply (provider id not stored yet), held until it is.
        self._early: dict[str, Receipt] = {}
        self._ids_lock = asyncio.Lock()  # "store a provider id" and "match a receipt" never interleave
        self.sent_count = 0

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self.provider is None:
            return
        await self.provider.start(self._on_provider_event, self._on_provider_event)
        await self._recover()
        self._own(self._dispatch(), "sms.dispatch")
        self._own(self._consume(), "sms.receipts")
        self._own(self._reconcile_stale(), "sms.reconcile")

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.provider is not None:
            await self.provider.stop()

    def _own(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # sms.send / sms.get --------------------------------------------------------------------
    async def send(self, *, principal: str, to: list[str], body: str | None, template: str | None,
                   variables: dict[str, Any] | None, session_id: str | None,
                   sender: str | None) -> dict:
        if self.provider is None:
            raise Unavailable("no SMS provider is configured (sms.provider)", reason="sms-unavailable")
        text = self._text(body, template, variables or {})
        try:
            info = segments.check_max(text, self.config.max_segments)
            sender = numbers.normalize(sender) if sender else self.config.sender
        except SmsError as err:
            raise _bad(err) from None
        recipients = self._recipients(to)
        if session_id:
            await self._sessions.require_open(session_id)
        else:
            session_id = (await self._sessions.create(title="SMS", created_by=principal,
                                                      origin="sms"))["session_id"]
        send_id, now, created = uuid.uuid4().hex, time.time(), now_iso()
        rows = [{
            "message_id": uuid.uuid4().hex, "send_id": send_id, "session_id": session_id,
            "sender": sender, "recipient": r, "body": text, "encoding": info.encoding,
            "segments": info.segments, "state": MessageState.QUEUED.value, "attempts": 0,
            "next_attempt_at": now, "provider": self.provider.name, "created_at": created,
            "updated_at": created, "extra": {"sent_by": principal},
        } for r in recipients]
        # One owned step from "stored" to "scheduled": the caller going away (a lost console)
        # cancels its wait, never leaves messages stored but not due.
        await asyncio.shield(self._own(self._enqueue(rows), "sms.enqueue"))
        log.info("sms.queued", send_id=send_id, recipients=len(rows), encoding=info.encoding,
                 segments=info.segments, session_id=session_id)
        return {"send_id": send_id, "session_id": session_id, "recipients": len(rows),
                "encoding": info.encoding, "segments": info.segments,
                "message_ids": [r["message_id"] for r in rows][:1000]}

    async def _enqueue(self, rows: list[dict[str, Any]]) -> None:
        await self._store.insert_sms(rows)  # durable before any provider sees them
        # Their `queued` events in one go (in order: each append is queued before the next),
        # then every message is due at once, before the dispatcher runs again.
        await asyncio.gather(*(self._status(r, MessageState.QUEUED.value) for r in rows))
        for r in rows:
            heapq.heappush(self._due, (r["next_attempt_at"], r["message_id"], r["sender"]))
        self._wake.set()

    async def get(self, *, message_id: str | None, send_id: str | None) -> dict:
        if message_id:
            row = await self._store.get_sms(message_id)
            if row is None:
                raise NotFound("no such message", reason="no-such-message", details={"message_id": message_id})
            return _public(row)
        rows = await self._store.find_sms(send_id=send_id, limit=10_000)
        if not rows:
            raise NotFound("no such send", reason="no-such-message", details={"send_id": send_id})
        limit = 1000  # a reply must fit a control-channel frame; counts cover them all
        return {"send_id": send_id, "counts": await self._store.sms_counts(send_id),
                "messages": [_public(r) for r in rows[:limit]], "truncated": len(rows) > limit}

    def preview(self, body: str | None, template: str | None, variables: dict[str, Any] | None) -> dict:
        """Encoding and segments of a text, shown before sending."""
        text = self._text(body, template, variables or {})
        info = segments.encode_info(text)
        return {"encoding": info.encoding, "segments": info.segments, "units": info.units,
                "per_segment": info.per_segment, "max_segments": self.config.max_segments,
                "allowed": info.segments <= self.config.max_segments}

    def _text(self, body: str | None, template: str | None, variables: dict[str, Any]) -> str:
        if (body is None) == (template is None):
            raise InvalidParams("give a body or a template", reason="invalid-params")
        if template is not None:
            if template not in self.config.templates:
                raise InvalidParams(f"no template {template!r}", reason="unknown-template",
                                    details={"template": template, "known": sorted(self.config.templates)})
            try:
                body = templates.render(self.config.templates[template], variables)
            except SmsError as err:
                raise _bad(err) from None
        assert body is not None
        if not body.strip():
            raise InvalidParams("the message is empty", reason="empty-body")
        return body

    def _recipients(self, to: list[str]) -> list[str]:
        out: dict[str, None] = {}
        for item in to:
            if item.startswith("+") or item[:1].isdigit() or item[:1] in "(＋":
                candidates = [item]
            else:  # a directory name or group: its tel: URIs / E.164 user parts
                candidates = [_number_of(ep.uri) for ep in self._directory.resolve(item)]
            for c in candidates:
                try:
                    out[numbers.normalize(c)] = None
                except SmsError as err:
                    raise _bad(err) from None
        if not out:
            raise InvalidParams("no recipients", reason="no-recipients")
        return list(out)

    # sending ---------------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            at, message_id, sender = self._due[0]
            now = time.time()
            ready = max(at, now + max(0.0, self._rates.next_send_at(sender, time.monotonic())
                                      - time.monotonic()))
            if ready > now:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ready - now):
                        await self._wake.wait()
                continue
            if not self._rates.try_take(sender, time.monotonic()):
                continue
            heapq.heappop(self._due)
            await self._slots.acquire()
            self._own(self._send_one(message_id), "sms.send")

    async def _send_one(self, message_id: str) -> None:
        try:
            row = await self._store.get_sms(message_id)
            if row is None or row["state"] != MessageState.QUEUED.value:
                return
            if row["attempts"] and row.get("error") in _UNSURE:
                # The last attempt timed out: the provider may have taken it. Look before resending.
                remote = await self._find_at_provider(row)
                if remote is not None:
                    await self._adopt(row, remote)
                    return
            attempts = row["attempts"] + 1
            await self._store.update_sms(message_id, state="sending", attempts=attempts)
            row.update(state="sending", attempts=attempts)
            await self._status(row, "sending")
            assert self.provider is not None
            try:
                sub = await self.provider.send(message_id, row["sender"], row["recipient"], row["body"])
            except ProviderError as err:
                why = "timeout" if err.retryable and err.status_code is None else err.reason
                await self._failed_attempt(row, err.retryable, err.status_code, why)
                return
            except (TimeoutError, OSError) as err:
                await self._failed_attempt(row, classify(error=err) == "retry", None, "timeout")
                return
            async with self._ids_lock:
                current = await self._store.get_sms(message_id)
                if current and current["state"] == "sending":
                    await self._store.update_sms(message_id, state="sent", provider_id=sub.provider_id)
                    current.update(state="sent", provider_id=sub.provider_id)
                    await self._status(current, "sent")
                elif current and not current.get("provider_id"):
                    await self._store.update_sms(message_id, provider_id=sub.provider_id)
                early = self._early.pop(sub.provider_id, None)
            if early is not None:  # its receipt came first: apply it now
                await self._receipt(early)
            self.sent_count += 1
        except Exception:
            log.exception("sms.send_failed", message_id=message_id)
        finally:
            self._slots.release()

    async def _failed_attempt(self, row: dict, retryable: bool, status_code: int | None, why: str) -> None:
        mid = row["message_id"]
        if retryable and self._policy.can_retry(row["attempts"]):
            delay = self._policy.delay(row["attempts"], self._rng)
            at = time.time() + delay
            await self._store.update_sms(mid, state="queued", next_attempt_at=at, error=why)
            row.update(state="queued", error=why)
            heapq.heappush(self._due, (at, mid, row["sender"]))
            self._wake.set()
            await self._status(row, "queued", retry_in_s=round(delay, 3), status_code=status_code)
            return
        await self._store.update_sms(mid, state="failed", error=why)
        row.update(state="failed", error=why)
        await self._status(row, "failed", status_code=status_code)

    # receipts and inbound ----------------------------------------------------------------------
    def _on_provider_event(self, item: Receipt | Inbound) -> None:
        try:
            self._inbox.put_nowait(item)
        except asyncio.QueueFull:
            log.error("sms.inbox_full", kind=type(item).__name__)

    async def _consume(self) -> None:
        while True:
            item = await self._inbox.get()
            try:
                if isinstance(item, Receipt):
                    await self._receipt(item)
                else:
                    await self._inbound(item)
            except Exception:
                log.exception("sms.provider_event_failed", kind=type(item).__name__)

    async def _receipt(self, r: Receipt) -> None:
        async with self._ids_lock:
            rows = await self._store.find_sms(provider_id=r.provider_id, limit=1)
            if not rows:  # ahead of its submit reply, or not ours: held (bounded) until matched
                log.info("sms.receipt_early", provider_id=r.provider_id, status=r.status)
                if len(self._early) >= EVENT_QUEUE:
                    self._early.pop(next(iter(self._early)))
                self._early[r.provider_id] = r
                return
        row = rows[0]
        inp = _RECEIPT_INPUT.get(r.status)
        if inp is None:  # queued/sent/accepted receipts: nothing new
            return
        state = MessageState(row["state"])
        if not MESSAGE_MACHINE.allows(state, inp):
            return  # a late or duplicate receipt changes nothing
        nxt = MESSAGE_MACHINE.next(state, inp).value
        await self._store.update_sms(row["message_id"], state=nxt, error=r.error_code)
        row.update(state=nxt, error=r.error_code)
        await self._status(row, nxt, error_code=r.error_code)

    async def _inbound(self, m: Inbound) -> None:
        sender = m.sender
        # SMSCs often give an international number as plain digits (TON unknown): try it with "+".
        for candidate in (m.sender, "+" + m.sender if m.sender.isdigit() else None):
            if candidate is None:
                continue
            try:
                sender = numbers.normalize(candidate)
                break
            except SmsError:
                continue
        last = await self._store.find_sms(recipient=sender, limit=1)
        session_id = last[0]["session_id"] if last else None
        if session_id is None or (await self._store.get_session(session_id) or {}).get("state") != "open":
            session_id = (await self._sessions.create(title=f"SMS from {sender}", created_by="sms",
                                                      origin="sms-inbound"))["session_id"]
        await self._bus.publish("sms.inbound", {"from": sender, "to": m.to, "body": m.body,
                                                "provider_id": m.provider_id,
                                                "in_reply_to": last[0]["send_id"] if last else None},
                                session_id=session_id)
        log.info("sms.inbound", session_id=session_id, provider_id=m.provider_id)

    # crash recovery ------------------------------------------------------------------------------
    async def _recover(self) -> None:
        """Queued ones are due again; ones caught in `sending` are looked up at the provider
        first, so nothing is sent twice where the provider can tell."""
        assert self.provider is not None
        pending = await self._store.find_sms(states=["queued", "sending"], limit=1_000_000)
        reconciled = resent = 0
        for row in pending:
            if row["state"] == "sending":
                remote = await self._find_at_provider(row)
                if remote is not None:
                    await self._adopt(row, remote)
                    reconciled += 1
                    continue
                await self._store.update_sms(row["message_id"], state="queued")
                resent += 1
            heapq.heappush(self._due, (row["next_attempt_at"] or 0.0, row["message_id"], row["sender"]))
        self._wake.set()
        if pending:
            log.info("sms.recovered", pending=len(pending), reconciled=reconciled, resent=resent)

    async def _find_at_provider(self, row: dict) -> Remote | None:
        """The provider's record of this message, if it has one we have not matched already."""
        assert self.provider is not None
        try:
            remote = await self.provider.find_sent(row["recipient"], row["created_at"])
        except (ProviderError, TimeoutError, OSError) as err:
            log.warning("sms.reconcile_failed", message_id=row["message_id"], error=repr(err))
            return None
        for m in remote:
            if m.provider_id == row.get("provider_id"):
                return m
            if m.body == row["body"] and m.to == row["recipient"] and not row.get("provider_id") \
                    and not await self._store.find_sms(provider_id=m.provider_id, limit=1):
                return m
        return None

    async def _adopt(self, row: dict, remote: Remote) -> None:
        """Take the provider's word for a message: its id, and its status when final."""
        async with self._ids_lock:
            await self._store.update_sms(row["message_id"], provider_id=remote.provider_id)
            row["provider_id"] = remote.provider_id
            if row["state"] in ("queued", "sending"):
                await self._store.update_sms(row["message_id"], state="sent")
                row["state"] = "sent"
                await self._status(row, "sent", reconciled=True)
        if remote.status in _RECEIPT_INPUT:
            await self._receipt(Receipt(remote.provider_id, remote.status))

    async def _reconcile_stale(self) -> None:
        """Receipts can be lost (sent while we were down, or lost in transit): a message `sent`
        for longer than reconcile_after_s is looked up at the provider, one recipient at a time."""
        period = max(1.0, self.config.reconcile_after_s / 4)
        while True:
            await asyncio.sleep(period)
            cutoff = time.time() - self.config.reconcile_after_s
            stale = [r for r in await self._store.find_sms(states=["sent"], limit=500)
                     if iso_to_epoch(r.get("updated_at") or r["created_at"]) < cutoff]
            for row in stale:
                remote = await self._find_at_provider(row)
                if remote is not None and remote.status in _RECEIPT_INPUT:
                    await self._receipt(Receipt(remote.provider_id, remote.status))
                else:  # look again later, not at every pass
                    await self._store.update_sms(row["message_id"])

    async def _status(self, row: dict, state: str, **extra: Any) -> None:
        await self._bus.publish("sms.status", {
            "message_id": row["message_id"], "send_id": row["send_id"], "to": row["recipient"],
            "state": state, "attempts": row.get("attempts", 0), "provider_id": row.get("provider_id"),
            "error": row.get("error"), **extra}, session_id=row.get("session_id"))


def _number_of(uri: str) -> str:
    """tel:+8613800138000 or sip:+8613800138000@host -> +8613800138000 (else the URI, refused)."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    return rest.split("@", 1)[0] if "@" in rest else uri


def _public(row: dict) -> dict:
    return {k: row.get(k) for k in ("message_id", "send_id", "session_id", "sender", "recipient",
                                    "encoding", "segments", "state", "attempts", "provider_id", "error",
                                    "created_at", "updated_at")}

