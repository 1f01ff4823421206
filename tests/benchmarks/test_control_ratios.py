"""benchmarks/control_channel.py's medians over repeated pairs: only pairs that measured both
sides at their target count, and the pairs meeting issue 13's targets are counted."""

from __future__ import annotations

from benchmarks.control_channel import median_ratios


def test_medians_count_only_measured_pairs_and_the_pairs_meeting_the_targets() -> None:
    pairs = [
        {"measured": True, "rtt_p50": 1.5, "rtt_p99": 1.1, "cpu": 1.7, "cpu_per_req": 1.7,
         "fanout_last_p50": 1.2, "fanout_last_p99": 1.3},
        {"measured": True, "rtt_p50": 1.7, "rtt_p99": 1.3, "cpu": 2.1, "cpu_per_req": 2.1,
         "fanout_last_p50": 1.4, "fanout_last_p99": 1.1},
        {"measured": True, "rtt_p50": 1.6, "rtt_p99": 0.9, "cpu": 1.9, "cpu_per_req": 1.9,
         "fanout_last_p50": None, "fanout_last_p99": 1.2},
        {"measured": False, "rtt_p50": 9.0, "rtt_p99": 9.0, "cpu": 9.0, "cpu_per_req": 9.0,
         "fanout_last_p50": 9.0, "fanout_last_p99": 9.0},
    ]
    m = median_ratios(pairs)
    assert (m["pairs"], m["measured"]) == (4, 3)
    assert (m["rtt_p50"], m["rtt_p99"], m["cpu"], m["fanout_last_p99"]) == (1.6, 1.1, 1.9, 1.2)
    assert m["fanout_last_p50"] == 1.3  # the median of the two it has
    assert (m["p99_within_1.2x"], m["cpu_within_2x"]) == (2, 2)
    assert median_ratios([])["rtt_p99"] is None
