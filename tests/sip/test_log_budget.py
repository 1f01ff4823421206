"""The worker log's byte budget (sip/worker/log_budget.py), without pjsua2."""

from __future__ import annotations

from sip.worker.log_budget import NOTICE_BYTES, LogBudget


def test_burst_then_rate_and_dropped_lines_reported_once_a_second() -> None:
    budget = LogBudget(rate=1000, burst=5000)
    assert [budget.take(1000, 0.0) for _ in range(5)] == [(True, 0)] * 5
    assert budget.take(1000, 0.0) == (False, 0)  # the burst is spent
    assert budget.take(1000, 0.5) == (False, 0)  # 500 bytes back: not enough
    assert budget.dropped == 2
    ok, report = budget.take(500, 1.1)  # 1,100 back: the line and the notice fit
    assert (ok, report) == (True, 2) and budget.dropped == 0
    written = 0
    for i in range(1000):  # a flood for 10 s: written bytes stay within burst + rate * time
        ok, report = budget.take(200, 1.1 + i * 0.01)
        written += (200 if ok else 0) + (NOTICE_BYTES if report else 0)
    assert written <= 1000 * 10 + 1000
    assert budget.dropped > 0


def test_a_quiet_log_is_never_cut() -> None:
    budget = LogBudget(rate=1000, burst=5000)
    assert all(budget.take(300, t * 0.5)[0] for t in range(100))
