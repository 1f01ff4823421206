"""The pacer's schedule (sms.pacing) under a fake clock: the achieved rate, the bursts, the window.

A small discrete-event simulation stands in for the service: the dispatcher wakes when the pacer
says (late by a random 0-`late_s`), a prepare (the store commit marking a batch `sending`) takes
`commit_s`, a provider call `call_s`. No sockets, no sleeps: every figure is exact and repeatable.
Before this pacer the dispatcher took one token per wake-up and marked each message `sending` with
its own commit before the call; at 500/s on the dev box it achieved 262/s (issue 13).
"""

from __future__ import annotations

import heapq
import random

import pytest

from sms.outbox import SenderRates
from sms.pacing import Pacer

SENDER = "+15005550006"


def simulate(n: int, rate: float, burst: float, window: int, *, commit_s: float = 0.005,
             call_s: float = 0.02, late_s: float = 0.002, stall: tuple[float, float] | None = None,
             seed: int = 1) -> tuple[list[float], Pacer, int]:
    """Send n messages; the times of the provider calls, the pacer, and the most messages that
    were prepared-or-ready at once. `stall` = (at, seconds): a commit starting then takes that long."""
    rng = random.Random(seed)
    pacer = Pacer(SenderRates(rate, burst), window)
    for i in range(n):
        pacer.push(f"m{i}", SENDER, at=0.0)
    events: list[tuple[float, int, str, object]] = []  # (time, order, kind, payload)
    order = 0

    def at(t: float, kind: str, payload: object = None) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (t, order, kind, payload))

    sends: list[float] = []
    most_ahead = 0
    at(0.0, "wake")
    wake_pending = True
    while events:
        t, _, kind, payload = heapq.heappop(events)
        if kind == "prepared":
            for message_id in payload:  # type: ignore[attr-defined]
                pacer.prepared(message_id, SENDER)
        elif kind == "done":
            pacer.done()
        elif kind == "wake":
            wake_pending = False
        if wake_pending and kind != "wake":
            continue  # the dispatcher is already due to run
        batch = pacer.to_prepare(t)
        if batch:
            took = commit_s if stall is None or not (stall[0] <= t < stall[0] + commit_s) else stall[1]
            at(t + took, "prepared", [m for m, _ in batch])
        most_ahead = max(most_ahead, pacer.preparing + pacer.ready)
        for _ in pacer.to_send(t):
            sends.append(t)
            at(t + call_s, "done")
        assert pacer.calls <= window and pacer.preparing + pacer.ready <= window
        wait = pacer.wait(t, t)
        if wait is not None:
            at(t + wait + rng.random() * late_s, "wake")
            wake_pending = True
    return sends, pacer, most_ahead


def achieved(sends: list[float]) -> float:
    return (len(sends) - 1) / (sends[-1] - sends[0])


def busiest_second(sends: list[float]) -> int:
    best, j = 0, 0
    for i, t in enumerate(sends):
        while sends[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("rate", [200, 500, 1000])
def test_the_configured_rate_is_achieved_within_2_percent(rate: int) -> None:
    sends, pacer, _ = simulate(10_000, rate, burst=50, window=50)
    assert len(sends) == 10_000 and pacer.queued == pacer.ready == pacer.preparing == pacer.calls == 0
    assert abs(achieved(sends) - rate) / rate < 0.02, achieved(sends)
    assert busiest_second(sends) <= rate + 50


def test_a_dispatcher_waking_late_takes_the_tokens_saved_meanwhile() -> None:
    """Woken 0-20 ms late at 1,000/s (one token a millisecond): several go per wake-up, the rate holds."""
    sends, _, _ = simulate(5_000, 1000, burst=50, window=100, late_s=0.02)
    assert abs(achieved(sends) - 1000) / 1000 < 0.02, achieved(sends)
    per_wake = max(sends.count(t) for t in set(sends))
    assert per_wake > 1


def test_a_stalled_commit_costs_no_sending_time_and_makes_no_burst_beyond_the_bucket() -> None:
    """A commit that takes 80 ms (a WAL checkpoint) at 500/s: the window prepared ahead (100
    messages = 200 ms) covers it, and the calls stay paced by the bucket, not released at once."""
    sends, _, _ = simulate(5_000, 500, burst=20, window=100, stall=(2.0, 0.08))
    assert abs(achieved(sends) - 500) / 500 < 0.02, achieved(sends)
    assert busiest_second(sends) <= 500 + 20


def test_preparing_runs_ahead_by_at_most_the_window() -> None:
    _, _, most_ahead = simulate(2_000, 1000, burst=50, window=30)
    assert most_ahead == 30


def test_nothing_due_means_no_wake_up_before_the_backoff_ends() -> None:
    pacer = Pacer(SenderRates(10, 1), window=5)
    pacer.push("m1", SENDER, at=100.0)
    assert pacer.to_prepare(99.0) == []
    assert pacer.wait(99.0, 0.0) == pytest.approx(1.0)
    assert pacer.to_prepare(100.0) == [("m1", SENDER)]
    assert pacer.wait(100.0, 0.0) is None  # only the prepare's end can change anything now
    pacer.prepared("m1", SENDER)
    assert pacer.to_send(0.0) == [("m1", SENDER)]
    assert pacer.wait(100.0, 0.0) is None


def test_senders_have_their_own_buckets() -> None:
    pacer = Pacer(SenderRates(1, 1), window=10)
    for i, sender in enumerate(["+1", "+2", "+1", "+2"]):
        pacer.push(f"m{i}", sender, at=0.0)
    for message_id, sender in pacer.to_prepare(0.0):
        pacer.prepared(message_id, sender)
    assert sorted(pacer.to_send(0.0)) == [("m0", "+1"), ("m1", "+2")]  # one token each
    assert pacer.to_send(0.5) == []
    assert pacer.wait(0.0, 0.5) == pytest.approx(0.5)
    assert sorted(pacer.to_send(1.0)) == [("m2", "+1"), ("m3", "+2")]
