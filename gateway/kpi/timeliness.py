"""Timeliness, computed from stored facts: did each dispatch target get reached within its deadline?

Sans-I/O: gateway/kpi/facts.py reads one `Target` per dispatched target from the store (calls,
broadcast targets, SMS, terminal instructions); `compute` judges them at `now`.

A target is met when it was reached (a call connected or got a final answer, a broadcast target
connected, an SMS delivered, an instruction delivered - or acknowledged when asked for) no later
than `started + deadline_s`. It is missed when it was reached later (how late: reached - due), or
not reached by its due time (how late: until it ended unreached, or until now while still open;
`reached` false). It is pending, and not counted, while not reached and not yet due.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.timeutil import epoch_to_iso

CHANNELS = ("call", "broadcast", "sms", "instruction")


@dataclass(frozen=True, slots=True)
class Target:
    channel: str
    ref: str  # call id, broadcast id, message id, instruction id
    target: str  # whom: a URI, a number, a terminal
    started: float
    deadline_s: float
    reached: float | None = None
    ended: float | None = None  # ended without being reached (a failed call, an undelivered SMS)
    why: str = ""  # what happened instead of reaching it in time

    @property
    def due(self) -> float:
        return self.started + self.deadline_s


@dataclass(frozen=True, slots=True)
class Verdict:
    target: Target
    status: str  # met | missed | pending
    late_s: float | None = None
    why: str = ""

    def public(self) -> dict:
        t = self.target
        return {"channel": t.channel, "ref": t.ref, "target": t.target, "started": epoch_to_iso(t.started),
                "deadline_s": t.deadline_s, "reached": t.reached is not None,
                "late_s": None if self.late_s is None else round(self.late_s, 3), "why": self.why}


def judge(t: Target, now: float) -> Verdict:
    if t.reached is not None:
        if t.reached <= t.due:
            return Verdict(t, "met")
        return Verdict(t, "missed", t.reached - t.due, t.why or "reached after its deadline")
    if t.ended is not None and t.ended <= t.due:
        return Verdict(t, "missed", None, t.why or "ended without being reached")
    if now <= t.due and t.ended is None:
        return Verdict(t, "pending")
    end = t.ended if t.ended is not None else now
    why = t.why or ("ended without being reached" if t.ended is not None else "not reached yet")
    return Verdict(t, "missed", end - t.due, why)


def _share(met: int, missed: int) -> float | None:
    return None if met + missed == 0 else met / (met + missed)


def count(verdicts: Iterable[Verdict], counts: dict[str, dict[str, int]] | None = None) -> dict[str, dict[str, int]]:
    """Verdicts by channel and status, added to `counts` (new if None)."""
    counts = counts if counts is not None else {c: {"met": 0, "missed": 0, "pending": 0} for c in CHANNELS}
    for v in verdicts:
        _bump(counts, v)
    return counts


def summarize(verdicts: Iterable[Verdict]) -> dict:
    return summary_of(count(verdicts))


def summary_of(counts: dict[str, dict[str, int]]) -> dict:
    """The share met per channel and overall from `count`'s counts."""
    met = sum(c["met"] for c in counts.values())
    missed = sum(c["missed"] for c in counts.values())
    return {"share": _share(met, missed), "met": met, "missed": missed,
            "pending": sum(c["pending"] for c in counts.values()),
            "channels": {ch: {**c, "share": _share(c["met"], c["missed"])} for ch, c in counts.items()}}


def judge_all(targets: Iterable[Target], now: float) -> list[Verdict]:
    """Every target judged, in the order they started (then channel, ref, target)."""
    return [judge(t, now) for t in sorted(targets, key=lambda t: (t.started, t.channel, t.ref, t.target))]


def compute(targets: Sequence[Target], *, now: float, max_misses: int = 500) -> dict:
    """Share met per channel and overall (met / (met + missed)), with the misses listed."""
    return report(judge_all(targets, now), max_misses=max_misses)


def report(verdicts: Sequence[Verdict], *, max_misses: int = 500) -> dict:
    misses = [v for v in verdicts if v.status == "missed"]
    return {**summarize(verdicts), "misses": [v.public() for v in misses[:max_misses]],
            "misses_total": len(misses)}


class Tally:
    """Verdicts taken slice by slice in the order their targets started: the counts overall and per
    group (`starts`: each group's first second, ascending), and the first `max_misses` misses, as
    `report` and `summarize` of all of them at once would give, without holding them (a month of
    a city's targets is millions: `kpi.get` reads and judges it a slice at a time)."""

    def __init__(self, starts: Sequence[float] = (), *, max_misses: int = 500) -> None:
        self.counts = count(())
        self.starts = list(starts)
        self.groups = [count(()) for _ in self.starts]
        self.max_misses = max_misses
        self.misses: list[dict] = []
        self.misses_total = 0

    def add(self, verdicts: Iterable[Verdict]) -> int:
        """Take `verdicts` (started after every one taken before, in order); how many there were."""
        n = 0
        for v in verdicts:
            n += 1
            _bump(self.counts, v)
            if self.starts:
                i = bisect_right(self.starts, v.target.started) - 1
                if i >= 0:
                    _bump(self.groups[i], v)
            if v.status == "missed":
                self.misses_total += 1
                if len(self.misses) < self.max_misses:
                    self.misses.append(v.public())
        return n

    def report(self) -> dict:
        return {**summary_of(self.counts), "misses": self.misses, "misses_total": self.misses_total}


def _bump(counts: dict[str, dict[str, int]], v: Verdict) -> None:
    counts.setdefault(v.target.channel, {"met": 0, "missed": 0, "pending": 0})[v.status] += 1
