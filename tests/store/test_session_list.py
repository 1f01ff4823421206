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
    sessions = SessionService(store, bus)
    reads = counting_reads(store, monkeypatch)
    a = await sessions.create(title="a", created_by="p")
    for _ in range(5):
        assert [s["session_id"] for s in await sessions.list()] == [a["session_id"]]
    assert reads == [None]
    b = await sessions.create(title="b", created_by="p")
    assert [s["session_id"] for s in await sessions.list()] == [a["session_id"], b["session_id"]]
    await sessions.close(a["session_id"], closed_by="p")
    assert [s["state"] for s in await sessions.list()] == ["closed", "open"]
    assert [s["session_id"] for s in await sessions.list("open")] == [b["session_id"]]
    assert [s["session_id"] for s in await sessions.list("open")] == [b["session_id"]]
    assert reads == [None, None, None, "open"]
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
    """The list is read again after each write, but a session's dict and JSON text are made once
    per stored version of its row; the reply is the same text a plain encoding gives."""
    sessions = SessionService(store, bus)
    encoded = []
    real = sessions_module._encode_row
    monkeypatch.setattr(sessions_module, "_encode_row", lambda row: encoded.append(row[0]) or real(row))
    made = []
    for i in range(10):
        made.append((await sessions.create(title=f"s{i}", created_by="p"))["session_id"])
        result = await sessions.list_result()
        assert result == {"sessions": [
            {k: r[k] for k in ("session_id", "title", "state", "created_at", "closed_at", "created_by")}
            for r in await store.list_sessions()]}
        assert codec.encode_result(7, result) == codec.encode_result(7, dict(result))
    assert sorted(encoded) == sorted(made)  # each once (before: 1 + 2 + ... + 10 = 55)
    await sessions.close(made[3], closed_by="p")
    await sessions.list_result()
    assert encoded[-1] == made[3] and len(encoded) == 11
