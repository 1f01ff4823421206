"""The probe loop with fake checks over a real store (SQLite in a temp dir, no sockets): every
part's state at the start of a run, only changes after, a hook's down stored at once, and changes
seen while the store refuses writes written in order once it takes them again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.errors import Unavailable
from gateway.kpi.probes import Prober
from gateway.store import Store

DEADLINES = {"call": 30.0, "broadcast": 10.0, "sms": 60.0, "instruction": 60.0}


class FlakyStore:
    """A real store whose writes can be refused (as a full disk or a closing store refuses them)."""

    def __init__(self, store: Store) -> None:
        self.store, self.broken = store, False

    async def atomic(self, work):
        if self.broken:
            raise Unavailable("the store refuses writes", reason="unavailable")
        return await self.store.atomic(work)

    async def fetchall(self, sql, params=()):
        return await self.store.fetchall(sql, params)


async def _rows(store: Store) -> list[tuple]:
    return [tuple(r) for r in await store.fetchall("SELECT part, up, cause FROM kpi_part_states ORDER BY id")]


async def _until(store: Store, pred, what: str, timeout: float = 10) -> list[tuple]:
    async with asyncio.timeout(timeout):
        while not pred(rows := await _rows(store)):
            await asyncio.sleep(0.01)
    return rows


async def test_start_changes_and_a_hooks_down(tmp_path: Path) -> None:
    state = {"sip": (True, "")}
    calls = {"sip": 0}

    async def sip() -> tuple[bool, str]:
        calls["sip"] += 1
        return state["sip"]

    async def disk() -> tuple[bool, str]:
        return True, ""

    async with Store(tmp_path / "gw.db") as store:
        p = Prober(store, {"sip": sip, "disk": disk}, interval_s=0.05, timeout_s=1, deadlines=DEADLINES)
        await p.start()
        try:
            assert sorted(await _rows(store)) == [("disk", 1, "start"), ("sip", 1, "start"), ("store", 1, "start")]
            await _until(store, lambda r: calls["sip"] >= 5, "five rounds")
            assert len(await _rows(store)) == 3  # nothing changed: nothing stored
            p.observe("sip", False, "sip worker 0 exited (rc -9)")  # stored as seen, without a probe
            rows = await _until(store, lambda r: len(r) == 4, "the hook's down")
            assert rows[-1] == ("sip", 0, "sip worker 0 exited (rc -9)")
            p.observe("sip", True, "")  # up only once a probe says so
            rows = await _until(store, lambda r: len(r) == 5, "the probe's up")
            assert rows[-1] == ("sip", 1, "")
            state["sip"] = (False, "sip worker at 127.0.0.1:5070 not answering OPTIONS")
            rows = await _until(store, lambda r: len(r) == 6, "the round's down")
            assert rows[-1] == ("sip", 0, "sip worker at 127.0.0.1:5070 not answering OPTIONS")
        finally:
            await p.stop()
        (stopped,) = await store.fetchall("SELECT stopped_at IS NOT NULL, last_seen > started_at FROM kpi_runs")
        assert tuple(stopped) == (1, 1)


async def test_changes_while_the_store_refuses_writes_are_written_later_in_order(tmp_path: Path) -> None:
    state = {"sip": (True, "")}

    async def sip() -> tuple[bool, str]:
        return state["sip"]

    async with Store(tmp_path / "gw.db") as real:
        store = FlakyStore(real)
        p = Prober(store, {"sip": sip}, interval_s=0.05, timeout_s=1, deadlines=DEADLINES)  # type: ignore[arg-type]
        await p.start()
        try:
            store.broken = True
            async with asyncio.timeout(10):
                while p.state["store"][0]:
                    await asyncio.sleep(0.01)
            state["sip"] = (False, "down while the store was")
            async with asyncio.timeout(10):
                while p.state["sip"][0]:
                    await asyncio.sleep(0.01)
            assert len(await _rows(real)) == 2  # the start only: nothing could be written
            store.broken = False
            rows = await _until(real, lambda r: len(r) == 5, "the backlog written")
        finally:
            await p.stop()
    assert rows[2][:2] == ("store", 0) and "heartbeat not written" in rows[2][2]
    assert rows[3] == ("sip", 0, "down while the store was") and rows[4] == ("store", 1, "")


async def test_a_probe_answer_older_than_a_hooks_down_is_not_stored(tmp_path: Path) -> None:
    """A round's OPTIONS answered just before the worker died must not end the outage the
    supervisor's hook recorded meanwhile (it did: up, then down again at the next round)."""
    started, release, more = asyncio.Event(), asyncio.Event(), asyncio.Event()
    calls = 0

    async def sip() -> tuple[bool, str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return True, ""  # the run's start
        if calls == 2:  # the round that straddles the death
            started.set()
            await release.wait()
            return True, ""  # what the worker said before it died
        if calls >= 5:
            more.set()
        return False, "sip worker 0 exited (rc -9); restarting"

    async with Store(tmp_path / "gw.db") as store:
        p = Prober(store, {"sip": sip}, interval_s=0.05, timeout_s=5, deadlines=DEADLINES)
        await p.start()
        try:
            await asyncio.wait_for(started.wait(), 10)
            p.observe("sip", False, "sip worker 0 exited (rc -9)")
            await _until(store, lambda r: len(r) == 3, "the hook's down")
            release.set()
            await asyncio.wait_for(more.wait(), 10)  # three more probes judged it
            rows = await _rows(store)
        finally:
            await p.stop()
    assert [r for r in rows if r[0] == "sip"] == [("sip", 1, "start"), ("sip", 0, "sip worker 0 exited (rc -9)")]


async def test_a_store_refusing_writes_at_start_does_not_stop_the_run(tmp_path: Path) -> None:
    async def sip() -> tuple[bool, str]:
        return True, ""

    async with Store(tmp_path / "gw.db") as real:
        store = FlakyStore(real)
        store.broken = True
        p = Prober(store, {"sip": sip}, interval_s=0.05, timeout_s=1, deadlines=DEADLINES)  # type: ignore[arg-type]
        await p.start()  # does not raise: the gateway starts
        try:
            assert p.run_id is None and p.state["store"][0] is False
            assert await real.fetchall("SELECT COUNT(*) FROM kpi_runs") == [(0,)]
            store.broken = False
            rows = await _until(real, lambda r: len(r) == 3, "the run and its states written")
            (started_at,) = (await real.fetchall("SELECT started_at FROM kpi_runs"))[0]
        finally:
            await p.stop()
    assert started_at == p._started_at  # the run began when the gateway did, not when it was written
    assert rows[0][:2] == ("store", 0) and "run not written" in rows[0][2]
    assert rows[1] == ("sip", 1, "start") and rows[2] == ("store", 1, "")
