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


async def _collect_audio(client, channel: int, frames_wanted: int, timeout: float = 10) -> list[bytes]:
    got: list[bytes] = []
    async with asyncio.timeout(timeout):
        async for f in client.audio():
            if f.channel == channel:
                got.append(f.payload)
                if len(got) >= frames_wanted:
                    return got
    return got


@pytest.mark.parametrize("rate", [16000, 8000])
async def test_console_talks_and_listens_through_binary_frames(start_gateway, connect, watch, rate) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    bob = await connect(gw, "tok-dispatcher-2")
    olga = await connect(gw, "tok-observer")
    w = await watch(alice)
    async with BaresipPhone(user="duty", tone_hz=600) as phone:  # the officer's phone says 600 Hz
        call = await alice.call("call.dial", target=phone.uri)
        cid = call["call_id"]
        await w.call_state(cid, "connected")
        chan = await alice.call("media.open", call_id=cid, rate=rate)
        assert chan["samples_per_frame"] == rate // 50 and chan["direction"] == "both"
        monitor = await bob.call("call.listen", call_id=cid)  # a second dispatcher monitors
        with pytest.raises(Exception) as err:
            await olga.call("call.listen", call_id=cid)
        assert getattr(err.value, "reason", None) == "forbidden"
        listening = asyncio.create_task(_collect_audio(bob, monitor["channel"], 100))
        await asyncio.sleep(0.3)
        # The dispatcher speaks: 2 s of 1 kHz from the console, paced like a microphone.
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, f in enumerate(frames(tone(1000, 2.0, rate=rate), rate=rate)):
            await alice.send_audio(chan["channel"], i, i * len(f) // 2, f)
            delay = start + (i - 3) * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        heard_by_console = await _collect_audio(alice, chan["channel"], 100)
        heard_by_monitor = await listening
        await asyncio.sleep(0.3)
        await alice.call("media.close", channel=chan["channel"])
        await alice.call("call.hangup", call_id=cid)
        await w.call_state(cid, "ended")
        await phone.wait_log("terminated")
        samples, phone_rate = await phone.recording("dec")
    # What the phone heard: the console's tone.
    heard = active_span(samples, phone_rate)
    assert len(heard) / phone_rate > 1.5, f"only {len(heard) / phone_rate:.2f}s of tone heard"
    assert abs(dominant_frequency(heard, phone_rate) - 1000) < 20
    # What the consoles heard: the phone's 600 Hz, at each channel's own rate.
    assert all(len(p) == rate // 50 * 2 for p in heard_by_console)
    console = active_span(pcm_to_array(b"".join(heard_by_console)), rate)
    assert len(console) / rate > 1.0
    assert abs(dominant_frequency(console, rate) - 600) < 15
    monitor_audio = active_span(pcm_to_array(b"".join(heard_by_monitor)), 16000)
    assert abs(dominant_frequency(monitor_audio, 16000) - 600) < 15


async def test_blind_transfer_moves_the_phone_to_another(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    async with BaresipPhone(user="field") as field, BaresipPhone(user="chief") as chief:
        call = await alice.call("call.dial", target=field.uri)
        cid = call["call_id"]
        await w.call_state(cid, "connected")
        await alice.call("call.transfer", call_id=cid, target=chief.uri)
        ended = await w.call_state(cid, "ended", timeout=20)
        # The field phone got the REFER and called the chief, who answered.
        await field.wait_log(f"Call established: {chief.uri}", timeout=15)
        await chief.wait_log("Call established: sip:field@", timeout=15)
    assert ended["cause"] == "transferred"
    progress = [e["data"]["transfer"] for e in w.events if e["type"] == "call.state" and "transfer" in e["data"]]
    assert {"target": chief.uri} in progress  # the accepted command
    assert any(p.get("final") and p.get("sip_code") == 200 for p in progress)
