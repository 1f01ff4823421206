"""The intake gate in front of the provider's answer (SmsLedger.intake), without sockets or a store.

Before the waiting line, a report arriving while all slots were busy was refused at once: a burst of
inbound webhooks retried every 0.2 s won the freed slots again and again, and a status callback
caught among them was refused for its provider's whole retry deadline (seen in a loaded CI run:
tests/gateway/test_sms_intake.py, three callbacks answered 503 after 60 s of tries).
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.services.sms_ledger import Overloaded, SmsLedger
from sms.config import SmsConfig


def _ledger(limit: int, wait_s: float = 5.0) -> SmsLedger:
    return SmsLedger(store=None, provider="twilio",  # type: ignore[arg-type]  # intake never touches it
                     config=SmsConfig(intake_limit=limit, intake_wait_s=wait_s, intake_timeout_s=5.0))


async def test_a_report_waits_in_line_for_a_slot_and_is_served_in_arrival_order() -> None:
    ledger = _ledger(limit=1)
    release = asyncio.Event()
    order: list[str] = []

    async def work(name: str, gate: asyncio.Event | None = None) -> str:
        if gate is not None:
            await gate.wait()
        order.append(name)
        return name

    first = asyncio.create_task(ledger.intake("a", lambda: work("a", release)))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(ledger.intake(k, lambda k=k: work(k))) for k in ("b", "c", "d")]
    await asyncio.sleep(0.05)
    assert order == [] and not any(t.done() for t in waiting), "all wait while the slot is busy"
    # a newcomer does not overtake the line even when it arrives just as the slot frees
    release.set()
    late = asyncio.create_task(ledger.intake("e", lambda: work("e")))
    assert await asyncio.gather(first, *waiting, late) == ["a", "b", "c", "d", "e"]
    assert order == ["a", "b", "c", "d", "e"]


async def test_a_full_line_or_a_long_wait_is_retry_later_and_frees_nothing_it_did_not_hold() -> None:
    ledger = _ledger(limit=1, wait_s=0.1)
    hold = asyncio.Event()
    first = asyncio.create_task(ledger.intake("a", hold.wait))
    await asyncio.sleep(0)
    in_line = [asyncio.create_task(ledger.intake(k, hold.wait)) for k in "bcde"]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):  # the line holds 4 x intake_limit callers
        await ledger.intake("f", hold.wait)
    for waiting in in_line:  # and each waits intake_wait_s at most
        with pytest.raises(Overloaded):
            await waiting
    hold.set()
    assert await first is True
    # the slot count is intact: the next report runs at once
    assert await ledger.intake("d", lambda: asyncio.sleep(0, result="d")) == "d"
    assert not ledger._line and ledger._granted == 0 and not ledger._busy


async def test_a_twin_waiting_in_line_joins_the_running_work_and_hands_its_slot_on() -> None:
    ledger = _ledger(limit=2)
    hold_a, hold_b, hold_x = asyncio.Event(), asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    async def work(name: str, gate: asyncio.Event) -> str:
        runs.append(name)
        await gate.wait()
        return name

    a = asyncio.create_task(ledger.intake("a", lambda: work("a", hold_a)))
    b = asyncio.create_task(ledger.intake("b", lambda: work("b", hold_b)))
    await asyncio.sleep(0)
    x1 = asyncio.create_task(ledger.intake("x", lambda: work("x1", hold_x)))
    x2 = asyncio.create_task(ledger.intake("x", lambda: work("x2", hold_x)))  # the same report again
    y = asyncio.create_task(ledger.intake("y", lambda: work("y", hold_x)))
    await asyncio.sleep(0.02)
    hold_a.set()
    await a
    await asyncio.sleep(0.02)
    assert runs == ["a", "b", "x1"]
    hold_b.set()  # x2 gets the slot, finds x1 running, joins it and hands the slot to y
    await b
    await asyncio.sleep(0.02)
    assert runs == ["a", "b", "x1", "y"]
    hold_x.set()
    assert await asyncio.gather(x1, x2, y) == ["x1", "x1", "y"]
    assert not ledger._line and ledger._granted == 0 and not ledger._busy
