"""Paging calls are one-way: dial(media_dir="sendonly") offers a=sendonly, and audio still flows
towards the phone (checked against SIPp's trace and what baresip recorded)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.audio import frames, tone
from tests.peers.baresip import BaresipPhone
from tests.peers.sipp import sipp_uas

from .conftest import Recorder

pytestmark = pytest.mark.peers


def invite_bodies(trace: str) -> list[str]:
    """Every INVITE SIPp received, start line to end of the SDP (SIPp separates messages with
    dashed lines and a timestamp)."""
    parts = [p for p in trace.split("-----------------------------------------------") if "INVITE sip:" in p]
    return [p[p.index("INVITE sip:"):] for p in parts if "received" in p]


@pytest.mark.parametrize("media_dir", ["sendonly", "recvonly", "sendrecv"])
async def test_dial_offers_the_media_direction(start_supervisor, recorder: Recorder, media_dir: str) -> None:
    sup = await start_supervisor()
    async with sipp_uas("answer") as uas:
        c = uuid.uuid4().hex
        await sup.dial(c, uas.uri, media_dir=media_dir)
        await recorder.wait_state(c, "confirmed")
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        res = await uas.wait(10)
    assert res.returncode == 0, res.errors
    (invite,) = invite_bodies(res.messages)
    assert f"a={media_dir}" in invite
    others = {"sendonly", "recvonly", "sendrecv", "inactive"} - {media_dir}
    assert not any(f"a={d}" in invite for d in others), invite


async def test_default_dial_offers_sendrecv(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with sipp_uas("answer") as uas:
        c = uuid.uuid4().hex
        await sup.dial(c, uas.uri)
        await recorder.wait_state(c, "confirmed")
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        res = await uas.wait(10)
    (invite,) = invite_bodies(res.messages)
    assert "a=sendonly" not in invite and "a=recvonly" not in invite


async def test_bad_media_dir_is_refused(start_supervisor) -> None:
    sup = await start_supervisor()
    with pytest.raises(ValueError):
        await sup.dial(uuid.uuid4().hex, "sip:x@127.0.0.1:9", media_dir="both")


async def test_sendonly_call_to_baresip(start_supervisor, recorder: Recorder) -> None:
    """baresip answers a=recvonly, and our RTP reaches it; nothing comes back to on_audio.

    What baresip *decoded* is not checked here: baresip 1.0.0 (the packaged one) writes an empty
    sndfile `dec` dump for a stream it answered recvonly (its rx filter chain is reset when it
    restarts the player), so its recording cannot judge a one-way call."""
    sup = await start_supervisor()
    async with BaresipPhone(tone_hz=440) as phone:  # the phone would talk back; nothing may arrive
        c = uuid.uuid4().hex
        await sup.dial(c, phone.uri, media_dir="sendonly")
        await recorder.wait_state(c, "confirmed")
        await sup.listen(c, True)  # even when asked to, a sendonly call hears nothing
        for f in frames(tone(1000, 1.0)):
            sup.send_audio(c, f)
            await asyncio.sleep(0.02)
        await phone.wait_log("incoming rtp for 'audio' established", timeout=5)
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        await phone.wait_log("terminated")
    media = [e.extra["status"] for e in recorder.of(c) if e.kind == "media"]
    assert media and set(media) == {"active"}, media
    assert not recorder.audio.get(c), "a sendonly call forwarded received audio"
