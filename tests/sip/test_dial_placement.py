"""A dial's placement (the call slot it holds on a worker) lasts exactly as long as the call may
exist: a dial the worker refuses, interrupted or not, gives its slot back. Real pjsua2 workers;
the refusal is the worker's own (an invalid URI), so no SIP peer is needed."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sip import TargetError

pytestmark = pytest.mark.peers

INVALID_URI = "not a uri"  # the worker answers the dial command with invalid-uri


async def placement_released(sup, call_id: str, timeout: float = 10.0) -> bool:
    """Wait (on the worker's replies, at most `timeout`) until `call_id` holds no slot."""
    w = sup._workers[0]
    async with asyncio.timeout(timeout):
        await sup._command(w, {"cmd": "ping"})  # the worker answers in order: the dial came first
        while sup.worker_of(call_id) is not None or call_id in w.calls:
            await asyncio.sleep(0.01)  # the reply's callbacks run on the next loop turns
    return True


async def test_a_refused_dial_gives_its_slot_back(start_supervisor) -> None:
    sup = await start_supervisor(max_workers=1)
    c = uuid.uuid4().hex
    with pytest.raises(TargetError):
        await sup.dial(c, INVALID_URI)
    assert sup.worker_of(c) is None
    assert sup._workers[0].load == 0


async def test_an_interrupted_dial_the_worker_refuses_gives_its_slot_back(start_supervisor) -> None:
    sup = await start_supervisor(max_workers=1)
    c = uuid.uuid4().hex
    dial = asyncio.create_task(sup.dial(c, INVALID_URI))
    async with asyncio.timeout(10):
        while sup.worker_of(c) is None:  # placed, its command on the way to the worker
            await asyncio.sleep(0)
    dial.cancel()  # the client went away after the command was written
    with pytest.raises(asyncio.CancelledError):
        await dial
    try:
        assert await placement_released(sup, c)
    except TimeoutError:
        raise AssertionError(f"{c} still holds a slot on worker {sup.worker_of(c)} "
                             f"(load {sup._workers[0].load}) after the worker refused it") from None
    assert sup._workers[0].load == 0 and sup.ready
