"""The SMS ledger writes in batches: a send, its starts, its API answers and its receipts each take
a few units of work with a few statements each, however many messages (issue 13).

A real SQLite store in tmp_path; the units (`Store.atomic`), event appends and statements are
counted. Before: `sms.send` of N stored the rows, then awaited N separate event appends; every
start, answer and receipt was a unit of its own with 4-8 statements (about 36 round trips to the
database thread per message), which on the dev box held the send rate at 262/s of 500. Then each
batch unit still took one trip to the database thread per statement (7-10 a unit, each waiting for
a busy event loop: a Twilio callback's answer waited for all of them); then a unit was one trip
(`Store.atomic_sync`) and its batch's commit another; now a store round (every unit queued
together, their commit) is one trip.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from typing import Any

import aiosqlite
import pytest

from gateway.services.sms_ledger import EVENT_CHUNK, SmsLedger
from gateway.sms_store import CHUNK
from gateway.store import Store
from gateway.store.units import SyncTx, Tx
from gateway.timeutil import now_iso
from sms.config import SmsConfig
from sms.provider import Receipt
from tests.store.conftest import db_path, store  # noqa: F401  (fixtures: a real SQLite store in tmp_path)

N = 1200


class Counted:
    """Units of work, event appends, statements (in the unit's `Tx` or its `SyncTx`) and trips to
    the database thread (every aiosqlite call: the writer's BEGIN/SAVEPOINT/RELEASE/COMMIT too)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.units = 0
        self.appends = 0
        self.trips = 0
        self.statements: Counter[str] = Counter()
        atomic, append = store.atomic, store.append_event
        trip = aiosqlite.Connection._execute

        async def counted_trip(conn: aiosqlite.Connection, *a: Any, **k: Any) -> Any:
            self.trips += 1
            return await trip(conn, *a, **k)

        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted_trip)

        async def counted_atomic(work: Any) -> Any:
            self.units += 1
            return await atomic(work)

        async def counted_append(*a: Any, **k: Any) -> Any:
            self.appends += 1
            return await append(*a, **k)

        monkeypatch.setattr(store, "atomic", counted_atomic)
        atomic_sync = store.atomic_sync

        async def counted_atomic_sync(work: Any) -> Any:
            self.units += 1
            return await atomic_sync(work)

        monkeypatch.setattr(store, "atomic_sync", counted_atomic_sync)
        monkeypatch.setattr(store, "append_event", counted_append)
        for name in ("execute", "fetchall", "executemany", "emit_each"):
            original, sync = getattr(Tx, name), getattr(SyncTx, name)

            def wrap(original: Any = original, name: str = name) -> Any:
                async def counted(tx: Tx, *a: Any, **k: Any) -> Any:
                    self.statements[name] += 1
                    return await original(tx, *a, **k)
                return counted

            def wrap_sync(sync: Any = sync, name: str = name) -> Any:
                def counted(tx: SyncTx, *a: Any, **k: Any) -> Any:
                    self.statements[name] += 1
                    return sync(tx, *a, **k)
                return counted

            monkeypatch.setattr(Tx, name, wrap())
            monkeypatch.setattr(SyncTx, name, wrap_sync())

    def reset(self) -> None:
        self.units, self.appends, self.trips = 0, 0, 0
        self.statements.clear()



def rows(n: int) -> list[dict[str, Any]]:
    send_id, now, created = uuid.uuid4().hex, time.time(), now_iso()
    return [{"message_id": f"m{i:05d}", "send_id": send_id, "session_id": "s1", "sender": "+15005550006",
             "recipient": f"+8613700{i:06d}", "body": "Flood warning district 3", "encoding": "GSM-7",
             "segments": 1, "state": "queued", "attempts": 0, "next_attempt_at": now, "provider": "twilio",
             "created_at": created, "updated_at": created, "extra": {}} for i in range(n)]


async def statuses(store: Store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in await store.events_after(0, 100_000):
        if e.type == "sms.status":
            out.setdefault(e.data["message_id"], []).append(e.data["state"])
    return out


async def test_a_send_is_one_transaction_for_its_rows_and_its_events_in_chunks(store, monkeypatch) -> None:
    ledger = SmsLedger(store, "twilio", SmsConfig())
    n = Counted(store, monkeypatch)
    await ledger.queue(rows(N))
    chunks = -(-N // EVENT_CHUNK)
    assert n.appends == 0  # before: one awaited append per recipient
    assert n.units == 1 + chunks
    assert n.statements["executemany"] == 1 and n.statements["emit_each"] == chunks
    assert {tuple(v) for v in (await statuses(store)).values()} == {("queued",)}
    assert len(await statuses(store)) == N


async def test_starts_answers_and_receipts_of_many_messages_take_a_few_units(store, monkeypatch) -> None:
    ledger = SmsLedger(store, "twilio", SmsConfig())
    await ledger.queue(rows(N))
    ids = [f"m{i:05d}" for i in range(N)]
    n = Counted(store, monkeypatch)

    started = await ledger.start_many(ids, hold=lambda row: False)
    assert [k for k, _ in started] == ["sending"] * N
    reads = -(-N // CHUNK)  # one read per 500 ids
    assert n.units == 1 and sum(n.statements.values()) <= reads + 2, n.statements  # reads, write, events
    assert n.trips == 1, n.trips  # the unit with its commit: one trip (before: 9, one per statement; then 2)
    n.reset()

    # N API answers at once: the first is written alone, the rest wait for it and go together
    answered = await asyncio.gather(*(ledger.accepted(m, f"SM{m}") for m in ids))
    assert all(r is not None and r["state"] == "sent" for r in answered)
    assert n.units <= 4 and sum(n.statements.values()) <= 5 * n.units, (n.units, n.statements)
    assert n.trips <= n.units, (n.trips, n.units)  # a round's units and its commit: one trip (before: 8 a unit, then 2)
    n.reset()

    # every message's `sent` and `delivered` callbacks at once, one twice (a webhook retried)
    reports = [Receipt(f"SM{m}", s) for m in ids for s in ("sent", "delivered")] + [Receipt(f"SM{ids[0]}", "delivered")]
    results = await asyncio.gather(*(ledger.receipt(r, can_list=True) for r in reports))
    assert Counter(results) == {"applied": 2 * N, "duplicate": 1}
    assert n.units <= 7 and sum(n.statements.values()) <= 8 * n.units, (n.units, n.statements)  # before: 2N+1 units
    assert n.trips <= n.units, (n.trips, n.units)  # before: 10 a unit, then 2
    assert n.appends == 0

    seen = await statuses(store)
    assert len(seen) == N and {tuple(v) for v in seen.values()} == {("queued", "sending", "sent", "delivered")}
    assert await store.sms_counts(started[0][1]["send_id"]) == {"delivered": N}


async def test_a_receipt_that_overtook_the_answer_is_applied_with_it_in_the_same_batch(store) -> None:
    ledger = SmsLedger(store, "twilio", SmsConfig())
    await ledger.queue(rows(3))
    await ledger.start_many(["m00000", "m00001", "m00002"], hold=lambda row: False)
    # the receipt of m00001 comes before its API answer: kept unmatched, then applied with the answer
    assert await ledger.receipt(Receipt("SMb", "delivered"), can_list=True) == "unmatched"
    answered = await asyncio.gather(ledger.accepted("m00000", "SMa"), ledger.accepted("m00001", "SMb"),
                                    ledger.accepted("m00002", "SMc"))
    assert [r["state"] for r in answered] == ["sent", "delivered", "sent"]
    assert (await statuses(store))["m00001"] == ["queued", "sending", "sent", "delivered"]


async def test_a_batch_with_a_bad_item_fails_only_that_item(store) -> None:
    ledger = SmsLedger(store, "twilio", SmsConfig())
    await ledger.queue(rows(2))
    await ledger.start_many(["m00000", "m00001"], hold=lambda row: False)
    bad = Receipt("SMbad", "undelivered", error_code=["not", "text"])  # type: ignore[arg-type]  # SQLite refuses it
    results = await asyncio.gather(ledger.accepted("m00000", "SMa"), ledger.receipt(bad, can_list=True),
                                   ledger.receipt(Receipt("SMzz", "delivered"), can_list=True),
                                   return_exceptions=True)
    assert results[0]["state"] == "sent" and results[2] == "unmatched"
    assert isinstance(results[1], Exception)


async def test_a_unit_takes_the_time_once_for_all_its_rows(store, monkeypatch) -> None:
    """Every row a unit changes gets the unit's `updated_at`, formatted once (before: once per
    row changed, a strftime each: ~3 % of the gateway's Python time at 1,000 SMPP messages/s)."""
    from gateway.services import sms_ledger

    ledger = SmsLedger(store, "twilio", SmsConfig())
    await ledger.queue(rows(N))
    ids = [f"m{i:05d}" for i in range(N)]
    formatted = 0
    now_iso_ = sms_ledger.now_iso

    def counted() -> str:
        nonlocal formatted
        formatted += 1
        return now_iso_()

    monkeypatch.setattr(sms_ledger, "now_iso", counted)
    started = await ledger.start_many(ids, hold=lambda row: False)
    assert formatted == 1
    assert len({row["updated_at"] for _, row in started}) == 1
    stored = await store.fetchall("SELECT DISTINCT updated_at FROM sms WHERE state = 'sending'")
    assert [r[0] for r in stored] == [started[0][1]["updated_at"]]


async def test_receipts_of_known_messages_are_stored_matched_and_rows_write_what_changed(store) -> None:
    """Every statement the database runs, traced: a receipt whose message is known is inserted
    with its message id (before: inserted unmatched, into the unmatched receipts' two indexes,
    then an UPDATE each); a change writes the columns that changed (before: all six, so the
    provider id's index entry was rewritten at every step)."""
    ledger = SmsLedger(store, "twilio", SmsConfig())
    await ledger.queue(rows(50))
    ids = [f"m{i:05d}" for i in range(50)]
    traced: list[str] = []
    assert store._writer is not None
    await store._writer._execute(lambda: store._writer._conn.set_trace_callback(traced.append))  # type: ignore[union-attr]
    await ledger.start_many(ids, hold=lambda row: False)
    updates = [s for s in traced if s.startswith("UPDATE sms SET")]
    assert len(updates) == 50 and all("provider_id" not in s and "error" not in s for s in updates), updates[:1]
    traced.clear()
    await asyncio.gather(*(ledger.accepted(m, f"SM{m}") for m in ids))
    assert all("attempts" not in s for s in traced if s.startswith("UPDATE sms SET")), traced[:3]
    # an early receipt (its message's id not known yet) is stored unmatched, then matched by the answer
    await ledger.queue([{**rows(1)[0], "message_id": "early", "recipient": "+8613799999999"}])
    await ledger.start_many(["early"], hold=lambda row: False)
    assert await ledger.receipt(Receipt("SMearly", "delivered"), can_list=True) == "unmatched"
    traced.clear()
    results = await asyncio.gather(*(ledger.receipt(Receipt(f"SM{m}", s), can_list=True)
                                     for m in ids for s in ("queued", "sent", "delivered")))
    assert set(results) == {"applied"}
    assert not [s for s in traced if s.startswith("UPDATE sms_receipts")], traced[:3]
    updates = [s for s in traced if s.startswith("UPDATE sms SET")]
    assert len(updates) == 50 and all("provider_id" not in s and "attempts" not in s for s in updates), updates[:1]
    assert (await ledger.accepted("early", "SMearly"))["state"] == "delivered"
    await store._writer._execute(lambda: store._writer._conn.set_trace_callback(None))  # type: ignore[union-attr]
    unmatched = await store.fetchall("SELECT count(*) FROM sms_receipts WHERE message_id IS NULL")
    matched = await store.fetchall("SELECT count(*) FROM sms_receipts WHERE message_id IS NOT NULL")
    assert (unmatched[0][0], matched[0][0]) == (0, 151)
    seen = await statuses(store)
    assert {tuple(seen[m]) for m in ids} == {("queued", "sending", "sent", "delivered")}
    assert seen["early"] == ["queued", "sending", "sent", "delivered"]


class PythonCalls:
    """Python function calls made in the database thread while the store writes (the ledger's
    units run there, holding the interpreter lock against the event loop): `sys.setprofile` in
    that thread around each batch, its "call" events counted (C functions are not counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from gateway.store import writer

        self.calls = 0
        original = writer.write_with_units

        def count(frame: Any, event: str, arg: Any) -> None:
            if event == "call":
                self.calls += 1

        def counted(*a: Any, **k: Any) -> Any:
            sys.setprofile(count)
            try:
                return original(*a, **k)
            finally:
                sys.setprofile(None)

        monkeypatch.setattr(writer, "write_with_units", counted)

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


async def test_the_python_the_database_thread_runs_per_message(store, monkeypatch) -> None:
    """Per message, in batches of 50 (as the send window prepares them), SMPP-style: queue, start,
    the answer, the receipt (which names its message). Before (main c9fec76): 25.0 / 53.4 / 50.6 /
    59.8 Python calls a message; each row's changed columns and its UPDATE's parameters were picked
    by generator expressions column by column, every row read decoded its `extra` ("{}") with
    json.loads and every stored one encoded it, each step parsed the send's `created_at` again, a
    receipt batch read its messages twice (by id, then by provider id), the core's states hashed
    and looked up in Python (enum) and each event's encoding went through `json.JSONEncoder`'s
    Python frames. Now 5.0 / 23.4 / 22.6 / 26.7."""
    ledger = SmsLedger(store, "smpp", SmsConfig())
    calls = PythonCalls(monkeypatch)
    n, batch = 500, 50
    queued = [{**r, "provider": "smpp", "extra": {"sent_by": "alice"}} for r in rows(n)]  # as sms.send stores them
    await ledger.queue(queued)
    per = {"queue": calls.take() / n, "start": 0.0, "accept": 0.0, "receipt": 0.0}
    for i in range(0, n, batch):
        part = queued[i:i + batch]
        await ledger.start_many([r["message_id"] for r in part], hold=lambda row: False)
        per["start"] += calls.take() / n
        await asyncio.gather(*(ledger.accepted(r["message_id"], f"P{r['message_id']}") for r in part))
        per["accept"] += calls.take() / n
        results = await asyncio.gather(*(ledger.receipt(Receipt(f"P{r['message_id']}", "delivered",
                                                                message_id=r["message_id"], to=r["recipient"]),
                                                        can_list=False) for r in part))
        assert set(results) == {"applied"}
        per["receipt"] += calls.take() / n
    assert per["queue"] <= 9 and per["start"] <= 26 and per["accept"] <= 25 and per["receipt"] <= 29, per
    seen = await statuses(store)
    assert len(seen) == n and {tuple(v) for v in seen.values()} == {("queued", "sending", "sent", "delivered")}


async def test_receipts_that_name_their_message_read_it_once(store) -> None:
    """An SMPP receipt carries our message id: its batch reads the messages by id and does not read
    them again by provider id (before: both, every row read and built twice)."""
    ledger = SmsLedger(store, "smpp", SmsConfig())
    queued = [{**r, "provider": "smpp"} for r in rows(50)]
    ids = [r["message_id"] for r in queued]
    await ledger.queue(queued)
    await ledger.start_many(ids, hold=lambda row: False)
    await asyncio.gather(*(ledger.accepted(m, f"P{m}") for m in ids))
    traced: list[str] = []
    assert store._writer is not None
    await store._writer._execute(lambda: store._writer._conn.set_trace_callback(traced.append))  # type: ignore[union-attr]
    results = await asyncio.gather(*(ledger.receipt(Receipt(f"P{r['message_id']}", "delivered", message_id=r["message_id"],
                                                            to=r["recipient"]), can_list=False) for r in queued))
    await store._writer._execute(lambda: store._writer._conn.set_trace_callback(None))  # type: ignore[union-attr]
    assert set(results) == {"applied"}
    reads = [s for s in traced if s.startswith("SELECT") and " FROM sms " in s]
    assert reads and all("WHERE message_id IN" in s for s in reads), [s[:120] for s in reads]
    # one that does not name its message is still found by its provider id
    await ledger.queue([{**rows(1)[0], "message_id": "x1", "provider": "smpp", "recipient": "+8613799999999"}])
    await ledger.start_many(["x1"], hold=lambda row: False)
    await ledger.accepted("x1", "Px1")
    assert await ledger.receipt(Receipt("Px1", "delivered"), can_list=False) == "applied"
    assert (await statuses(store))["x1"] == ["queued", "sending", "sent", "delivered"]
