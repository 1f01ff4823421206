"""Field terminals against the real gateway, over its control channel: presence (online on hello,
offline after missed heartbeats or a cut link, online again on reconnect), positions stored as a
track, rate-limited `terminal.location` events that never drop the newest, the roster, and
precise refusals that store nothing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from gateway.client import GatewayClient, RemoteError
from gateway.protocol import codec
from gateway.timeutil import epoch_to_iso
from tests.gateway.gateway_proc import GatewayProc
from tests.gateway.test_stop_signals import overrides
from tests.peers.cutproxy import CutProxy, ws_frame_len

pytestmark = pytest.mark.peers  # a whole gateway (SIP workers: pjsua2)

TERMINALS = (
    '[{name = "unit-7", kind = "terminal", display_name = "Unit 7", groups = ["d3"], phone = "+8613800138007"},'
    ' {name = "unit-9", kind = "terminal", groups = ["d3", "water"], phone = "+8613800138009"},'
    ' {name = "desk-1", uri = "sip:desk1@127.0.0.1:5999", groups = ["d3"]}]'
)
BASE = {"directory.endpoint": TERMINALS}  # heartbeats every 10 s (the default): no test here waits that long
# The heartbeat test: offline after 3 silent seconds; pings every 0.3 s leave ample margin for a
# busy machine (the gateway and the terminal share this test's event loop).
FAST = {**BASE, "terminals.heartbeat_interval_s": 1.0, "terminals.missed_heartbeats": 3}


def fix(lat: float = 31.23, lon: float = 121.47, ago_s: float = 0.0, **extra: Any) -> dict:
    return {"lat": lat, "lon": lon, "accuracy_m": 8.0, "time": epoch_to_iso(time.time() - ago_s), **extra}


def presence(w: Any, tid: str, state: str, reason: str | None = None, after: int = 0):
    return w.wait(lambda e: e["type"] == "terminal.presence" and e["seq"] > after
                  and e["data"]["terminal_id"] == tid and e["data"]["state"] == state
                  and (reason is None or e["data"]["reason"] == reason))


async def roster(client: GatewayClient, tid: str) -> dict:
    return next(t for t in (await client.call("terminal.list"))["terminals"] if t["terminal_id"] == tid)


async def test_presence_online_on_hello_offline_after_missed_heartbeats(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**FAST)
    alice = await connect(gw)
    w = await watch(alice)
    assert (await roster(alice, "unit-7"))["presence"] == "offline"
    unit = await connect(gw, "tok-terminal", reconnect=False)
    online = await presence(w, "unit-7", "online", "hello")
    t_online = time.monotonic()
    entry = await roster(alice, "unit-7")
    assert entry["presence"] == "online" and entry["display_name"] == "Unit 7" and entry["groups"] == ["d3"]
    # Heartbeats keep it online for more than two windows (3 s each): pings and reports.
    for i in range(24):
        await (unit.call("ping") if i % 2 else unit.call("terminal.report", **fix()))
        t_last = time.monotonic()  # the gateway saw this heartbeat before answering it
        await asyncio.sleep(0.3)
    assert not [e for e in w.events if e["type"] == "terminal.presence" and e["seq"] > online["seq"]]
    # Then silence (the WebSocket itself stays up: its pings are answered): offline, and the
    # gateway closes the connection.
    offline = await presence(w, "unit-7", "offline", "heartbeat-missed")
    assert time.monotonic() - t_last >= 3.0  # not before 3 missed intervals
    assert offline["data"]["last_seen"] is not None and time.monotonic() - t_online > 7
    async with asyncio.timeout(10):
        while unit.connected:
            await asyncio.sleep(0.02)
    assert (await roster(alice, "unit-7"))["presence"] == "offline"
    # It comes back: online again.
    await connect(gw, "tok-terminal", reconnect=False)
    await presence(w, "unit-7", "online", "hello", after=offline["seq"])


async def test_presence_offline_on_a_cut_link_and_online_on_reconnect(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{**BASE, "terminals.heartbeat_interval_s": 30})  # only the cut can tell
    alice = await connect(gw)
    w = await watch(alice)
    async with CutProxy("127.0.0.1", gw.control.port) as proxy:
        ws = await ws_connect(f"ws://127.0.0.1:{proxy.port}{gw.control.config.path}", compression=None)
        await ws.send(codec.encode_request(1, "hello", {"token": "tok-terminal"}))
        await ws.recv()
        await presence(w, "unit-7", "online", "hello")
        text = codec.encode_request(2, "terminal.report", fix(lat=10.5))
        proxy.arm(up=ws_frame_len(text))  # the report arrives whole, then the link is lost (RST)
        await ws.send(text)
        async with asyncio.timeout(10):
            await proxy.cut.wait()
        offline = await presence(w, "unit-7", "offline", "connection-closed")
        await ws.close()
    assert (await roster(alice, "unit-7"))["position"]["lat"] == 10.5  # the report was stored
    unit = await connect(gw, "tok-terminal", reconnect=False)
    await presence(w, "unit-7", "online", "hello", after=offline["seq"])
    assert (await roster(alice, "unit-7"))["presence"] == "online"
    await unit.close()
    await presence(w, "unit-7", "offline", "connection-closed", after=offline["seq"])


async def test_locations_rate_limited_the_newest_never_dropped(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{**BASE, "terminals.location_interval_s": 1.0, "terminals.track_max_points": 10})
    alice = await connect(gw)
    w = await watch(alice)
    unit = await connect(gw, "tok-terminal")
    for i in range(10):  # ten fixes at once, the newest last
        await unit.report(**fix(lat=30 + i / 100, ago_s=10 - i, battery=90 - i, status="en-route"))
    last = await w.wait(lambda e: e["type"] == "terminal.location" and e["data"]["lat"] == 30.09)
    locations = [e for e in w.events if e["type"] == "terminal.location"]
    lats = [e["data"]["lat"] for e in locations]
    # The first at once, the newest last (a trailing publish); in between at most one per second,
    # each standing for the reports it replaced: ten in all, none lost, fewer events than reports.
    assert lats[0] == 30.0 and lats[-1] == 30.09 and lats == sorted(lats) and len(lats) < 10
    assert sum(1 + e["data"].get("coalesced", 0) for e in locations) == 10
    assert last["data"]["battery"] == 81
    [entry] = [t for t in await alice.terminals(group="d3") if t["terminal_id"] == "unit-7"]
    assert entry["position"]["lat"] == 30.09 and entry["battery"] == 81 and entry["status"] == "en-route"
    # A late fix older than the newest is stored in the track, not shown as the position.
    await unit.call("terminal.report", **fix(lat=1.0, ago_s=60))
    assert (await roster(alice, "unit-7"))["position"]["lat"] == 30.09
    audit = await gw.store.list_audit(limit=1000, principal="unit-7")
    assert not [a for a in audit if a["method"] == "terminal.report"]  # accepted: the track is the record
    track = await alice.track("unit-7")  # 11 points, pages of at most 10 (terminals.track_max_points)
    assert [p["lat"] for p in track] == [1.0] + [30 + i / 100 for i in range(10)]
    page = await alice.call("terminal.track", terminal_id="unit-7", limit=100)
    assert len(page["points"]) == 10 and page["truncated"] and page["next_since"] == page["points"][-1]["time"]
    page = await alice.call("terminal.track", terminal_id="unit-7", limit=4)
    assert len(page["points"]) == 4 and page["truncated"]
    until = track[3]["time"]
    assert len((await alice.call("terminal.track", terminal_id="unit-7", until=until))["points"]) == 4
    mine = await unit.call("terminal.track", terminal_id="unit-7", since=until)  # a terminal: its own
    assert [p["lat"] for p in mine["points"]] == [30 + i / 100 for i in range(2, 10)]


async def test_bad_input_precise_errors_nothing_stored(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**BASE)
    alice = await connect(gw)
    w = await watch(alice)
    unit = await connect(gw, "tok-terminal")
    await presence(w, "unit-7", "online")

    async def refused(client: GatewayClient, method: str, **params: Any) -> RemoteError:
        with pytest.raises(RemoteError) as info:
            await client.call(method, **params)
        return info.value

    for bad, loc in ((fix(lat=90.5), "lat"), (fix(lon=-181), "lon"), (fix(accuracy_m=-1), "accuracy_m"),
                     (fix(heading=360), "heading"), (fix(battery=101), "battery"),
                     (fix(ago_s=-120), "time"), ({**fix(), "time": "2026-12-01T10:00:00"}, "time"),
                     ({**fix(), "time": "yesterday"}, "time"), (fix(speed=-3), "speed")):
        err = await refused(unit, "terminal.report", **bad)
        assert err.reason == "invalid-params", bad
        assert [e["loc"] for e in err.details["errors"]] == [loc], err.details
    future = await refused(unit, "terminal.report", **fix(ago_s=-3600))
    assert "in the future" in future.details["errors"][0]["msg"]
    other = await refused(unit, "terminal.report", terminal_id="unit-9", **fix())
    assert other.reason == "forbidden" and other.details["terminal_id"] == "unit-9"
    assert (await refused(unit, "terminal.track", terminal_id="unit-9")).reason == "forbidden"
    assert (await refused(unit, "terminal.list")).reason == "forbidden"
    for method, params in (("call.dial", {"target": "desk-1"}), ("sms.send", {"to": ["unit-9"], "body": "x"}),
                           ("events.subscribe", {}), ("session.create", {})):
        assert (await refused(unit, method, **params)).reason == "forbidden", method
    assert (await refused(alice, "terminal.report", **fix())).reason == "forbidden"  # not a terminal
    assert (await refused(alice, "terminal.track", terminal_id="nobody")).reason == "no-such-terminal"
    assert (await refused(alice, "terminal.track", terminal_id="unit-7", since="2026-12-02T00:00:00Z",
                          until="2026-12-01T00:00:00Z")).reason == "invalid-params"
    for tid in ("unit-7", "unit-9"):
        assert await gw.store.count_track_points(tid) == 0
    audit = await gw.store.list_audit(limit=1000, principal="unit-7")  # refused reports are audited
    assert ("terminal.report", "error", "forbidden") in {(a["method"], a["result"], a["error_reason"]) for a in audit}
    assert not [e for e in w.events if e["type"] == "terminal.location"]
    assert (await roster(alice, "unit-7"))["position"] is None


async def test_roster_survives_a_restart_and_unbound_terminal_tokens_act_for_nobody(
        start_gateway, connect, tmp_path) -> None:
    gw = await start_gateway(**BASE)
    unit = await connect(gw, "tok-terminal", reconnect=False)
    await unit.call("terminal.report", **fix(lat=45.0, battery=55))
    await gw.stop()  # with the terminal connected
    gw2 = await start_gateway(**BASE)
    alice = await connect(gw2)
    entry = await roster(alice, "unit-7")
    assert entry["position"]["lat"] == 45.0 and entry["battery"] == 55 and entry["presence"] == "offline"
    assert entry["last_seen"] is not None  # kept across the restart
    presences = [e.data for e in (await gw2.store.events_after(0)) if e.type == "terminal.presence"]
    assert [(p["state"], p["reason"]) for p in presences] == [("online", "hello"), ("offline", "gateway-stopped")]
    assert [t["terminal_id"] for t in (await alice.call("terminal.list", group="water"))["terminals"]] == ["unit-9"]
    listing = await alice.call("directory.list", kind="terminal")
    assert [e["phone"] for e in listing["endpoints"]] == ["+8613800138007", "+8613800138009"]
    # A terminal token whose principal is no terminal of the directory: hello, nothing else.
    gw3 = await start_gateway()  # no terminals configured; tok-terminal's unit-7 is unknown there
    stray = await connect(gw3, "tok-terminal")
    with pytest.raises(RemoteError) as info:
        await stray.call("terminal.report", **fix())
    assert info.value.reason == "forbidden" and info.value.details["principal"] == "unit-7"


async def test_a_terminal_online_when_the_gateway_is_killed_is_offline_after_the_restart(tmp_path) -> None:
    sets = overrides(tmp_path, **{"directory.endpoint": TERMINALS, "sip.max_workers": 1,
                                  "sip.warm_workers": 1, "sip.proxy": "none"})
    gw = GatewayProc(sets, tmp_path)
    try:
        await gw.start()
        unit = await GatewayClient.connect(gw.url, "tok-terminal", reconnect=False)
        async with await GatewayClient.connect(gw.url, "tok-dispatcher") as alice:
            async with asyncio.timeout(20):
                while (await roster(alice, "unit-7"))["presence"] != "online":
                    await asyncio.sleep(0.05)
        await gw.kill9()  # no offline recorded
        await unit.close()
        await gw.start()
        async with await GatewayClient.connect(gw.url, "tok-dispatcher") as alice:
            entry = await roster(alice, "unit-7")
            assert entry["presence"] == "offline" and entry["last_seen"] is not None
            await alice.subscribe(0)
            got: list[dict] = []
            async with asyncio.timeout(20):
                async for ev in alice.events():
                    if ev["type"] == "terminal.presence":
                        got.append(ev["data"])
                    if len(got) == 2:
                        break
        assert [(p["state"], p["reason"]) for p in got] == [("online", "hello"), ("offline", "gateway-restarted")]
        assert got[1]["last_seen"] == entry["last_seen"]
    finally:
        await gw.stop()


async def test_the_roster_of_a_fleet_is_paged_under_the_frame_limit(start_gateway, connect) -> None:
    n = 3000  # at ~400 bytes an entry, the whole roster in one reply is over the 1 MiB frame limit
    fleet = ", ".join(f'{{name = "unit-{i:04d}", kind = "terminal", display_name = "Fire engine {i:04d} of'
                      f' district {i % 17}", groups = ["d{i % 17}", "engines"], phone = "+86138{i:08d}"}}'
                      for i in range(n))
    gw = await start_gateway(**{"directory.endpoint": f"[{fleet}]"})
    alice = await connect(gw)
    page = await alice.call("terminal.list", limit=1000)
    assert len(page["terminals"]) == 1000 and page["next_after"] == "unit-0999"
    size = len(json.dumps(page))
    print("terminal.list: 1,000 terminals in", size, "bytes")
    assert size < (1 << 20) - 4096
    roster = await alice.terminals()  # the client pages through
    assert [t["terminal_id"] for t in roster] == [f"unit-{i:04d}" for i in range(n)]
    group = await alice.call("terminal.list", group="d3", limit=100, after="unit-0003")
    assert [t["terminal_id"] for t in group["terminals"]][:2] == ["unit-0020", "unit-0037"]
    last = await alice.call("terminal.list", limit=1000, after="unit-2499")
    assert len(last["terminals"]) == 500 and last["next_after"] is None
    with pytest.raises(RemoteError) as info:
        await alice.call("terminal.list", after="unit-9999")
    assert info.value.reason == "invalid-params"
    with pytest.raises(RemoteError) as info:
        await alice.call("terminal.list", limit=1001)
    assert info.value.reason == "invalid-params"
