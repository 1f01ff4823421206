"""The indicators' facts pruned by the store's retention (gateway/retention.py -> gateway/kpi/prune.py)
on a real store, with a fake clock: rows older than the cut-off go, and every figure of a window
inside the retention is the same before and after, including an outage (of a part, or of the
gateway itself) that began before the cut-off and ended after it: its in-window part still counts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.events import EventBus
from gateway.kpi import availability, facts
from gateway.retention import Retention, RetentionPolicy
from gateway.store import Store
from gateway.timeutil import epoch_to_iso

DAY = 86_400.0
NOW = 1_790_000_000.0  # the fake clock
KEEP_DAYS = 5
CUTOFF = NOW - KEEP_DAYS * DAY
DEADLINES = {"call": 10.0, "broadcast": 5.0, "sms": 60.0, "instruction": 30.0}


def _at(days_ago: float) -> str:
    return epoch_to_iso(NOW - days_ago * DAY)


async def _prune(store: Store) -> dict[str, int]:
    bus = EventBus(store)
    try:
        policy = RetentionPolicy(events_keep_days=KEEP_DAYS, audit_keep_days=0, idempotency_keep_days=0)
        return await Retention(store, bus, policy, clock=lambda: dt.datetime.fromtimestamp(NOW, dt.UTC)).prune_once()
    finally:
        bus.close()


async def _figures(store: Store, since: float) -> dict:
    runs, transitions, maint = await facts.load_availability(store, since, NOW)
    r = availability.compute(runs, transitions, maint, parts=["store", "sip", "sms"], whole=["store", "sip"],
                             since=since, until=NOW, now=NOW, live=True)
    return r


async def _count(store: Store, table: str) -> int:
    return (await store.fetchall(f"SELECT COUNT(*) FROM {table}"))[0][0]


async def _run(store: Store, start: float, end: float | None, deadlines=DEADLINES, *, stopped: bool = True) -> int:
    """A run from `start` to `end` days ago (None: still running now), every part up at its start."""
    run = await facts.start_run(store, deadlines, _at(start))
    for part in ("store", "sip", "sms"):
        await facts.record_state(store, run, part, True, "start", _at(start))
    if end is not None:
        await facts.heartbeat(store, run, _at(end))
        if stopped:
            await store.atomic(lambda tx: tx.execute("UPDATE kpi_runs SET stopped_at = last_seen WHERE run_id = ?",
                                                     (run,)))
    else:
        await facts.heartbeat(store, run, epoch_to_iso(NOW))
    return run


async def test_a_part_down_across_the_cutoff_still_counts_after_it(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        await _run(store, 30, 20)  # wholly before the cut-off: goes
        run = await _run(store, 10, None, {**DEADLINES, "call": 3.0})  # runs across the cut-off
        for days_ago, up in ((9, False), (8.5, True), (7, False), (6, True)):  # before the cut-off: go
            await facts.record_state(store, run, "sms", up, "smpp unbound", _at(days_ago))
        await facts.record_state(store, run, "sip", False, "worker exited", _at(6))  # down across it
        await facts.record_state(store, run, "sip", True, "", _at(4))
        await facts.record_state(store, run, "sms", False, "smpp unbound", _at(2))  # inside
        await facts.record_state(store, run, "sms", True, "", _at(1))
        await facts.add_maintenance(store, NOW - 9 * DAY, NOW - 8 * DAY, [], "old", "root")  # goes
        await facts.add_maintenance(store, NOW - 5.5 * DAY, NOW - 4.5 * DAY, ["sip"], "across", "root")
        await facts.add_maintenance(store, NOW - 3 * DAY, NOW - 2.9 * DAY, ["sms"], "inside", "root")
        windows = [CUTOFF, CUTOFF + 0.5 * DAY, NOW - 4 * DAY, NOW - 2 * DAY]
        before = [await _figures(store, w) for w in windows]
        dl_before = await facts.deadlines(store, DEADLINES)
        assert before[0]["parts"]["sip"]["down_s"] == 1 * DAY - 0.5 * DAY  # the cut-off to 4 days ago, less maintenance

        counts = await _prune(store)
        assert counts["kpi"] == 1 + 3 + 5 + 1  # run 1, its three states, five states of run 2, a maintenance window
        after = [await _figures(store, w) for w in windows]
        assert after == before
        dl = await facts.deadlines(store, DEADLINES)
        assert dl.of("call", NOW - 3 * DAY) == dl_before.of("call", NOW - 3 * DAY) == 3.0  # its run's
        # The state of each part at the cut-off is what is left from before it.
        left = await store.fetchall("SELECT part, up, time FROM kpi_part_states WHERE time < ? ORDER BY part",
                                    (epoch_to_iso(CUTOFF),))
        assert [tuple(r) for r in left] == [("sip", 0, _at(6)), ("sms", 1, _at(6)), ("store", 1, _at(10))]
        assert [r[0] for r in await store.fetchall("SELECT reason FROM kpi_maintenance ORDER BY start_at")] == [
            "across", "inside"]
        # A window reaching before the cut-off is measured from it, not reported up before it.
        early = await _figures(store, NOW - 8 * DAY)
        assert early["measured_from"] == epoch_to_iso(CUTOFF) and early == before[0] | {
            "since": epoch_to_iso(NOW - 8 * DAY)}
        assert await _prune(store) == counts | {"kpi": 0}  # nothing more to cut


async def test_the_gateway_down_across_the_cutoff_still_counts_after_it(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        await _run(store, 20, 15)
        await _run(store, 12, 7, stopped=False)  # killed 7 days ago; started again 3 days ago
        await _run(store, 3, None)
        before = [await _figures(store, w) for w in (CUTOFF, NOW - 4 * DAY)]
        (gap,) = [o for o in before[0]["outages"] if o["part"] == "gateway"]
        assert (gap["start"], gap["end"]) == (epoch_to_iso(CUTOFF), _at(3)) and "killed" in gap["cause"]
        assert before[0]["whole"]["down_s"] == 2 * DAY

        counts = await _prune(store)
        assert counts["kpi"] == 1 + 3 + 3  # the first run and its states; the killed run's states
        assert [await _figures(store, w) for w in (CUTOFF, NOW - 4 * DAY)] == before
        # the killed run is kept as the marker of its end only
        rows = await store.fetchall("SELECT started_at, last_seen, stopped_at FROM kpi_runs ORDER BY started_at")
        assert [tuple(r) for r in rows] == [(_at(7), _at(7), None), (_at(3), epoch_to_iso(NOW), None)]
        assert await _prune(store) == counts | {"kpi": 0}


async def test_a_gap_wholly_before_the_cutoff_leaves_no_marker(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        await _run(store, 12, 9)
        await _run(store, 8, None)  # started before the cut-off: the gap 9..8 days ago is gone
        before = await _figures(store, CUTOFF)
        await _prune(store)
        assert await _count(store, "kpi_runs") == 1
        assert await _figures(store, CUTOFF) == before and before["whole"]["down_s"] == 0


async def test_a_large_backlog_is_cut_in_bounded_units(tmp_path: Path) -> None:
    from gateway.kpi import prune

    async with Store(tmp_path / "gw.db") as store:
        run = await _run(store, 10, None)
        for i in range(250):
            await facts.record_state(store, run, "sip", i % 2 == 1, "flap", _at(9 - i / 100))
        units = []
        while (n := await prune.prune(store, epoch_to_iso(CUTOFF), 100)) > 0:
            units.append(n)
            if n < 100:
                break
        assert units == [100, 100, 50] and await _count(store, "kpi_part_states") == 3  # the last of each part
