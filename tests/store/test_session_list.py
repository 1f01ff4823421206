"""`SessionService.list` keeps the sessions in memory while every session write is applied to them
(gateway/services/session_lists.py): it reads the store once, and again only after a write made
beside the service; it never returns a list older than the last write that finished before it was
asked, and its reply is the text a plain encoding of the store's rows gives."""

from __future__ import annotations

import asyncio

import pytest

from gateway.events import EventBus
from gateway.protocol import codec
from gateway.services import session_lists, sessions as sessions_module
from gateway.services.sessions import SessionService
from gateway.store import Store


def counting_reads(store: Store, monkeypatch) -> list[str | None]:
    reads: list[str | None] = []
    real = store.list_session_rows

    async def list_session_rows(state=None, limit=1000):
        reads.append(state)
        return await real(state=state, limit=limit)

    monkeypatch.setattr(store, "list_session_rows", list_session_rows)
    return reads


async def check(sessions: SessionService, store: Store, state: str | None = None) -> list[str]:
    """The list is what the store holds (its order, its rows), encoded as a plain encoding would be."""
    result = await sessions.list_result(state)
    assert result == {"sessions": [
        {k: r[k] for k in ("session_id", "title", "state", "created_at", "closed_at", "created_by")}
        for r in await store.list_sessions(state=state, limit=session_lists.LIST_LIMIT)]}
    assert codec.encode_result(7, result) == codec.encode_result(7, dict(result))
    return [s["session_id"] for s in result["sessions"]]


async def test_lists_read_the_store_once_while_every_write_goes_through_the_service(
        store: Store, bus: EventBus, monkeypatch) -> None:
    ticks = iter(range(1, 100))  # one create per second: each sorts after the one before
    monkeypatch.setattr(sessions_module, "now_iso", lambda: f"2026-01-01T00:00:{next(ticks):02d}.000Z")
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    a = await sessions.create(title="a", created_by="p")
    for _ in range(5):
        assert [s["session_id"] for s in await sessions.list()] == [a["session_id"]]
    assert reads == [None]
    b = await sessions.create(title="b", created_by="p")  # applied to the kept sessions: no read
    assert await check(sessions, store) == [a["session_id"], b["session_id"]]
    await sessions.close(a["session_id"], closed_by="p")  # a change in place: no read either
    assert [s["state"] for s in await sessions.list()] == ["closed", "open"]
    assert await check(sessions, store, "open") == [b["session_id"]]
    c = await sessions.create(title="c", created_by="p")
    assert await check(sessions, store, "closed") == [a["session_id"]]
    assert await check(sessions, store, "open") == [b["session_id"], c["session_id"]]
    assert await check(sessions, store) == [a["session_id"], b["session_id"], c["session_id"]]
    assert await sessions.list("nope") == [] and await sessions.list("nope") == []
    assert reads == [None]  # before: [None, None, "open", "closed", "nope", "nope"]


async def test_a_read_overlapping_writes_is_kept_with_those_writes_applied_on_top(
        store: Store, bus: EventBus, monkeypatch) -> None:
    """The benchmark's pattern: creates keep overlapping the lists. Before, a read that overlapped
    a write was answered but not kept, so the next list read again (here: every round)."""
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    first = await sessions.create(title="a", created_by="p")
    for i in range(10):
        listed, created, listed_open = await asyncio.gather(
            sessions.list(), sessions.create(title=f"t{i}", created_by="p"), sessions.list("open"))
        assert first["session_id"] in [s["session_id"] for s in listed]
        ids = await check(sessions, store)
        assert created["session_id"] in ids and len(ids) == i + 2
    await sessions.close(first["session_id"], closed_by="p")
    await check(sessions, store, "open")
    assert reads == [None]  # before: 11 reads or more


async def test_each_row_is_encoded_once(store: Store, bus: EventBus, monkeypatch) -> None:
    sessions = SessionService(store, bus)
    encoded = []
    real = session_lists._kept
    monkeypatch.setattr(session_lists, "_kept", lambda row: encoded.append(row[0]) or real(row))
    made = []
    for i in range(10):
        made.append((await sessions.create(title=f"s{i}", created_by="p"))["session_id"])
        await check(sessions, store)
    assert sorted(encoded) == sorted(made)  # each once (before the first series: 55)
    await sessions.close(made[3], closed_by="p")
    await check(sessions, store)
    assert encoded[-1] == made[3] and len(encoded) == 11


async def test_a_create_appends_to_the_lists_built_before_without_rebuilding_them(
        store: Store, bus: EventBus, monkeypatch) -> None:
    """Workload (a)'s pattern, a create between lists: each list was rebuilt from every kept row
    after each create (a join over all sessions, 20 times a second); now the new session's text
    is appended to the lists built before. A close (a change in place) still rebuilds."""
    ticks = iter(range(1, 100))
    monkeypatch.setattr(sessions_module, "now_iso", lambda: f"2026-01-01T00:00:{next(ticks):02d}.000Z")
    sessions = SessionService(store, bus)
    built = []
    real = session_lists._result
    monkeypatch.setattr(session_lists, "_result", lambda rows, state: built.append(state) or real(rows, state))
    first = await sessions.create(title="first", created_by="p")
    for state in (None, "open", "closed"):
        await check(sessions, store, state)
    assert sorted(built, key=str) == sorted([None, "open", "closed"], key=str)
    for i in range(5):
        await sessions.create(title=f"s{i}", created_by="p")
        for state in (None, "open", "closed"):
            await check(sessions, store, state)
    assert len(built) == 3  # before: 3 + 15
    await sessions.close(first["session_id"], closed_by="p")
    for state in (None, "open", "closed"):
        await check(sessions, store, state)
    assert len(built) == 6


async def test_a_write_made_beside_the_service_makes_the_next_list_read(store: Store, bus: EventBus,
                                                                       monkeypatch) -> None:
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    await sessions.create(title="a", created_by="p")
    await check(sessions, store)
    await store.put_session({"session_id": "zz-direct", "state": "open", "created_at": "2000-01-01T00:00:00.000Z"})
    assert (await check(sessions, store))[0] == "zz-direct" and len(reads) == 2
    # one made while a list reads: that read is answered but its rows are not kept as exact
    listed, _ = await asyncio.gather(sessions.list(), store.put_session(
        {"session_id": "zz-during", "state": "open", "created_at": "2001-01-01T00:00:00.000Z"}))
    assert "zz-direct" in [s["session_id"] for s in listed]
    assert (await check(sessions, store))[:2] == ["zz-direct", "zz-during"]
    # a write that fails is applied nowhere: the next list reads (and finds nothing new)
    with pytest.raises(ValueError):
        await store.put_session({"session_id": "bad", "no_such_column": 1})
    await check(sessions, store)
    n = len(reads)
    await check(sessions, store)
    assert len(reads) == n


async def test_a_create_that_sorts_before_the_last_session_is_placed_in_order(store: Store, bus: EventBus,
                                                                           monkeypatch) -> None:
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    await store.put_session({"session_id": "future", "state": "open", "created_at": "2999-01-01T00:00:00.000Z"})
    await sessions.list()
    made = await sessions.create(title="now", created_by="p")  # the wall clock is before "future"
    assert await check(sessions, store) == [made["session_id"], "future"]
    assert len(reads) == 1


async def test_beyond_the_limit_lists_read_the_store(store: Store, bus: EventBus, monkeypatch) -> None:
    """The kept sessions are exact only while the store holds no more than a list shows: the
    newest open sessions may lie among older ones than the newest of all. A list is the newest
    sessions, oldest first (it was the oldest: past the limit a new session was never listed)."""
    monkeypatch.setattr(session_lists, "LIST_LIMIT", 3)
    ticks = iter(range(1, 100))
    monkeypatch.setattr(sessions_module, "now_iso", lambda: f"2026-01-01T00:00:{next(ticks):02d}.000Z")
    sessions = SessionService(store, bus)
    made = [(await sessions.create(title=f"s{i}", created_by="p"))["session_id"] for i in range(3)]
    assert await check(sessions, store) == made
    reads = counting_reads(store, monkeypatch)
    for s in made:
        await sessions.close(s, closed_by="p")
    more = [(await sessions.create(title=f"m{i}", created_by="p"))["session_id"] for i in range(2)]
    assert [s["session_id"] for s in await sessions.list()] == [made[2], *more]  # the newest 3
    assert await check(sessions, store) == [made[2], *more]
    assert [s["session_id"] for s in await sessions.list("open")] == more
    assert [s["session_id"] for s in await sessions.list("open")] == more
    assert reads[:3] == [None, None, "open"] and reads.count("open") == 1  # the last kept: nothing written
    newest_closed = [(await sessions.create(title=f"c{i}", created_by="p"))["session_id"] for i in range(4)]
    for sid in newest_closed:
        await sessions.close(sid, closed_by="p")
    # the console's history view (state closed): the newest closed, oldest first; before, the
    # three closed first were shown for ever
    assert await check(sessions, store, "closed") == newest_closed[1:]


async def test_create_stores_the_session_and_its_event_in_one_commit(store: Store, bus: EventBus,
                                                                     monkeypatch) -> None:
    batches: list[int] = []
    real = store._commit

    async def commit(batch):
        batches.append(len(batch))
        await real(batch)

    monkeypatch.setattr(store, "_commit", commit)
    sessions = SessionService(store, bus)
    s = await sessions.create(title="a", created_by="p")
    await sessions.close(s["session_id"], closed_by="p")
    assert batches == [1, 1]  # before: the row, then its event (two commits waited for in turn)
    evs = await store.events_after(0)
    assert [(e.type, e.session_id, e.data["state"]) for e in evs] == [
        ("session.state", s["session_id"], "open"), ("session.state", s["session_id"], "closed")]
    assert evs[0].data == s


