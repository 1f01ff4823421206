"""The soak's sums (benchmarks/soak_stats.py), without processes."""

import pytest

from benchmarks.soak_stats import missed, process_slopes, seq_gaps, slope_per_hour, slope_windows


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


def test_warmup_counts_from_the_last_gateway_process_start() -> None:
    # First process: t 0..900 s, flat. Second (restarted at 900 s): grows for 300 s, then flat.
    first = [{"t": float(t), "gw_pid": 1, "v": 100} for t in range(0, 900, 5)]
    second = [{"t": float(t), "gw_pid": 2, "v": 100 + min(t - 900, 300)} for t in range(900, 2700, 5)]
    w = slope_windows(first + second, "v", warmup_s=300)
    assert w["last_process"] is not None and w["last_process"] > 100
    # The warm-up (its first 300 s) is left out: flat, though every sample is past t = 300 of the run.
    assert w["last_process_after_warmup"] == pytest.approx(0.0)
    assert w["last_process_second_half"] == pytest.approx(0.0)


def test_slope_windows_of_no_samples() -> None:
    assert slope_windows([], "v", 300) == {"run": None, "last_process": None, "last_process_after_warmup": None,
                                           "last_process_second_half": None}


def test_a_restarted_worker_is_its_own_series_not_a_step() -> None:
    # Worker 10 flat for 1,200 s, killed; worker 11 takes over flat (higher RSS: a step in any sum).
    samples = [{"t": float(t), "gw_pid": 1, "wk": {"10" if t < 1200 else "11": [50_000 if t < 1200 else 60_000, 20]}}
               for t in range(0, 2400, 5)]
    slopes = process_slopes(samples, 0, warmup_s=60)
    assert slopes == {"10": pytest.approx(0.0), "11": pytest.approx(0.0)}
    # Too short after its warm-up: left out.
    assert process_slopes(samples[:20], 0, warmup_s=60) == {}
    # A growing one shows: +1 fd a minute is +60 per hour.
    grow = [{"t": float(t), "gw_pid": 1, "wk": {"7": [1, 10 + t // 60]}} for t in range(0, 1800, 60)]
    assert process_slopes(grow, 1, warmup_s=0)["7"] == pytest.approx(60.0)
