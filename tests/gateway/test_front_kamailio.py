"""Several SIP workers behind one address: the gateway starts Kamailio in front of them."""

from __future__ import annotations

import asyncio
import collections

import pytest

from tests.peers.sipp import sipp_uac

pytestmark = pytest.mark.peers


async def _answer_every_ringing_call(client, w, answered: list[str]) -> None:
    """A dispatcher who answers every inbound call as soon as it rings."""
    seen: set[str] = set()
    while True:
        for ev in list(w.events):
            d = ev["data"]
            if ev["type"] == "call.state" and d["state"] == "ringing" and d["call_id"] not in seen:
                seen.add(d["call_id"])
                await client.call("call.answer", call_id=d["call_id"])
                answered.append(d["call_id"])
        w._changed.clear()
        await w._changed.wait()


async def test_inbound_load_through_the_front_spreads_over_workers(start_gateway, connect, watch) -> None:
    calls = 12
    # every slot of the 3 workers for inbound calls: none kept for call.dial (sip.dispatch_reserve)
    gw = await start_gateway(**{"sip.max_workers": 3, "sip.warm_workers": 3, "sip.dispatch_reserve": 0})
    assert gw.front is not None and gw.front.pid
    cfg = gw.config.sip
    async with asyncio.timeout(15):  # the front's OPTIONS probes mark the warm workers active
        while list((await gw.front.destinations()).values()).count("AP") < 3:
            await asyncio.sleep(0.2)
    alice = await connect(gw)
    w = await watch(alice)
    answered: list[str] = []
    bot = asyncio.create_task(_answer_every_ringing_call(alice, w, answered))
    try:
        # One address for callers: the front's. Paced: SIPp aborts a call on a retransmission.
        async with sipp_uac(f"{cfg.host}:{cfg.port}", calls=calls, rate=4, hold_ms=3000,
                            timeout_s=60) as uac:
            res = await uac.wait(60)
    finally:
        bot.cancel()
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (calls, 0)
    assert len(answered) == calls
    for cid in answered:
        await w.call_state(cid, "ended")
    workers = collections.Counter([(await gw.store.get_call(cid))["worker"] for cid in answered])
    assert len(workers) == 3, workers  # round robin over every worker
    assert all(r["cause"] == "remote-hangup" for r in [await gw.store.get_call(c) for c in answered])
