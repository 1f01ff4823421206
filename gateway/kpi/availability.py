"""Normal operation, computed from stored facts: availability per part and for the whole.

Sans-I/O: the caller (gateway/kpi/service.py) reads the facts from the store and gives the time;
nothing here reads a clock or a socket (tests/kpi/test_availability.py drives it with numbers).

The facts:
- `Run`: one life of the gateway process: when it started (its first probe round done), its last
  heartbeat (written every probe interval) and, if it stopped cleanly, when.
- `Transition`: a part changed state (up/down) during a run, with the cause. Each run records
  every part's state at its start, so a part is as its last transition in the same run says.
- `Maintenance`: a declared window (for some parts, or all), reported apart.

A part is down from a down transition until the next transition of the part in the same run, or
the end of that run. Between two runs (from the end of one - its clean stop, or its last
heartbeat if it was killed - to the start of the next) the gateway was not running: every part
is down then, listed once as an outage of the part "gateway". Downtime inside a maintenance
window of a part is not counted against it and the window is left out of its measured time; for
the whole (the parts a dispatcher needs), only windows declared for all parts leave the measured
time, while a part's own window excuses that part's downtime.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.timeutil import epoch_to_iso

from . import intervals as iv
from .intervals import Span

GATEWAY = "gateway"  # the pseudo-part of the time the gateway was not running


@dataclass(frozen=True, slots=True)
class Run:
    run_id: int
    started: float
    last_seen: float
    stopped: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    run_id: int
    time: float
    part: str
    up: bool
    cause: str = ""


@dataclass(frozen=True, slots=True)
class Maintenance:
    maintenance_id: int
    start: float
    end: float
    parts: tuple[str, ...] = ()  # empty: every part (the whole gateway)
    reason: str = ""
    created_by: str = ""

    def covers(self, part: str) -> bool:
        return not self.parts or part in self.parts


@dataclass(frozen=True, slots=True)
class Outage:
    part: str
    start: float
    end: float
    cause: str
    ongoing: bool = False

    def public(self) -> dict:
        return {"part": self.part, "start": epoch_to_iso(self.start), "end": epoch_to_iso(self.end),
                "duration_s": round(self.end - self.start, 3), "cause": self.cause, "ongoing": self.ongoing}


def run_end(runs: Sequence[Run], i: int, now: float, live: bool) -> float:
    """Where run i ends: its clean stop, now for the running one, else its last heartbeat."""
    r = runs[i]
    if r.stopped is not None:
        return r.stopped
    if live and i == len(runs) - 1:
        return max(now, r.last_seen)
    return r.last_seen


def gateway_gaps(runs: Sequence[Run], now: float, live: bool, until: float) -> list[Outage]:
    """The spans between runs (and after the last one, when it is not the running process)."""
    out = []
    for i, r in enumerate(runs):
        end = run_end(runs, i, now, live)
        nxt = runs[i + 1].started if i + 1 < len(runs) else (None if live else max(end, min(until, now)))
        if nxt is None or nxt <= end:
            continue
        how = (f"stopped at {epoch_to_iso(r.stopped)}" if r.stopped is not None
               else f"last heartbeat {epoch_to_iso(r.last_seen)}: killed or crashed")
        out.append(Outage(GATEWAY, end, nxt, f"gateway not running ({how})", ongoing=i + 1 == len(runs)))
    return out


def part_outages(runs: Sequence[Run], transitions: Iterable[Transition], part: str, now: float,
                 live: bool) -> list[Outage]:
    """The part's own down spans, run by run (not the gaps between runs)."""
    index = {r.run_id: i for i, r in enumerate(runs)}
    by_run: dict[int, list[Transition]] = {}
    for t in transitions:
        if t.part == part and t.run_id in index:
            by_run.setdefault(t.run_id, []).append(t)
    out = []
    for run_id, ts in by_run.items():
        i = index[run_id]
        end = run_end(runs, i, now, live)
        ts.sort(key=lambda t: t.time)
        down: Transition | None = None
        for t in ts:
            if not t.up and down is None:
                down = t
            elif t.up and down is not None:
                out.append(Outage(part, down.time, min(t.time, end), down.cause))
                down = None
        if down is not None and end > down.time:
            ongoing = live and i == len(runs) - 1 and runs[i].stopped is None
            out.append(Outage(part, down.time, end, down.cause, ongoing=ongoing))
    return sorted(out, key=lambda o: o.start)


def _ratio(down: float, measured: float) -> float | None:
    return None if measured <= 0 else max(0.0, 1.0 - down / measured)


def _excused(outages: Iterable[Outage], holes: list[Span], lo: float, hi: float) -> list[Outage]:
    """Each outage clipped to [lo, hi) with the maintenance holes cut out (its pieces keep the cause)."""
    out = []
    for o in outages:
        for s, e in iv.subtract(iv.clip([(o.start, o.end)], lo, hi), holes):
            out.append(Outage(o.part, s, e, o.cause, o.ongoing and e >= min(o.end, hi)))  # still going now
    return out


@dataclass(frozen=True, slots=True)
class Prepared:
    """What does not depend on the window: runs in order, the gateway's gaps, each part's own
    outages (in order, disjoint: `ends` is sorted too). One `prepare`, then many windows."""

    runs: list[Run]
    seen: frozenset[str]
    gaps: list[Outage]
    own: dict[str, list[Outage]]
    ends: dict[str, list[float]]


def prepare(runs: Sequence[Run], transitions: Sequence[Transition], *, now: float, live: bool,
            until: float) -> Prepared:
    ordered = sorted(runs, key=lambda r: r.started)
    seen = frozenset(t.part for t in transitions)
    by_part: dict[str, list[Transition]] = {}
    for t in transitions:
        by_part.setdefault(t.part, []).append(t)
    own = {p: part_outages(ordered, ts, p, now, live) for p, ts in by_part.items()}
    gaps = gateway_gaps(ordered, now, live, until)
    return Prepared(ordered, seen, gaps, {**own, GATEWAY: gaps},
                    {p: [o.end for o in v] for p, v in {**own, GATEWAY: gaps}.items()})


def _within(prep: Prepared, part: str, lo: float, hi: float) -> list[Outage]:
    """The part's outages that overlap [lo, hi) (found by bisection, not by a scan)."""
    outages = prep.own.get(part, [])
    i = bisect_right(prep.ends.get(part, []), lo)
    out = []
    for o in outages[i:]:
        if o.start >= hi:
            break
        out.append(o)
    return out


def compute(runs: Sequence[Run], transitions: Sequence[Transition], maintenance: Sequence[Maintenance], *,
            parts: Sequence[str], whole: Sequence[str], since: float, until: float, now: float,
            live: bool = True, max_outages: int = 500, prepared: Prepared | None = None) -> dict:
    """Availability of each part and of the whole over [since, until), outages and maintenance.
    `prepared` (from `prepare` over a window reaching at least `until`) saves redoing the runs'
    outages for each of many windows (kpi.get's groups)."""
    prep = prepared or prepare(runs, transitions, now=now, live=live, until=until)
    runs = prep.runs
    lo = max(since, runs[0].started) if runs else since
    hi = max(lo, min(until, now)) if runs else lo  # never ran: nothing measured
    names = list(dict.fromkeys([*parts, *sorted(prep.seen - set(parts))]))
    gaps = _excused(_within(prep, GATEWAY, lo, hi), iv.merge(
        (m.start, m.end) for m in maintenance if not m.parts), lo, hi)
    gap_spans = [(o.start, o.end) for o in gaps]
    measured = hi - lo
    report_parts: dict[str, dict] = {}
    listed: list[Outage] = list(gaps)
    counted_whole: list[Span] = []
    for p in names:
        holes = iv.clip(iv.merge((m.start, m.end) for m in maintenance if m.covers(p)), lo, hi)
        own = _excused(_within(prep, p, lo, hi), holes, lo, hi)
        listed += own
        down = iv.merge([*((o.start, o.end) for o in own), *iv.subtract(gap_spans, holes)])
        if p in whole:
            counted_whole += down
        m_s = iv.total(holes)
        report_parts[p] = {"availability": _ratio(iv.total(down), measured - m_s),
                           "down_s": round(iv.total(down), 3), "maintenance_s": round(m_s, 3),
                           "outages": len(own), "in_whole": p in whole}
    whole_holes = iv.clip(iv.merge((m.start, m.end) for m in maintenance if not m.parts), lo, hi)
    if not any(p in whole for p in names):
        counted_whole = list(gap_spans)
    whole_down = iv.merge(counted_whole)
    listed.sort(key=lambda o: (o.start, o.part))
    return {
        "since": epoch_to_iso(since), "until": epoch_to_iso(until),
        "measured_from": epoch_to_iso(lo), "measured_to": epoch_to_iso(hi),
        "measured_s": round(measured, 3),
        "whole": {"parts": [p for p in names if p in whole],
                  "availability": _ratio(iv.total(whole_down), measured - iv.total(whole_holes)),
                  "down_s": round(iv.total(whole_down), 3),
                  "maintenance_s": round(iv.total(whole_holes), 3), "outages": len(whole_down)},
        "parts": report_parts,
        "outages": [o.public() for o in listed[:max_outages]],
        "outages_total": len(listed),
        "maintenance": [_maintenance_public(m, lo, hi, prep)
                        for m in sorted(maintenance, key=lambda m: m.start)
                        if m.end > lo and m.start < hi],
    }


def _maintenance_public(m: Maintenance, lo: float, hi: float, prep: Prepared) -> dict:
    """A window, and the downtime it excused (parts' and the gateway's own, inside it)."""
    span = iv.clip([(m.start, m.end)], lo, hi)
    down: list[Span] = []
    for p in prep.seen | {GATEWAY}:
        if (p == GATEWAY and m.parts) or (p != GATEWAY and not m.covers(p)):
            continue
        for s_, e_ in span:
            down += iv.intersect([(o.start, o.end) for o in _within(prep, p, s_, e_)], span)
    return {"maintenance_id": m.maintenance_id, "start": epoch_to_iso(m.start), "end": epoch_to_iso(m.end),
            "parts": list(m.parts) or ["*"], "reason": m.reason, "created_by": m.created_by,
            "down_s": round(iv.total(down), 3)}
