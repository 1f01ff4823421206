"""The last 24 h of timeliness for /metrics, kept up to date without reading the day again.

Sans-I/O: gateway/kpi/service.py reads the targets (gateway/kpi/facts.py) and feeds them here.

A target's verdict (gateway/kpi/timeliness.py) never changes once it is due: reached in time it is
met, reached late or not by its due time it is missed, whatever happens after. So a target that
started more than the longest deadline plus `settle_s` ago (the time its facts take to be stored:
an answer, a receipt) is judged once and counted into the minute it started in; each refresh reads
only the targets started since the last settled point (the longest deadline, `settle_s` and one
refresh interval of them) and judges those still open as they stand. Before this, each refresh read
and judged the whole day again: at 100,000 targets a day, 1.1 s of CPU and 77 MB of transient
allocations once a minute, which fragmented the heap (docs/benchmarks.md, kpi_day and the soak).

The window is whole minutes: it starts at the first minute boundary at or after `now - window_s`,
so it is at most one minute shorter than `kpi.get` over `now - window_s`. The counts live in memory
and are rebuilt from the store after a restart (the first refresh reads the day, in slices).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .timeliness import Target, Verdict, count, judge, summary_of

SETTLE_S = 60.0


class RollingTimeliness:
    def __init__(self, window_s: float, *, bucket_s: float = 60.0, settle_s: float = SETTLE_S) -> None:
        if bucket_s <= 0 or window_s < bucket_s:
            raise ValueError("the window must hold at least one bucket")
        self.window_s, self.bucket_s, self.settle_s = window_s, bucket_s, settle_s
        self._buckets: dict[int, dict[str, list[int]]] = {}  # minute -> channel -> [met, missed]
        self.settled_until: float | None = None  # every target started before this is in the buckets

    def window_start(self, now: float) -> float:
        return math.ceil((now - self.window_s) / self.bucket_s) * self.bucket_s

    def settle_point(self, now: float, longest_deadline_s: float) -> float:
        """Targets started before this are due and their facts stored: their verdicts are final."""
        return now - longest_deadline_s - self.settle_s

    def read_from(self, now: float) -> float:
        """Where the next read starts: the targets started at or after this are needed."""
        lo = self.window_start(now)
        return lo if self.settled_until is None else max(lo, self.settled_until)

    def slices(self, now: float, longest_deadline_s: float, slice_s: float) -> list[tuple[float, float]]:
        """The spans to read for a refresh at `now`, in order: the targets to settle in spans of at
        most `slice_s` (the first refresh after a start reads the day: the peak stays a slice's),
        then the open ones up to `now`."""
        lo, settle = self.read_from(now), self.settle_point(now, longest_deadline_s)
        out = []
        while lo < settle:
            hi = min(lo + slice_s, settle)
            out.append((lo, hi))
            lo = hi
        return out + [(lo, now)] if lo < now else out

    def add(self, targets: Iterable[Target], now: float, lo: float, hi: float, settle: float) -> list[Verdict]:
        """Take the targets started in [lo, hi) (every one of them: a read of that span), judged at
        `now`; those started before `settle` are counted for good, the others' verdicts returned
        (open: to be read and judged again at the next refresh). The spans are `slices`'."""
        if self.settled_until is not None and lo > self.settled_until and lo > self.window_start(now):
            raise ValueError("a gap between the settled targets and this read")
        first = int(self.window_start(now) // self.bucket_s)
        live: list[Verdict] = []
        for t in targets:
            v = judge(t, now)
            if t.started >= settle:
                live.append(v)
                continue
            m = int(t.started // self.bucket_s)
            if m < first:
                continue  # fell out of the window already
            counts = self._buckets.setdefault(m, {}).setdefault(t.channel, [0, 0])
            counts[0 if v.status == "met" else 1] += 1
        reached = min(hi, settle)
        self.settled_until = reached if self.settled_until is None else max(self.settled_until, reached)
        for m in [m for m in self._buckets if m < first]:
            del self._buckets[m]
        return live

    def summary(self, now: float, live: Iterable[Verdict]) -> dict:
        """`timeliness.summarize` over the window: the settled counts and the `live` verdicts."""
        first = int(self.window_start(now) // self.bucket_s)
        start = first * self.bucket_s
        counts = count((v for v in live if v.target.started >= start))
        for m, channels in self._buckets.items():
            if m < first:
                continue
            for ch, (met, missed) in channels.items():
                c = counts.setdefault(ch, {"met": 0, "missed": 0, "pending": 0})
                c["met"] += met
                c["missed"] += missed
        return summary_of(counts)

    def __len__(self) -> int:
        """Buckets held: at most the window's minutes and one."""
        return len(self._buckets)

