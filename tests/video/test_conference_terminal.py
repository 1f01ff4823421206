"""A field terminal's microphone in a conference (conference.add {terminal_id}): its voice bridge
(Janus's SIP plugin) dials a one-time number of the conference and joins the mix; a baresip
phone in the conference hears Chromium's fake microphone. Runs in the media namespace."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.audio import rms
from tests.peers.baresip import BaresipPhone, write_wav
from tests.peers.chromium import poll_until
from tests.video.test_video_gateway import TERMINAL
from tests.video.test_voice_gateway import _sent_audio, voice_terminal

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]


async def test_a_terminals_microphone_joins_a_conference(media_netns, start_gateway, chromium, connect,
                                                         watch, tmp_path) -> None:
    gw, dispatcher, events, context, terminal = await voice_terminal(media_netns, start_gateway, chromium,
                                                                     connect, watch)
    quiet = write_wav(tmp_path / "quiet.wav", bytes(8000 * 2 * 30), 8000)
    async with BaresipPhone(user="duty", play_wav=quiet) as phone:
        conf = await dispatcher.call("conference.create", title="terminal joins")
        cid = conf["conference_id"]
        duty = await dispatcher.call("conference.add", conference_id=cid, target=phone.uri, chair=True)
        await events.wait(lambda e: e["type"] == "conference.member" and e["data"]["member_id"] == duty["member_id"]
                          and e["data"]["state"] == "joined", 30)
        bridge = await dispatcher.call("conference.add", conference_id=cid, terminal_id=TERMINAL)
        assert bridge["state"] == "requested" and bridge["conference_id"] == cid
        joined = (await events.wait(lambda e: e["type"] == "conference.member"
                                    and e["data"]["target"] == "terminal:" + TERMINAL
                                    and e["data"]["state"] == "joined", 30))["data"]
        assert joined["session_id"] == conf["session_id"]
        await events.wait(lambda e: e["type"] == "voice.state" and e["data"]["bridge_id"] == bridge["bridge_id"]
                          and e["data"]["state"] == "connected", 30)
        await poll_until(_sent_audio(terminal), 10, "audio leaving the terminal")
        await asyncio.sleep(3.0)  # three seconds of the fake microphone's beeps, through the bridge
        await dispatcher.call("conference.end", conference_id=cid)
        await events.wait(lambda e: e["type"] == "voice.state" and e["data"]["bridge_id"] == bridge["bridge_id"]
                          and e["data"]["state"] == "ended", 30)
        await phone.wait_log("terminated", timeout=10)
    samples, rate = await phone.recording()
    loud = [rms(samples[i:i + rate // 50]) for i in range(0, len(samples) - rate // 50, rate // 50)]
    assert max(loud) > 0.01, f"the phone heard silence (max rms {max(loud):.4f})"
    assert np.count_nonzero(np.array(loud) > 0.01) >= 3, "the beeps, not one click"
    await context.close()
