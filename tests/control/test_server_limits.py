"""Control listener limits over real sockets on 127.0.0.1: hello deadline, connections per source
and overall (refused at the handshake with 503), and throttled hello failures (issue 8 §2)."""

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.protocol import Principal, Registry
from gateway.server import ControlServer, ServerConfig

TOKENS = {"disp": Principal("alice", "dispatcher")}


@pytest.fixture
async def make_server():
    servers = []

    async def make(**cfg):
        srv = ControlServer(Registry(), TOKENS.get, None,
                            ServerConfig(gateway_id="gw-test", close_timeout=0.5, **cfg))
        await srv.start()
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        await s.stop()


async def rpc(ws, id, method, **params):
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("id") == id:
            return msg


def reason(reply):
    return reply["error"]["data"]["reason"]


async def test_connection_without_hello_is_closed_after_deadline(make_server):
    srv = await make_server(hello_timeout=0.5)
    async with connect(srv.url) as silent, connect(srv.url) as ok:
        assert "result" in await rpc(ok, 1, "hello", token="disp")
        # the silent one answers pings (the client library does) but never says hello
        with pytest.raises(ConnectionClosed) as exc:
            await asyncio.wait_for(silent.recv(), 10)
        assert exc.value.rcvd.code == 1008
        assert (await rpc(ok, 2, "ping"))["result"] is not None  # said hello: kept


async def test_per_source_limit_refuses_extra_at_handshake(make_server):
    srv = await make_server(max_connections_per_source=3, hello_timeout=30)
    held = [await connect(srv.url) for _ in range(3)]
    try:
        with pytest.raises(InvalidStatus) as exc:
            await connect(srv.url)
        assert exc.value.response.status_code == 503
        # another source (127.0.0.2 is loopback too) still gets in
        async with connect(srv.url, local_addr=("127.0.0.2", 0)) as other:
            assert "result" in await rpc(other, 1, "hello", token="disp")
        await held.pop().close()
        async with connect(srv.url) as ws:  # room again for this source
            assert "result" in await rpc(ws, 1, "hello", token="disp")
    finally:
        for ws in held:
            await ws.close()


async def test_total_limit_refuses_extra_at_handshake(make_server):
    srv = await make_server(max_connections=2, hello_timeout=30)
    async with connect(srv.url), connect(srv.url):
        with pytest.raises(InvalidStatus) as exc:
            await connect(srv.url)
        assert exc.value.response.status_code == 503
    async with connect(srv.url) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="disp")


async def test_bad_tokens_close_the_connection(make_server):
    srv = await make_server(max_hello_failures=3)
    async with connect(srv.url) as ws:
        for i in range(3):
            assert reason(await rpc(ws, i, "hello", token=f"bad{i}")) == "not-authenticated"
        with pytest.raises(ConnectionClosed) as exc:
            await rpc(ws, 9, "hello", token="bad9")
        assert exc.value.rcvd.code == 1008


async def test_bad_tokens_are_throttled_per_source(make_server):
    srv = await make_server(max_hello_failures=2, hello_failures_burst=4, hello_failures_per_s=0.01)
    failures = 0
    limited = None
    for c in range(5):  # reconnecting does not reset the source's budget
        async with connect(srv.url) as ws:
            for i in range(2):
                r = await rpc(ws, i, "hello", token="bad")
                if reason(r) == "rate-limited":
                    limited = r
                    break
                failures += 1
        if limited:
            break
    assert failures == 4 and limited is not None
    assert limited["error"]["data"]["details"]["retry_after_s"] > 0
    # even the right token waits out the source's backoff (no oracle for guessing)
    async with connect(srv.url) as ws:
        assert reason(await rpc(ws, 1, "hello", token="disp")) == "rate-limited"


async def test_frames_before_hello_count_as_failed_hellos_on_the_connection(make_server):
    """Another method, garbage, a notification, a hello without a token or a binary frame
    before hello are failed attempts: they close the connection like bad tokens do."""
    srv = await make_server(max_hello_failures=5, hello_failures_burst=1000)
    async with connect(srv.url) as ws:
        assert reason(await rpc(ws, 1, "session.list")) == "not-authenticated"
        await ws.send("{not json")
        assert reason(json.loads(await asyncio.wait_for(ws.recv(), 10))) == "parse-error"
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "ping"}))  # a notification
        assert reason(await rpc(ws, 2, "hello")) == "invalid-params"  # no token
        await ws.send(b"\x00\x01binary before hello")
        with pytest.raises(ConnectionClosed) as exc:  # the 6th attempt, a good token, is too late
            await rpc(ws, 3, "hello", token="disp")
        assert exc.value.rcvd.code == 1008 and exc.value.rcvd.reason == "too many failed hellos"


async def test_frames_before_hello_spend_the_source_budget(make_server):
    srv = await make_server(max_hello_failures=1000, hello_failures_burst=5, hello_failures_per_s=0.01)
    async with connect(srv.url) as ws:
        for i in range(5):
            assert reason(await rpc(ws, i, "ping")) == "not-authenticated"
        limited = await rpc(ws, 9, "hello", token="disp")  # a good token waits out the source's backoff
        assert reason(limited) == "rate-limited" and limited["error"]["data"]["details"]["retry_after_s"] > 0
        assert reason(await rpc(ws, 10, "session.list")) == "rate-limited"
    async with connect(srv.url, local_addr=("127.0.0.2", 0)) as other:  # another address is not held back
        assert "result" in await rpc(other, 1, "hello", token="disp")
