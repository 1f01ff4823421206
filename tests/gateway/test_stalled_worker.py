"""A SIP worker that stops answering (SIGSTOP: its pjsua loop frozen) is handled like a dead one.

Three workers, one call each (calls_per_worker = 1): a call to SIPp, a broadcast paging another
SIPp, and a call to a baresip phone fed by the console. The first two workers are stopped; the
liveness check (`sip.heartbeat_*`) must find them, kill and restart them: commands answer a clear
`sip-unavailable` within the deadline, their calls end `worker-crashed`, the broadcast ends with
its target reported, the third call's audio keeps reaching baresip, and new calls succeed on the
restarted workers.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.client import RemoteError
from tests.audio import active_span, dominant_frequency, frames, tone
from tests.peers.baresip import BaresipPhone
from tests.peers.sipp import sipp_uas
from tests.sip.conftest import stopped

pytestmark = pytest.mark.peers

INTERVAL_S, DEADLINE_S = 0.5, 2.0
STALL = {"sip.max_workers": 3, "sip.proxy": "none", "sip.calls_per_worker": 1, "sip.warm_workers": 1,
         "sip.heartbeat_interval_s": INTERVAL_S, "sip.heartbeat_deadline_s": DEADLINE_S}


async def _talk(client, channel: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, f in enumerate(frames(tone(1000, seconds))):
        await client.send_audio(channel, i, i * len(f) // 2, f)
        delay = start + (i - 3) * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def test_stopped_workers_are_killed_restarted_and_others_carry_on(start_gateway, connect, watch) -> None:
    async with sipp_uas("answer", calls=3) as uas, sipp_uas("answer") as spk, \
            BaresipPhone(user="desk") as desk:
        gw = await start_gateway(**STALL)
        alice = await connect(gw)
        w = await watch(alice)
        held = (await alice.call("call.dial", target=uas.uri))["call_id"]
        await w.call_state(held, "connected")
        b = await alice.call("broadcast.start", targets=[spk.uri], chime=False,
                             source={"type": "tone", "frequency": 800, "seconds": 60})
        bid = b["broadcast_id"]
        await w.wait(lambda e: e["type"] == "broadcast.target" and e["data"]["broadcast_id"] == bid
                     and e["data"]["state"] == "connected", 20)
        keep = (await alice.call("call.dial", target=desk.uri))["call_id"]
        await w.call_state(keep, "connected")
        await desk.wait_log("incoming rtp for 'audio' established")
        w_held, w_keep = gw.sip.worker_of(held), gw.sip.worker_of(keep)
        w_bc = next(i for i in gw.sip._call_worker.values() if i not in (w_held, w_keep))
        assert len({w_held, w_bc, w_keep}) == 3
        chan = await alice.call("media.open", call_id=keep, rate=16000)
        talking = asyncio.create_task(_talk(alice, chan["channel"], 5.0))
        loop = asyncio.get_running_loop()
        with stopped(gw.sip._workers[w_held].proc, gw.sip._workers[w_bc].proc):
            t0 = loop.time()
            with pytest.raises(RemoteError) as err:
                await alice.call("call.hangup", call_id=held)
            answered_in = loop.time() - t0
            assert err.value.reason == "sip-unavailable", err.value
            assert answered_in < INTERVAL_S + DEADLINE_S + 2.5, answered_in
            ended = await w.call_state(held, "ended", timeout=10)
            assert ended["cause"] == "worker-crashed"
            end = (await w.wait(lambda e: e["type"] == "broadcast.state" and e["data"]["broadcast_id"] == bid
                                and e["data"]["state"] == "ended", 15))["data"]
            lost = [e["data"] for e in w.events if e["type"] == "broadcast.target"
                    and e["data"]["broadcast_id"] == bid][-1]
            assert lost["state"] == "ended" and lost["cause"] == "worker-crashed", lost
            assert end["targets"] == {"ended": 1}
            await talking
            assert w.states(keep)[-1] == "connected"  # the third worker's call never noticed
            await asyncio.sleep(0.3)
            await alice.call("media.close", channel=chan["channel"])
            await alice.call("call.hangup", call_id=keep)
            await w.call_state(keep, "ended")
            await desk.wait_log("terminated")
            heard, rate = await desk.recording("dec")
            # The stopped workers come back: new calls land on them and connect.
            again = []
            for _ in range(2):
                cid = (await alice.call("call.dial", target=uas.uri))["call_id"]
                await w.call_state(cid, "connected", timeout=20)
                again.append(cid)
            assert {gw.sip.worker_of(c) for c in again} == {w_held, w_bc}
            stats = gw.sip.stats()["workers"]
            assert stats[w_held]["restarts"] == 1 and stats[w_bc]["restarts"] == 1
            assert stats[w_keep]["restarts"] == 0
            for cid in again:
                await alice.call("call.hangup", call_id=cid)
                await w.call_state(cid, "ended")
    tone_part = active_span(heard, rate)
    assert len(tone_part) / rate > 4.0, f"only {len(tone_part) / rate:.2f}s of the console's tone heard"
    assert abs(dominant_frequency(tone_part, rate) - 1000) < 20
