"""Store.atomic: statements and events of one unit commit together, alone, in seq order."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.store import Event, Store, Tx


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
