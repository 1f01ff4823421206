"""Janus (started and supervised by video/janus_process.py) with real WebRTC peers in a
namespace: headless Chromium publishes its fake camera and microphone into a VideoRoom, a
second page watches, a late viewer decodes within 1 s, Janus records once; and Janus killed
mid-stream is noticed and restarted. Signalling here is the test calling our Janus client."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import pytest_asyncio

from tests.peers.chromium import frames_decoded, open_page, page_html, poll_until
from tests.peers.media_netns import MediaNetns
from tests.peers.ports import free_tcp_port
from video.janus_config import JanusSettings
from video.janus_process import JanusInstance

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

ROOM = 4242


@pytest_asyncio.fixture
async def janus(media_netns: MediaNetns):
    downs: list[str] = []
    settings = JanusSettings(ws_port=free_tcp_port(), ice_enforce_list=media_netns.janus_if,
                             rtp_port_range="31000-31999", name="janus-test")
    inst = JanusInstance(settings, on_down=lambda _i, why: downs.append(why))
    inst.downs = downs  # type: ignore[attr-defined]
    await inst.start()
    try:
        yield inst
    finally:
        await inst.stop()


async def _publish(janus: JanusInstance, page, rec_dir: Path):
    session = await janus.client.create_session()
    admin = await session.attach("janus.plugin.videoroom")
    await admin.message({"request": "create", "admin_key": janus.settings.api_secret, "room": ROOM,
                         "publishers": 1, "record": True, "rec_dir": str(rec_dir),
                         "audiocodec": "opus", "videocodec": "vp8"})
    pub = await session.attach("janus.plugin.videoroom")
    offer = await page.evaluate("publishOffer()")
    reply = await pub.message({"request": "joinandconfigure", "room": ROOM, "ptype": "publisher",
                               "display": "t1", "audio": True, "video": True},
                              jsep={"type": "offer", "sdp": offer}, timeout=15)
    assert reply.jsep and reply.jsep["type"] == "answer"
    await page.evaluate("sdp => acceptAnswer(sdp)", reply.jsep["sdp"])
    event = await pub.next_event(timeout=15)
    while event.kind != "webrtcup":
        event = await pub.next_event(timeout=15)
    return session, pub, reply.plugin_data["id"]


async def _watch(session, page, feed: int):
    sub = await session.attach("janus.plugin.videoroom")
    reply = await sub.message({"request": "join", "room": ROOM, "ptype": "subscriber",
                               "streams": [{"feed": feed}]}, timeout=15)
    assert reply.jsep and reply.jsep["type"] == "offer"
    answer = await page.evaluate("sdp => answerOffer(sdp)", reply.jsep["sdp"])
    await sub.message({"request": "start", "room": ROOM}, jsep={"type": "answer", "sdp": answer},
                      timeout=15)
    return sub


async def test_publish_watch_late_viewer_and_recording(janus, chromium, tmp_path: Path) -> None:
    context = await chromium.new_context()
    html = page_html("peer.html")
    terminal = await open_page(context, "http://localhost/terminal", html)
    viewer = await open_page(context, "http://localhost/viewer", html)
    session, _pub, feed = await _publish(janus, terminal, tmp_path)

    await _watch(session, viewer, feed)
    first = await poll_until(lambda: frames_decoded(viewer), 15, "frames at the first viewer")
    await asyncio.sleep(1.0)  # a one-second window to measure the frame rate over
    second = await frames_decoded(viewer)
    assert second - first >= 10, f"only {second - first} frames decoded in 1 s"
    audio = (await viewer.evaluate("inboundStats()"))["audio"]
    assert audio and audio["packetsReceived"] > 0

    late = await open_page(context, "http://localhost/late", html)
    t0 = time.monotonic()
    await _watch(session, late, feed)
    await poll_until(lambda: frames_decoded(late), 5, "frames at the late viewer")
    assert time.monotonic() - t0 < 1.0 + 1.0  # within 1 s of media flowing, plus signalling

    await session.destroy()
    recs = sorted(p.name for p in tmp_path.glob("*.mjr"))
    assert any("audio" in r for r in recs) and any("video" in r for r in recs), recs
    assert len(recs) == 2, f"recorded once at ingest, whatever the viewers: {recs}"
    await context.close()


async def test_janus_killed_is_restarted(janus, media_netns) -> None:
    first_pid = janus.pid
    session = await janus.client.create_session()
    os.kill(first_pid, signal.SIGKILL)
    await poll_until(lambda: _true(not janus.up.is_set() or janus.pid != first_pid), 10, "down")
    await asyncio.wait_for(janus.up.wait(), 20)
    assert janus.pid != first_pid and janus.downs and janus.downs[0].startswith("janus-exited")
    assert not session.alive
    fresh = await janus.client.create_session()
    await fresh.attach("janus.plugin.videoroom")
    await fresh.destroy()


async def _true(value: bool) -> bool:
    return value
