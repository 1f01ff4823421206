"""sip/admission.py: who may take a call slot (pure; no processes, no sockets)."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from sip.admission import (
    DECIDED,
    RETRY_AFTER_S,
    TOO_MANY_RINGING,
    WORKER_FULL,
    Refusal,
    RefusalBudget,
    admit_inbound,
    decided_reason,
    fails_over,
    inbound_shares,
    source_host,
)
from sip.config import SipConfig, worker_config


@pytest.mark.parametrize(
    ("workers", "cpw", "reserve", "spread", "shares"),
    [
        (4, 4, 2, True, [3, 3, 4, 4]),  # the default: 14 of 16 slots, worker 0 keeps one free
        (2, 4, 3, True, [2, 3]),
        (2, 4, 0, True, [4, 4]),
        (3, 4, 12, True, [0, 0, 0]),  # everything reserved: no inbound call at all
        (3, 4, 50, True, [0, 0, 0]),
        (1, 4, 2, True, [2]),
        (4, 4, 2, False, [4, 0, 0, 0]),  # no front: only worker 0 is called
        (2, 4, 6, False, [2, 0]),
    ],
)
def test_inbound_shares_keep_the_reserve(workers: int, cpw: int, reserve: int, spread: bool,
                                         shares: list[int]) -> None:
    got = inbound_shares(workers, cpw, reserve, spread=spread)
    assert got == shares
    assert all(0 <= s <= cpw for s in got)
    assert workers * cpw - sum(got) >= min(reserve, workers * cpw)


def test_admit_inbound() -> None:
    ok = {"inbound": 1, "share": 3, "ringing_from_source": 0, "max_ringing_per_source": 2}
    assert admit_inbound(**ok) is None
    assert admit_inbound(**{**ok, "inbound": 3}) == Refusal(*WORKER_FULL, retry_after=RETRY_AFTER_S)
    assert admit_inbound(**{**ok, "ringing_from_source": 2}) == Refusal(*TOO_MANY_RINGING)
    assert admit_inbound(**{**ok, "ringing_from_source": 9, "max_ringing_per_source": 0}) is None
    assert WORKER_FULL[0] == 503 and TOO_MANY_RINGING[0] == 486


def test_refusals_the_front_fails_over_on_and_the_user_decided_ones() -> None:
    assert [c for c in (404, 480, 486, 500, 503, 599, 600, 603) if fails_over(c)] == [486, 500, 503, 599]
    assert decided_reason(486) == decided_reason(503) == DECIDED
    assert decided_reason(480) is None and decided_reason(603) is None
    assert not fails_over(TOO_MANY_RINGING[0] + 1)


def test_source_host() -> None:
    assert source_host("127.0.0.1:5060") == "127.0.0.1"
    assert source_host("[::1]:5060") == "::1"
    assert source_host("10.0.0.7") == "10.0.0.7"


def test_worker_config_carries_its_share_and_the_per_source_limit_only_without_a_front() -> None:
    front = SipConfig(max_workers=2, dispatch_reserve=3, max_ringing_per_source=5)
    assert [worker_config(front, i, 4)["inbound_share"] for i in range(2)] == [2, 3]
    assert worker_config(front, 0, 4)["max_ringing_per_source"] == 0  # the front limits it
    alone = SipConfig(max_workers=1, max_ringing_per_source=5)
    assert worker_config(alone, 0, 4)["inbound_share"] == 2
    assert worker_config(alone, 0, 4)["max_ringing_per_source"] == 5


def test_config_keys() -> None:
    cfg = load_config(None, {}, ["sip.dispatch_reserve=0", "sip.max_ringing_per_source=10"])
    assert (cfg.sip.dispatch_reserve, cfg.sip.max_ringing_per_source) == (0, 10)
    default = load_config(None, {}, [])
    assert (default.sip.dispatch_reserve, default.sip.max_ringing_per_source) == (2, 4)
    with pytest.raises(ConfigError, match="sip.dispatch_reserve"):
        load_config(None, {}, ["sip.dispatch_reserve=-1"])
    with pytest.raises(ValueError):
        SipConfig(max_ringing_per_source=-1)


def test_refusal_budget_is_a_token_bucket_that_a_dial_may_borrow_from() -> None:
    b = RefusalBudget(rate=4, burst=4)
    assert [b.take(0.0) for _ in range(5)] == [True] * 4 + [False]
    assert b.take(0.125) is False and b.take(0.25) is True  # one token per 0.25 s
    assert [b.take(0.25, borrow=True) for _ in range(5)] == [True] * 4 + [False]  # credit: -4
    assert b.take(1.25) is False  # the debt is repaid first
    assert b.take(1.5) is True
    assert [b.take(100.0) for _ in range(5)] == [True] * 4 + [False]  # never more than a burst
    assert RefusalBudget().rate == 5.0
