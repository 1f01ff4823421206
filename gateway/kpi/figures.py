"""`kpi.get`'s figures over any window: the reads (gateway/kpi/facts.py) and the pure sums.

Shared by the gateway (`KpiService.get`) and the CLI on a store file (gateway/kpi/offline.py).
Availability comes from runs and part state changes (a few rows a day). Timeliness comes from every
target of the window, which for a month of a city's dispatch is millions: they are read, judged
and tallied a slice at a time (`timeliness.Tally`), the slices sized to hold about
`SLICE_TARGETS` targets, so memory stays that of one slice whatever the window.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from gateway.errors import InvalidParams
from gateway.timeutil import epoch_to_iso

from . import availability, facts, timeliness
from .parts import PARTS

MAX_WINDOW_S = 400 * 86400
MAX_GROUPS = 400
GROUP_SECONDS = {"hour": 3600, "day": 86400}
SLICE_TARGETS = 5000  # about this many targets read and judged at a time
FIRST_SLICE_S = 3600.0
MIN_SLICE_S, MAX_SLICE_S = 60.0, 7 * 86400.0


class Reader(Protocol):
    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]: ...


def check_window(since: float, until: float, group_by: str | None) -> None:
    if until <= since:
        raise InvalidParams("until must be after since", details={"since": since, "until": until})
    if until - since > MAX_WINDOW_S:
        raise InvalidParams("the window is longer than 400 days", details={"max_days": 400})
    if group_by is not None and (until - since) / GROUP_SECONDS[group_by] > MAX_GROUPS:
        raise InvalidParams(f"more than {MAX_GROUPS} groups; choose a longer group_by or a shorter window",
                            details={"group_by": group_by, "max_groups": MAX_GROUPS})


def next_slice_s(span_s: float, targets: int) -> float:
    """The next slice's length after one of `span_s` held `targets`: about `SLICE_TARGETS` each."""
    if targets > 2 * SLICE_TARGETS:
        span_s /= 2
    elif targets < SLICE_TARGETS // 2:
        span_s *= 2
    return min(MAX_SLICE_S, max(MIN_SLICE_S, span_s))


async def tally(store: Reader, since: float, until: float, now: float, dl: facts.Deadlines,
                starts: list[float]) -> timeliness.Tally:
    """Every target started in [since, until), judged at `now`, tallied (groups from `starts`)."""
    out = timeliness.Tally(starts)
    lo, span = since, FIRST_SLICE_S
    while lo < until:
        hi = min(lo + span, until)
        rows = await facts.load_target_rows(store, lo, hi)  # type: ignore[arg-type]
        # The judging of a slice is pure and may be long: on a thread, never on the event loop.
        n = await asyncio.to_thread(lambda: out.add(timeliness.judge_all(facts.targets(rows, dl), now)))
        del rows
        lo, span = hi, next_slice_s(span, n)
    return out


async def read_figures(store: Reader, since: float, until: float, now: float, group_by: str | None, *,
                       parts: list[str] | None, whole: list[str], deadlines: dict[str, float],
                       live: bool = True) -> dict[str, Any]:
    """The `kpi.get` result over [since, until) at `now`. `parts`: those probed (None: those the
    state changes read name, for a store file); `whole`: the parts a dispatcher needs (those not
    among `parts` are left out). `live`: the last run is this process (the gateway), else it ended
    at its last heartbeat (read from a stopped store)."""
    check_window(since, until, group_by)
    runs, transitions, maint = await facts.load_availability(store, since, until)  # type: ignore[arg-type]
    if parts is None:
        seen = {t.part for t in transitions}
        parts = [p for p in PARTS if p in seen] or ["store"]
    whole = [p for p in whole if p in parts]
    dl = await facts.deadlines(store, deadlines)  # type: ignore[arg-type]
    groups = _buckets(since, until, GROUP_SECONDS[group_by]) if group_by is not None else []
    t = await tally(store, since, until, now, dl, [lo for lo, _ in groups])
    return await asyncio.to_thread(compute_figures, runs, transitions, maint, t, parts, whole, since, until,
                                   now, group_by, groups, deadlines=deadlines, live=live)


def compute_figures(runs: list[availability.Run], transitions: list[availability.Transition],
                    maint: list[availability.Maintenance], t: timeliness.Tally, parts: list[str],
                    whole: list[str], since: float, until: float, now: float, group_by: str | None,
                    groups: list[tuple[float, float]], *, deadlines: dict[str, float],
                    live: bool = True) -> dict[str, Any]:
    """The `kpi.get` result from the facts read and the targets tallied (over `groups`). Pure."""
    prep = availability.prepare(runs, transitions, now=now, live=live, until=until)
    out: dict[str, Any] = {
        "generated_at": epoch_to_iso(now), "since": epoch_to_iso(since), "until": epoch_to_iso(until),
        "deadlines": deadlines,
        "availability": availability.compute(runs, transitions, maint, parts=parts, whole=whole,
                                             since=since, until=until, now=now, live=live, prepared=prep),
        "timeliness": t.report(),
    }
    if group_by is not None:
        out["group_by"], out["groups"] = group_by, []
        for (lo, hi), counts in zip(groups, t.groups, strict=True):
            a = availability.compute(runs, transitions, maint, parts=parts, whole=whole, since=lo, until=hi,
                                     now=now, max_outages=0, live=live, prepared=prep)
            g = timeliness.summary_of(counts)
            out["groups"].append({
                "start": epoch_to_iso(lo), "end": epoch_to_iso(hi),
                "availability": a["whole"]["availability"],
                "parts": {p: v["availability"] for p, v in a["parts"].items()},
                "timeliness": g["share"], "met": g["met"], "missed": g["missed"],
                "channels": {c: v["share"] for c, v in g["channels"].items()}})
    return out


def _buckets(since: float, until: float, step: int) -> list[tuple[float, float]]:
    lo = since - (since % step)
    out = []
    while lo < until:
        out.append((max(lo, since), min(lo + step, until)))
        lo += step
    return out
