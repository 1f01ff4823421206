"""gateway.limits without sockets or clocks."""

import asyncio
import errno

import pytest
import structlog.testing

from gateway.limits import (
    ACCEPT_FAILED,
    ConnectionLimits,
    EveryInterval,
    FailureThrottle,
    RequestBudget,
    RequestBudgets,
    ProbeReserve,
    throttle_accept_errors,
)


def test_connection_limits_per_source_and_total():
    lim = ConnectionLimits(total=3, per_source=2)
    assert lim.admit("a", 1) and lim.admit("a", 2)
    assert not lim.admit("a", 3)  # per source
    assert lim.admit("b", 4)
    assert not lim.admit("c", 5)  # total
    lim.release("a", 1)
    lim.release("a", 1)  # twice is harmless
    assert len(lim) == 2 and lim.admit("c", 5)


def test_connection_limits_reclaim_dead_slots_when_full():
    lim = ConnectionLimits(total=10, per_source=1)
    dead = set()
    assert lim.admit("a", "x")
    dead.add("x")  # its handshake failed: never released
    assert lim.admit("a", "y", alive=lambda k: k not in dead)
    assert len(lim) == 1


def test_probe_reserve_gives_way_oldest_waiting_first():
    r = ProbeReserve(2)
    assert r.admit("a") == (True, None) and r.admit("b") == (True, None)
    assert r.admit("c") == (True, "a")  # full of idle ones: the oldest gives way
    r.answering("b")
    assert r.admit("d") == (True, "c")  # "b" is being answered: not given away
    r.answering("d")
    assert r.admit("e") == (False, None) and len(r) == 2
    r.release("b")
    r.release("b")  # twice is harmless
    assert r.admit("e") == (True, None)
    assert ProbeReserve(0).admit("x") == (False, None)


def test_failure_throttle_burst_then_refill():
    t = FailureThrottle(burst=3, per_s=0.5)
    for _ in range(3):
        assert t.retry_after("a", 0.0) == 0
        t.failed("a", 0.0)
    assert t.retry_after("a", 0.0) == 2.0 and t.retry_after("b", 0.0) == 0
    assert t.retry_after("a", 1.0) == 1.0
    assert t.retry_after("a", 2.0) == 0


def test_failure_throttle_forgets_oldest_sources():
    t = FailureThrottle(burst=1, per_s=1, max_sources=2)
    for s in "abc":
        t.failed(s, 0.0)
    assert t.retry_after("a", 0.0) == 0 and t.retry_after("c", 0.0) > 0


def test_every_interval_counts_suppressed():
    e = EveryInterval(10)
    assert e.due(0) == (True, 0)
    assert e.due(1) == (False, 0) and e.due(2) == (False, 0)
    assert e.due(10) == (True, 2)


async def test_accept_errors_are_logged_once_per_interval():
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    other = []
    loop.set_exception_handler(lambda lp, ctx: other.append(ctx["message"]))
    try:
        throttle_accept_errors(loop, 60)
        with structlog.testing.capture_logs() as logs:
            for _ in range(1000):
                loop.call_exception_handler({"message": ACCEPT_FAILED,
                                             "exception": OSError(errno.EMFILE, "Too many open files")})
            loop.call_exception_handler({"message": "something else"})
        accepts = [e for e in logs if e["event"] == "listener.accept-failed"]
        assert len(accepts) == 1 and "Too many open files" in accepts[0]["error"]
        assert other == ["something else"]  # the previous handler still gets the rest
    finally:
        loop.set_exception_handler(before)


def test_request_budgets_per_principal_sized_by_role() -> None:
    budgets = RequestBudgets({"terminal": RequestBudget(rate=2, burst=3)})
    assert [budgets.take("terminal", "unit-7", 0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert budgets.take("terminal", "unit-8", 0.0) == 0.0  # another principal has its own bucket
    assert budgets.take("terminal", "unit-7", 0.5) == 0.0  # refilled at `rate`
    assert budgets.take("terminal", "unit-7", 0.5) == 0.5
    assert all(budgets.take("dispatcher", "alice", 0.0) == 0.0 for _ in range(1000))  # no budget: no limit
    assert budgets.refused == {"terminal": 2}


def test_a_request_budget_is_checked() -> None:
    for bad in ({"rate": 0, "burst": 1}, {"rate": 1, "burst": 0}, {"rate": True, "burst": 1},
                {"rate": 1, "burst": 1.5}):
        with pytest.raises(ValueError):
            RequestBudget(**bad)
