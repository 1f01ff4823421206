"""Terminals and instructions at fleet scale, against a real store: what happens to many
terminals at once (a cell outage silencing them all, a restart after a kill, an instruction to a
fleet that is offline) is written as one unit of work, not one awaited store round trip per
terminal while the timer holds everything else up."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

import gateway.services.terminals as terminals_module
from gateway.config_schema import TerminalsConfig
from gateway.directory import Directory, Endpoint
from gateway.events import EventBus
from gateway.protocol import Principal
from gateway.protocol.terminals import TerminalInstructParams
from gateway.services.instructions import InstructionService
from gateway.services.sessions import SessionService
from gateway.services.terminals import TerminalService
from gateway.store import Store
from gateway.store.terminals import deliveries
from tests.store.conftest import db_path, store  # noqa: F401  (fixtures: a real SQLite store in tmp_path)

N = 200


class FakeConn:
    def __init__(self, tid: str) -> None:
        self.id = f"conn-{tid}"
        self.principal = Principal(tid, "terminal")
        self.closed = False
        self.log = structlog.get_logger("test").bind(conn_id=self.id)

    async def close(self, code: int, reason: str) -> None:
        self.closed = True


def directory() -> Directory:
    return Directory(Endpoint(f"t{i:03d}", kind="terminal", phone=f"+8613800{i:06d}") for i in range(N))



def count_units(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    units: list[int] = []
    real = store.atomic

    async def counting(work: Any) -> Any:
        units.append(1)
        return await real(work)

    monkeypatch.setattr(store, "atomic", counting)
    return units


async def presence_events(store: Store, state: str) -> dict[str, dict]:
    return {e.data["terminal_id"]: e.data for e in await store.events_after(0, 10_000)
            if e.type == "terminal.presence" and e.data["state"] == state}


async def online_fleet(store: Store) -> tuple[TerminalService, EventBus, list[FakeConn]]:
    bus = EventBus(store)
    svc = TerminalService(store, bus, directory(), TerminalsConfig(heartbeat_interval_s=60, missed_heartbeats=1))
    await svc.start()
    conns = [FakeConn(tid) for tid in svc.ids]
    for c in conns:  # each hello is its own request: its own unit
        await svc.on_authenticated(c)
    assert len(await presence_events(store, "online")) == N
    return svc, bus, conns


async def test_a_fleet_silent_at_once_goes_offline_in_one_unit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    svc, bus, conns = await online_fleet(store)
    units = count_units(store, monkeypatch)
    later = SimpleNamespace(monotonic=lambda: time.monotonic() + 120, time=time.time)
    monkeypatch.setattr(terminals_module, "time", later)  # every heartbeat window has run out
    svc._wake.set()
    async with asyncio.timeout(30):
        while not all(c.closed for c in conns):
            await asyncio.sleep(0.01)
        while len(offline := await presence_events(store, "offline")) < N:
            await asyncio.sleep(0.01)
    assert {d["reason"] for d in offline.values()} == {"heartbeat-missed"}
    assert len(units) == 1, f"{len(units)} units of work for {N} terminals going offline at once"
    await svc.stop()
    bus.close()


async def test_after_a_kill_the_fleet_is_marked_offline_in_one_unit(store: Store,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    svc, bus, _ = await online_fleet(store)  # then the gateway is killed: never stopped
    bus2 = EventBus(store)
    restarted = TerminalService(store, bus2, directory(), TerminalsConfig())
    units = count_units(store, monkeypatch)
    await restarted.start()
    offline = await presence_events(store, "offline")
    assert len(offline) == N and {d["reason"] for d in offline.values()} == {"gateway-restarted"}
    assert len(units) == 1, f"{len(units)} units of work for {N} terminals marked offline at start"
    await restarted.stop()
    await svc.stop()
    bus.close()
    bus2.close()


class RecordingSms:
    """The SMS service as the instructions see it: records each send, and how many were under way
    at once (each yields to the loop, as the real one does on its store round trips)."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.inflight = self.peak = 0

    async def send(self, **kw: Any) -> dict:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        for _ in range(3):
            await asyncio.sleep(0)
        self.inflight -= 1
        self.sent.append(kw)
        return {"message_ids": [kw["message_id"]]}


async def test_an_instruction_to_an_offline_fleet_falls_back_in_one_unit(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """All N terminals offline: every deadline is due at once. One unit turns them all to
    fallback-sms (with their events), their SMS are queued together, and one unit records that;
    not two awaited units and one SMS after another per terminal."""
    bus = EventBus(store)
    terminals = TerminalService(store, bus, directory(), TerminalsConfig())
    sessions = SessionService(store, bus)
    sms = RecordingSms()
    instructions = InstructionService(store, sessions, sms, terminals, terminals._directory)  # type: ignore[arg-type]
    await terminals.start()
    await instructions.start()
    session_id = (await sessions.create(title="Flood", created_by="alice", origin="test"))["session_id"]
    units = count_units(store, monkeypatch)
    params = TerminalInstructParams(targets=terminals.ids, text="Evacuate the river bank", session_id=session_id)
    reply = await instructions.instruct("alice", params)
    assert {t["state"] for t in reply["terminals"]} == {"queued"} and len(reply["terminals"]) == N
    async with asyncio.timeout(30):
        while True:
            rows = await deliveries(store, "instruction_id = ?", (reply["instruction_id"],))
            if all(r["sms_queued"] for r in rows):
                break
            await asyncio.sleep(0.01)
    assert {r["state"] for r in rows} == {"fallback-sms"}
    assert sorted(m["message_id"] for m in sms.sent) == sorted(r["sms_message_id"] for r in rows)
    assert len({m["message_id"] for m in sms.sent}) == N
    events = [e for e in await store.events_after(0, 10_000) if e.type == "terminal.instruction"
              and e.data["step"] == "fallback-sms"]
    assert sorted(e.data["terminal_id"] for e in events) == terminals.ids
    assert len(units) == 3, f"{len(units)} units of work for {N} deliveries falling back"  # instruct, fallback, queued
    assert sms.peak > 1, "the SMS went out one after another"
    await instructions.stop()
    await terminals.stop()
    bus.close()


async def test_the_roster_positions_at_start_are_read_in_one_query_per_500(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each terminal's newest fix (by fix time, then arrival; a late upload of an older fix does
    not win), for 600 terminals in two reads, not one read per terminal."""
    ids = [f"t{i:03d}" for i in range(600)]
    for i, tid in enumerate(ids[:550]):  # the last 50 never reported
        for minute in (1, 3, 2):  # the 02 fix arrives last but is older than 03
            await store.add_track_point(tid, {"lat": i / 100, "lon": minute, "accuracy_m": 5.0,
                                              "time": f"2026-12-01T10:0{minute}:00.000Z", "battery": 50.0 + minute})
    await store.add_track_point("t007", {"lat": 9.0, "lon": 9.0, "accuracy_m": 5.0,
                                         "time": "2026-12-01T10:03:00.000Z"})  # same time, later arrival
    reads: list[str] = []
    real = store._read

    async def counting(sql: str, params: Any = ()) -> Any:
        reads.append(sql)
        return await real(sql, params)

    monkeypatch.setattr(store, "_read", counting)
    newest = await store.last_track_points(ids)
    assert len(reads) == 2
    assert sorted(newest) == ids[:550]
    assert all(p["time"] == "2026-12-01T10:03:00.000Z" and p["lon"] == 3 and p["battery"] == 53.0
               for tid, p in newest.items() if tid != "t007")
    assert newest["t007"]["lat"] == 9.0 and "battery" not in newest["t007"]
    assert newest["t042"]["terminal_id"] == "t042" and newest["t042"]["lat"] == 0.42
