"""Store.atomic: statements and events of one unit commit together, alone, in seq order."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.store import Event, Store, SyncTx, Tx


async def test_unit_rows_and_events_commit_together_and_reach_listeners_in_order(
        store: Store, db_path: Path) -> None:
    seen: list[Event] = []
    store.add_listener(seen.extend)

    def unit(i: int):
        async def work(tx: Tx) -> int:
            await tx.execute("INSERT INTO sms_receipts (provider, provider_id, status, received_at)"
                             " VALUES ('t', ?, 'delivered', 'now')", (f"p{i}",))
            return await tx.emit("unit.done", None, {"i": i})
        return work

    plain = [store.append_event("plain", None, {"i": i}) for i in range(5)]
    seqs = await asyncio.gather(*(store.atomic(unit(i)) for i in range(20)), *plain)
    unit_seqs = seqs[:20]
    assert len(set(unit_seqs)) == 20
    assert [e.seq for e in seen] == sorted(e.seq for e in seen) == list(range(1, 26))
    assert {e.data["i"] for e in seen if e.type == "unit.done"} == set(range(20))
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM sms_receipts").fetchone()[0] == 20


async def test_a_failing_unit_leaves_nothing_and_fails_alone(store: Store, db_path: Path) -> None:
    async def bad(tx: Tx) -> None:
        await tx.execute("INSERT INTO sms_receipts (provider, provider_id, status, received_at)"
                         " VALUES ('t', 'x', 'delivered', 'now')")
        await tx.emit("never", None, {})
        raise ValueError("the unit's own bug")

    async def good(tx: Tx) -> int:
        return await tx.emit("kept", None, {})

    results = await asyncio.gather(store.atomic(bad), store.atomic(good),
                                   store.append_event("plain"), return_exceptions=True)
    assert isinstance(results[0], ValueError)
    assert [e.type for e in await store.events_after(0)] == ["plain", "kept"]
    assert results[1] == 2
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM sms_receipts").fetchone()[0] == 0
    assert (await store.append_event("after")).seq == 3  # no seq was lost or reused


async def test_unit_errors_of_sqlite_fail_the_unit_only(store: Store) -> None:
    async def dup(tx: Tx) -> None:
        await tx.execute("INSERT INTO sms_receipts (provider, provider_id, status, received_at)"
                         " VALUES ('t', 'same', 'delivered', 'now')")

    await store.atomic(dup)
    with pytest.raises(sqlite3.IntegrityError):
        await store.atomic(dup)
    assert (await store.append_event("still-fine")).seq == 1


async def test_a_unit_run_in_the_database_thread_commits_with_its_events_or_fails_alone(
        store: Store, db_path: Path) -> None:
    """Store.atomic_sync: the same guarantees as atomic, with the unit's statements in one trip."""
    seen: list[Event] = []
    store.add_listener(seen.extend)

    def unit(i: int):
        def work(tx: SyncTx) -> int:
            tx.execute("INSERT INTO sms_receipts (provider, provider_id, status, received_at)"
                       " VALUES ('t', ?, 'delivered', 'now')", (f"p{i}",))
            return tx.emit_each("unit.done", [(None, {"i": i}), (None, {"i": i, "second": True})])[0]
        return work

    def bad(tx: SyncTx) -> None:
        tx.execute("INSERT INTO sms_receipts (provider, provider_id, status, received_at)"
                   " VALUES ('t', 'x', 'delivered', 'now')")
        tx.emit_each("never", [(None, {})])
        raise ValueError("the unit's own bug")

    results = await asyncio.gather(store.atomic_sync(unit(0)), store.atomic_sync(bad), store.append_event("plain"),
                                   store.atomic(lambda tx: tx.emit("async", None, {})), store.atomic_sync(unit(1)),
                                   return_exceptions=True)
    assert isinstance(results[1], ValueError)
    assert [e.seq for e in seen] == list(range(1, 7))  # no seq lost to the failed unit, in order
    assert sorted(e.type for e in seen) == ["async", "plain", "unit.done", "unit.done", "unit.done", "unit.done"]
    assert {results[0], results[4]} == {e.seq for e in seen if e.type == "unit.done" and "second" not in e.data}
    with sqlite3.connect(db_path) as db:
        assert sorted(r[0] for r in db.execute("SELECT provider_id FROM sms_receipts")) == ["p0", "p1"]
    with pytest.raises(sqlite3.IntegrityError):  # SQLite's own error fails the unit only
        await store.atomic_sync(unit(0))
    assert (await store.append_event("after")).seq == 7
