"""SMS dispatch: a durable outbox in front of one provider (Twilio or SMPP).

Every message is written to the store (state `queued`) before any provider sees it. One owned
task sends what is due, holding each sender to `sms.rate_per_s`; a message is marked `sending`
(durably) before the provider is called, so after a crash the ones caught in `sending` are
reconciled with the provider (`find_sent`) before anything is sent again. Every state change goes
through the outbox core (`sms.outbox`) in one store transaction with its `sms.status` event
(`SmsLedger`). Receipts and inbound messages are stored, deduplicated, before the provider is
answered (`SmsLedger.intake`); `sent` messages with no final receipt are looked up, oldest first,
and given up (`failed`, `no-receipt`) `sms.give_up_after_s` after they were created: the lookups
are gateway/services/sms_reconcile.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from gateway import sms_store
from gateway.directory import Directory, Endpoint
from gateway.errors import InvalidParams, NotFound, Unavailable
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.services.sms_ledger import UNSURE, SmsLedger
from gateway.services.sms_reconcile import LOOKUP_FAILED, Reconciler
from gateway.store import Store
from gateway.tasks import OwnedTasks
from gateway.timeutil import iso_to_epoch, now_iso
from sms import numbers, segments, templates
from sms.config import SmsConfig
from sms.errors import SmsError
from sms.outbox import MessageState, RetryPolicy, SenderRates
from sms.pacing import Pacer
from sms.provider import Inbound, Provider, ProviderError, Receipt

log = structlog.get_logger(__name__)

FINAL = frozenset({"delivered", "undelivered", "failed"})


def _bad(err: SmsError) -> InvalidParams:
    return InvalidParams(err.message, reason=err.reason, details=err.details)


class SmsService:
    def __init__(self, store: Store, bus: EventBus, sessions: SessionService, directory: Directory,
                 config: SmsConfig, provider: Provider | None) -> None:
        self._store, self._bus, self._sessions, self._directory = store, bus, sessions, directory
        self.config = config
        self.provider = provider
        self._policy = RetryPolicy(config.max_attempts, config.base_delay_s, config.max_delay_s)
        self._rng = random.Random()
        self._pacer = Pacer(SenderRates(config.rate_per_s, config.burst), window=config.in_flight)
        self._ready: dict[str, dict] = {}  # rows of the prepared messages (at most sms.in_flight)
        self._wake = asyncio.Event()
        self._tasks = OwnedTasks()
        self._ledger = SmsLedger(store, provider.name if provider else "none", config)
        self._reconciler = Reconciler(store, self._ledger, config, provider)
        self._senders: dict[str, tuple[asyncio.Lock, int]] = {}  # inbound being filed, per sender
        self.sent_count = 0
        self.on_send: Callable[[str, float], None] | None = None  # (ok|error, seconds) of each provider call: /metrics

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self.provider is None:
            return
        # Recovery first: a receipt the provider delivers as soon as it is up (an SMSC redelivers
        # at bind) then finds the messages caught in `sending` already marked as timed out.
        await self._recover()
        await self.provider.start(self._on_receipt, self._on_inbound)
        self._own(self._dispatch(), "sms.dispatch")
        self._own(self._reconciler.run(), "sms.reconcile")

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        if self.provider is not None:
            await self.provider.stop()  # no new reports; then the ones being stored finish
        await self._ledger.drain()

    def _own(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name)

    # sms.send / sms.get --------------------------------------------------------------------
    async def send(self, *, principal: str, to: list[str], body: str | None, template: str | None,
                   variables: dict[str, Any] | None, session_id: str | None,
                   sender: str | None, message_id: str | None = None, ref: dict[str, Any] | None = None) -> dict:
        """Queue a send. `message_id` (one recipient only) makes it idempotent: a message with that
        id already stored is not queued again (a service resending after a restart). `ref` is kept
        with each message and carried by its `sms.status` events (what the message is for)."""
        if self.provider is None:
            raise Unavailable("no SMS provider is configured (sms.provider)", reason="sms-unavailable")
        text = self._text(body, template, variables or {})
        try:
            info = segments.check_max(text, self.config.max_segments)
            sender = numbers.normalize(sender) if sender else self.config.sender
        except SmsError as err:
            raise _bad(err) from None
        if sender not in self.config.allowed_senders:  # no spoofed From, no dodging the per-sender rate
            raise InvalidParams(f"sender {sender} is not one of the configured senders (sms.sender, sms.senders)",
                                reason="sender-not-allowed",
                                details={"sender": sender, "allowed": list(self.config.allowed_senders)})
        recipients = self._recipients(to)
        if message_id is not None:
            if len(recipients) != 1:
                raise ValueError("message_id is for one recipient")
            if await self._store.get_sms(message_id) is not None:
                return {"send_id": None, "session_id": session_id, "recipients": 1, "encoding": info.encoding,
                        "segments": info.segments, "message_ids": [message_id], "existing": True}
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
            "updated_at": created, "extra": {"sent_by": principal, **({"ref": ref} if ref else {})},
        } for r in recipients]
        if message_id is not None:
            rows[0]["message_id"] = message_id
        # One owned step from "stored" to "scheduled": the caller going away (a lost console)
        # cancels its wait, never leaves messages stored but not due.
        await asyncio.shield(self._own(self._enqueue(rows), "sms.enqueue"))
        log.info("sms.queued", send_id=send_id, recipients=len(rows), encoding=info.encoding,
                 segments=info.segments, session_id=session_id)
        return {"send_id": send_id, "session_id": session_id, "recipients": len(rows),
                "encoding": info.encoding, "segments": info.segments,
                "message_ids": [r["message_id"] for r in rows][:1000]}

    async def _enqueue(self, rows: list[dict[str, Any]]) -> None:
        # Durable (one transaction) before any provider sees them; due once every `queued` event
        # is published (a message's events stay in order). Not chunk by chunk: sending while the
        # rest is published made the accept of 10,000 3-6.5 s under load (it competes with the
        # sends and their callbacks for the loop and the writer) to gain ~1 s of sending time.
        await self._ledger.queue(rows)
        for r in rows:
            self._requeue(r)

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

    def templates(self) -> dict:
        """The configured templates (`sms.templates`): name, text and the variables each needs,
        so that a console fills them in and sends `template` + `variables`."""
        return {"templates": [{"name": name, "text": text, "variables": _placeholders(text)}
                              for name, text in sorted(self.config.templates.items())]}

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
            else:  # a directory name or group: its phone numbers, tel: URIs / E.164 user parts
                candidates = [number_of(ep) for ep in self._directory.resolve(item, dialable=False)
                              if ep.phone or ep.uri]
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
        """Runs the pacer (sms.pacing): prepares the due messages (marked `sending`, one unit per
        batch) ahead of their tokens, calls the provider for each prepared one as its sender's
        token comes, and sleeps until the next can go or a step ends."""
        while True:
            now, mono = time.time(), time.monotonic()
            prepare = self._pacer.to_prepare(now)
            if prepare:
                self._own(self._prepare(prepare), "sms.prepare")
            for message_id, _ in self._pacer.to_send(mono):
                self._own(self._call(message_id), "sms.call")
            wait = self._pacer.wait(now, mono)
            self._wake.clear()
            if wait is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _prepare(self, batch: list[tuple[str, str]]) -> None:
        """Mark a batch `sending` in one unit; each started one is ready for its token. One whose
        last attempt timed out (the provider may have it) is ready untouched: it is looked up first."""
        assert self.provider is not None
        can_list = self.provider.can_list
        try:
            results = await self._ledger.start_many(
                [m for m, _ in batch], lambda row: bool(can_list and row["attempts"] and row.get("error") in UNSURE))
        except Exception:
            log.exception("sms.prepare_failed", messages=len(batch))
            for message_id, sender in batch:  # still queued in the store: due again in a second
                self._pacer.dropped()
                self._pacer.push(message_id, sender, time.time() + 1.0)
            self._wake.set()
            return
        for (message_id, sender), (kind, row) in zip(batch, results, strict=True):
            if kind in ("sending", "hold") and row is not None:
                self._ready[message_id] = row
                self._pacer.prepared(message_id, sender)
            else:
                self._pacer.dropped()
                if kind == "queued":  # not due after all
                    self._requeue(row)
        self._wake.set()

    async def _call(self, message_id: str) -> None:
        """One provider call for a prepared message. Its call slot (`sms.in_flight`: requests at
        the provider at once) is free again as soon as the provider has answered, before the
        answer is stored: a slow commit does not hold back the next calls (the prepared window,
        which needs the store, still bounds what can be sent while the store is stalled)."""
        row = self._ready.pop(message_id)
        slot = True

        def free() -> None:
            nonlocal slot
            if slot:
                slot = False
                self._pacer.done()
                self._wake.set()

        try:
            assert self.provider is not None
            if row["state"] == MessageState.QUEUED.value:  # held: look at the provider before resending
                try:
                    remote = await self._reconciler.find(row, strict=True)
                except LOOKUP_FAILED:  # it may be there and we could not look: held, not sent blind
                    free()
                    await self._held(row)
                    return
                if remote is not None:
                    await self._reconciler.adopt(row, remote)
                    return
                started = await self._ledger.step(message_id, lambda m, now: m.start_attempt(now))
                if started is None:  # not due after all, or no longer queued
                    self._requeue(await self._store.get_sms(message_id))
                    return
                row = started
            t0 = time.monotonic()
            try:
                sub = await self.provider.send(message_id, row["sender"], row["recipient"], row["body"])
            except ProviderError as err:
                free()
                self._timed("error", t0)
                await self._failed_attempt(row, err)
                return
            except (TimeoutError, OSError) as err:
                free()
                self._timed("error", t0)
                await self._failed_attempt(row, ProviderError(repr(err), error=err))
                return
            free()
            self._timed("ok", t0)
            await self._ledger.accepted(message_id, sub.provider_id)
            self.sent_count += 1
        except Exception:
            log.exception("sms.send_failed", message_id=message_id)
        finally:
            free()

    def _timed(self, outcome: str, t0: float) -> None:
        if self.on_send is not None:
            self.on_send(outcome, time.monotonic() - t0)

    async def _failed_attempt(self, row: dict, err: ProviderError) -> None:
        """The core decides: queued again after a backoff (never sooner than the provider's
        Retry-After, nor, for a provider that cannot list, before `receipt_window_s` when the
        attempt may have reached it), or failed."""
        assert self.provider is not None
        why = "timeout" if err.maybe_sent else err.reason if err.status_code is not None else "unavailable"
        wait = err.details.get("retry_after_s")
        if err.maybe_sent and not self.provider.can_list:
            wait = max(wait or 0.0, self.config.receipt_window_s)
        error = None if err.status_code is not None else ("timeout" if err.retryable else why)
        awaiting = err.maybe_sent and not self.provider.can_list
        new = await self._ledger.step(
            row["message_id"], lambda m, now: m.attempt_failed(
                now, self._policy, self._rng, status_code=err.status_code, error=error, retry_after_s=wait),
            columns={"error": why}, receipts_since=row.get("updated_at") if awaiting else None)
        self._requeue(new)

    def _requeue(self, row: dict | None) -> None:
        if row is not None and row["state"] == MessageState.QUEUED.value:
            self._pacer.push(row["message_id"], row["sender"], row.get("next_attempt_at") or 0.0)
            self._wake.set()

    # receipts and inbound: stored before the provider is answered ----------------------------
    async def _on_receipt(self, r: Receipt) -> None:
        assert self.provider is not None
        can_list = self.provider.can_list
        await self._ledger.intake(f"receipt:{r.provider_id}:{r.status}",
                                  lambda: self._ledger.receipt_future(r, can_list=can_list))

    async def _on_inbound(self, m: Inbound) -> None:
        await self._ledger.intake(f"inbound:{m.dedup_key or m.provider_id}", lambda: self._inbound(m))

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
        async with self._one_sender(sender):  # a burst from a new number opens one session
            last = await self._store.find_sms(recipient=sender, limit=1)
            session_id = last[0]["session_id"] if last else None
            if session_id is None or (await self._store.get_session(session_id) or {}).get("state") != "open":
                if await self._ledger.inbound_seen(m):  # a redelivery: opens no session
                    log.info("sms.inbound_duplicate", provider_id=m.provider_id)
                    return
                session_id = await self._inbound_session(sender)
            seq = await self._ledger.inbound(m, sender, session_id, last[0]["send_id"] if last else None)
        if seq is None:
            log.info("sms.inbound_duplicate", provider_id=m.provider_id)
        else:
            log.info("sms.inbound", session_id=session_id, provider_id=m.provider_id, seq=seq)

    async def _inbound_session(self, sender: str) -> str:
        """The open session a message from a number nobody messaged goes to: the one its last
        inbound message opened, or a new one."""
        row = await sms_store.last_inbound(self._store, sender)
        if row and row.get("session_id") and \
                (await self._store.get_session(row["session_id"]) or {}).get("state") == "open":
            return row["session_id"]
        return (await self._sessions.create(title=f"SMS from {sender}", created_by="sms",
                                            origin="sms-inbound"))["session_id"]

    @contextlib.asynccontextmanager
    async def _one_sender(self, sender: str) -> Any:
        lock, users = self._senders.get(sender) or (asyncio.Lock(), 0)
        self._senders[sender] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._senders[sender]
            if users <= 1:
                del self._senders[sender]
            else:
                self._senders[sender] = (lock, users - 1)

    # crash recovery ------------------------------------------------------------------------------
    async def reconcile_pass(self) -> int:
        """One pass over the stale `sent` messages (gateway/services/sms_reconcile.py)."""
        return await self._reconciler.reconcile_pass()

    async def _held(self, row: dict) -> None:
        """A held message whose lookup failed: looked up again after `max(1, base_delay_s)`, until
        `give_up_after_s` after its creation; then `failed` with error "unconfirmed" (whether the
        provider has it could not be told; sending it again could send it twice)."""
        if time.time() - iso_to_epoch(row["created_at"]) < self.config.give_up_after_s:
            self._pacer.push(row["message_id"], row["sender"], time.time() + max(1.0, self.config.base_delay_s))
            self._wake.set()
            return
        await self._ledger.step(row["message_id"], lambda m, now: m.give_up(now, "unconfirmed"),
                                columns={"error": "unconfirmed"})
        log.warning("sms.given_up", message_id=row["message_id"], why="unconfirmed", attempts=row.get("attempts"))

    async def _recover(self) -> None:
        """Queued ones are due again; ones caught in `sending` are looked up at the provider
        first, so nothing is sent twice where the provider can tell (where it cannot, SMPP, they
        wait `receipt_window_s` for a receipt before they are sent again)."""
        assert self.provider is not None
        pending = await self._store.find_sms(states=["queued", "sending"], limit=1_000_000)
        reconciled = resent = 0
        for row in pending:
            if row["state"] == "sending":
                try:  # where the provider cannot be asked (SMPP), or the lookup fails, it may have it
                    remote = await self._reconciler.find(row, strict=True) if self.provider.can_list else None
                    unsure = not self.provider.can_list
                except LOOKUP_FAILED:
                    remote, unsure = None, True  # held: looked up again before its next attempt
                if remote is not None:
                    await self._reconciler.adopt(row, remote)
                    reconciled += 1
                    continue
                # the attempt's outcome is unknown: the core decides as for a timed-out attempt
                lost = ProviderError("the gateway stopped during the attempt", error="connection",
                                     maybe_sent=unsure)
                await self._failed_attempt(row, lost)
                resent += 1
                continue
            self._requeue(row)
        self._wake.set()
        if pending:
            log.info("sms.recovered", pending=len(pending), reconciled=reconciled, resent=resent)


def number_of(ep: Endpoint) -> str:
    """Where SMS to a directory endpoint go: its `phone`, else the number in its uri
    (tel:+8613800138000 or sip:+8613800138000@host -> +8613800138000; else the URI, refused)."""
    if ep.phone:
        return ep.phone
    uri = ep.uri or ""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    return rest.split("@", 1)[0] if "@" in rest else uri


def _public(row: dict) -> dict:
    return {k: row.get(k) for k in ("message_id", "send_id", "session_id", "sender", "recipient",
                                    "encoding", "segments", "state", "attempts", "provider_id", "error",
                                    "created_at", "updated_at")}


def _placeholders(text: str) -> list[str] | None:
    """A template's variables; None for one whose syntax is bad (sending it is refused
    `invalid-template`, listing it is not)."""
    try:
        return templates.placeholders(text)
    except SmsError:
        return None
