"""Limits at the listeners, against the gateway run as its own process (issue 8 §2): slowloris
clients on the HTTP port and connections that never say hello on the control channel are cut
after their deadlines, a source past its connection limit is refused while another still gets in,
bad tokens are throttled, and /healthz and a new console stay served all along."""

from __future__ import annotations

import asyncio
import contextlib
import json

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.gateway.gateway_proc import gateway_proc
from tests.peers.ports import free_port_block, free_tcp_port
from tests.sip.conftest import probed_calls_per_worker


def overrides(tmp, **more):
    sip = free_port_block(span=20)
    return {
        "gateway.data_dir": str(tmp / "data"), "gateway.log_format": "json",
        "control.port": free_tcp_port(), "http.port": free_tcp_port(),
        "sip.port": sip, "sip.worker_base_port": sip + 10, "sip.max_workers": 1,
        "sip.rtp_port_base": free_port_block(span=10, tcp=False),
        "sip.calls_per_worker": probed_calls_per_worker(), "sip.log_dir": str(tmp / "sip-logs"), **more,
    }


async def http_get(port, path="/healthz", local_addr=None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local_addr)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def slowloris(port) -> bool:
    """Dribbles header bytes (one per 50 ms) until the gateway cuts it: True when cut."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 2000:
            writer.write(bytes([byte]))
            try:
                await writer.drain()
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    return True
            except TimeoutError:
                continue
            except ConnectionError:
                return True
        return False
    finally:
        writer.close()


async def hello(ws, token, id=1) -> dict:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": id, "method": "hello", "params": {"token": token}}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("id") == id:
            return msg


async def closed_code(ws) -> int | None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    return ws.close_code


async def test_listeners_hold_under_slow_and_silent_clients(tmp_path):
    sets = overrides(tmp_path, **{"control.hello_timeout_s": 2, "control.max_connections_per_source": 10,
                                  "http.header_timeout_s": 2, "http.max_connections_per_source": 100})
    async with gateway_proc(sets, tmp_path) as gw:
        await gw.start()
        http_port = sets["http.port"]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        slow = [asyncio.create_task(slowloris(http_port)) for _ in range(40)]
        silent = [await connect(gw.url) for _ in range(9)]  # they answer pings, never say hello
        try:
            # the source's 10th slot is still free: a console gets in, and /healthz answers
            async with connect(gw.url) as console:
                assert "result" in await hello(console, "tok-dispatcher")
                assert b"200 OK" in await http_get(http_port)
                try:  # the 11th connection from this source is refused at the handshake ...
                    await connect(gw.url)
                    raise AssertionError("the per-source limit let an 11th connection in")
                except InvalidStatus as exc:
                    assert exc.response.status_code == 503
                # ... while another source still gets in
                async with connect(gw.url, local_addr=("127.0.0.2", 0)) as other:
                    assert "result" in await hello(other, "tok-observer")
                codes = await asyncio.wait_for(asyncio.gather(*(closed_code(ws) for ws in silent)), 30)
                assert codes == [1008] * 9  # no hello within 2 s
                assert all(await asyncio.wait_for(asyncio.gather(*slow), 60))
                assert loop.time() - t0 < 30  # cut near their deadlines, not after 2,000 bytes
                assert b"200 OK" in await http_get(http_port)
                # the console that said hello is still served
                await console.send(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ping"}))
                assert json.loads(await asyncio.wait_for(console.recv(), 10))["id"] == 7
        finally:
            for ws in silent:
                await ws.close()


async def test_bad_tokens_are_throttled_per_source(tmp_path):
    sets = overrides(tmp_path, **{"control.max_hello_failures": 3, "control.hello_failures_burst": 6,
                                  "control.hello_failure_refill_s": 60})
    async with gateway_proc(sets, tmp_path) as gw:
        await gw.start()
        reasons, codes = [], []
        for _ in range(4):  # reconnecting does not reset the address's budget
            async with connect(gw.url) as ws:
                for i in range(3):
                    reasons.append((await hello(ws, f"guess-{i}", id=i))["error"]["data"]["reason"])
                with contextlib.suppress(ConnectionClosed):
                    await hello(ws, "guess-x", id=9)
                codes.append(await closed_code(ws))
        assert reasons[:6] == ["not-authenticated"] * 6 and reasons[6:] == ["rate-limited"] * 6
        assert codes == [1008] * 4  # each connection closed after its 3 failures
        async with connect(gw.url, local_addr=("127.0.0.2", 0)) as ws:  # another address is not held back
            assert "result" in await hello(ws, "tok-dispatcher")


async def test_health_answers_while_the_http_port_is_full(tmp_path):
    """Idle connections take every slot of the HTTP port (total and per source): /healthz and
    /readyz still answer from the health reserve, while a webhook request there is refused."""
    sets = overrides(tmp_path, **{"http.max_connections": 20, "http.max_connections_per_source": 20,
                                  "http.header_timeout_s": 30, "http.health_reserve": 2})
    async with gateway_proc(sets, tmp_path) as gw:
        await gw.start()
        port = sets["http.port"]
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(22)]  # 2 in the reserve
        try:
            for _ in range(3):
                assert b"200 OK" in await http_get(port)
            ready = await http_get(port, "/readyz")
            assert ready.startswith(b"HTTP/1.1 200 ") and b'"store": true' in ready, ready
            refused = await http_get(port, "/webhooks/twilio/status")
            assert refused == b"" or refused.startswith(b"HTTP/1.1 503 "), refused
        finally:
            for _, w in held:
                w.close()


async def test_frames_before_hello_are_throttled_like_bad_tokens(tmp_path):
    """Other methods and garbage before hello count as failed hellos: on the connection (closed
    beyond control.max_hello_failures) and for the address (its budget spent: rate-limited)."""
    sets = overrides(tmp_path, **{"control.max_hello_failures": 3, "control.hello_failures_burst": 5,
                                  "control.hello_failure_refill_s": 60})
    async with gateway_proc(sets, tmp_path) as gw:
        await gw.start()
        async with connect(gw.url) as ws:
            for i in range(3):
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "session.list"}) if i % 2
                              else "\x00 not json")
                assert "error" in json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "hello",
                                      "params": {"token": "tok-dispatcher"}}))
            assert await closed_code(ws) == 1008  # a good token after 3 failures: too late
        async with connect(gw.url) as ws:
            for i in range(2):  # 2 more spend the address's budget of 5
                await ws.send(b"\x01binary before hello")
            reply = await hello(ws, "tok-dispatcher")
            assert reply["error"]["data"]["reason"] == "rate-limited", reply
        async with connect(gw.url, local_addr=("127.0.0.2", 0)) as ws:
            assert "result" in await hello(ws, "tok-dispatcher")
