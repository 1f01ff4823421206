"""A Janus on "another host" (`[[video.remote]]`: started here by the test, not by the gateway):
the gateway connects to it, streams go through it, and when it dies and comes back the gateway
reconnects by itself and a new pull works. In the media namespace."""

from __future__ import annotations

import os
import signal

import pytest

from tests.peers.chromium import frames_decoded, open_page, page_html, poll_until
from tests.peers.ports import free_port_block, free_tcp_port
from tests.video.test_video_gateway import TERMINAL, TERMINALS, _is, _publishing
from video.janus_config import JanusSettings
from video.janus_process import JanusInstance

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]


async def test_streams_through_a_remote_janus_that_restarts(media_netns, start_gateway, chromium,
                                                            connect, watch, tmp_path) -> None:
    rtp = free_port_block(span=200, tcp=False)
    other_host = JanusInstance(JanusSettings(ws_port=free_tcp_port(), ice_enforce_list=media_netns.janus_if,
                                             rtp_port_range=f"{rtp}-{rtp + 199}", name="other-host"))
    await other_host.start()
    try:
        gw = await start_gateway(**{
            "directory.endpoint": TERMINALS, "video.enabled": True, "video.instances": 0,
            "video.remote": f'[{{url = "{other_host.settings.ws_url}", '
                            f'api_secret = "{other_host.settings.api_secret}"}}]'})
        assert [i.name for i in gw.video.pool.instances] == ["remote-1"]
        dispatcher = await connect(gw, "tok-dispatcher")
        events = await watch(dispatcher)
        context = await chromium.new_context()
        html = page_html("peer.html", "control_peer.js")
        terminal = await open_page(context, "http://localhost/terminal", html)
        await terminal.evaluate("([u, t]) => connect(u, t)", [gw.control.url, "tok-terminal"])
        viewer = await open_page(context, "http://localhost/console", html)
        await viewer.evaluate("([u, t]) => connect(u, t)", [gw.control.url, "tok-observer"])
        sid = await _publishing(gw, events, terminal, dispatcher)
        await viewer.evaluate("s => watchStream(s)", sid)
        await poll_until(lambda: frames_decoded(viewer), 15, "frames through the remote Janus")

        os.kill(other_host.pid, signal.SIGKILL)  # that host's Janus dies (its own supervisor restarts it)
        failed = await events.wait(lambda e: _is(e, "video.state", sid, state="failed"), 15)
        assert failed["data"]["reason"] == "janus-crashed"
        remote = gw.video.pool.instances[0]
        await poll_until(lambda: _reconnected(remote), 30, "the gateway reconnected by itself")
        sid2 = await _publishing(gw, events, terminal, dispatcher)
        await viewer.evaluate("hangUp()")
        await viewer.evaluate("s => watchStream(s)", sid2)
        await poll_until(lambda: frames_decoded(viewer), 15, "frames after the reconnect")
        await dispatcher.call("video.stop", stream_id=sid2)
        await context.close()
    finally:
        await other_host.stop()


async def _reconnected(instance) -> bool:
    return instance.up.is_set() and instance.client is not None and not instance.client.closed.is_set()
