"""The soak's sums (benchmarks/soak_stats.py), without processes."""

import pytest

from benchmarks.soak import table
from benchmarks.soak_stats import (
    consecutive_slopes,
    kpi_brief,
    missed,
    process_slopes,
    seq_gaps,
    slope_per_hour,
    slope_windows,
)


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


def _levelling(restart_at: float, end: float) -> list[dict]:
    """A first gateway process flat until `restart_at`; the next grows 60 kB a minute for 40 minutes
    after its 5-minute warm-up, 10 kB a minute for 30 more, then nothing (a sample every 60 s):
    restarted at minute 10, it grows fast to minute 55, slowly to minute 85, then not at all."""
    def rss(t: float) -> float:
        m = (t - restart_at) / 60 - 5  # minutes after the warm-up
        return 50_000 + 60 * min(max(m, 0), 40) + 10 * min(max(m - 40, 0), 30)
    return ([{"t": float(t), "gw_pid": 1, "v": 90_000} for t in range(0, int(restart_at), 60)]
            + [{"t": float(t), "gw_pid": 2, "v": rss(t)} for t in range(int(restart_at), int(end) + 1, 60)])


def test_consecutive_windows_show_levelling_off() -> None:
    # restarted at minute 10: windows of 20 minutes from minute 15 (its warm-up left out) to 125
    samples = _levelling(600, 600 + 120 * 60)
    w = consecutive_slopes(samples, "v", warmup_s=300, window_s=1200)
    assert [(x["from_s"] / 60, x["to_s"] / 60) for x in w] == [
        (15, 35), (35, 55), (55, 75), (75, 95), (95, 115), (115, 130)]
    assert [x["samples"] for x in w] == [20, 20, 20, 20, 20, 16]
    slopes = [x["slope"] for x in w]
    assert slopes[:2] == [pytest.approx(3600.0), pytest.approx(3600.0)]  # 60 a minute
    assert slopes[2] == pytest.approx(600.0)  # 10 a minute
    assert 0 < slopes[3] < 600  # where it stops
    assert slopes[4:] == [pytest.approx(0.0), pytest.approx(0.0)]  # levelled off
    medians = [x["median"] for x in w]
    assert medians == sorted(medians) and medians[4] == medians[5]  # rising, then level
    # the slope of the whole process after warm-up hides that: one figure, far from 0
    assert slope_windows(samples, "v", 300)["last_process_after_warmup"] > 1000


def test_a_short_last_window_is_left_out_and_no_window_is_none() -> None:
    samples = _levelling(0, 65 * 60)  # windows of 30 min after 5: 5-35, 35-65; nothing after
    assert [(x["from_s"] / 60, x["to_s"] / 60) for x in consecutive_slopes(samples, "v", 300, 1800)] == [
        (5, 35), (35, 65)]
    samples = _levelling(0, 74 * 60)  # 65-74: 9 minutes of a 30-minute window, under half: left out
    assert len(consecutive_slopes(samples, "v", 300, 1800)) == 2
    samples = _levelling(0, 81 * 60)  # 65-81: 16 minutes, kept
    assert [x["to_s"] / 60 for x in consecutive_slopes(samples, "v", 300, 1800)] == [35, 65, 81]
    assert consecutive_slopes(samples, "v", 300, 0) == []
    assert consecutive_slopes([], "v", 300, 1800) == []
    assert consecutive_slopes(samples, "v", 90 * 60, 1800) == []  # all of it warm-up


def test_the_table_has_a_column_per_window_and_old_runs_none() -> None:
    out = {"kpi_run": {"availability": 1.0, "down_s": 0, "outages": [], "timeliness": 1.0, "met": 1, "missed": 0,
                       "pending": 0},
           "counts": {}, "events_stored": 1, "seq_first": 1, "seq_last": 1, "store_gaps": [], "console_missed": [0],
           "sms_accepted": 0, "sms_rows": 0, "sms_states": {}, "sms_numbers_at_peer": 0, "sms_duplicated_at_peer": 0,
           "drills": []}
    assert "window of the last gateway process" not in table(out)  # a JSON written before the windows
    out["slope_window_min"] = 30
    out["slope_gw_rss_kb_per_h_windows"] = [{"from_min": 5, "to_min": 35, "samples": 360, "slope": 12.5},
                                            {"from_min": 35, "to_min": 52.5, "samples": 210, "slope": 0.4}]
    out["slope_gw_fds_per_h_windows"] = [{"from_min": 5, "to_min": 35, "samples": 360, "slope": 0.0},
                                         {"from_min": 35, "to_min": 52.5, "samples": 210, "slope": None}]
    text = table(out)
    assert "Slope per hour in each 30-minute window of the last gateway process" in text
    assert "| series | min 5-35 | min 35-52.5 |" in text
    assert "| gw_rss_kb | 12.5 | 0.4 |" in text and "| gw_fds | 0.0 | None |" in text
    assert "| workers_fds | - | - |" in text


def test_kpi_brief_counts_every_miss_by_channel_and_why_not_only_the_first_20():
    misses = ([{"channel": "sms", "why": "failed: provider-error", "late_s": None}] * 25
              + [{"channel": "broadcast", "why": "ended without being reached", "late_s": None}] * 3)
    k = {"since": "a", "until": "b",
         "availability": {"whole": {"availability": 1.0, "down_s": 0.0}, "outages": []},
         "timeliness": {"share": 0.9, "met": 250, "missed": 28, "pending": 0,
                        "channels": {"sms": {"met": 200, "missed": 25, "pending": 0}}, "misses": misses}}
    brief = kpi_brief(k)
    assert len(brief["misses"]) == 20 and all(m[0] == "sms" for m in brief["misses"])
    assert brief["misses_by_why"] == {"sms: failed: provider-error": 25, "broadcast: ended without being reached": 3}

