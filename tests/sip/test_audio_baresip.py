"""Audio through a worker, checked against what a real baresip phone heard and played."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.audio import active_span, dominant_frequency, frames, pcm_to_array, tone
from tests.peers.baresip import BaresipPhone

from .conftest import Recorder

pytestmark = pytest.mark.peers


async def test_tone_reaches_baresip(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with BaresipPhone() as phone:  # plays silence
        c = uuid.uuid4().hex
        await sup.dial(c, phone.uri)
        await recorder.wait_state(c, "confirmed")
        await asyncio.sleep(0.3)  # let media settle (pjsua may re-INVITE to lock the codec)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, f in enumerate(frames(tone(1000, 2.0))):
            sup.send_audio(c, f)
            # paced at real time, a few frames ahead of the worker's clock
            delay = start + (i - 3) * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(0.3)
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        await phone.wait_log("terminated")
        samples, rate = await phone.recording("dec")
    heard = active_span(samples, rate)
    assert len(heard) / rate > 1.5, f"only {len(heard) / rate:.2f}s of tone heard"
    assert abs(dominant_frequency(heard, rate) - 1000) < 20


async def test_baresip_tone_reaches_on_audio(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with BaresipPhone(tone_hz=440) as phone:
        c = uuid.uuid4().hex
        await sup.dial(c, phone.uri)
        await recorder.wait_state(c, "confirmed")
        await sup.listen(c, True)  # off by default
        async with asyncio.timeout(10):
            while len(recorder.audio.get(c, [])) < 100:  # 2 s of frames
                await asyncio.sleep(0.05)
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
    got = recorder.audio[c]
    assert all(len(f) == 640 for f in got)
    heard = active_span(pcm_to_array(b"".join(got)), 16000)
    assert len(heard) / 16000 > 1.0
    assert abs(dominant_frequency(heard, 16000) - 440) < 15


async def test_dtmf_reaches_baresip(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with BaresipPhone() as phone:
        c = uuid.uuid4().hex
        await sup.dial(c, phone.uri)
        await recorder.wait_state(c, "confirmed")
        await phone.wait_log("incoming rtp for 'audio' established")
        await sup.dtmf(c, "1#5")
        for d in "1#5":
            await phone.wait_log(f"received event: '{d}'", timeout=5)
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")


async def test_call_audio_is_not_forwarded_until_listened(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with BaresipPhone(tone_hz=440) as phone:
        c = uuid.uuid4().hex
        await sup.dial(c, phone.uri)
        await recorder.wait_state(c, "confirmed")
        await phone.wait_log("incoming rtp for 'audio' established")
        await asyncio.sleep(1.0)  # 50 frames would have arrived by now
        assert not recorder.audio.get(c)
        await sup.listen(c, True)
        async with asyncio.timeout(10):
            while len(recorder.audio.get(c, [])) < 25:
                await asyncio.sleep(0.05)
        await sup.listen(c, False)
        await asyncio.sleep(0.2)  # frames already in the pipe
        n = len(recorder.audio[c])
        await asyncio.sleep(0.5)
        assert len(recorder.audio[c]) == n
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
