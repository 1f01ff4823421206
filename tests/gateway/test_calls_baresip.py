"""Mid-call features and console audio against baresip, a real phone that records what it hears."""

from __future__ import annotations

import asyncio

import pytest

from gateway.client import RemoteError
from tests.audio import active_span, dominant_frequency, frames, pcm_to_array, tone
from tests.peers.baresip import BaresipPhone

pytestmark = pytest.mark.peers


async def test_hold_unhold_dtmf_and_wrong_state_commands(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    async with BaresipPhone(user="desk") as phone:
        call = await alice.call("call.dial", target=phone.uri)
        cid = call["call_id"]
        await w.call_state(cid, "connected")
        for method in ("call.answer", "call.unhold", "call.reject"):
            with pytest.raises(RemoteError) as err:
                await alice.call(method, call_id=cid)
            assert err.value.reason == "invalid-state", method
        assert w.states(cid)[-1] == "connected"  # nothing changed
        await alice.call("call.hold", call_id=cid)
        await w.call_state(cid, "held")
        with pytest.raises(RemoteError) as err:
            await alice.call("call.hold", call_id=cid)
        assert err.value.reason == "invalid-state"
        await alice.call("call.unhold", call_id=cid)
        await w.wait(lambda e: w.states(cid)[-1:] == ["connected"] and "held" in w.states(cid))
        await alice.call("call.dtmf", call_id=cid, digits="12#")
        await phone.wait_log("received event: '#' (end=1)", timeout=10)
        await alice.call("call.hangup", call_id=cid)
        ended = await w.call_state(cid, "ended")
        log = phone.log()
    assert ended["cause"] == "local-hangup"
    # What the phone got: the hold and unhold re-INVITEs, then RFC 2833 digits in order.
    assert log.count("got re-INVITE") >= 2
    digits = [ln.split("'")[1] for ln in log.splitlines() if ln.startswith("received event:") and "end=1" in ln]
    assert digits == ["1", "2", "#"]
    with pytest.raises(RemoteError) as err:
        await alice.call("call.hangup", call_id=cid)
    assert err.value.reason == "no-such-call"
