"""How benchmarks.sms judges the pacing from the peer's arrival times (sans-I/O, made-up times)."""

from __future__ import annotations

from benchmarks.sms import rate_measures


def paced(n: int, rate: float, burst: int, *, stall_at: int | None = None, stall_s: float = 0.0) -> list[float]:
    """Arrivals of a perfect token bucket (full at 0), optionally losing `stall_s` before create `stall_at`."""
    out, t = [], 0.0
    for i in range(n):
        if i >= burst:
            t = (i - burst + 1) / rate
        if stall_at is not None and i >= stall_at:
            t += stall_s
        out.append(t)
    return out


def test_perfect_pacing_is_the_configured_rate_whatever_the_burst() -> None:
    for rate in (200.0, 500.0, 1000.0):
        m = rate_measures(paced(10_000, rate, 50), 50, t_send=-0.25)
        assert m["steady_rate_per_s"] == rate
        assert m["achieved_rate_per_s"] > rate * 1.004  # the old figure counts the burst as rate
        assert m["busiest_1s"] == rate + 50
        assert m["first_create_after_send_s"] == 0.25
        assert m["end_to_end_rate_per_s"] == round(10_000 / ((10_000 - 50) / rate + 0.25), 1)  # accept and start count


def test_a_stall_shows_in_the_steady_rate_the_slowest_second_and_the_longest_gap() -> None:
    m = rate_measures(paced(10_000, 500.0, 50, stall_at=5_000, stall_s=0.5), 50)
    assert m["steady_rate_per_s"] < 500 * 0.98 + 1
    assert m["slowest_1s"] <= 251
    assert m["longest_gap_s"] == 0.502
