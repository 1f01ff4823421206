"""A terminal's microphone in a SIP call (voice.bridge) through Janus's SIP plugin: Chromium's
fake microphone is the responder, baresip the duty officer's phone; baresip records what it
heard. Signalling over the control channel only; runs in the media namespace."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gateway.client import RemoteError
from tests.audio import rms
from tests.peers.baresip import BaresipPhone, write_wav
from tests.peers.chromium import open_page, page_html, poll_until
from tests.video.test_video_gateway import TERMINAL, video_settings

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]


async def test_terminal_microphone_reaches_a_sip_phone(media_netns, start_gateway, chromium, connect,
                                                       watch, tmp_path) -> None:
    gw, dispatcher, events, context, terminal = await voice_terminal(media_netns, start_gateway, chromium,
                                                                     connect, watch)
    # Chromium offers G.722 before PCMU and baresip takes it: its source must be 16 kHz
    quiet = write_wav(tmp_path / "quiet.wav", bytes(16000 * 2 * 30), 16000)
    async with BaresipPhone(user="duty", play_wav=quiet) as phone:
        bridge = await dispatcher.call("voice.bridge", terminal_id=TERMINAL, target=phone.uri)
        bid = bridge["bridge_id"]
        assert bridge["state"] == "requested"
        await events.wait(lambda e: e["type"] == "voice.state" and e["data"]["bridge_id"] == bid
                          and e["data"]["state"] == "connected", 30)
        voiced = await poll_until(lambda: terminal.evaluate("window.voiced"), 10, "the terminal's answer")
        assert "error" not in voiced, voiced
        await poll_until(_sent_audio(terminal), 10, "audio leaving the terminal")
        await asyncio.sleep(3.0)  # three seconds of the fake microphone's beeps to record
        ended = await dispatcher.call("voice.hangup", bridge_id=bid)
        assert ended["state"] == "ended" and ended["reason"] == "hangup"
        await phone.wait_log("terminated", timeout=10)
    samples, rate = await phone.recording()
    assert len(samples) >= rate * 2, "about three seconds heard"
    loud = [rms(samples[i:i + rate // 50]) for i in range(0, len(samples) - rate // 50, rate // 50)]
    assert max(loud) > 0.01, f"the phone heard silence (max rms {max(loud):.4f})"
    assert np.count_nonzero(np.array(loud) > 0.01) >= 3, "the beeps, not one click"
    await context.close()


async def voice_terminal(media_netns, start_gateway, chromium, connect, watch):
    """A gateway with video, a dispatcher watching its events, and Chromium as the field terminal,
    connected, answering `voice.request` with its fake microphone."""
    gw = await start_gateway(**video_settings(media_netns))
    dispatcher = await connect(gw, "tok-dispatcher")
    events = await watch(dispatcher)
    context = await chromium.new_context()
    terminal = await open_page(context, "http://localhost/terminal", page_html("peer.html", "control_peer.js"))
    await terminal.evaluate("([u, t]) => connect(u, t)", [gw.control.url, "tok-terminal"])
    await terminal.evaluate("voiceWhenAsked()")
    return gw, dispatcher, events, context, terminal


def _sent_audio(page):
    async def check() -> bool:
        return (await page.evaluate("outboundStats()"))["audio"] > 10
    return check


async def test_bridge_refusals(media_netns, start_gateway, connect) -> None:
    gw = await start_gateway(**video_settings(media_netns))
    dispatcher = await connect(gw, "tok-dispatcher")
    for target, reason in (("no-such-phone", "no-such-endpoint"), ("tel:+15550100", "not-dialable")):
        with pytest.raises(RemoteError) as err:
            await dispatcher.call("voice.bridge", terminal_id=TERMINAL, target=target)
        assert err.value.reason == reason
    with pytest.raises(RemoteError) as err:
        await dispatcher.call("voice.bridge", terminal_id=TERMINAL, target="sip:x@127.0.0.1:5999")
    assert err.value.reason == "terminal-offline"
