"""The reference field terminal (/terminal/, served by the gateway) as the responder, in the media
namespace: a dispatcher pulls its camera, the page publishes by itself, a console watches and
decodes, the responder stops the camera from the page; the recording follows; a dispatcher's
stop ends the page's camera at once."""

from __future__ import annotations

import time

import pytest

from tests.gateway.test_terminal_page import signed_in_page
from tests.peers.chromium import frames_decoded, open_page, page_html, poll_until
from tests.video.test_video_gateway import TERMINAL, _is, video_settings

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]
WAIT_MS = 20_000
PROMPT_MS = 2_000  # a far end's stop shown by the page (the media link's own timeout is ~8 s)


async def test_the_terminal_page_publishes_when_pulled(media_netns, start_gateway, chromium, connect,
                                                      watch) -> None:
    gw = await start_gateway(**video_settings(media_netns))
    dispatcher = await connect(gw, "tok-dispatcher")
    events = await watch(dispatcher)
    context = await chromium.new_context(locale="en-US")
    terminal = await signed_in_page(context, gw)

    sid = (await dispatcher.call("video.pull", terminal_id=TERMINAL))["stream_id"]
    await events.wait(lambda e: _is(e, "video.state", sid, state="publishing"), 30)
    await terminal.wait_for_selector("#video-state:has-text('Live')", timeout=WAIT_MS)

    console = await open_page(context, "http://localhost/console", page_html("peer.html", "control_peer.js"))
    await console.evaluate("([u, t]) => connect(u, t)", [gw.control.url, "tok-observer"])
    await console.evaluate("s => watchStream(s)", sid)
    await poll_until(lambda: frames_decoded(console), 15, "frames from the terminal page")

    await terminal.click("#video-stop")  # the responder ends it from the page
    stopped = await events.wait(lambda e: _is(e, "video.state", sid, state="stopped"), 15)
    # the page closes its connection to Janus and sends video.stop: whichever arrives first
    assert stopped["data"]["reason"] in ("stopped-by-terminal", "publisher-hangup"), stopped
    rec = await events.wait(lambda e: _is(e, "video.recording", sid), 60)
    assert rec["data"]["state"] == "ready" and rec["data"]["media"] == ["audio", "video"]

    # A dispatcher's stop: the terminal's connection gets the `video.state stopped` and the page
    # turns the camera off at once (it used to wait for the media connection to die, ~8 s).
    sid = (await dispatcher.call("video.pull", terminal_id=TERMINAL))["stream_id"]
    await terminal.wait_for_selector("#video-state:has-text('Live')", timeout=WAIT_MS)
    await dispatcher.call("video.stop", stream_id=sid)
    t0 = time.monotonic()
    await terminal.wait_for_selector("#video-card", state="hidden", timeout=PROMPT_MS)
    print("page noticed the stop after", round(time.monotonic() - t0, 2), "s")
    assert await terminal.evaluate("() => document.querySelector('#preview').srcObject") is None
    await context.close()
