"""`SessionService.list` is read once between two session writes, and never returns a list older
than the last write that finished before it was asked."""

from __future__ import annotations

import asyncio

from gateway.events import EventBus
from gateway.protocol import codec
from gateway.services import sessions as sessions_module
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


async def test_lists_between_two_writes_read_the_store_once(store: Store, bus: EventBus, monkeypatch) -> None:
    ticks = iter(range(1, 100))  # one create per second: each sorts after the one before
    monkeypatch.setattr(sessions_module, "now_iso", lambda: f"2026-01-01T00:00:{next(ticks):02d}.000Z")
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    a = await sessions.create(title="a", created_by="p")
    for _ in range(5):
        assert [s["session_id"] for s in await sessions.list()] == [a["session_id"]]
    assert reads == [None]
    b = await sessions.create(title="b", created_by="p")  # appended to the kept list: no read
    assert [s["session_id"] for s in await sessions.list()] == [a["session_id"], b["session_id"]]
    assert reads == [None]
    await sessions.close(a["session_id"], closed_by="p")  # a change in place: read again
    assert [s["state"] for s in await sessions.list()] == ["closed", "open"]
    assert [s["session_id"] for s in await sessions.list("open")] == [b["session_id"]]
    assert [s["session_id"] for s in await sessions.list("open")] == [b["session_id"]]
    assert reads == [None, None, "open"]
    c = await sessions.create(title="c", created_by="p")  # both kept lists take it, "closed" none
    assert await sessions.list("closed") == [await sessions.list()][0][:1]
    assert [s["session_id"] for s in await sessions.list("open")] == [b["session_id"], c["session_id"]]
    assert [s["session_id"] for s in await sessions.list()] == [a["session_id"], b["session_id"], c["session_id"]]
    assert reads == [None, None, "open", "closed"]
    # a state no session can have is answered (empty) but not kept
    assert await sessions.list("nope") == [] and await sessions.list("nope") == []
    assert reads[-2:] == ["nope", "nope"]


async def test_a_list_read_during_a_write_is_not_kept(store: Store, bus: EventBus, monkeypatch) -> None:
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    await sessions.create(title="a", created_by="p")
    # the read and a create run concurrently: whichever the read saw, the next list sees the create
    _, created = await asyncio.gather(sessions.list(), sessions.create(title="b", created_by="p"))
    assert created["session_id"] in [s["session_id"] for s in await sessions.list()]
    assert len(reads) == 2
    assert len(await sessions.list()) == 2 and len(reads) == 2


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


async def test_after_a_write_only_the_changed_session_is_encoded_again(store: Store, bus: EventBus,
                                                                      monkeypatch) -> None:
    """A create appends its session to the kept lists (no read); a read after another write
    re-encodes only the rows that changed; the reply is always the text a plain encoding gives."""
    sessions = SessionService(store, bus)
    encoded = []
    real = sessions_module._encode_row
    monkeypatch.setattr(sessions_module, "_encode_row", lambda row: encoded.append(row[0]) or real(row))
    reads = counting_reads(store, monkeypatch)

    async def check() -> None:
        result = await sessions.list_result()
        assert result == {"sessions": [
            {k: r[k] for k in ("session_id", "title", "state", "created_at", "closed_at", "created_by")}
            for r in await store.list_sessions()]}
        assert codec.encode_result(7, result) == codec.encode_result(7, dict(result))

    made = []
    for i in range(10):
        made.append((await sessions.create(title=f"s{i}", created_by="p"))["session_id"])
        await check()
    assert sorted(encoded) == sorted(made)  # each once (before: 1 + 2 + ... + 10 = 55)
    # the first list, then a read only after a create in the same ms as the one before it with a
    # lower id (it does not sort last); each other create was appended to the kept list
    stored = {r["session_id"]: (r["created_at"], r["session_id"]) for r in await store.list_sessions()}
    out_of_order = sum(stored[b] < stored[a] for a, b in zip(made, made[1:]))
    assert len(reads) == 1 + out_of_order
    await sessions.close(made[3], closed_by="p")
    await check()
    assert encoded[-1] == made[3] and len(encoded) == 11 and len(reads) == 2 + out_of_order
    # a session stored by someone else (not through this service): the next list reads it
    await store.put_session({"session_id": "zz-direct", "state": "open", "created_at": "2000-01-01T00:00:00.000Z"})
    await check()
    assert (await sessions.list())[0]["session_id"] == "zz-direct" and len(reads) == 3 + out_of_order


async def test_a_create_that_sorts_before_the_last_session_makes_the_list_read_again(
        store: Store, bus: EventBus, monkeypatch) -> None:
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    await store.put_session({"session_id": "future", "state": "open", "created_at": "2999-01-01T00:00:00.000Z"})
    await sessions.list()
    made = await sessions.create(title="now", created_by="p")  # the wall clock is before "future"
    assert [s["session_id"] for s in await sessions.list()] == [made["session_id"], "future"]
    assert len(reads) == 2


async def test_creates_in_flight_together_are_appended_and_a_read_meanwhile_is_not_kept(
        store: Store, bus: EventBus, monkeypatch) -> None:
    ticks = iter(range(1, 100))
    monkeypatch.setattr(sessions_module, "now_iso", lambda: f"2026-01-01T00:00:{next(ticks):02d}.000Z")
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    await sessions.list()  # kept: nothing in progress
    created = await asyncio.gather(*(sessions.create(title=f"t{i}", created_by="p") for i in range(5)))
    assert [s["session_id"] for s in await sessions.list()] == [c["session_id"] for c in created]
    assert reads == [None]  # one batch, five returns: each appended in turn, no read
    # a read while creates are in progress is answered but not kept
    listed, *more = await asyncio.gather(sessions.list("open"),
                                         *(sessions.create(title=f"u{i}", created_by="p") for i in range(3)))
    assert reads == [None, "open"]
    assert [s["session_id"] for s in await sessions.list("open")] == [c["session_id"] for c in created + more]
    assert reads == [None, "open", "open"]
    assert [s["session_id"] for s in await sessions.list()] == [c["session_id"] for c in created + more]
    assert reads == [None, "open", "open"]
