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
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from gateway import sms_store
from gateway.batching import Batcher
from gateway.errors import Unavailable
from gateway.store import Store, SyncTx, Tx
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
EVENT_CHUNK = 500  # `queued` events per unit (half a subscriber's queue, control.send_queue)

Step = Callable[[OutgoingMessage, float], Change | None]
R = TypeVar("R")


class Overloaded(Unavailable):
    reason = "sms-overloaded"


def status_data(row: dict, state: str, **extra: Any) -> dict[str, Any]:
    """`sms.status` data; `ref` (what the message is for, e.g. an instruction) when it has one."""
    ref = (row.get("extra") or {}).get("ref")
    return {"message_id": row["message_id"], "send_id": row["send_id"], "to": row["recipient"],
            "state": state, "attempts": row.get("attempts", 0), "provider_id": row.get("provider_id"),
            "error": row.get("error"), **({"ref": ref} if ref else {}), **extra}


# A send's messages share their `created_at` (one time for the whole send): parsed once.
_created_epoch = functools.lru_cache(maxsize=256)(iso_to_epoch)


def _restore(row: dict) -> OutgoingMessage:
    return OutgoingMessage.restore(
        row["message_id"], row["sender"], row["recipient"], row["body"], state=row["state"],
        attempts=row["attempts"], next_attempt_at=row.get("next_attempt_at") or None,
        provider_id=row.get("provider_id"), created_at=_created_epoch(row["created_at"]))


def _detail(change: Change) -> dict[str, Any]:
    """What the event says about an attempt's failure (retry delay, the provider's status code)."""
    d = change.detail
    if change.input is MessageInput.TRANSIENT_ERROR:
        return {"retry_in_s": round(d.get("delay_s", 0.0), 3), "status_code": d.get("status_code")}
    if change.input in (MessageInput.PERMANENT_ERROR, MessageInput.GIVE_UP) and "status_code" in d:
        return {"status_code": d.get("status_code")}
    return {}


class _Changes:
    """What one unit changes: the rows changed (each written once, as it ends up, only the columns
    that changed), the receipts matched to their message, the `sms.status` events in order;
    `write()` stores them in a few statements whatever the number of messages, and starts afresh.
    The rows it changes get one `updated_at`, the unit's (they commit together)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.before: dict[str, tuple[Any, ...]] = {}  # each changed row's MUTABLE values as stored
        self.matches: list[tuple[str, str, str]] = []  # (provider_id, status, message_id)
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.now = now_iso()

    def set(self, row: dict[str, Any], **columns: Any) -> None:
        message_id = row["message_id"]
        if message_id not in self.before:
            self.before[message_id] = sms_store.mutable_of(row)
        row.update(columns, updated_at=self.now)
        self.rows[message_id] = row

    def write(self, tx: SyncTx, provider: str) -> None:
        sms_store.write(tx, list(self.rows.values()), self.before)
        sms_store.match_receipts(tx, provider, self.matches)
        tx.emit_each("sms.status", self.events)
        self.rows, self.before, self.matches, self.events = {}, {}, [], []


class SmsLedger:
    def __init__(self, store: Store, provider: str, config: SmsConfig) -> None:
        self._store = store
        self.provider = provider
        self.config = config
        self._busy: dict[str, asyncio.Future[Any]] = {}  # reports being stored, by key
        self._line: collections.deque[asyncio.Future[None]] = collections.deque()  # waiting for a slot
        self._granted = 0  # slots handed to a waiter that has not started its work yet
        self._accepts: Batcher[tuple[str, str, dict[str, Any]], dict | None] = Batcher(
            self._accepted_many, name="sms.accepted")
        self._receipts: Batcher[tuple[Receipt, bool], str] = Batcher(self._receipts_many, name="sms.receipts")

    # --- messages ------------------------------------------------------------------------------
    async def queue(self, rows: list[dict[str, Any]]) -> None:
        """Store new messages in one transaction, then publish their `queued` events in chunks of
        EVENT_CHUNK, one unit each, back to back (a live subscriber's queue takes a chunk at a
        time, not 10,000 events in one commit)."""
        await self._unit(lambda tx: sms_store.insert(tx, rows))
        for i in range(0, len(rows), EVENT_CHUNK):
            chunk = rows[i:i + EVENT_CHUNK]
            await self._unit(lambda tx, chunk=chunk: tx.emit_each(
                "sms.status", [(r.get("session_id"), status_data(r, "queued")) for r in chunk]))

    async def step(self, message_id: str, step: Step, *, columns: dict[str, Any] | None = None,
                   receipts_since: str | None = None, **extra: Any) -> dict | None:
        """Feed `step` to the message; its row after the change, or None if nothing changed.
        `receipts_since`: if the message is then `queued` (an attempt that may have reached a
        provider that cannot be asked), a receipt from its number stored since then for an id we
        never got is its own: it is applied at once (the SMSC took it; sending again would
        duplicate it)."""
        now = time.time()

        def work(tx: SyncTx) -> dict | None:
            row = sms_store.messages(tx, [message_id]).get(message_id)
            if row is None:
                return None
            changes = _Changes()
            new = self._apply(changes, row, step, now, columns or {}, extra)
            if new is not None and receipts_since is not None and new["state"] == "queued":
                self._adopt_receipt(tx, changes, new, receipts_since, now)
            changes.write(tx, self.provider)
            return new

        return await self._unit(work)

    async def _unit(self, work: Callable[[SyncTx], R]) -> R:
        """A unit of work whose reads, decisions and writes all run in the database thread: one
        trip there (`Store.atomic_sync`), not one per statement; committed with its events, or
        not at all."""
        return await self._store.atomic_sync(work)

    def _adopt_receipt(self, tx: SyncTx, changes: _Changes, row: dict, since: str, now: float) -> None:
        found = sms_store.unmatched_receipts_from(tx, self.provider, row["recipient"], since,
                                                  tuple(RECEIPT_INPUTS))
        if found:
            provider_id, status, error_code = found[0]
            changes.set(row, provider_id=provider_id)
            self._receipt_to(changes, row, provider_id, status, error_code, now)

    async def start_many(self, message_ids: list[str], hold: Callable[[dict], bool]) -> list[tuple[str, dict | None]]:
        """Start an attempt of each message (queued -> sending), all in one unit. For each id:
        ("sending", row), ("hold", row) when `hold(row)` (look at the provider first: untouched),
        ("queued", row) when not due yet, or ("gone", None) (no such message, or not queued)."""
        now = time.time()

        def work(tx: SyncTx) -> list[tuple[str, dict | None]]:
            rows = sms_store.messages(tx, message_ids)
            changes, out = _Changes(), []
            for message_id in message_ids:
                row = rows.get(message_id)
                if row is None or row["state"] != "queued":
                    out.append(("gone", None))
                elif hold(row):
                    out.append(("hold", row))
                elif self._apply(changes, row, lambda m, t: m.start_attempt(t), now, {}, {}) is None:
                    out.append(("queued", row))
                else:
                    out.append(("sending", row))
            changes.write(tx, self.provider)
            return out

        return await self._unit(work)

    async def accepted(self, message_id: str, provider_id: str, **extra: Any) -> dict | None:
        """The provider took the message (its id): `sent`, through the accepted batcher (one unit
        for all the answers that came while the last one was written)."""
        return await self._accepts.submit((message_id, provider_id, extra))

    async def _accepted_many(self, items: list[tuple[str, str, dict[str, Any]]]) -> list[dict | None]:
        """Each message's provider id and `sent`, and any receipt stored for that id before the
        reply came (it overtook the API answer), in one unit."""
        now = time.time()

        def work(tx: SyncTx) -> list[dict | None]:
            rows = sms_store.messages(tx, [i[0] for i in items])
            early = sms_store.unmatched_receipts_of(tx, self.provider, [i[1] for i in items])
            changes, out = _Changes(), []
            for message_id, provider_id, extra in items:
                row = rows.get(message_id)
                out.append(row)
                if row is None:
                    continue
                if not row.get("provider_id"):
                    changes.set(row, provider_id=provider_id)
                self._apply(changes, row, lambda m, t, p=provider_id: m.accepted(t, p), now, {}, extra)
                for status, code in early.get(provider_id, ()):
                    self._receipt_to(changes, row, provider_id, status, code, now)
            changes.write(tx, self.provider)
            return out

        return await self._unit(work)

    def _apply(self, changes: _Changes, row: dict, step: Step, now: float, columns: dict[str, Any],
               extra: dict[str, Any]) -> dict | None:
        """Feed `step` to the message of `row` (the core decides); the change goes into `changes`
        (the row as it is now, and its event). The row, or None when nothing changed."""
        msg = _restore(row)
        try:
            change = step(msg, now)
        except SmsError as err:  # not an input for this state: recorded in the log, nothing changes
            log.info("sms.input_refused", message_id=row["message_id"], reason=err.reason, details=err.details)
            return None
        if change is None or change.ignored:
            return None
        state = msg.state.value  # enum's `value` is a Python property: read once
        changes.set(row, state=state, attempts=msg.attempts,
                    next_attempt_at=msg.next_attempt_at or 0.0, provider_id=msg.provider_id, **columns)
        changes.events.append((row.get("session_id"), status_data(row, state, **_detail(change), **extra)))
        return row

    def _receipt_to(self, changes: _Changes, row: dict, provider_id: str, status: str,
                    error_code: str | None, now: float, *, stored_matched: bool = False) -> None:
        if not stored_matched:
            changes.matches.append((provider_id, status, row["message_id"]))
        event = RECEIPT_INPUTS.get(status)
        if event is not None:
            self._apply(changes, row, lambda m, t: m.receipt(t, event), now, {"error": error_code}, {})

    # --- what the provider reports ----------------------------------------------------------------
    async def receipt(self, r: Receipt, *, can_list: bool) -> str:
        """Store and apply a receipt: "applied", "duplicate" or "unmatched" (kept for its message).
        Through the receipt batcher: the receipts that came while the last batch was written are
        stored together, one unit."""
        return await self._receipts.submit((r, can_list))

    def receipt_future(self, r: Receipt, *, can_list: bool) -> asyncio.Future[str]:
        """`receipt()` as the batcher's future (for `intake`: no task of its own per receipt)."""
        return self._receipts.put((r, can_list))

    async def _receipts_many(self, items: list[tuple[Receipt, bool]]) -> list[str]:
        now = time.time()

        def work(tx: SyncTx) -> list[str]:
            known = sms_store.messages(tx, [r.message_id for r, _ in items if r.message_id])
            # by provider id only the receipts whose message is not known by its id (an SMPP
            # receipt names its message: the batch's rows are read once, not twice)
            lookup = [r.provider_id for r, _ in items if not (r.message_id and r.message_id in known)]
            by_pid = {pid: known.setdefault(row["message_id"], row) for pid, row in (
                sms_store.by_provider_ids(tx, self.provider, lookup)).items()} if lookup else {}

            def row_of(r: Receipt) -> dict | None:
                return (known.get(r.message_id) if r.message_id else None) or by_pid.get(r.provider_id)

            # A receipt whose message is known is stored matched (no UPDATE after, and it never
            # enters the unmatched receipts' indexes); the others are matched if this batch finds
            # their message below.
            stored_for = [(row or {}).get("message_id") for row in map(row_of, (r for r, _ in items))]
            fresh = sms_store.add_receipts(
                tx, self.provider, [(r.provider_id, r.status, r.error_code, r.to, m)
                                    for (r, _), m in zip(items, stored_for, strict=True)], now_iso())
            changes, out = _Changes(), []
            for (r, can_list), new, matched in zip(items, fresh, stored_for, strict=True):
                if not new:
                    out.append("duplicate")
                    continue
                row = row_of(r)
                if row is None and r.to and not can_list and r.status in RECEIPT_INPUTS:
                    # SMPP: the submit_sm timed out, so its id never reached us; the receipt is from
                    # the number a timed-out message went to: that message was sent after all.
                    changes.write(tx, self.provider)  # what this batch adopted is seen
                    found = sms_store.awaiting_receipt(tx, self.provider, r.to, UNSURE)
                    if found is not None:
                        row = by_pid[r.provider_id] = known.setdefault(found["message_id"], found)
                        changes.set(row, provider_id=r.provider_id)
                if row is None:
                    out.append("unmatched")
                    continue
                self._receipt_to(changes, row, r.provider_id, r.status, r.error_code, now,
                                 stored_matched=matched == row["message_id"])
                out.append("applied")
            changes.write(tx, self.provider)
            return out

        return await self._unit(work)

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
        `intake_timeout_s`. The work itself is never cancelled by the wait: it is owned here (a
        coroutine in a task of its own; a future, e.g. a batcher's, as it is: its owner writes it).
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
                try:
                    started = work()
                except BaseException:
                    self._grant()  # this caller's slot was not taken after all
                    raise
                task = started if isinstance(started, asyncio.Future) else \
                    asyncio.get_running_loop().create_task(started, name="sms.intake")  # type: ignore[arg-type]
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

    def _done(self, key: str, task: asyncio.Future[Any]) -> None:
        if self._busy.get(key) is task:
            del self._busy[key]
        if not task.cancelled() and task.exception() is not None:
            log.warning("sms.intake_failed", key=key, error=repr(task.exception()))
        self._grant()

    async def drain(self) -> None:
        """Wait for the reports being stored and the batches being written (at stop)."""
        if self._busy:
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
        await self._receipts.drain()
        await self._accepts.drain()
