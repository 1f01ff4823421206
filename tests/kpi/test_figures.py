"""gateway/kpi/figures.py: `kpi.get` reads and judges a long window a slice at a time, and gives
what judging every target at once gives: the counts, per hour, and the misses in order. On a real
store (SQLite in a temp dir, no sockets)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from gateway.kpi import facts, figures, timeliness
from gateway.kpi.config import KpiConfig
from gateway.store import Store
from gateway.timeutil import epoch_to_iso
from tests.kpi.seed import INSERT_CALL, seed_targets


@pytest.mark.parametrize("slice_targets", [40, 5000])
async def test_a_window_read_in_slices_gives_what_judging_it_at_once_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_targets: int) -> None:
    monkeypatch.setattr(figures, "SLICE_TARGETS", slice_targets)
    monkeypatch.setattr(figures, "FIRST_SLICE_S", 600.0)
    cfg = KpiConfig(call_deadline_s=30, sms_deadline_s=60, broadcast_deadline_s=10, instruction_deadline_s=60)
    now = time.time()
    since, until = now - 2 * 86400 - 1234.5, now
    async with Store(tmp_path / "gw.db") as store:
        await facts.start_run(store, cfg.deadlines(), epoch_to_iso(since - 60))
        rng = random.Random(5)
        # Busy hours and quiet ones, so slices grow and shrink; a few targets started in the last minute.
        await seed_targets(store, since, 3600, 1500, rng)
        await seed_targets(store, since + 30 * 3600, 7200, 900, rng, "b-")
        await seed_targets(store, now - 60, 60, 30, rng, "c-")
        await store.atomic(lambda tx: tx.execute(INSERT_CALL, ("ringing", "sip:r@x", epoch_to_iso(now - 5), None,
                                                               None, None, None)))  # pending
        calls = [0]
        read = facts.load_target_rows

        async def counting(*a, **k):  # noqa: ANN002, ANN003, ANN202
            calls[0] += 1
            return await read(*a, **k)

        monkeypatch.setattr(facts, "load_target_rows", counting)
        got = await figures.read_figures(store, since, until, now, "hour", parts=["store"], whole=["store"],
                                         deadlines=cfg.deadlines())
        monkeypatch.setattr(facts, "load_target_rows", read)
        every = timeliness.judge_all(
            await facts.load_targets(store, since, until, await facts.deadlines(store, cfg.deadlines())), now)
    expected = timeliness.report(every)
    t = got["timeliness"]
    assert (t["met"], t["missed"], t["pending"], t["misses_total"]) == (
        expected["met"], expected["missed"], expected["pending"], expected["misses_total"])
    assert t["channels"] == expected["channels"] and t["misses"] == expected["misses"]
    assert t["met"] + t["missed"] + t["pending"] == 2431 and t["pending"] == 1 and t["misses_total"] > 500
    hours = [timeliness.summarize([v for v in every if lo <= v.target.started < hi])
             for lo, hi in figures._buckets(since, until, 3600)]
    assert [(g["met"], g["missed"]) for g in got["groups"]] == [(h["met"], h["missed"]) for h in hours]
    if slice_targets == 40:  # ~2,400 targets 40 at a time: many slices, none of the whole window
        assert calls[0] > 40
    else:
        assert calls[0] < 40


def test_the_next_slice_aims_at_the_slice_size() -> None:
    n = figures.SLICE_TARGETS
    assert figures.next_slice_s(3600, 3 * n) == 1800
    assert figures.next_slice_s(3600, n) == 3600
    assert figures.next_slice_s(3600, 0) == 7200
    assert figures.next_slice_s(60, 10 * n) == figures.MIN_SLICE_S
    assert figures.next_slice_s(figures.MAX_SLICE_S, 0) == figures.MAX_SLICE_S


async def test_one_computation_at_a_time_four_wait_and_one_more_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from gateway.errors import InvalidParams, RateLimited
    from gateway.kpi import service as kpi_service

    running, most, release = [0], [0], asyncio.Event()

    async def slow(*a: object, **k: object) -> dict:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await release.wait()
        running[0] -= 1
        return {"ok": True}

    monkeypatch.setattr(kpi_service, "read_figures", slow)
    async with Store(tmp_path / "gw.db") as store:
        kpi = kpi_service.KpiService(store, KpiConfig(), str(tmp_path), {})
        now = time.time()
        first = [asyncio.create_task(kpi.get(now - 86400)) for _ in range(1 + kpi_service.MAX_WAITING)]
        await asyncio.sleep(0)
        with pytest.raises(RateLimited) as refused:
            await kpi.get(now - 86400)
        assert refused.value.reason == "kpi-busy" and refused.value.details == {"queued": 5}
        with pytest.raises(InvalidParams):  # bad input is refused at once, not after the queue
            await asyncio.wait_for(kpi.get(now, now - 1), 1)
        report = asyncio.create_task(kpi.get(now - 86400, refuse_when_busy=False))  # the daily report waits
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*first, report) == [{"ok": True}] * 6
    assert most[0] == 1
