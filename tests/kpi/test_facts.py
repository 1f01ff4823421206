"""What gateway/kpi/facts.py reads back from a real store (SQLite in a temp dir, no sockets): one
target per dispatched call, broadcast SIP target, SMS and instruction delivery, each judged
against the deadlines of the run it started in; runs, state changes and maintenance round-trip."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.kpi import availability, facts, timeliness
from gateway.store import Store
from gateway.timeutil import epoch_to_iso

DEADLINES = {"call": 10.0, "broadcast": 5.0, "sms": 60.0, "instruction": 30.0}


async def _sql(store: Store, sql: str, params: tuple) -> None:
    await store.atomic(lambda tx: tx.execute(sql, params))


async def test_targets_from_the_stored_rows(tmp_path: Path) -> None:
    t0 = time.time() - 600
    at = lambda s: epoch_to_iso(t0 + s)  # noqa: E731
    async with Store(tmp_path / "gw.db") as store:
        call = ("INSERT INTO calls (call_id, direction, remote_uri, created_at, answered_at, ended_at, sip_code,"
                " cause) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        await _sql(store, call, ("c-ok", "outbound", "sip:a@x", at(0), at(3), at(30), 200, "local-hangup"))
        await _sql(store, call, ("c-late", "outbound", "sip:b@x", at(0), at(14), at(30), 200, "local-hangup"))
        await _sql(store, call, ("c-busy", "outbound", "sip:c@x", at(0), None, at(2), 486, "busy"))
        await _sql(store, call, ("c-noans", "outbound", "sip:d@x", at(0), None, at(20), 487, "no-answer"))
        await _sql(store, call, ("c-in", "inbound", "sip:e@x", at(0), None, at(20), None, "missed"))
        targets = [{"target": "spk-1", "kind": "sip", "state": "ended"},
                   {"target": "spk-2", "kind": "sip", "state": "failed", "cause": "busy"},
                   {"target": "zone:yard", "kind": "zone", "state": "ended"}]
        await _sql(store, "INSERT INTO broadcasts (broadcast_id, created_at, ended_at, extra) VALUES (?, ?, ?, ?)",
                   ("b1", epoch_to_iso(time.time() - 1), None,  # still playing
                    json.dumps({"targets": targets})))
        await store.append_event("broadcast.target", None, {"broadcast_id": "b1", "target": "spk-1",
                                                            "state": "connected"})
        sms = ("INSERT INTO sms (message_id, send_id, sender, recipient, body, state, created_at, updated_at, error)"
               " VALUES (?, 's1', '+1', ?, 'x', ?, ?, ?, ?)")
        await _sql(store, sms, ("m-ok", "+8613800000001", "delivered", at(0), at(5), None))
        await _sql(store, sms, ("m-bad", "+8613800000002", "undelivered", at(0), at(4), "30007"))
        await _sql(store, "INSERT INTO sms_receipts (provider, provider_id, status, message_id, received_at)"
                          " VALUES ('twilio', 'SM1', 'delivered', 'm-ok', ?)", (at(5),))
        await _sql(store, "INSERT INTO terminal_instructions (instruction_id, text, require_ack, ack_timeout_s,"
                          " fallback, created_at) VALUES ('i1', 'go', 1, 60, 'sms', ?)", (at(0),))
        dl = "INSERT INTO terminal_deliveries (instruction_id, terminal_id, state, queued_at, delivered_at," \
             " acknowledged_at) VALUES ('i1', ?, ?, ?, ?, ?)"
        await _sql(store, dl, ("unit-7", "acknowledged", at(0), at(1), at(20)))
        await _sql(store, dl, ("unit-8", "delivered", at(0), at(1), None))
        deadlines = await facts.deadlines(store, DEADLINES)
        found = await facts.load_targets(store, t0 - 1, time.time() + 1, deadlines)
    r = timeliness.compute(found, now=time.time())
    by = {(m["channel"], m["ref"], m["target"]): m for m in r["misses"]}
    ch = r["channels"]
    assert (ch["call"]["met"], ch["call"]["missed"]) == (2, 2)  # answered, busy (a final answer) in time
    assert by[("call", "c-late", "sip:b@x")]["late_s"] == pytest.approx(4, abs=0.01)
    noans = by[("call", "c-noans", "sip:d@x")]
    assert noans["reached"] is False and noans["why"] == "ended: no-answer"
    assert (ch["broadcast"]["met"], ch["broadcast"]["missed"], ch["broadcast"]["pending"]) == (1, 0, 1)
    assert (ch["sms"]["met"], ch["sms"]["missed"]) == (1, 1)
    assert by[("sms", "m-bad", "+8613800000002")]["why"] == "undelivered: 30007"
    assert (ch["instruction"]["met"], ch["instruction"]["missed"]) == (1, 1)
    assert by[("instruction", "i1", "unit-8")]["why"] == "not acknowledged (delivered)"


async def test_runs_states_maintenance_and_deadlines_of_their_run(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        t1 = time.time() - 10
        run1 = await facts.start_run(store, {**DEADLINES, "call": 5.0}, epoch_to_iso(t1 - 5))
        await facts.record_state(store, run1, "sip", False, "sip worker 0 exited (rc -9)", epoch_to_iso(t1))
        await facts.record_state(store, run1, "sip", True, "", epoch_to_iso(t1 + 0.5))
        await facts.stop_run(store, run1)
        run2 = await facts.start_run(store, DEADLINES, epoch_to_iso(time.time() + 2))
        await facts.heartbeat(store, run2, epoch_to_iso(time.time() + 3))
        m = await facts.add_maintenance(store, t1 - 10, t1 + 10, ["sms"], "migration", "root")
        runs, transitions, maint = await facts.load_availability(store, t1 - 60, t1 + 60)
        dl = await facts.deadlines(store, {"call": 99.0, "broadcast": 1, "sms": 1, "instruction": 1})
    assert [r.run_id for r in runs] == [run1, run2] and runs[0].stopped is not None and runs[1].stopped is None
    assert [(t.part, t.up) for t in transitions] == [("sip", False), ("sip", True)]
    assert maint[0].parts == ("sms",) and m["maintenance_id"] == maint[0].maintenance_id
    assert dl.of("call", t1) == 5.0 and dl.of("call", time.time() + 10) == 10.0 and dl.of("call", 0) == 99.0
    assert runs[0].stopped - runs[0].started >= 14  # stopped now, started 15 s ago
    r = availability.compute(runs, transitions, maint, parts=["store", "sip"], whole=["sip"], since=t1 - 60,
                             until=t1 + 60, now=time.time() + 4)
    kinds = sorted(o["part"] for o in r["outages"])
    assert kinds == ["gateway", "sip"], r["outages"]
