"""Retention over a real SQLite file: what is pruned, what is kept, seqs never reused."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest

from gateway import sms_store
from gateway.errors import InvalidParams
from gateway.events import EventBus
from gateway.retention import Retention, RetentionPolicy
from gateway.store import Store, Tx
from gateway.store.terminals import deliveries, get_instructions, insert_deliveries, insert_instruction
from gateway.timeutil import now_iso


async def _seed(store: Store, n: int) -> None:
    for i in range(n):
        await store.append_event("t", None, {"i": i})
        await store.add_audit("alice", "dispatcher", "session.create", {"i": i}, "ok")
        await store.idempotency_put("alice", f"k{i}", "session.create", {"i": i})


async def test_prune_by_age_keeps_seqs_increasing_and_refuses_pruned_resumes(db_path) -> None:
    async with Store(db_path) as store:
        bus = EventBus(store)
        await _seed(store, 30)
        now = dt.datetime.now(dt.UTC)
        # Nothing is a year old: the defaults prune nothing.
        kept = Retention(store, bus, RetentionPolicy())
        assert await kept.prune_once() == {"events": 0, "audit": 0, "idempotency": 0, "sms_reports": 0, "terminal_track": 0,
                  "terminal_instructions": 0, "kpi": 0, "video_recordings": 0}
        assert bus.oldest_seq == 1
        # Seen from 500 days later, everything is older than the cutoff.
        later = Retention(store, bus, RetentionPolicy(), clock=lambda: now + dt.timedelta(days=500))
        assert await later.prune_once() == {"events": 30, "audit": 30, "idempotency": 30, "sms_reports": 0, "terminal_track": 0,
                  "terminal_instructions": 0, "kpi": 0, "video_recordings": 0}
        assert await store.events_after(0) == [] and await store.list_audit() == []
        assert await store.idempotency_get("alice", "k1", "session.create") is None
        assert bus.oldest_seq == 31
        with pytest.raises(InvalidParams) as err:
            bus.subscribe(5)
        assert err.value.reason == "seq-pruned"
        bus.subscribe(30).close()  # nothing after 30 was pruned
        bus.subscribe(0).close()  # 0: everything still stored
        bus.close()
    async with Store(db_path) as store:  # reopened: the next seq is still higher
        assert (await store.append_event("t")).seq == 31


async def test_prune_cuts_at_the_first_new_enough_event(db_path) -> None:
    async with Store(db_path) as store:
        bus = EventBus(store)
        await _seed(store, 25)
        events = await store.events_after(0)
        cutoff_time = events[17].time  # events 1..17 older than this one (same ms: kept)
        cut = dt.datetime.fromisoformat(cutoff_time.replace("Z", "+00:00"))
        policy = RetentionPolicy(events_keep_days=1, audit_keep_days=0, idempotency_keep_days=0)
        r = Retention(store, bus, policy, clock=lambda: cut + dt.timedelta(days=1))
        counts = await r.prune_once()
        left = [e.seq for e in await store.events_after(0)]
        assert left == [e.seq for e in events if e.time >= cutoff_time] and left[-1] == 25
        assert counts == {"events": 25 - len(left), "audit": 0, "idempotency": 0, "sms_reports": 0, "terminal_track": 0,
                  "terminal_instructions": 0, "kpi": 0, "video_recordings": 0}
        assert bus.oldest_seq == left[0]
        assert len(await store.list_audit(limit=100)) == 25  # 0 days: kept forever
        bus.close()


async def test_sms_receipts_and_inbound_messages_go_with_the_events(db_path) -> None:
    async with Store(db_path) as store:
        bus = EventBus(store)

        async def report(tx: Tx) -> None:
            seq = await tx.emit("sms.inbound", None, {"body": "old"})
            await tx.execute("INSERT INTO sms_inbound (provider, provider_id, dedup_key, sender, recipient,"
                             " body, seq, received_at) VALUES ('twilio', 'SM1', 'SM1', '+8613800138000',"
                             " '+15005550006', 'old', ?, ?)", (seq, now_iso()))
            await tx.execute("INSERT INTO sms_receipts (provider, provider_id, status, received_at)"
                             " VALUES ('twilio', 'SM2', 'delivered', ?)", (now_iso(),))

        await store.atomic(report)
        now = dt.datetime.now(dt.UTC)
        assert (await Retention(store, bus, RetentionPolicy()).prune_once())["sms_reports"] == 0
        later = Retention(store, bus, RetentionPolicy(), clock=lambda: now + dt.timedelta(days=500))
        assert (await later.prune_once())["sms_reports"] == 2
        assert await sms_store.last_inbound(store, "+8613800138000") is None
        bus.close()


async def test_terminal_positions_go_with_the_events(db_path) -> None:
    async with Store(db_path) as store:
        bus = EventBus(store)
        for i in range(3):
            await store.add_track_point("unit-7", {"lat": 1.0 + i, "lon": 2.0, "accuracy_m": 5.0,
                                                   "time": now_iso()})
        now = dt.datetime.now(dt.UTC)
        assert (await Retention(store, bus, RetentionPolicy()).prune_once())["terminal_track"] == 0
        assert await store.count_track_points("unit-7") == 3
        later = Retention(store, bus, RetentionPolicy(), clock=lambda: now + dt.timedelta(days=500))
        assert (await later.prune_once())["terminal_track"] == 3
        assert await store.count_track_points("unit-7") == 0
        bus.close()


async def _instruction(store: Store, iid: str, tids: list[str], delivered: list[str]) -> None:
    async def work(tx: Tx) -> None:
        await insert_instruction(tx, {"instruction_id": iid, "session_id": None, "text": "go",
                                      "require_ack": True, "ack_timeout_s": 60.0, "fallback": "none",
                                      "targets": tids, "created_by": "alice", "created_at": now_iso()})
        await insert_deliveries(tx, iid, {t: None for t in tids}, now_iso())
        for t in delivered:
            await tx.execute("UPDATE terminal_deliveries SET state = 'acknowledged', delivered_at = ?,"
                             " acknowledged_at = ? WHERE instruction_id = ? AND terminal_id = ?",
                             (now_iso(), now_iso(), iid, t))

    await store.atomic(work)


async def test_instructions_go_with_the_events_unless_a_terminal_has_yet_to_receive_them(db_path) -> None:
    async with Store(db_path) as store:
        bus = EventBus(store)
        await _instruction(store, "ins-done", ["unit-1", "unit-2"], delivered=["unit-1", "unit-2"])
        await _instruction(store, "ins-open", ["unit-1", "unit-3"], delivered=["unit-1"])
        now = dt.datetime.now(dt.UTC)
        assert (await Retention(store, bus, RetentionPolicy()).prune_once())["terminal_instructions"] == 0
        later = Retention(store, bus, RetentionPolicy(), clock=lambda: now + dt.timedelta(days=500))
        assert (await later.prune_once())["terminal_instructions"] == 3  # one instruction, two deliveries
        assert list(await get_instructions(store, ["ins-done", "ins-open"])) == ["ins-open"]
        assert [r["instruction_id"] for r in await deliveries(store, "1 = 1")] == ["ins-open", "ins-open"]
        bus.close()


async def test_video_recordings_go_with_the_events(db_path, tmp_path) -> None:
    rec = tmp_path / "recordings"
    live = rec / "vid-00000000000000aa"  # a live stream's directory (its .mjr): never touched
    live.mkdir(parents=True)
    (live / "video.mjr").write_bytes(b"x")
    old, new = rec / "vid-0000000000000001.webm", rec / "vid-0000000000000002.mkv"
    other = rec / "notes.txt"
    for f in (old, new, other):
        f.write_bytes(b"media")
    year_ago = time.time() - 401 * 86_400
    os.utime(old, (year_ago, year_ago))
    os.utime(other, (year_ago, year_ago))
    async with Store(db_path) as store:
        bus = EventBus(store)
        counts = await Retention(store, bus, RetentionPolicy(), recordings_dir=rec).prune_once()
        assert counts["video_recordings"] == 1
        assert not old.exists() and new.exists() and other.exists() and (live / "video.mjr").exists()
        bus.close()
