"""The reference field terminal (/terminal/) brought into a SIP call (voice.bridge): the page
answers `voice.request` by itself with its microphone, baresip (the duty officer's phone) records
the Chromium fake microphone's beeps, the phone's side plays in the page, and the responder hangs
up from the page. In the media namespace, Janus started by the gateway."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.audio import rms
from tests.gateway.test_terminal_page import signed_in_page
from tests.peers.baresip import BaresipPhone, write_wav
from tests.video.test_video_gateway import TERMINAL, video_settings

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]
WAIT_MS = 30_000
PROMPT_MS = 2_000  # a far end's stop shown by the page (the media link's own timeout is ~8 s)


def voice_state(events, bid: str, state: str):
    return events.wait(lambda e: e["type"] == "voice.state" and e["data"]["bridge_id"] == bid
                       and e["data"]["state"] == state, 30)


async def test_the_terminal_page_joins_a_call_and_hangs_up(media_netns, start_gateway, chromium, connect,
                                                           watch, tmp_path) -> None:
    gw = await start_gateway(**video_settings(media_netns))
    dispatcher = await connect(gw, "tok-dispatcher")
    events = await watch(dispatcher)
    context = await chromium.new_context(locale="en-US")
    csp: list[str] = []  # the page's media (srcObject) must need nothing its CSP refuses
    context.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
    page = await signed_in_page(context, gw)
    quiet = write_wav(tmp_path / "quiet.wav", bytes(16000 * 2 * 30), 16000)  # G.722: 16 kHz
    async with BaresipPhone(user="duty", play_wav=quiet) as phone:
        bid = (await dispatcher.call("voice.bridge", terminal_id=TERMINAL, target=phone.uri))["bridge_id"]
        await voice_state(events, bid, "connected")
        await page.wait_for_selector('#voice-state[data-state="live"]', timeout=WAIT_MS)
        # The phone's side comes back into the page's <audio>.
        assert await page.evaluate("() => document.querySelector('#voice-audio').srcObject?.getAudioTracks().length") == 1
        await asyncio.sleep(3.0)  # three seconds of the fake microphone's beeps for the phone to record
        await page.click("#voice-stop")  # the responder hangs up from the page
        ended = await voice_state(events, bid, "ended")
        assert ended["data"]["reason"] == "hangup-by-terminal", ended
        await phone.wait_log("terminated", timeout=10)
        await page.wait_for_selector("#voice-card", state="hidden", timeout=WAIT_MS)
        samples, rate = await phone.recording()
        assert len(samples) >= rate * 2, "about three seconds heard"
        loud = [rms(samples[i:i + rate // 50]) for i in range(0, len(samples) - rate // 50, rate // 50)]
        assert np.count_nonzero(np.array(loud) > 0.01) >= 3, f"the beeps, not silence (max rms {max(loud):.4f})"
        # A dispatcher's hang-up: the terminal's connection gets the `voice.state ended` and
        # the page ends the call at once (it used to wait for the media connection to die, ~8 s).
        bid = (await dispatcher.call("voice.bridge", terminal_id=TERMINAL, target=phone.uri))["bridge_id"]
        await page.wait_for_selector('#voice-state[data-state="live"]', timeout=WAIT_MS)
        await dispatcher.call("voice.hangup", bridge_id=bid)
        t0 = time.monotonic()
        await page.wait_for_selector("#voice-card", state="hidden", timeout=PROMPT_MS)
        print("page noticed the hang-up after", round(time.monotonic() - t0, 2), "s")
    assert not csp, csp
    await context.close()
