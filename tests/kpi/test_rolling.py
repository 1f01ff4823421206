"""gateway/kpi/rolling.py: the gauges' rolling timeliness equals judging every target of the window
again (what `kpi.get` does), refresh after refresh, while reading only the targets not yet settled.
The pure core with simulated facts (each fact visible only once it has happened), then the
service's driver on a real store (SQLite in a temp dir, no sockets)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from gateway.kpi import facts, timeliness
from gateway.kpi.config import KpiConfig
from gateway.kpi.rolling import RollingTimeliness
from gateway.kpi.service import KpiService
from gateway.kpi.timeliness import CHANNELS, Target
from gateway.store import Store
from gateway.timeutil import epoch_to_iso
from tests.kpi.seed import INSERT_CALL, seed_targets

DEADLINES = {"call": 30.0, "broadcast": 10.0, "sms": 120.0, "instruction": 60.0}
LONGEST = max(DEADLINES.values())


def _world(rng: random.Random, n: int, t0: float, span: float) -> list[Target]:
    """Targets as they will turn out: reached in time, late, never, or ended unreached."""
    out = []
    for i in range(n):
        ch = rng.choice(CHANNELS)
        start = t0 + rng.random() * span
        d = DEADLINES[ch]
        fate = rng.random()
        reached = ended = None
        if fate < 0.6:
            reached = start + rng.random() * d
        elif fate < 0.75:
            reached = start + d + rng.random() * 300
        elif fate < 0.9:
            ended = start + rng.random() * 2 * d
        out.append(Target(ch, f"r{i}", f"t{i}", start, d, reached, ended))
    return out


def _seen_at(t: Target, now: float) -> Target:
    """What the store holds of `t` at `now`: facts that have not happened yet are not there."""
    return Target(t.channel, t.ref, t.target, t.started, t.deadline_s,
                  t.reached if t.reached is not None and t.reached <= now else None,
                  t.ended if t.ended is not None and t.ended <= now else None)


def _read(world: list[Target], lo: float, hi: float, now: float) -> list[Target]:
    return [_seen_at(t, now) for t in world if lo <= t.started < hi and t.started <= now]


def _summary(counts: dict) -> tuple:
    return counts["met"], counts["missed"], counts["pending"], tuple(
        (ch, c["met"], c["missed"], c["pending"]) for ch, c in sorted(counts["channels"].items()))


@pytest.mark.parametrize("settle_s", [0.0, 60.0])
def test_refresh_after_refresh_the_counts_are_those_of_judging_the_window_again(settle_s: float) -> None:
    rng = random.Random(7)
    t0 = 1_800_000_000.0
    world = _world(rng, 3000, t0, 3 * 3600)
    rolling = RollingTimeliness(3600, settle_s=settle_s)
    reads, now = [], t0 + 10
    while now < t0 + 3 * 3600 + 900:
        live: list[timeliness.Verdict] = []
        settle = rolling.settle_point(now, LONGEST)
        for lo, hi in rolling.slices(now, LONGEST, slice_s=900):
            got = _read(world, lo, hi, now)
            reads.append(len(got))
            live += rolling.add(got, now, lo, hi, settle)
        start = rolling.window_start(now)
        expected = timeliness.summarize(timeliness.judge_all(_read(world, start, now, now), now))
        assert _summary(rolling.summary(now, live)) == _summary(expected), now - t0
        assert len(rolling) <= 61
        now += rng.uniform(20, 90)
    # Once the window is full, a refresh reads about (longest deadline + settle + interval) of targets:
    # ~3000 / 3 h = 0.28 a second, so ~(120 + 60 + 90) * 0.28 = 75, never the window's ~1000.
    assert max(reads[-100:]) < 120


def test_the_first_refresh_reads_the_window_in_slices_then_only_what_is_open() -> None:
    rolling = RollingTimeliness(86400)
    now = 1_800_000_000.0
    first = rolling.slices(now, LONGEST, 3600)
    assert first[0][0] == rolling.window_start(now) and first[-1][1] == now
    assert all(hi - lo <= 3600 for lo, hi in first) and len(first) == 25
    assert all(a[1] == b[0] for a, b in zip(first, first[1:]))
    settle = rolling.settle_point(now, LONGEST)
    for lo, hi in first:
        rolling.add([], now, lo, hi, settle)
    assert rolling.settled_until == settle
    later = rolling.slices(now + 60, LONGEST, 3600)
    assert later == [(settle, settle + 60), (settle + 60, now + 60)]


def test_a_read_leaving_a_gap_is_refused() -> None:
    rolling = RollingTimeliness(3600)
    now = 1_800_000_000.0
    rolling.add([], now, rolling.window_start(now), now - 500, now - 500)
    with pytest.raises(ValueError, match="gap"):
        rolling.add([], now + 60, now - 400, now + 60, now - 300)


async def test_the_gauges_on_a_real_store_match_kpi_get_and_read_only_the_open_targets(tmp_path: Path) -> None:
    now0 = time.time()
    cfg = KpiConfig(call_deadline_s=30, sms_deadline_s=60, broadcast_deadline_s=10, instruction_deadline_s=60)
    async with Store(tmp_path / "gw.db") as store:
        await facts.start_run(store, cfg.deadlines(), epoch_to_iso(now0 - 7200))
        await seed_targets(store, now0 - 7200, 7000, 600, random.Random(3))
        kpi = KpiService(store, cfg, str(tmp_path), {})
        rolling = RollingTimeliness(86400)
        for k, now in enumerate((now0, now0 + 61, now0 + 130)):
            if k:  # a call started since, still ringing: open, not yet due
                await store.atomic(lambda tx: tx.execute(INSERT_CALL, (f"n{k}", "sip:n@x", epoch_to_iso(now - 5), None,
                                                                None, None, None)))
            got = await kpi.gauge_figures(rolling, now, slice_s=300)  # many slices: many bounds tried
            dl = await facts.deadlines(store, cfg.deadlines())
            every = await facts.load_targets(store, rolling.window_start(now), now, dl)
            expected = timeliness.summarize(timeliness.judge_all(every, now))
            assert _summary(got["timeliness"]) == _summary(expected)
            assert got["timeliness"]["channels"]["call"]["pending"] == (1 if k else 0)
            assert rolling.settled_until == rolling.settle_point(now, dl.longest())
        ch = got["timeliness"]["channels"]
        assert all(ch[c]["met"] > 100 and ch[c]["missed"] > 30 for c in ("call", "sms", "broadcast")), ch
        assert got["availability"]["whole"]["availability"] is None or 0 <= got["availability"]["whole"][
            "availability"] <= 1
