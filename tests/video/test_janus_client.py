"""Our Janus API client against a real Janus (API only, no media: loopback is enough here):
keepalives hold a session past Janus's session_timeout, a session without them is timed out and
told so, typed errors at the boundary."""

from __future__ import annotations

import asyncio

import pytest

from tests.peers.ports import free_tcp_port
from video.errors import JanusRequestError, JanusUnavailable
from video.janus_client import JanusClient
from video.janus_config import JanusSettings
from video.janus_process import JanusInstance

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]


@pytest.fixture
async def janus():
    inst = JanusInstance(JanusSettings(ws_port=free_tcp_port(), ice_enforce_list="lo",
                                       session_timeout_s=2, name="janus-client-test"))
    await inst.start()
    try:
        yield inst
    finally:
        await inst.stop()


async def test_keepalives_hold_a_session_that_janus_would_time_out(janus) -> None:
    kept = await janus.client.create_session(keepalive_s=0.5)
    idle = await janus.client.create_session(keepalive_s=3600)
    await asyncio.wait_for(idle.ended.wait(), 15)  # Janus's `timeout` for the idle one
    assert not idle.alive and kept.alive
    handle = await kept.attach("janus.plugin.videoroom")  # still a live session in Janus
    reply = await handle.message({"request": "list"})
    assert reply.plugin_data["videoroom"] == "success"
    await kept.destroy()
    assert kept.ended.is_set()


async def test_failures_are_typed(janus) -> None:
    session = await janus.client.create_session()
    with pytest.raises(JanusRequestError) as err:
        await session.attach("janus.plugin.nothing")
    assert err.value.code == 460  # no such plugin
    with pytest.raises(JanusUnavailable):
        await JanusClient.connect(f"ws://127.0.0.1:{free_tcp_port()}", "x", timeout=2)
    wrong = await JanusClient.connect(janus.settings.ws_url, "not-the-secret")
    try:
        with pytest.raises(JanusRequestError) as err:
            await wrong.create_session()
        assert err.value.code == 403  # unauthorized: the API secret is required
    finally:
        await wrong.close()
    await janus.client.close()  # the socket goes: whoever waits is told, typed
    with pytest.raises(JanusUnavailable):
        await session.attach("janus.plugin.videoroom")


async def test_a_crashing_notice_callback_does_not_take_the_connection_down(janus) -> None:
    session = await janus.client.create_session()
    handle = await session.attach("janus.plugin.videoroom")
    seen = []

    def boom(ev) -> None:
        seen.append(ev.kind)
        raise RuntimeError("a bug in the owner")

    handle.on_event = boom
    janus.client._dispatch({"janus": "hangup", "session_id": session.id, "sender": handle.id})
    assert seen == ["hangup"] and not janus.client.closed.is_set()
    await session.attach("janus.plugin.videoroom")  # the connection still serves
    await session.destroy()
