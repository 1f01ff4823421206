"""Store over a real SQLite file: seq durability, paging, rows, audit, idempotency, health."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import Unavailable
from gateway.store import _MIGRATIONS, SCHEMA_VERSION, Event, Store

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _sql(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """A separate, plain connection (run in a thread) to see what is really on disk."""
    def run() -> list[tuple]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute(sql, params).fetchall()
        conn.close()
        return rows
    return asyncio.to_thread(run)  # type: ignore[return-value]


async def test_seq_strictly_increasing_across_reopen(db_path: Path) -> None:
    seqs = []
    for _ in range(3):
        async with Store(db_path) as store:
            assert await store.last_seq() == (seqs[-1] if seqs else 0)
            for i in range(5):
                ev = await store.append_event("test.tick", None, {"i": i})
                seqs.append(ev.seq)
    assert seqs == list(range(1, 16))
    async with Store(db_path) as store:
        events = await store.events_after(0)
    assert [e.seq for e in events] == seqs
    assert all(ISO_MS_Z.match(e.time) for e in events)
    assert events[0] == Event(1, "test.tick", events[0].time, None, {"i": 0})
    assert events[0].to_params() == {"seq": 1, "type": "test.tick", "time": events[0].time,
                                     "session_id": None, "data": {"i": 0}}


async def test_seq_never_reused_after_prune_and_reopen(db_path: Path) -> None:
    async with Store(db_path) as store:
        for _ in range(10):
            await store.append_event("x", "s1", {})
        assert await store.prune_events(before_seq=11) == 10
        assert await store.events_after(0) == []
    async with Store(db_path) as store:
        assert await store.last_seq() == 10
        assert (await store.append_event("x")).seq == 11


async def test_append_is_committed_when_it_returns(store: Store, db_path: Path) -> None:
    ev = await store.append_event("call.state", "sess", {"state": "ringing"})
    rows = await _sql(db_path, "SELECT seq, type, session_id, data FROM events WHERE seq = ?", (ev.seq,))
    assert rows == [(ev.seq, "call.state", "sess", '{"state":"ringing"}')]


async def test_events_after_pages(store: Store) -> None:
    for i in range(1234):
        await store.append_event("t", f"s{i % 3}", {"i": i})
    got: list[Event] = []
    cursor = 0
    while page := await store.events_after(cursor, limit=500):
        assert len(page) <= 500
        got.extend(page)
        cursor = page[-1].seq
    assert [e.seq for e in got] == list(range(1, 1235))
    assert [e.data["i"] for e in got] == list(range(1234))
    assert [e.seq for e in await store.events_after(1230, limit=2)] == [1231, 1232]
    assert await store.events_after(1234) == []


async def test_concurrent_appends_are_group_committed(store: Store) -> None:
    batches: list[list[int]] = []
    store.add_listener(lambda evs: batches.append([e.seq for e in evs]))

    async def writer(p: int) -> list[int]:
        return [(await store.append_event("t", None, {"p": p, "i": i})).seq for i in range(100)]

    results = await asyncio.gather(*(writer(p) for p in range(20)))
    for seqs in results:
        assert seqs == sorted(seqs)
    flat = [s for b in batches for s in b]
    assert flat == list(range(1, 2001))  # listeners see every event once, in seq order
    assert len(batches) < 2000 / 5  # many events per transaction


async def test_bad_write_fails_alone(store: Store) -> None:
    async def bad() -> None:
        await store.put_session({"session_id": "s", "title": object()})  # cannot be bound

    results = await asyncio.gather(bad(), *(store.append_event("t") for _ in range(10)),
                                   store.put_session({"session_id": "ok", "state": "open"}),
                                   return_exceptions=True)
    assert isinstance(results[0], sqlite3.Error)
    assert [e.seq for e in results[1:11]] == list(range(1, 11))
    assert (await store.get_session("ok"))["state"] == "open"
    assert await store.get_session("s") is None
    assert [e.seq for e in await store.events_after(0)] == list(range(1, 11))


async def test_session_round_trip(store: Store) -> None:
    row = {"session_id": "s1", "title": "Fire, dock 4", "state": "open",
           "created_at": "2026-11-27T16:00:00.123Z", "closed_at": None, "created_by": "alice",
           "extra": {"origin": "dispatcher"}}
    await store.put_session(row)
    assert await store.get_session("s1") == row
    await store.put_session({"session_id": "s2", "state": "open", "created_by": "bob"})
    s2 = await store.get_session("s2")
    assert ISO_MS_Z.match(s2["created_at"]) and s2["extra"] == {} and s2["title"] is None

    closed = {**row, "state": "closed", "closed_at": "2026-11-27T17:00:00.000Z",
              "extra": {"origin": "dispatcher", "closed_by": "alice"}}
    await store.put_session(closed)
    assert await store.get_session("s1") == closed
    await store.put_session({"session_id": "s1", "title": "Fire, dock 5"})  # partial update
    assert await store.get_session("s1") == {**closed, "title": "Fire, dock 5"}

    assert [r["session_id"] for r in await store.list_sessions()] == ["s1", "s2"]
    assert [r["session_id"] for r in await store.list_sessions(state="open")] == ["s2"]
    assert await store.get_session("nope") is None
    with pytest.raises(ValueError):
        await store.put_session({"session_id": "s3", "colour": "red"})
    with pytest.raises(ValueError):
        await store.put_session({"title": "no id"})


async def test_call_detail_record_round_trip(store: Store) -> None:
    cdr = {"call_id": "c1", "session_id": "s1", "direction": "outbound",
           "local_uri": "sip:gateway@127.0.0.1", "remote_uri": "sip:101@127.0.0.1:5080",
           "state": "calling", "created_at": "2026-11-27T16:00:00.000Z", "answered_at": None,
           "ended_at": None, "sip_code": None, "cause": None, "worker": 0,
           "extra": {"target": "101", "dialed_by": "alice"}}
    await store.put_call(cdr)
    assert await store.get_call("c1") == cdr
    ended = {**cdr, "state": "ended", "answered_at": "2026-11-27T16:00:02.500Z",
             "ended_at": "2026-11-27T16:01:00.000Z", "sip_code": 200, "cause": "remote-hangup",
             "extra": {**cdr["extra"], "sip_reason": "Normal"}}
    await store.put_call(ended)
    assert await store.get_call("c1") == ended
    await store.put_call({**cdr, "call_id": "c2", "direction": "inbound", "created_at": "2026-11-27T16:05:00.000Z"})
    await store.put_call({**cdr, "call_id": "c3", "session_id": "s2"})
    assert [r["call_id"] for r in await store.list_calls(session_id="s1")] == ["c1", "c2"]
    assert len(await store.list_calls()) == 3
    assert await store.get_call("nope") is None


async def test_audit(store: Store) -> None:
    await store.add_audit("alice", "dispatcher", "call.dial", {"target": "101"}, "ok")
    await store.add_audit("bob", "observer", "call.dial", {"target": "102"}, "error", "forbidden")
    await store.add_audit(None, None, "hello", {"token": "s3cret", "client": "console/1.4"}, "error",
                          "not-authenticated")
    rows = await store.list_audit()
    assert [(r["principal"], r["method"], r["result"], r["error_reason"]) for r in rows] == [
        (None, "hello", "error", "not-authenticated"),
        ("bob", "call.dial", "error", "forbidden"),
        ("alice", "call.dial", "ok", None),
    ]
    assert rows[0]["params"] == {"token": "***", "client": "console/1.4"}
    assert rows[2]["params"] == {"target": "101"} and rows[2]["role"] == "dispatcher"
    assert all(ISO_MS_Z.match(r["time"]) for r in rows)
    assert [r["principal"] for r in await store.list_audit(principal="bob")] == ["bob"]
    with pytest.raises(ValueError):
        await store.add_audit("alice", "dispatcher", "x", {}, "maybe")


async def test_idempotency(store: Store) -> None:
    assert await store.idempotency_get("alice", "k1", "call.dial") is None
    assert await store.idempotency_put("alice", "k1", "call.dial", {"call_id": "c1"}) is True
    assert await store.idempotency_put("alice", "k1", "call.dial", {"call_id": "c2"}) is False
    assert await store.idempotency_get("alice", "k1", "call.dial") == {"call_id": "c1"}  # the first wins
    assert await store.idempotency_get("bob", "k1", "call.dial") is None  # keys are per principal
    # ... and per method: the same key on another method is another request.
    assert await store.idempotency_get("alice", "k1", "sms.send") is None
    assert await store.idempotency_put("alice", "k1", "sms.send", {"send_id": "s1"}) is True
    assert await store.idempotency_get("alice", "k1", "sms.send") == {"send_id": "s1"}
    row = await store.idempotency_get_row("alice", "k1", "call.dial")
    assert row is not None and row["method"] == "call.dial" and ISO_MS_Z.match(row["time"])
    assert await store.prune_idempotency("9999-01-01T00:00:00.000Z") == 2
    assert await store.idempotency_get("alice", "k1", "call.dial") is None


async def test_idempotency_keys_of_a_version_3_database_kept(db_path: Path) -> None:
    """A database written before keys were scoped by method opens with its keys intact."""
    def v3() -> None:
        with sqlite3.connect(db_path) as conn:
            for v in (1, 2, 3):
                for stmt in _MIGRATIONS[v]:
                    conn.execute(stmt)
            conn.execute("INSERT INTO idempotency (principal, key, method, result, time)"
                         " VALUES ('alice', 'k1', 'call.dial', '{\"call_id\": \"c1\"}',"
                         " '2026-01-01T00:00:00.000Z')")
            conn.execute("PRAGMA user_version = 3")
        conn.close()
    await asyncio.to_thread(v3)
    async with Store(db_path) as store:
        assert await store.idempotency_get("alice", "k1", "call.dial") == {"call_id": "c1"}
        assert await store.idempotency_put("alice", "k1", "sms.send", {"send_id": "s1"}) is True
    assert await _sql(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_schema_versioned_and_wal(store: Store, db_path: Path) -> None:
    assert await _sql(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert await _sql(db_path, "PRAGMA journal_mode") == [("wal",)]


async def test_newer_schema_refused(db_path: Path) -> None:
    async with Store(db_path):
        pass
    await _sql(db_path, "PRAGMA user_version = 99")
    with pytest.raises(Unavailable) as info:
        await Store(db_path).open()
    assert info.value.reason == "store-schema-too-new"


async def test_health_and_closed(db_path: Path) -> None:
    store = Store(db_path)
    assert not await store.healthy()
    await store.open()
    assert await store.healthy()
    await store.close()
    assert not await store.healthy()
    with pytest.raises(Unavailable):
        await store.append_event("t")


async def test_close_commits_queued_writes(db_path: Path) -> None:
    store = Store(db_path)
    await store.open()
    pending = [asyncio.create_task(store.append_event("t", None, {"i": i})) for i in range(50)]
    await asyncio.sleep(0)  # all queued
    await store.close()
    assert [t.result().seq for t in pending] == list(range(1, 51))
    assert await _sql(db_path, "SELECT count(*) FROM events") == [(50,)]


async def test_memory_store() -> None:
    async with Store(":memory:") as store:
        await store.append_event("t", None, {"a": 1})
        await store.put_session({"session_id": "s", "state": "open"})
        assert [e.data for e in await store.events_after(0)] == [{"a": 1}]
        assert (await store.get_session("s"))["state"] == "open"
        assert await store.healthy()
