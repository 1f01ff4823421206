"""Conference members that are not calls of a phone still take a SIP worker's call slots: a
console's own audio (a port in the worker's bridge, fed over the control channel) and a field
terminal's microphone (its voice bridge dials in). Admission is honest: a full worker refuses the
next member or dial with `no-capacity`, and a slot comes back when such a member leaves."""

from __future__ import annotations

import pytest

from gateway.client import RemoteError
from tests.gateway.test_conferences import member_event
from tests.peers.sipp import sipp_uas

pytestmark = pytest.mark.peers

SLOTS = 2


async def test_console_members_take_call_slots(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{"sip.calls_per_worker": SLOTS, "sip.max_workers": 1})
    alice = await connect(gw)
    w = await watch(alice)
    cid = (await alice.call("conference.create", title="consoles"))["conference_id"]
    consoles = [await alice.call("conference.add", conference_id=cid, console=True) for _ in range(SLOTS)]
    assert [v["calls"] for v in gw.sip.stats()["workers"].values()] == [SLOTS]
    with pytest.raises(RemoteError) as err:  # a third console: the worker is full
        await alice.call("conference.add", conference_id=cid, console=True)
    assert err.value.reason == "no-capacity", err.value
    async with sipp_uas("answer") as uas:
        with pytest.raises(RemoteError) as err:  # nor is a phone dialled into it, or any call
            await alice.call("conference.add", conference_id=cid, target=uas.uri)
        assert err.value.reason == "no-capacity", err.value
        with pytest.raises(RemoteError) as err:
            await alice.call("call.dial", target=uas.uri)
        assert err.value.reason == "no-capacity", err.value
        with pytest.raises(RemoteError) as err:  # nor a terminal's microphone: refused before it is asked
            await alice.call("conference.add", conference_id=cid, terminal_id="unit-7")
        assert err.value.reason == "no-capacity", err.value
        # One console leaves: its slot is free again, a call takes it. (Not a member: a worker
        # in a conference keeps its last slot for a trunk to another worker.)
        await alice.call("media.close", channel=consoles[0]["media"]["channel"])
        await member_event(w, consoles[0]["member_id"], "left")
        call = await alice.call("call.dial", target=uas.uri)
        await w.call_state(call["call_id"], "connected")
        assert [v["calls"] for v in gw.sip.stats()["workers"].values()] == [SLOTS]
        await alice.call("conference.end", conference_id=cid)
        await alice.call("call.hangup", call_id=call["call_id"])
        await w.call_state(call["call_id"], "ended")
        assert (await uas.wait(timeout=15)).successful == 1
    assert [v["calls"] for v in gw.sip.stats()["workers"].values()] == [0]
