"""Half-open time intervals [start, end) in seconds since the epoch, as sorted disjoint lists.

The arithmetic both indicators share (gateway/kpi/availability.py, gateway/kpi/timeliness.py):
merge, clip, subtract, total. Pure functions; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

Span = tuple[float, float]


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, disjoint, non-empty: overlapping or touching spans joined."""
    out: list[Span] = []
    for s, e in sorted(x for x in spans if x[1] > x[0]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def clip(spans: Iterable[Span], lo: float, hi: float) -> list[Span]:
    """The parts of `spans` inside [lo, hi)."""
    return [(max(s, lo), min(e, hi)) for s, e in spans if min(e, hi) > max(s, lo)]


def subtract(spans: Iterable[Span], holes: Iterable[Span]) -> list[Span]:
    """`spans` minus `holes` (both may be unsorted; the result is merged)."""
    result: list[Span] = []
    cut = merge(holes)
    for s, e in merge(spans):
        start = s
        for hs, he in cut:
            if he <= start or hs >= e:
                continue
            if hs > start:
                result.append((start, hs))
            start = max(start, he)
            if start >= e:
                break
        if start < e:
            result.append((start, e))
    return result


def intersect(a: Iterable[Span], b: Iterable[Span]) -> list[Span]:
    bb = merge(b)
    return merge((max(s, bs), min(e, be)) for s, e in merge(a) for bs, be in bb
                 if min(e, be) > max(s, bs))


def total(spans: Iterable[Span]) -> float:
    return sum(e - s for s, e in merge(spans))
