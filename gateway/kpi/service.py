"""KpiService: the probe loop's owner, `kpi.get`, maintenance windows (add, list, delete) and the daily reports.

Every figure is computed on request from the store (gateway/kpi/facts.py), never from memory,
so it is the same after a restart. The daily report of each finished UTC day is written once the
day is over (and at start for a day that ended while the gateway was down) to
`<kpi.reports_dir>/kpi-YYYY-MM-DD.html`; `GET /v1/kpi/reports/{day}` serves it (today's is made
fresh) to a token of a reading role.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
import datetime as dt
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import Conflict, InvalidParams, NotFound
from gateway.store import Store
from gateway.tasks import OwnedTasks
from gateway.timeutil import epoch_to_iso, now_iso

from . import availability, facts, timeliness
from .config import KpiConfig
from .gauges import WINDOW_S, KpiGauges
from .probes import Check, Prober
from .report import render
from .rolling import RollingTimeliness

log = structlog.get_logger(__name__)

MAX_WINDOW_S = 400 * 86400
MAX_GROUPS = 400
GROUP_SECONDS = {"hour": 3600, "day": 86400}
MAX_WINDOWS_LISTED = 1000
GAUGE_SLICE_S = 3600.0  # the gauges' first read after a start: the day an hour at a time
REPORT_DAYS_BACK = 31  # finished days whose missing report is written at start


class KpiService:
    def __init__(self, store: Store, config: KpiConfig, data_dir: str, checks: Mapping[str, Check]) -> None:
        self._store = store
        self.config = config
        self.reports_dir = Path(data_dir) / config.reports_dir
        self.prober = Prober(store, checks, interval_s=config.probe_interval_s,
                             timeout_s=config.probe_timeout_s, deadlines=config.deadlines())
        self._tasks = OwnedTasks()
        self._gauges: KpiGauges | None = None

    def export(self, metrics: Any) -> None:
        """Put the indicators on /metrics (gateway/metrics: `metrics.gauge()`); before start."""
        self._gauges = KpiGauges(metrics)
        self.prober.on_state = self._gauges.set_part

    async def start(self) -> None:
        await self.prober.start()
        self._tasks.spawn(self._daily_reports(), name="kpi-daily-reports")
        if self._gauges is not None:
            self._tasks.spawn(self._refresh_gauges(self._gauges), name="kpi-gauges")

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        await self.prober.stop()

    # ---- the figures -------------------------------------------------------------------------

    async def get(self, since: float, until: float | None = None, group_by: str | None = None) -> dict[str, Any]:
        """Both indicators over [since, until) (until None: now)."""
        now = time.time()
        until = now if until is None else until
        check_window(since, until, group_by)
        runs, transitions, maint = await facts.load_availability(self._store, since, until)
        dl = await facts.deadlines(self._store, self.config.deadlines())
        rows = await facts.load_target_rows(self._store, since, until)
        parts, whole = self.prober.parts, [p for p in self.config.whole if p in self.prober.parts]
        # A long window holds many rows: the pure part runs on a thread, never on the event loop.
        return await asyncio.to_thread(self._compute, runs, transitions, maint, rows, dl, parts, whole,
                                       since, until, now, group_by)

    def _compute(self, *args: Any) -> dict[str, Any]:
        return compute_figures(*args, deadlines=self.config.deadlines())

    async def add_maintenance(self, start: float, end: float, parts: list[str], reason: str,
                              created_by: str) -> dict[str, Any]:
        check_maintenance(start, end, time.time(), self.config.maintenance_grace_s)
        unknown = sorted(set(parts) - set(self.prober.parts))
        if unknown:
            raise InvalidParams("no such part", reason="no-such-part",
                                details={"parts": unknown, "known": self.prober.parts})
        row = await facts.add_maintenance(self._store, start, end, parts, reason, created_by)
        log.info("kpi.maintenance.declared", **row)
        return row

    async def list_maintenance(self, since: float | None, until: float | None) -> dict[str, Any]:
        if since is not None and until is not None and until <= since:
            raise InvalidParams("until must be after since", details={"since": since, "until": until})
        now = time.time()
        windows = await facts.list_maintenance(self._store, since, until, now, MAX_WINDOWS_LISTED + 1)
        return {"windows": windows[:MAX_WINDOWS_LISTED], "truncated": len(windows) > MAX_WINDOWS_LISTED,
                "now": epoch_to_iso(now)}

    async def remove_maintenance(self, maintenance_id: int, principal: str, role: str) -> dict[str, Any]:
        """A planned window is deleted, one under way ended now; one that has ended is refused
        (`maintenance-over`): the reports of its days have been read and written (the daily HTML
        of a finished day is not rewritten), so changing it would make them disagree with the
        store silently. Undo a window wrongly declared in the past by declaring nothing: the
        report lists it with who declared it and when."""
        try:
            done = await facts.remove_maintenance(self._store, maintenance_id, time.time(), principal, role)
        except facts.MaintenanceOver as over:
            raise Conflict("the window has ended: reports already cover it", reason="maintenance-over",
                           details={"maintenance_id": maintenance_id, "end": str(over)}) from None
        if done is None:
            raise NotFound("no such maintenance window", reason="no-such-maintenance",
                           details={"maintenance_id": maintenance_id})
        action, window = done
        log.info(f"kpi.maintenance.{action}", by=principal, **window)
        return {"action": action, "window": window}

    # ---- daily reports -----------------------------------------------------------------------

    async def report(self, day: dt.date) -> Path:
        """Write the report of `day` (UTC) and return its path."""
        lo = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
        hi = lo + 86400
        data = await self.get(lo, hi, "hour")
        html = await asyncio.to_thread(render, day.isoformat(), data, now_iso())
        path = self.reports_dir / f"kpi-{day.isoformat()}.html"
        await asyncio.to_thread(_write_atomically, path, html)
        return path

    async def report_for_reading(self, day: dt.date) -> Path:
        """A finished day's stored report (written now if missing or written before the day
        ended); today's, fresh."""
        path = self.reports_dir / f"kpi-{day.isoformat()}.html"
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
        if time.time() < end or not await asyncio.to_thread(_written_after, path, end):
            path = await self.report(day)
        return path

    async def _refresh_gauges(self, gauges: KpiGauges) -> None:
        rolling = RollingTimeliness(WINDOW_S)
        while True:
            try:
                gauges.set_figures(await self.gauge_figures(rolling, time.time()))
            except Exception:
                log.exception("kpi.gauges.failed")
            await asyncio.sleep(self.config.metrics_interval_s)

    async def gauge_figures(self, rolling: RollingTimeliness, now: float, slice_s: float = GAUGE_SLICE_S
                            ) -> dict[str, Any]:
        """The last 24 h for /metrics: availability as `kpi.get` computes it, timeliness kept in
        `rolling` (gateway/kpi/rolling.py: only the targets started since its last settled point
        are read, the first time in slices of `slice_s`)."""
        since = rolling.window_start(now)
        runs, transitions, maint = await facts.load_availability(self._store, since, now)
        dl = await facts.deadlines(self._store, self.config.deadlines())
        settle = rolling.settle_point(now, dl.longest())
        live: list[timeliness.Verdict] = []
        for lo, hi in rolling.slices(now, dl.longest(), slice_s):
            # A settled slice's targets are all due by hi + the longest deadline: a reach after
            # that is a miss either way, and not read (the first refresh reads the day in slices).
            bound = hi + dl.longest() if hi <= settle else None
            rows = await facts.load_target_rows(self._store, lo, hi, reached_before=bound)
            live += await asyncio.to_thread(lambda: rolling.add(facts.targets(rows, dl), now, lo, hi, settle))
        parts, whole = self.prober.parts, [p for p in self.config.whole if p in self.prober.parts]
        return await asyncio.to_thread(lambda: {
            "availability": availability.compute(runs, transitions, maint, parts=parts, whole=whole, since=since,
                                                 until=now, now=now, max_outages=0),
            "timeliness": rolling.summary(now, live)})

    async def _daily_reports(self) -> None:
        while True:
            today = dt.datetime.now(dt.UTC).date()
            for back in range(REPORT_DAYS_BACK, 0, -1):
                day = today - dt.timedelta(days=back)
                end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
                if await self._ran_on(day) and not await asyncio.to_thread(_written_after,
                                                                           self.reports_dir / f"kpi-{day}.html", end):
                    try:
                        log.info("kpi.report.written", day=day.isoformat(), path=str(await self.report(day)))
                    except Exception:
                        log.exception("kpi.report.failed", day=day.isoformat())
            midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
            await asyncio.sleep(max(1.0, midnight - time.time() + 5))

    async def _ran_on(self, day: dt.date) -> bool:
        lo = dt.datetime.combine(day, dt.time(), dt.UTC)
        hi = lo + dt.timedelta(days=1)
        rows = await self._store.fetchall(
            "SELECT 1 FROM kpi_runs WHERE started_at < ? AND coalesce(stopped_at, last_seen) >= ? LIMIT 1",
            (epoch_to_iso(hi.timestamp()), epoch_to_iso(lo.timestamp())))
        return bool(rows)


def compute_figures(runs: list[availability.Run], transitions: list[availability.Transition],
                    maint: list[availability.Maintenance], rows: facts.TargetRows, dl: facts.Deadlines,
                    parts: list[str], whole: list[str], since: float, until: float, now: float,
                    group_by: str | None, *, deadlines: dict[str, float], live: bool = True) -> dict[str, Any]:
    """The `kpi.get` result from the facts read. Pure (run on a thread); `live`: the last run is
    this process (the gateway), else it ended at its last heartbeat (read from a stopped store)."""
    verdicts = timeliness.judge_all(facts.targets(rows, dl), now)
    prep = availability.prepare(runs, transitions, now=now, live=live, until=until)
    out: dict[str, Any] = {
        "generated_at": epoch_to_iso(now), "since": epoch_to_iso(since), "until": epoch_to_iso(until),
        "deadlines": deadlines,
        "availability": availability.compute(runs, transitions, maint, parts=parts, whole=whole,
                                             since=since, until=until, now=now, live=live, prepared=prep),
        "timeliness": timeliness.report(verdicts),
    }
    if group_by is not None:
        out["group_by"], out["groups"] = group_by, []
        starts = [v.target.started for v in verdicts]
        for lo, hi in _buckets(since, until, GROUP_SECONDS[group_by]):
            a = availability.compute(runs, transitions, maint, parts=parts, whole=whole, since=lo, until=hi,
                                     now=now, max_outages=0, live=live, prepared=prep)
            t = timeliness.summarize(verdicts[bisect_left(starts, lo):bisect_left(starts, hi)])
            out["groups"].append({
                "start": epoch_to_iso(lo), "end": epoch_to_iso(hi),
                "availability": a["whole"]["availability"],
                "parts": {p: v["availability"] for p, v in a["parts"].items()},
                "timeliness": t["share"], "met": t["met"], "missed": t["missed"],
                "channels": {c: v["share"] for c, v in t["channels"].items()}})
    return out


def check_window(since: float, until: float, group_by: str | None) -> None:
    if until <= since:
        raise InvalidParams("until must be after since", details={"since": since, "until": until})
    if until - since > MAX_WINDOW_S:
        raise InvalidParams("the window is longer than 400 days", details={"max_days": 400})
    if group_by is not None and (until - since) / GROUP_SECONDS[group_by] > MAX_GROUPS:
        raise InvalidParams(f"more than {MAX_GROUPS} groups; choose a longer group_by or a shorter window",
                            details={"group_by": group_by, "max_groups": MAX_GROUPS})


def check_maintenance(start: float, end: float, now: float, grace_s: float) -> None:
    """A window is declared before it begins: one starting more than `grace_s` before `now` is
    refused (`maintenance-in-past`), or an outage already seen could be excused after the fact."""
    if end <= start:
        raise InvalidParams("end must be after start", details={"start": start, "end": end})
    if start < now - grace_s:
        raise InvalidParams(f"the window starts more than {grace_s:g} s before now: maintenance is "
                            "declared before it begins, never after the fact", reason="maintenance-in-past",
                            details={"start": epoch_to_iso(start), "now": epoch_to_iso(now), "grace_s": grace_s})


def _buckets(since: float, until: float, step: int) -> list[tuple[float, float]]:
    lo = since - (since % step)
    out = []
    while lo < until:
        out.append((max(lo, since), min(lo + step, until)))
        lo += step
    return out


def _written_after(path: Path, when: float) -> bool:
    try:
        return path.stat().st_mtime >= when
    except OSError:
        return False


def _write_atomically(path: Path, text: str) -> None:
    """Whole or not at all; two writers at once (two readers of today's report) each their own temp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=path.name + ".",
                                     suffix=".tmp", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)
