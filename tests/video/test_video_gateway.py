"""video.pull / video.watch / video.stop through the gateway, with real peers in a namespace.

A Chromium page is the field terminal (fake camera and microphone) and publishes when the
gateway asks; other pages are consoles that watch. All signalling goes over the control
channel; the pages never see Janus. Janus is started and supervised by the gateway."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.client import RemoteError
from tests.peers.baresip import BaresipPhone
from tests.peers.chromium import frames_decoded, open_page, page_html, poll_until
from tests.peers.media_netns import MediaNetns
from tests.peers.ports import free_port_block, free_tcp_port

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

TERMINAL = "unit-7"
TERMINAL_TOKENS = {"unit-7": "tok-terminal", "unit-8": "tok-terminal-2"}
TERMINALS = ('[{name = "unit-7", kind = "terminal", display_name = "Unit 7", phone = "+8613800138007"},'
             ' {name = "unit-8", kind = "terminal", phone = "+8613800138008"}]')


def video_settings(netns: MediaNetns, instances: int = 1, **more) -> dict:
    return {"directory.endpoint": TERMINALS, "video.enabled": True, "video.instances": instances,
            "video.ws_base_port": free_port_block(span=instances),
            "video.ice_enforce_list": netns.janus_if,
            "video.rtp_port_min": (rtp := free_port_block(span=200 * instances, tcp=False)),
            "video.rtp_port_max": rtp + 200 * instances - 1, **more}


@pytest.fixture
async def video_gateway(media_netns: MediaNetns, start_gateway):
    gw = await start_gateway(**video_settings(media_netns))
    return gw


async def _page(context, gw, path: str, token: str):
    page = await open_page(context, f"http://localhost/{path}", page_html("peer.html", "control_peer.js"))
    await page.evaluate("([u, t]) => connect(u, t)", [gw.control.url, token])
    return page


async def test_pull_watch_late_viewer_stop_and_recording(video_gateway, chromium, connect, watch) -> None:
    gw = video_gateway
    dispatcher = await connect(gw, "tok-dispatcher")
    events = await watch(dispatcher)
    context = await chromium.new_context()
    terminal = await _page(context, gw, "terminal", "tok-terminal")
    await terminal.evaluate("publishWhenAsked()")

    pulled = await dispatcher.call("video.pull", terminal_id=TERMINAL)
    sid = pulled["stream_id"]
    assert pulled["state"] == "requested"
    t_pull = time.monotonic()
    await poll_until(lambda: terminal.evaluate("window.published"), 20, "the terminal's publish")
    assert "error" not in await terminal.evaluate("window.published")
    await events.wait(lambda e: _is(e, "video.state", sid, state="publishing"), 20)
    t_publishing = time.monotonic()

    viewer = await _page(context, gw, "console", "tok-observer")
    await viewer.evaluate("s => watchStream(s)", sid)
    await poll_until(lambda: frames_decoded(viewer), 15, "frames at the viewer")
    sent0, got0 = await _encoded(terminal), await frames_decoded(viewer)
    await asyncio.sleep(1.0)  # the window the frame rate is measured over
    sent, got = await _encoded(terminal) - sent0, await frames_decoded(viewer) - got0
    assert sent >= 10 and got >= 0.7 * sent, f"{got} frames decoded for {sent} sent in 1 s"
    audio = (await viewer.evaluate("inboundStats()"))["audio"]
    assert audio and audio["packetsReceived"] > 0 and audio["totalAudioEnergy"] > 0, audio  # the beep

    late = await _page(context, gw, "late", "tok-dispatcher")
    result = await late.evaluate("s => watchStream(s)", sid)
    t_late = time.monotonic()
    assert result["watching"] == 2
    await poll_until(lambda: frames_decoded(late), 5, "frames at the late viewer")
    assert time.monotonic() - t_late < 1.0, "a late viewer decodes within 1 s"

    await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - t_pull)))  # a few seconds recorded
    stopped = await dispatcher.call("video.stop", stream_id=sid)
    pulled_for = time.monotonic() - t_pull
    seen_publishing = time.monotonic() - t_publishing
    assert stopped["state"] == "stopped"
    rec = (await events.wait(lambda e: _is(e, "video.recording", sid), 60))["data"]
    assert rec["state"] == "ready", rec
    path = Path(rec["path"])
    assert path.exists() and rec["sha256"] and rec["size_bytes"] == path.stat().st_size
    probe = await _ffprobe(path)
    kinds = sorted(s["codec_type"] for s in probe["streams"])
    assert kinds == ["audio", "video"], kinds
    duration = float(probe["format"]["duration"])
    publishing = [e["data"] for e in events.events if _is(e, "video.state", sid)]
    states = [d["state"] for d in publishing]
    assert states[:2] == ["requested", "publishing"] and states[-1] == "stopped", states
    assert "watching" in states
    # the recording covers the time media flowed: from publishing to stop, within 10 %
    flowed = next(d for d in publishing if d["state"] == "stopped")["duration_s"]
    assert abs(duration - flowed) <= 0.1 * flowed, (duration, flowed, pulled_for)
    assert abs(duration - seen_publishing) <= 0.1 * seen_publishing, (duration, seen_publishing)

    # downloaded with a token that may read incidents; not with a terminal's, nor without one
    url = f"http://127.0.0.1:{gw.http_port}/v1/video/recordings/{sid}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": "Bearer tok-observer"}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/webm"
            assert hashlib.sha256(await resp.read()).hexdigest() == rec["sha256"]
        async with http.get(url, headers={"Authorization": "Bearer tok-terminal"}) as resp:
            assert resp.status == 403
        async with http.get(url) as resp:
            assert resp.status == 401
        async with http.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["reason"] == "not-authenticated"
        async with http.get(url[:-3] + "000", headers={"Authorization": "Bearer tok-observer"}) as resp:
            assert resp.status == 404
    await context.close()


async def _encoded(page) -> int:
    return (await page.evaluate("outboundStats()")).get("framesEncoded", 0)


def _is(event: dict, kind: str, sid: str, **data) -> bool:
    d = event["data"]
    return (event["type"] == kind and d.get("stream_id") == sid
            and all(d.get(k) == v for k, v in data.items()))


async def _ffprobe(path: Path) -> dict:
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return json.loads(out)


async def _publishing(gw, events, terminal, dispatcher) -> str:
    await terminal.evaluate("publishWhenAsked()")
    sid = (await dispatcher.call("video.pull", terminal_id=TERMINAL))["stream_id"]
    await events.wait(lambda e: _is(e, "video.state", sid, state="publishing"), 20)
    return sid


async def test_janus_killed_mid_stream_fails_restarts_and_a_new_pull_works(
        video_gateway, chromium, connect, watch) -> None:
    gw = video_gateway
    dispatcher = await connect(gw, "tok-dispatcher")
    events = await watch(dispatcher)
    context = await chromium.new_context()
    terminal = await _page(context, gw, "terminal", "tok-terminal")
    viewer = await _page(context, gw, "console", "tok-observer")
    sid = await _publishing(gw, events, terminal, dispatcher)
    await viewer.evaluate("s => watchStream(s)", sid)
    await poll_until(lambda: frames_decoded(viewer), 15, "frames at the viewer")

    async with BaresipPhone(user="desk") as phone:  # a SIP call up while Janus dies
        call_id = (await dispatcher.call("call.dial", target=phone.uri))["call_id"]
        await events.call_state(call_id, "connected", 20)
        janus = gw.video.pool.instances[0]
        old_pid = janus.pid
        os.kill(old_pid, signal.SIGKILL)
        failed = await events.wait(lambda e: _is(e, "video.state", sid, state="failed"), 15)
        assert failed["data"]["reason"] == "janus-crashed"
        ready_url = f"http://127.0.0.1:{gw.http_port}/readyz"
        assert (await dispatcher.call("session.list"))["sessions"]  # the control plane carries on
        await poll_until(lambda: _restarted(janus, old_pid), 20, "Janus restarted")
        async with aiohttp.ClientSession() as http, http.get(ready_url) as resp:
            assert resp.status == 200 and (await resp.json())["checks"]["video"] is True
        calls = (await dispatcher.call("call.list"))["calls"]
        assert [(c["call_id"], c["state"]) for c in calls] == [(call_id, "connected")], calls
        assert "ended" not in events.states(call_id), events.states(call_id)
        await dispatcher.call("call.hangup", call_id=call_id)
        ended = await events.call_state(call_id, "ended", 15)
        assert ended["cause"] == "local-hangup", ended  # ours, not a casualty of Janus

    # what Janus had flushed before it died is still made playable (a partial recording)
    partial = await events.wait(lambda e: _is(e, "video.recording", sid), 60)
    assert partial["data"]["state"] == "ready" and "video" in partial["data"]["media"], partial
    sid2 = await _publishing(gw, events, terminal, dispatcher)
    assert sid2 != sid
    await viewer.evaluate("hangUp()")
    await viewer.evaluate("s => watchStream(s)", sid2)
    await poll_until(lambda: frames_decoded(viewer), 15, "frames after the restart")
    await dispatcher.call("video.stop", stream_id=sid2)
    await context.close()


async def test_bad_input_is_refused_precisely(video_gateway, connect, watch) -> None:
    gw = video_gateway
    dispatcher = await connect(gw, "tok-dispatcher")
    before = gw.bus.last_seq
    with pytest.raises(RemoteError) as err:
        await dispatcher.call("video.pull", terminal_id="nobody")
    assert err.value.reason == "no-such-terminal"
    with pytest.raises(RemoteError) as err:  # unit-7 is not connected
        await dispatcher.call("video.pull", terminal_id=TERMINAL)
    assert err.value.reason == "terminal-offline"
    with pytest.raises(RemoteError) as err:
        await dispatcher.call("video.watch", stream_id="vid-none")
    assert err.value.reason == "no-such-stream"
    assert gw.bus.last_seq == before, "nothing stored for a refused pull"

    terminal = await connect(gw, "tok-terminal")
    sid = (await dispatcher.call("video.pull", terminal_id=TERMINAL))["stream_id"]
    with pytest.raises(RemoteError) as err:  # not an SDP at all: refused before Janus sees it
        await terminal.call("video.publish", stream_id=sid, sdp="hello")
    assert err.value.reason == "invalid-params"
    with pytest.raises(RemoteError) as err:  # looks like one; Janus refuses it
        await terminal.call("video.publish", stream_id=sid, sdp="v=0\r\nm=video 9 RTP/AVP 96\r\n")
    assert err.value.reason == "invalid-sdp"
    with pytest.raises(RemoteError) as err:  # a console may not publish, a terminal may not pull
        await dispatcher.call("video.publish", stream_id=sid, sdp="v=0\r\nm=video 9 RTP/AVP 96\r\n")
    assert err.value.reason == "forbidden"
    with pytest.raises(RemoteError) as err:
        await terminal.call("video.pull", terminal_id=TERMINAL)
    assert err.value.reason == "forbidden"
    with pytest.raises(RemoteError) as err:  # not publishing yet: nothing to watch
        await dispatcher.call("video.watch", stream_id=sid)
    assert err.value.reason == "invalid-state"
    again = await dispatcher.call("video.pull", terminal_id=TERMINAL)
    assert again["stream_id"] == sid, "one live stream per terminal"
    # a terminal that reconnects before publishing is asked again
    await terminal.close()
    terminal = await connect(gw, "tok-terminal")
    async with asyncio.timeout(10):
        async for ev in terminal.events():
            if ev["type"] == "video.request":
                assert ev["data"]["stream_id"] == sid and ev["data"]["ice_servers"] == []
                break
    stopped = await terminal.call("video.stop", stream_id=sid)
    assert stopped["state"] == "stopped" and stopped["reason"] == "stopped-by-terminal"


async def test_streams_go_to_the_least_loaded_of_two_janus(media_netns, start_gateway, connect) -> None:
    gw = await start_gateway(**video_settings(media_netns, instances=2))
    assert len({i.pid for i in gw.video.pool.instances}) == 2
    dispatcher = await connect(gw, "tok-dispatcher")
    for tid, token in TERMINAL_TOKENS.items():
        await connect(gw, token)
    a = await dispatcher.call("video.pull", terminal_id="unit-7")
    b = await dispatcher.call("video.pull", terminal_id="unit-8")
    assert {a["instance"], b["instance"]} == {"janus-1", "janus-2"}
    await dispatcher.call("video.stop", stream_id=a["stream_id"])
    again = await dispatcher.call("video.pull", terminal_id="unit-7")
    assert again["instance"] == a["instance"], "the instance left with no stream takes the next"
    pids = [i.pid for i in gw.video.pool.instances]
    await gw.stop()  # streams end, then Janus is stopped: no process left behind
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), pids


async def test_closing_the_incident_ends_its_stream_and_bridge(video_gateway, connect, watch) -> None:
    gw = video_gateway
    dispatcher = await connect(gw, "tok-dispatcher")
    events = await watch(dispatcher)
    await connect(gw, "tok-terminal")
    session_id = (await dispatcher.call("session.create", title="fire at the yard"))["session_id"]
    sid = (await dispatcher.call("video.pull", terminal_id=TERMINAL, session_id=session_id))["stream_id"]
    bid = (await dispatcher.call("voice.bridge", terminal_id=TERMINAL, target="sip:duty@127.0.0.1:5999",
                                 session_id=session_id))["bridge_id"]
    await dispatcher.call("session.close", session_id=session_id)
    assert (await dispatcher.call("video.get", stream_id=sid))["reason"] == "session-closed"
    bridge = await dispatcher.call("voice.get", bridge_id=bid)
    assert (bridge["state"], bridge["reason"]) == ("ended", "session-closed")
    stopped = await events.wait(lambda e: _is(e, "video.state", sid, state="stopped"), 10)
    assert stopped["session_id"] == session_id
    with pytest.raises(RemoteError) as err:  # a closed incident takes no new stream
        await dispatcher.call("video.pull", terminal_id=TERMINAL, session_id=session_id)
    assert err.value.reason == "invalid-state"


async def _restarted(janus, old_pid: int) -> bool:
    return janus.up.is_set() and janus.pid not in (None, old_pid)
