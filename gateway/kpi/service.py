"""KpiService: the probe loop's owner, `kpi.get`, maintenance windows (add, list, delete) and the daily reports.

Every figure is computed on request from the store (gateway/kpi/facts.py), never from memory,
so it is the same after a restart. The daily report of each finished UTC day is written once the
day is over (and at start for a day that ended while the gateway was down) to
`<kpi.reports_dir>/kpi-YYYY-MM-DD.html`; `GET /v1/kpi/reports/{day}` serves it (today's is made
fresh) to a token of a reading role.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import Conflict, InvalidParams, NotFound, RateLimited
from gateway.store import Store
from gateway.tasks import OwnedTasks
from gateway.timeutil import epoch_to_iso, now_iso

from . import availability, facts, timeliness
from .config import KpiConfig
from .figures import check_window, read_figures
from .gauges import WINDOW_S, KpiGauges
from .probes import Check, Prober
from .report import render
from .rolling import RollingTimeliness

log = structlog.get_logger(__name__)

MAX_WINDOWS_LISTED = 1000
GAUGE_SLICE_S = 3600.0  # the gauges' first read after a start: the day an hour at a time
MAX_WAITING = 4  # kpi.get calls that wait while one computes; one more is refused (kpi-busy)
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
        self._turn = asyncio.Semaphore(1)  # kpi.get: one computation at a time
        self._queued = 0  # running and waiting

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

    async def get(self, since: float, until: float | None = None, group_by: str | None = None, *,
                  refuse_when_busy: bool = True) -> dict[str, Any]:
        """Both indicators over [since, until) (until None: now). One computation at a time (a month
        of a city's targets is tens of seconds of CPU: several at once would starve the dispatch
        work); up to `MAX_WAITING` more wait their turn, one more is refused (`kpi-busy`), unless
        `refuse_when_busy` is false (the daily report: it waits)."""
        check_window(since, time.time() if until is None else until, group_by)  # bad input: at once, not after a wait
        if refuse_when_busy and self._queued > MAX_WAITING:
            raise RateLimited("the indicators are being computed for other requests; try again shortly",
                              reason="kpi-busy", details={"queued": self._queued})
        self._queued += 1
        try:
            async with self._turn:
                now = time.time()
                parts, whole = self.prober.parts, [p for p in self.config.whole if p in self.prober.parts]
                return await read_figures(self._store, since, now if until is None else until, now, group_by,
                                          parts=parts, whole=whole, deadlines=self.config.deadlines())
        finally:
            self._queued -= 1

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
        data = await self.get(lo, hi, "hour", refuse_when_busy=False)
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
            rows = await facts.load_target_rows(self._store, lo, hi)
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


def check_maintenance(start: float, end: float, now: float, grace_s: float) -> None:
    """A window is declared before it begins: one starting more than `grace_s` before `now` is
    refused (`maintenance-in-past`), or an outage already seen could be excused after the fact."""
    if end <= start:
        raise InvalidParams("end must be after start", details={"start": start, "end": end})
    if start < now - grace_s:
        raise InvalidParams(f"the window starts more than {grace_s:g} s before now: maintenance is "
                            "declared before it begins, never after the fact", reason="maintenance-in-past",
                            details={"start": epoch_to_iso(start), "now": epoch_to_iso(now), "grace_s": grace_s})


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
