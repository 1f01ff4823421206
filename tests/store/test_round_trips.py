"""The cost of a group commit in trips to the database thread (aiosqlite's `_execute`), and a
write committed with its event (`write_emitting`, `put_session(..., event=...)`)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store import Store


def count_trips(store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the writer connection's thread round trips and the writer's batches."""
    counts = {"trips": 0, "batches": 0}
    conn = store._writer
    real_execute, real_commit = conn._execute, store._commit

    async def execute(fn, *args, **kwargs):
        counts["trips"] += 1
        return await real_execute(fn, *args, **kwargs)

    async def commit(batch):
        counts["batches"] += 1
        return await real_commit(batch)

    monkeypatch.setattr(conn, "_execute", execute)
    monkeypatch.setattr(store, "_commit", commit)
    return counts


async def test_a_batch_of_writes_events_and_audit_rows_is_one_trip(store: Store, monkeypatch) -> None:
    """Sessions, events, audit rows and an executemany queued together: one trip to the writer's
    thread per batch (before: one per statement, per cursor closed, per savepoint and the commit)."""
    counts = count_trips(store, monkeypatch)
    writes = [store.put_session({"session_id": f"s{i}", "state": "open"}) for i in range(10)]
    writes += [store.append_event("t", None, {"i": i}) for i in range(10)]
    writes += [store.add_audit("p", "dispatcher", "session.list", {}, "ok") for _ in range(10)]
    writes.append(store.insert_sms([{"message_id": "m1", "send_id": "x", "sender": "+1", "recipient": "+2",
                                     "body": "b", "state": "queued", "attempts": 0, "next_attempt_at": 0,
                                     "created_at": "2026-01-01T00:00:00.000Z"}]))
    await asyncio.gather(*writes)
    assert counts["batches"] >= 1
    assert counts["trips"] == counts["batches"], counts
    assert len(await store.list_audit()) == 10
    assert len(await store.events_after(0)) == 10


async def test_a_session_and_its_event_commit_together_or_not_at_all(store: Store) -> None:
    seen: list[list[int]] = []
    store.add_listener(lambda evs: seen.append([e.seq for e in evs]))
    ev = await store.put_session({"session_id": "s1", "title": "a", "state": "open"},
                                 event=("session.state", {"session_id": "s1", "state": "open"}))
    assert ev is not None and ev.seq == 1 and ev.session_id == "s1" and ev.data["state"] == "open"
    assert (await store.get_session("s1"))["title"] == "a"
    with pytest.raises(Exception):  # a value SQLite cannot bind: neither the row nor the event
        await store.put_session({"session_id": "s2", "state": "open", "created_by": 2**70},
                                event=("session.state", {"session_id": "s2"}))
    assert await store.get_session("s2") is None
    # the next event takes the next seq: none was used by the failed write
    assert (await store.append_event("t")).seq == 2
    assert [e.seq for e in await store.events_after(0)] == [1, 2]
    assert seen == [[1], [2]]


async def test_writes_with_events_keep_seq_order_with_plain_events(store: Store) -> None:
    """In one batch: plain events first, then each write's event, seqs contiguous, listeners in order."""
    seen: list[int] = []
    store.add_listener(lambda evs: seen.extend(e.seq for e in evs))
    results = await asyncio.gather(
        store.put_session({"session_id": "a", "state": "open"}, event=("session.state", {"n": "a"})),
        store.append_event("t", None, {"n": 1}),
        store.put_session({"session_id": "b", "state": "open"}, event=("session.state", {"n": "b"})),
        store.append_event("t", None, {"n": 2}))
    stored = await store.events_after(0)
    assert [e.seq for e in stored] == [1, 2, 3, 4] == seen
    assert sorted(r.seq for r in results) == [1, 2, 3, 4]
    assert {r.seq: r.data for r in results} == {e.seq: e.data for e in stored}


async def test_a_batch_of_units_run_in_the_database_thread_is_one_trip_with_its_commit(store: Store, monkeypatch) -> None:
    """`atomic_sync` units queued with plain writes and events: the whole batch (the plain part,
    each unit in its savepoint, the commit) is one trip to the writer's thread (issue 13: a batch
    of k units took k + 1 trips, each a wait for a busy event loop); a unit that raises is undone
    alone and its events get no seq."""
    counts = count_trips(store, monkeypatch)
    seen: list[int] = []
    store.add_listener(lambda evs: seen.extend(e.seq for e in evs))

    def unit(i: int):
        def work(tx):
            tx.execute("INSERT INTO sms_receipts (provider, provider_id, status, received_at)"
                       " VALUES ('twilio', ?, 'sent', '2026-01-01T00:00:00.000Z')", (f"SM{i}",))
            return tx.emit_each("unit", [(None, {"i": i})])[0]
        return work

    def bad(tx):
        tx.emit_each("unit", [(None, {"bad": True})])
        raise ValueError("no")

    results = await asyncio.gather(
        store.append_event("t", None, {"n": 1}), store.atomic_sync(unit(1)), store.atomic_sync(bad),
        store.put_session({"session_id": "p", "state": "open"}), store.atomic_sync(unit(2)),
        store.atomic_sync(unit(3)), return_exceptions=True)
    assert counts["batches"] >= 1
    assert counts["trips"] == counts["batches"], counts  # before: 6 for this batch (plain part, 4 units, commit)
    assert isinstance(results[2], ValueError), results
    stored = await store.events_after(0)
    assert [e.type for e in stored] == ["t", "unit", "unit", "unit"] and seen == [e.seq for e in stored]
    assert [e.data for e in stored[1:]] == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert [results[1], results[4], results[5]] == [e.seq for e in stored[1:]]
    assert await store.get_session("p") is not None
    assert sorted(r[0] for r in await store.fetchall("SELECT provider_id FROM sms_receipts")) == ["SM1", "SM2", "SM3"]
