"""A console's link drops in the middle of a command: the command completes or leaves nothing.

Each test sends a command through `CutProxy` (tests/peers/cutproxy.py), which loses the TCP
connection after N bytes, swept over several values: N of the request itself (it never arrives
whole), exactly the request (it arrives and the link drops at once), or N bytes of what the
gateway sends back while the command runs (its own events on the same connection). Then the
console does what a console does: reconnects and retries with the same idempotency key. What
must hold: the retry returns the first result, nothing ran twice, and nothing was left half-done
(SMS stored but never sent, a call nobody can hang up, a broadcast holding its targets without
playing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from gateway.app import Gateway
from gateway.client import RemoteError
from gateway.protocol import codec
from tests.gateway.test_sms_twilio import SID, TOKEN
from tests.peers.cutproxy import CutProxy, ws_frame_len
from tests.peers.ports import free_port_block
from tests.peers.sipp import sipp_uas
from tests.peers.twilio_stub import twilio_stub

pytestmark = pytest.mark.peers

N_SMS = 1000


async def cut_during(gw: Gateway, method: str, params: dict[str, Any], *, up: int | None = None,
                     down: int | None = None, token: str = "tok-dispatcher") -> None:
    """Send `method` on a connection that drops after `up` bytes of the request or `down` bytes
    of what comes back (the connection is subscribed to events, so the command's own events
    flow back while it runs). Returns once the link is cut and the gateway saw it close."""
    before = set(gw.control.connections)
    async with CutProxy("127.0.0.1", gw.control.port) as proxy:
        ws = await ws_connect(f"ws://127.0.0.1:{proxy.port}{gw.control.config.path}",
                              compression=None, max_size=None, open_timeout=10)
        try:
            await ws.send(codec.encode_request(1, "hello", {"token": token}))
            seq = (await _reply(ws, 1))["seq"]
            await ws.send(codec.encode_request(2, "events.subscribe", {"since_seq": seq}))
            await _reply(ws, 2)
            text = codec.encode_request(3, method, params)
            proxy.arm(up=None if up is None else min(up, ws_frame_len(text)), down=down)
            await ws.send(text)
            async with asyncio.timeout(30):
                await proxy.cut.wait()
                with contextlib.suppress(ConnectionClosed):
                    async for _ in ws:
                        pass
        finally:
            await ws.close()
    async with asyncio.timeout(10):  # the gateway has noticed: the connection is gone there too
        while gw.control.connections - before:
            await asyncio.sleep(0.02)


async def _reply(ws: Any, req_id: int) -> dict:
    while True:  # events of earlier commands may come first
        msg = json.loads(await ws.recv())
        if msg.get("id") == req_id:
            return msg["result"]


@contextlib.contextmanager
def cancelled_when_stored(store: Any, task: asyncio.Future, event_type: str) -> Iterator[None]:
    """Fault injection below the control channel: cancel `task` as soon as the store commits an
    event of `event_type` (the work is interrupted right after that step)."""
    def on_stored(events: Any) -> None:
        if any(e.type == event_type for e in events):
            task.cancel()

    store.add_listener(on_stored)
    try:
        yield
    finally:
        store.remove_listener(on_stored)


def cut_points(request_len: int, downs: tuple[int, ...]) -> list[dict[str, int]]:
    """Half the request, the whole request then a drop, and `downs` bytes of the replies."""
    return [{"up": request_len // 2}, {"up": request_len}] + [{"down": d} for d in downs]


@contextlib.asynccontextmanager
async def sms_gateway(start_gateway) -> AsyncIterator[tuple[Gateway, Any]]:
    async with twilio_stub(SID, TOKEN) as stub:
        http_port = free_port_block(span=1)
        gw = await start_gateway(**{
            "http.port": http_port, "sms.provider": "twilio", "sms.rate_per_s": 5000,
            "sms.burst": 500, "sms.in_flight": 50, "sms.base_delay_s": 0.2, "sms.max_delay_s": 1,
            "sms.twilio.account_sid": SID, "sms.twilio.auth_token": TOKEN,
            "sms.twilio.api_base": stub.url, "sms.twilio.public_url": f"http://127.0.0.1:{http_port}",
            "sms.twilio.timeout_s": 10, "sip.warm_workers": 0})
        yield gw, stub


async def test_sms_send_cut_anywhere_every_message_sent_once(start_gateway, connect) -> None:
    async with sms_gateway(start_gateway) as (gw, stub):
        alice = await connect(gw)
        probe = codec.encode_request(3, "sms.send", {
            "to": [f"+1555{0:02d}{i:05d}" for i in range(N_SMS)], "body": "Evacuate zone 4 now",
            "idempotency_key": "sms-00"})
        points = cut_points(ws_frame_len(probe), (0, 5_000, 100_000))
        for n, point in enumerate(points):
            to = [f"+1555{n:02d}{i:05d}" for i in range(N_SMS)]
            params = {"to": to, "body": "Evacuate zone 4 now", "idempotency_key": f"sms-{n:02d}"}
            await cut_during(gw, "sms.send", params, **point)
            again = await alice.call("sms.send", **params)  # the console retries: same key
            assert again["recipients"] == N_SMS, point
            # The same key on another method is another request.
            other = await alice.call("session.create", title="other", idempotency_key=f"sms-{n:02d}")
            assert "send_id" not in other and other["session_id"] != again["session_id"], point
            async with asyncio.timeout(60):
                while sum(stub.creates[r] for r in to) < N_SMS:
                    await asyncio.sleep(0.05)
                while (counts := await gw.store.sms_counts(again["send_id"])).get("queued") or \
                        counts.get("sending"):
                    await asyncio.sleep(0.05)
            rows = [r for r in await gw.store.find_sms(states=None, limit=100_000)
                    if r["recipient"] in set(to)]
            assert len(rows) == N_SMS and {r["send_id"] for r in rows} == {again["send_id"]}, point
            assert all(stub.creates[r] == 1 for r in to), (point, [r for r in to if stub.creates[r] != 1][:5])
        assert sum(stub.creates.values()) == N_SMS * len(points)


async def test_call_dial_cut_anywhere_the_call_is_live_listed_and_ends(start_gateway, connect,
                                                                        watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    probe = codec.encode_request(3, "call.dial", {"target": "sip:svc@127.0.0.1:5999",
                                                  "idempotency_key": "dial-00"})
    points = cut_points(ws_frame_len(probe), (0, 200, 500, 900))
    async with sipp_uas("answer", calls=len(points), timeout_s=120) as uas:
        for n, point in enumerate(points):
            params = {"target": uas.uri, "idempotency_key": f"dial-{n:02d}"}
            await cut_during(gw, "call.dial", params, **point)
            call = await alice.call("call.dial", **params)  # the retry: the first call, if any
            assert (await alice.call("call.dial", **params))["call_id"] == call["call_id"], point
            await w.call_state(call["call_id"], "connected")
            listed = await alice.call("call.list", session_id=call["session_id"])
            assert [c["call_id"] for c in listed["calls"]] == [call["call_id"]], point
            assert gw.calls.live_call_ids() == [call["call_id"]], point  # nothing else left live
            await alice.call("call.hangup", call_id=call["call_id"])
            await w.call_state(call["call_id"], "ended")
            other = await alice.call("session.create", idempotency_key=f"dial-{n:02d}")
            assert other["session_id"] != call["session_id"], point
        res = await uas.wait(30)
    assert (res.successful, res.failed) == (len(points), 0), res.errors
    calls = await gw.store.list_calls()
    assert len(calls) == len(points) and {c["cause"] for c in calls} == {"local-hangup"}
    assert gw.calls.list_live() == []


async def test_session_close_racing_call_dial_leaves_no_live_call(start_gateway, connect,
                                                                   watch) -> None:
    """Dial into a session while it is being closed (twice at once): the session is closed
    once, and no call of it is left live (each either refused or placed and hung up)."""
    rounds = 6
    gw = await start_gateway(**{"sip.max_workers": 2})
    alice = await connect(gw)
    bob = await connect(gw, "tok-dispatcher-2")
    w = await watch(alice)
    async with sipp_uas("answer", calls=rounds, timeout_s=120) as uas:
        for n in range(rounds):
            session = await alice.call("session.create", title=f"race {n}")
            sid = session["session_id"]
            dial = alice.call("call.dial", target=uas.uri, session_id=sid)
            closes = [alice.call("session.close", session_id=sid), bob.call("session.close", session_id=sid)]
            # Each round starts the close a little later relative to the dial (0 to 5 loop turns).
            tasks = [asyncio.ensure_future(dial)]
            for _ in range(n):
                await asyncio.sleep(0)
            tasks += [asyncio.ensure_future(c) for c in closes]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            closed_ok = [r for r in results[1:] if isinstance(r, dict)]
            assert len(closed_ok) == 1, results  # one close wins, the other is invalid-state
            assert all(getattr(r, "reason", None) == "invalid-state" for r in results[1:]
                       if not isinstance(r, dict)), results
            if isinstance(results[0], dict):  # placed before the close: the close ended it
                await w.call_state(results[0]["call_id"], "ended", timeout=20)
            else:  # refused: the session was closing (or, on a loaded machine, pjsua's call
                # slots still held by the calls hung up in earlier rounds): nothing placed
                assert results[0].reason in ("invalid-state", "no-capacity"), results[0]
            async with asyncio.timeout(20):
                while (await alice.call("call.list", session_id=sid))["calls"]:
                    await asyncio.sleep(0.05)
            closed = [e for e in w.events if e["type"] == "session.state"
                      and e["session_id"] == sid and e["data"]["state"] == "closed"]
            assert len(closed) == 1, closed
        await uas.stop()
    assert gw.calls.list_live() == []


async def test_call_dial_interrupted_inside_the_gateway_leaves_an_endable_call(start_gateway, connect,
                                                                               watch) -> None:
    """Fault injection below the control channel (a stop cancelling a dial, say): cancel
    `CallService.dial` when its session is stored, when its call is stored, and inside the
    supervisor's dial command once it was written to the worker. Each time the call is not
    there at all, or it is live, listed, and a hangup ends it at the far end too."""
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    sup = gw.sip
    original = sup._command

    async def command(worker: Any, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd.get("cmd") == "dial" and cut_in_sip:
            dial.cancel()  # delivered at the dial's next wait: after the command is written
        return await original(worker, cmd)

    sup._command = command  # type: ignore[method-assign]
    points = ["session.state", "call.state", "sip"]
    async with sipp_uas("answer", calls=1, timeout_s=120) as uas:  # only the last reaches it
        for point in points:
            cut_in_sip = point == "sip"
            dial = asyncio.ensure_future(gw.calls.dial(target=uas.uri, session_id=None,
                                                       principal="alice"))

            with cancelled_when_stored(gw.store, dial, point):
                with contextlib.suppress(asyncio.CancelledError):
                    await dial
                assert dial.cancelled(), point
            live = gw.calls.list_live()
            if point == "session.state":
                assert live == [], point  # cancelled before the call existed: nothing left
                continue
            assert len(live) == 1, (point, live)
            listed = await alice.call("call.list")
            assert [c["call_id"] for c in listed["calls"]] == [live[0]["call_id"]], point
            if point == "sip":
                await w.call_state(live[0]["call_id"], "connected")
            await alice.call("call.hangup", call_id=live[0]["call_id"])
            await w.call_state(live[0]["call_id"], "ended")
            assert gw.calls.list_live() == [], point
        res = await uas.wait(30)
    assert (res.successful, res.failed) == (1, 0), res.errors  # the one dialled got its BYE


async def test_broadcast_start_cut_anywhere_started_fully_or_not_at_all(start_gateway, connect,
                                                                       watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    source = {"type": "tone", "frequency": 800, "seconds": 0.5}
    probe = codec.encode_request(3, "broadcast.start", {
        "targets": ["sip:svc@127.0.0.1:5999", "sip:svc@127.0.0.1:5998"], "source": source,
        "chime": False, "idempotency_key": "bc-00"})
    points = cut_points(ws_frame_len(probe), (0, 300, 900))
    async with sipp_uas("answer", calls=len(points) + 1, timeout_s=120) as spk1, \
            sipp_uas("answer", calls=len(points) + 1, timeout_s=120) as spk2:
        for n, point in enumerate(points):
            params = {"targets": [spk1.uri, spk2.uri], "source": source, "chime": False,
                      "idempotency_key": f"bc-{n:02d}"}
            await cut_during(gw, "broadcast.start", params, **point)
            b = await alice.call("broadcast.start", **params)  # the retry: the first one, if any
            ev = await w.wait(lambda e: e["type"] == "broadcast.state" and e["data"]["state"] == "ended"
                              and e["data"]["broadcast_id"] == b["broadcast_id"], timeout=30)
            assert (ev["data"]["end_reason"], ev["data"]["targets"]) == ("completed", {"ended": 2}), point
            rows = await gw.store.list_broadcasts()
            assert len(rows) == n + 1 and {r["state"] for r in rows} == {"ended"}, (point, rows)
            assert not gw.broadcasts._live and not gw.broadcasts.arbiter.holder(spk1.uri), point
        # Below the control channel too (fault injection): the start is cancelled once the
        # broadcast is stored; it plays all the same.
        start = asyncio.ensure_future(gw.broadcasts.start(
            principal="alice", targets=[spk1.uri, spk2.uri], source=source, priority="normal",
            session_id=None, max_duration_s=None, repeat=1, repeat_gap_s=0.0, chime=False))

        with cancelled_when_stored(gw.store, start, "broadcast.state"):
            with contextlib.suppress(asyncio.CancelledError):
                await start
        assert start.cancelled()
        (b_id,) = [r["broadcast_id"] for r in await gw.store.list_broadcasts() if r["state"] != "ended"]
        ev = await w.wait(lambda e: e["type"] == "broadcast.state" and e["data"]["state"] == "ended"
                          and e["data"]["broadcast_id"] == b_id, timeout=30)
        assert (ev["data"]["end_reason"], ev["data"]["targets"]) == ("completed", {"ended": 2})
        res1, res2 = await spk1.wait(30), await spk2.wait(30)
    assert (res1.successful, res2.successful) == (len(points) + 1, len(points) + 1)


async def test_session_close_cut_anywhere_closes_once_and_ends_its_calls(start_gateway, connect,
                                                                         watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    probe = codec.encode_request(3, "session.close", {"session_id": "0" * 32})
    points = cut_points(ws_frame_len(probe), (0, 200, 600))
    async with sipp_uas("answer", calls=len(points), timeout_s=120) as uas:
        for point in points:
            call = await alice.call("call.dial", target=uas.uri)
            sid = call["session_id"]
            await w.call_state(call["call_id"], "connected")
            await cut_during(gw, "session.close", {"session_id": sid}, **point)
            try:  # the retry: closes it, or learns that the first close did
                await alice.call("session.close", session_id=sid)
            except RemoteError as err:
                assert err.reason == "invalid-state", point
            await w.call_state(call["call_id"], "ended")
            assert (await alice.call("session.get", session_id=sid))["state"] == "closed", point
            assert (await alice.call("call.list", session_id=sid))["calls"] == [], point
            closed = [e for e in w.events if e["type"] == "session.state" and e["session_id"] == sid
                      and e["data"]["state"] == "closed"]
            assert len(closed) == 1, (point, closed)
        res = await uas.wait(30)
    assert (res.successful, res.failed) == (len(points), 0), res.errors


async def test_stop_finishes_a_started_sms_send_before_the_services_stop(start_gateway, connect) -> None:
    """A stop while a console's sms.send of 1,000 runs: the control channel closes first and the
    send finishes (stored, all queued, its result kept under its key) before the SMS service and
    the store stop (what is still queued is sent by the next start's recovery)."""
    async with sms_gateway(start_gateway) as (gw, stub):
        alice = await connect(gw)
        to = [f"+1556{i:06d}" for i in range(N_SMS)]
        stored = asyncio.Event()
        gw.store.add_listener(lambda events: any(e.type == "session.state" for e in events) and stored.set())
        send = asyncio.ensure_future(alice.call("sms.send", to=to, body="Stop test", idempotency_key="stop-1"))
        await asyncio.wait_for(stored.wait(), 30)  # the send has started (its session exists)
        await gw.stop()
        with contextlib.suppress(Exception):
            await send
        db = sqlite3.connect(gw.config.store_path)
        try:
            (key,) = db.execute("SELECT result FROM idempotency WHERE principal = 'alice'"
                                " AND method = 'sms.send' AND key = 'stop-1'").fetchall()
            send_id = json.loads(key[0])["send_id"]
            assert db.execute("SELECT COUNT(*) FROM sms WHERE send_id = ?", (send_id,)).fetchall() == [(N_SMS,)]
            queued = db.execute("SELECT COUNT(*) FROM events WHERE type = 'sms.status'"
                                " AND json_extract(data, '$.send_id') = ? AND json_extract(data, '$.state') = 'queued'",
                                (send_id,)).fetchall()
            assert queued == [(N_SMS,)]
        finally:
            db.close()
