"""The soak's sums (benchmarks/soak_stats.py), without processes."""

import pytest

from benchmarks.soak_stats import missed, seq_gaps, slope_per_hour


def test_slope_of_a_line_per_hour() -> None:
    times = [0.0, 5.0, 10.0, 15.0]
    assert slope_per_hour(times, [100 + 2 * t for t in times]) == pytest.approx(7200.0)


def test_slope_flat_with_noise_is_zero() -> None:
    assert slope_per_hour([0, 1, 2, 3], [5, 6, 5, 6]) == pytest.approx(0.2 * 3600)
    assert slope_per_hour([0, 1, 2, 3], [5, 6, 6, 5]) == pytest.approx(0.0)


def test_slope_needs_two_distinct_times() -> None:
    assert slope_per_hour([], []) is None
    assert slope_per_hour([3, 3], [1, 2]) is None
    with pytest.raises(ValueError):
        slope_per_hour([1, 2], [1])


def test_gaps_named_as_ranges() -> None:
    assert seq_gaps([1, 2, 3]) == []
    assert seq_gaps([5, 1, 2, 9, 9]) == [(3, 4), (6, 8)]


def test_missed_only_inside_the_window() -> None:
    assert missed([1, 2, 3, 4, 5], [2, 4], after=1, upto=4) == [3]
    assert missed([1, 2, 3], [1, 2, 3], after=0, upto=3) == []
