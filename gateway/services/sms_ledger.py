"""Every change the SMS service makes, as one store transaction with the event that reports it.

- `step()`: feeds one input to a stored message through the outbox core (`sms.outbox`, the one
  state table), writes the row and publishes `sms.status`, together.
- `accepted()`: the provider took a message: its id, `sent`, and any receipt stored for that id
  before the reply came (it overtook the API answer), in the same transaction.
- `receipt()`: stores a provider's receipt (once per provider id + status, across restarts) and
  applies it to its message.
- `inbound()`: stores an inbound message (once per provider id, or per dedup key within a window)
  and publishes `sms.inbound`.

Receipts and inbound messages come through `intake()`, which the provider awaits before it
answers its peer: at most `sms.intake_limit` are being stored at once and each gets
`sms.intake_timeout_s`; beyond that `Overloaded` is raised and the provider tells its peer to
retry (503 / ESME_RTHROTTLED). A report whose twin is already being stored waits for that one.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from gateway import sms_store
from gateway.errors import Unavailable
from gateway.store import Store, Tx
from gateway.timeutil import epoch_to_iso, iso_to_epoch, now_iso
from sms.config import SmsConfig
from sms.errors import SmsError
from sms.outbox import Change, MessageInput, OutgoingMessage
from sms.provider import Inbound, Receipt

log = structlog.get_logger(__name__)

# A provider's receipt status -> the core's receipt input (others: stored, no transition).
RECEIPT_INPUTS = {"delivered": "delivered", "read": "delivered", "undelivered": "undelivered",
                  "failed": "failed", "canceled": "failed"}
UNSURE = ("timeout",)  # the error of an attempt that may have reached the provider

Step = Callable[[OutgoingMessage, float], Change | None]


class Overloaded(Unavailable):
    reason = "sms-overloaded"


def status_data(row: dict, state: str, **extra: Any) -> dict[str, Any]:
    """`sms.status` data; `ref` (what the message is for, e.g. an instruction) when it has one."""
    ref = (row.get("extra") or {}).get("ref")
    return {"message_id": row["message_id"], "send_id": row["send_id"], "to": row["recipient"],
            "state": state, "attempts": row.get("attempts", 0), "provider_id": row.get("provider_id"),
            "error": row.get("error"), **({"ref": ref} if ref else {}), **extra}


def _restore(row: dict) -> OutgoingMessage:
    return OutgoingMessage.restore(
        row["message_id"], row["sender"], row["recipient"], row["body"], state=row["state"],
        attempts=row["attempts"], next_attempt_at=row.get("next_attempt_at") or None,
        provider_id=row.get("provider_id"), created_at=iso_to_epoch(row["created_at"]))


def _detail(change: Change) -> dict[str, Any]:
    """What the event says about an attempt's failure (retry delay, the provider's status code)."""
    d = change.detail
    if change.input is MessageInput.TRANSIENT_ERROR:
        return {"retry_in_s": round(d.get("delay_s", 0.0), 3), "status_code": d.get("status_code")}
    if change.input in (MessageInput.PERMANENT_ERROR, MessageInput.GIVE_UP) and "status_code" in d:
        return {"status_code": d.get("status_code")}
    return {}


class SmsLedger:
    def __init__(self, store: Store, provider: str, config: SmsConfig) -> None:
        self._store = store
        self.provider = provider
        self.config = config
        self._busy: dict[str, asyncio.Task[Any]] = {}
        self._line: collections.deque[asyncio.Future[None]] = collections.deque()  # waiting for a slot
        self._granted = 0  # slots handed to a waiter that has not started its work yet

    # --- messages ------------------------------------------------------------------------------
    async def step(self, message_id: str, step: Step, *, columns: dict[str, Any] | None = None,
                   receipts_since: str | None = None, **extra: Any) -> dict | None:
        """Feed `step` to the message; its row after the change, or None if nothing changed.
        `receipts_since`: if the message is then `queued` (an attempt that may have reached a
        provider that cannot be asked), a receipt from its number stored since then for an id we
        never got is its own: it is applied at once (the SMSC took it; sending again would
        duplicate it)."""
        now = time.time()

        async def work(tx: Tx) -> dict | None:
            row = await sms_store.message(tx, message_id)
            if row is None:
                return None
            new = await self._apply(tx, row, step, now, columns or {}, extra)
            if new is not None and receipts_since is not None and new["state"] == "queued":
                await self._adopt_receipt(tx, new, receipts_since, now)
            return new

        return await self._store.atomic(work)

    async def _adopt_receipt(self, tx: Tx, row: dict, since: str, now: float) -> None:
        found = await sms_store.unmatched_receipts_from(tx, self.provider, row["recipient"], since,
                                                         tuple(RECEIPT_INPUTS))
        if found:
            provider_id, status, error_code = found[0]
            await sms_store.update(tx, row["message_id"], {"provider_id": provider_id}, now_iso())
            row["provider_id"] = provider_id
            await self._receipt_to(tx, row, provider_id, status, error_code, now)

    async def accepted(self, message_id: str, provider_id: str, **extra: Any) -> dict | None:
        now = time.time()

        async def work(tx: Tx) -> dict | None:
            row = await sms_store.message(tx, message_id)
            if row is None:
                return None
            if not row.get("provider_id"):
                await sms_store.update(tx, message_id, {"provider_id": provider_id}, now_iso())
                row["provider_id"] = provider_id
            await self._apply(tx, row, lambda m, t: m.accepted(t, provider_id), now, {}, extra)
            for status, code in await sms_store.unmatched_receipts(tx, self.provider, provider_id):
                await self._receipt_to(tx, row, provider_id, status, code, now)
            return row

        return await self._store.atomic(work)

    async def _apply(self, tx: Tx, row: dict, step: Step, now: float, columns: dict[str, Any],
                     extra: dict[str, Any]) -> dict | None:
        msg = _restore(row)
        try:
            change = step(msg, now)
        except SmsError as err:  # not an input for this state: recorded in the log, nothing changes
            log.info("sms.input_refused", message_id=row["message_id"], reason=err.reason, details=err.details)
            return None
        if change is None or change.ignored:
            return None
        cols = {"state": msg.state.value, "attempts": msg.attempts,
                "next_attempt_at": msg.next_attempt_at or 0.0, "provider_id": msg.provider_id, **columns}
        stamp = now_iso()
        await sms_store.update(tx, row["message_id"], cols, stamp)
        row.update(cols, updated_at=stamp)
        await tx.emit("sms.status", row.get("session_id"),
                      status_data(row, msg.state.value, **_detail(change), **extra))
        return row

    async def _receipt_to(self, tx: Tx, row: dict, provider_id: str, status: str, error_code: str | None,
                          now: float) -> None:
        await sms_store.match_receipt(tx, self.provider, provider_id, status, row["message_id"])
        event = RECEIPT_INPUTS.get(status)
        if event is not None:
            await self._apply(tx, row, lambda m, t: m.receipt(t, event), now, {"error": error_code}, {})

    # --- what the provider reports ----------------------------------------------------------------
    async def receipt(self, r: Receipt, *, can_list: bool) -> str:
        """Store and apply a receipt: "applied", "duplicate" or "unmatched" (kept for its message)."""
        now = time.time()

        async def work(tx: Tx) -> str:
            if not await sms_store.add_receipt(tx, self.provider, r.provider_id, r.status, r.error_code,
                                               r.to, now_iso()):
                return "duplicate"
            row = await sms_store.message(tx, r.message_id) if r.message_id else None
            if row is None:
                row = await sms_store.message_by_provider_id(tx, self.provider, r.provider_id)
            if row is None and r.to and not can_list and r.status in RECEIPT_INPUTS:
                # SMPP: the submit_sm timed out, so its id never reached us; the receipt is from
                # the number a timed-out message went to: that message was sent after all.
                row = await sms_store.awaiting_receipt(tx, self.provider, r.to, UNSURE)
                if row is not None:
                    await sms_store.update(tx, row["message_id"], {"provider_id": r.provider_id}, now_iso())
                    row["provider_id"] = r.provider_id
            if row is None:
                return "unmatched"
            await self._receipt_to(tx, row, r.provider_id, r.status, r.error_code, now)
            return "applied"

        return await self._store.atomic(work)

    async def inbound_seen(self, m: Inbound) -> bool:
        """Already stored (a read: `inbound()` checks again in its transaction)."""
        key, since = self._inbound_key(m)
        return await sms_store.inbound_seen(self._store, self.provider, key, since)

    async def inbound(self, m: Inbound, sender: str, session_id: str, in_reply_to: str | None) -> int | None:
        """Store and publish an inbound message; the event's seq, or None for a redelivery."""
        key, since = self._inbound_key(m)
        data = {"from": sender, "to": m.to, "body": m.body, "provider_id": m.provider_id,
                "in_reply_to": in_reply_to}

        async def work(tx: Tx) -> int | None:
            if await sms_store.inbound_seen(tx, self.provider, key, since):
                return None
            seq = await tx.emit("sms.inbound", session_id, data)
            await sms_store.add_inbound(tx, {
                "provider": self.provider, "provider_id": m.provider_id, "dedup_key": key, "sender": sender,
                "recipient": m.to, "body": m.body, "session_id": session_id, "in_reply_to": in_reply_to,
                "seq": seq, "received_at": now_iso()})
            return seq

        return await self._store.atomic(work)

    def _inbound_key(self, m: Inbound) -> tuple[str, str]:
        if m.dedup_key is None:
            return m.provider_id, ""
        return m.dedup_key, epoch_to_iso(time.time() - self.config.inbound_dedup_window_s)

    # --- the gate in front of the provider's answer ---------------------------------------------------
    async def intake(self, key: str, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run `work` (storing one report) unless too many are being stored; wait for it at most
        `intake_timeout_s`. The work itself is never cancelled by the wait: it is owned here.
        When all `intake_limit` slots are busy a report waits in line (first come, first served)
        up to `intake_wait_s` for one, so a burst of one kind (inbound) cannot starve another
        (receipts) by winning every freed slot; a full line (4 x the limit) or a longer wait is "retry
        later"."""
        task = self._busy.get(key)
        if task is None:
            await self._slot()
            task = self._busy.get(key)  # a twin may have started it while this one waited
            if task is not None:
                self._grant()  # this caller's slot is not needed: the next in line takes it
            else:
                task = asyncio.get_running_loop().create_task(work(), name="sms.intake")
                self._busy[key] = task
                task.add_done_callback(lambda t: self._done(key, t))
        async with asyncio.timeout(self.config.intake_timeout_s):
            return await asyncio.shield(task)

    async def _slot(self) -> None:
        """Until a slot is free for this caller (in arrival order); Overloaded when none comes."""
        if not self._line and len(self._busy) + self._granted < self.config.intake_limit:
            return
        if len(self._line) >= 4 * self.config.intake_limit:  # each waiter is one future; bounded anyway
            raise Overloaded("too many SMS reports being stored", details={"limit": self.config.intake_limit})
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        try:
            async with asyncio.timeout(self.config.intake_wait_s):
                await asyncio.shield(turn)
        except BaseException as e:
            if turn.done():  # granted just as the wait ended: hand the slot on
                self._granted -= 1
                self._grant()
            else:
                self._line.remove(turn)
                turn.cancel()
            if isinstance(e, TimeoutError):
                raise Overloaded("too many SMS reports being stored",
                                 details={"limit": self.config.intake_limit}) from None
            raise
        self._granted -= 1  # the caller starts its work before its next await

    def _grant(self) -> None:
        """Hand freed slots to the callers waiting in line, oldest first."""
        while self._line and len(self._busy) + self._granted < self.config.intake_limit:
            turn = self._line.popleft()
            if not turn.done():
                self._granted += 1
                turn.set_result(None)

    def _done(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._busy.get(key) is task:
            del self._busy[key]
        if not task.cancelled() and task.exception() is not None:
            log.warning("sms.intake_failed", key=key, error=repr(task.exception()))
        self._grant()

    async def drain(self) -> None:
        """Wait for the reports being stored (at stop)."""
        if self._busy:
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
