"""The soak's sums, without I/O: least-squares slope per hour, gaps in a seq range, and the seqs a
subscriber missed (benchmarks/soak.py feeds them samples from /proc and seqs from the store)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def slope_per_hour(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of `values` against `times_s` (seconds), in units per hour; None with
    fewer than two distinct times."""
    n = len(times_s)
    if n != len(values):
        raise ValueError("times and values differ in length")
    if n < 2:
        return None
    mt, mv = sum(times_s) / n, sum(values) / n
    var = sum((t - mt) ** 2 for t in times_s)
    if var == 0:
        return None
    cov = sum((t - mt) * (v - mv) for t, v in zip(times_s, values, strict=True))
    return cov / var * 3600.0


def seq_gaps(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Missing ranges (first, last) between consecutive seqs, e.g. [1, 2, 5] -> [(3, 4)]."""
    out: list[tuple[int, int]] = []
    prev: int | None = None
    for s in sorted(set(seqs)):
        if prev is not None and s > prev + 1:
            out.append((prev + 1, s - 1))
        prev = s
    return out


def missed(stored: Iterable[int], seen: Iterable[int], after: int, upto: int) -> list[int]:
    """Seqs in (after, upto] the store holds that a subscriber did not see."""
    got = set(seen)
    return sorted(s for s in stored if after < s <= upto and s not in got)
