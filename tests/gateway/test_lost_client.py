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
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from gateway.app import Gateway
from gateway.client import GatewayClient
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
        points = cut_points(ws_frame_len(probe), (0, 3_000, 30_000, 150_000))
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
