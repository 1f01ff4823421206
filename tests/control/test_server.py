"""The control server over real sockets on 127.0.0.1 (port 0), with small handlers defined here."""

import asyncio
import sqlite3
import base64
import json
import os

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.client import GatewayClient
from gateway.errors import NotFound
from gateway.protocol import Principal, Registry, media
from gateway.server import ControlServer, ServerConfig, ServerHooks

TOKENS = {
    "disp": Principal("alice", "dispatcher"),
    "obs": Principal("olga", "observer"),
    "term": Principal("t-17", "terminal"),
}


class Harness:
    def __init__(self):
        self.registry = Registry()
        self.audits = []
        self.dials = 0
        self.gate = asyncio.Event()
        self.closed = []
        self.events = [{"seq": i, "type": "call.state", "time": "2026-01-01T00:00:00.000Z",
                        "session_id": None, "data": {"i": i}} for i in range(1, 21)]
        self.conns = []
        r = self.registry

        async def dial(ctx, p):
            self.dials += 1
            await asyncio.sleep(0.01)
            return {"call_id": f"call-{self.dials}", "target": p.target}

        async def hangup(ctx, p):
            raise NotFound("no such call", reason="no-such-call", details={"call_id": p.call_id})

        async def session_get(ctx, p):
            if p.session_id == "boom":
                raise RuntimeError("secret internals")
            if p.session_id == "disk-full":  # what sqlite3 raises when the store's disk is full
                err = sqlite3.OperationalError("database or disk is full")
                err.sqlite_errorcode = sqlite3.SQLITE_FULL
                raise err
            await self.gate.wait()
            return {"session_id": p.session_id}

        async def session_list(ctx, p):
            return {"sessions": [], "principal": ctx.principal.name}

        async def subscribe(ctx, p):
            self.conns.append(ctx.connection)
            since = p.since_seq or 0

            async def gen():
                for ev in self.events:
                    if ev["seq"] > since:
                        yield ev
                await asyncio.Event().wait()  # live part: nothing more

            ctx.connection.start_subscription(gen())
            return {"since_seq": since}

        async def media_open(ctx, p):
            conn = ctx.connection
            conn.on_binary(lambda data: conn.send_binary(data))  # echo
            conn.on_close(lambda c: self.closed.append(c.id))
            return {"channel": 7}

        for name, h in [("call.dial", dial), ("call.hangup", hangup), ("session.get", session_get),
                        ("session.list", session_list), ("events.subscribe", subscribe),
                        ("media.open", media_open)]:
            r.register(name, h)

    async def audit(self, ctx, method, params, outcome):
        self.audits.append((ctx.principal.name, method, params, outcome))


@pytest.fixture
async def make_server():
    servers = []

    async def make(**cfg):
        h = Harness()
        hooks = ServerHooks(current_seq=lambda: 41, audit=h.audit,
                            on_closed=lambda conn: h.closed.append(("closed", conn.principal.name)))
        srv = ControlServer(h.registry, TOKENS.get, hooks,
                            ServerConfig(gateway_id="gw-test", close_timeout=0.5, **cfg))
        await srv.start()
        servers.append(srv)
        return srv, h

    yield make
    for s in servers:
        await s.stop()


async def rpc(ws, id, method, **params):
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    return await recv_reply(ws)


async def recv_reply(ws):
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if "id" in msg:
            return msg


def reason(reply):
    return reply["error"]["data"]["reason"]


async def test_hello_and_errors_keep_connection_usable(make_server):
    srv, h = await make_server()
    async with connect(srv.url) as ws:
        r = await rpc(ws, 1, "session.list")
        assert reason(r) == "not-authenticated" and r["error"]["code"] == -32001
        r = await rpc(ws, 2, "hello", token="wrong")
        assert reason(r) == "not-authenticated"
        r = await rpc(ws, 3, "hello", token="disp", client="test/1")
        assert r["result"] == {"principal": "alice", "role": "dispatcher", "gateway_id": "gw-test",
                               "seq": 41, "protocol": 1}
        bad = [
            ("{not json", -32700, "parse-error", None),
            ('[{"jsonrpc":"2.0","id":9,"method":"ping"}]', -32600, "invalid-request", None),
            ('{"jsonrpc":"2.0","id":10,"method":"no.such"}', -32601, "unknown-method", 10),
            ('{"jsonrpc":"2.0","id":12,"method":"call.dial","params":{"target":"http://x"}}',
             -32602, "invalid-uri", 12),
            ('{"jsonrpc":"2.0","id":13,"method":"call.dial","params":{"target":"alice","nope":1}}',
             -32602, "invalid-params", 13),
            ('{"jsonrpc":"2.0","id":14,"method":"call.hangup","params":{"call_id":"c9"}}',
             -32004, "no-such-call", 14),
            ('{"jsonrpc":"2.0","id":15,"method":"hello","params":{"token":"disp"}}',
             -32009, "invalid-state", 15),
        ]
        for frame, code, why, rid in bad:
            await ws.send(frame)
            r = await recv_reply(ws)
            assert (r["error"]["code"], reason(r), r["id"]) == (code, why, rid), frame
            ok = await rpc(ws, 100 + len(frame), "session.list")
            assert ok["result"]["principal"] == "alice"
        r = await rpc(ws, 21, "call.dial", target="sip:bob@example.com")
        assert r["result"]["target"] == "sip:bob@example.com"
    methods = [a[1] for a in h.audits]
    assert "hello" not in methods and "no.such" in methods and "call.dial" in methods
    assert any(isinstance(a[3], NotFound) for a in h.audits)


async def test_forbidden_role_and_internal_error(make_server):
    srv, h = await make_server()
    async with connect(srv.url) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="obs")
        r = await rpc(ws, 2, "call.dial", target="sip:bob@example.com")
        assert reason(r) == "forbidden" and r["error"]["code"] == -32003
        r = await rpc(ws, 3, "session.get", session_id="boom")
        assert r["error"] == {"code": -32603, "message": "internal error", "data": {"reason": "internal-error"}}
        assert "result" in await rpc(ws, 4, "session.list")
    assert h.dials == 0
    async with connect(srv.url) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="term")
        assert reason(await rpc(ws, 2, "session.list")) == "forbidden"
        assert (await rpc(ws, 3, "ping"))["result"] == {}


async def test_a_full_disk_refuses_clearly_not_internal_error(make_server):
    """The soak's disk drill (benchmarks/soak.py) got `internal-error` for every new command once
    the data dir was full: a full store is a part down (storage-full), not our bug."""
    srv, _ = await make_server()
    async with connect(srv.url) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="disp")
        r = await rpc(ws, 2, "session.get", session_id="disk-full")
        assert (r["error"]["code"], reason(r)) == (-32010, "storage-full")
        assert "disk is full" in r["error"]["message"]
        assert "result" in await rpc(ws, 3, "session.list")


async def test_other_paths_get_404(make_server):
    srv, _ = await make_server()
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://127.0.0.1:{srv.port}/other"):
            pass
    assert info.value.response.status_code == 404


async def test_huge_frame_closes_1009(make_server):
    srv, _ = await make_server(max_size=4096)
    async with connect(srv.url, max_size=None) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="disp")
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"x": "a" * 10000}}))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd.code == 1009


async def test_idempotency_returns_first_result_and_runs_once(make_server):
    srv, h = await make_server()
    client = await GatewayClient.connect(srv.url, "disp")
    try:
        results = await asyncio.gather(*[
            client.call("call.dial", target="alice", idempotency_key="k-1") for _ in range(3)])
        again = await client.call("call.dial", target="alice", idempotency_key="k-1")
        assert all(r == results[0] for r in results) and again == results[0]
        assert h.dials == 1
        other = await client.call("call.dial", target="alice", idempotency_key="k-2")
        assert other != results[0] and h.dials == 2
        await client.call("call.dial", target="alice")
        await client.call("call.dial", target="alice")
        assert h.dials == 4
    finally:
        await client.close()


async def test_started_command_outlives_its_connection_reads_do_not(make_server):
    """A lost connection cancels its reads, never a command that runs to its end: the command
    finishes in the server's task, a retry with its key (even while it still runs) gets its
    result, and the same key on another method is another request."""
    srv, h = await make_server()
    release, started = asyncio.Event(), asyncio.Event()
    runs, read_cancelled = [], asyncio.Event()

    async def slow_dial(ctx, p):
        runs.append(p.target)
        started.set()
        await release.wait()
        return {"call_id": f"slow-{len(runs)}"}

    async def blocked_read(ctx, p):
        try:
            await asyncio.Event().wait()
        finally:
            read_cancelled.set()

    async def session_create(ctx, p):
        return {"session_id": "s-new"}

    h.registry.handlers.update({"call.dial": slow_dial, "session.get": blocked_read,
                                "session.create": session_create})
    async with connect(srv.url) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="disp")
        for i, (method, params) in enumerate([("call.dial", {"target": "alice", "idempotency_key": "k"}),
                                              ("session.get", {"session_id": "s1"})], start=2):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}))
        await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(read_cancelled.wait(), 5)  # the read went with its connection
    client = await GatewayClient.connect(srv.url, "disp")
    try:
        retry = asyncio.ensure_future(client.call("call.dial", target="alice", idempotency_key="k"))
        await client.call("ping")  # the retry is in the server, waiting for the first run
        release.set()
        assert await retry == {"call_id": "slow-1"} and runs == ["alice"]
        assert await client.call("call.dial", target="alice", idempotency_key="k") == {"call_id": "slow-1"}
        assert runs == ["alice"]
        assert await client.call("session.create", idempotency_key="k") == {"session_id": "s-new"}
        # The first run was audited although nobody was there for its reply.
        assert [a[3] for a in h.audits if a[1] == "call.dial"][0] == {"call_id": "slow-1"}
    finally:
        await client.close()


async def test_stop_finishes_started_commands_then_cancels_late_ones(make_server):
    srv, h = await make_server(work_grace_s=0.5)
    ended = []

    async def quick(ctx, p):
        await asyncio.sleep(0.05)
        ended.append("quick")
        return {"call_id": "q"}

    async def stuck(ctx, p):
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("stuck-cancelled")

    h.registry.handlers.update({"call.dial": quick, "call.hangup": stuck})
    async with connect(srv.url) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="disp")
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "call.dial",
                                  "params": {"target": "alice"}}))
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "call.hangup",
                                  "params": {"call_id": "c1"}}))
        assert (await rpc(ws, 4, "ping"))["id"] == 4
        await srv.stop()
    assert sorted(ended) == ["quick", "stuck-cancelled"]


async def test_work_outliving_connections_is_bounded(make_server):
    srv, h = await make_server(max_work=1)
    release = asyncio.Event()

    async def held(ctx, p):
        await release.wait()
        return {"call_id": "held"}

    h.registry.handlers["call.dial"] = held
    async with connect(srv.url) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="disp")
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "call.dial",
                                  "params": {"target": "alice"}}))
    async with connect(srv.url) as ws:  # the first connection is gone, its dial is not
        assert "result" in await rpc(ws, 1, "hello", token="disp")
        assert reason(await rpc(ws, 2, "call.dial", target="alice")) == "rate-limited"
        assert "result" in await rpc(ws, 3, "session.list")  # reads are not held back
        release.set()


async def test_concurrency_bound(make_server):
    srv, h = await make_server(max_in_flight=2)
    async with connect(srv.url) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="disp")
        for i in (2, 3, 4):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "session.get",
                                      "params": {"session_id": f"s{i}"}}))
        r = await recv_reply(ws)
        assert r["id"] == 4 and reason(r) == "rate-limited"
        h.gate.set()
        got = {(await recv_reply(ws))["id"] for _ in range(2)}
        assert got == {2, 3}
        assert "result" in await rpc(ws, 5, "session.list")


async def test_ping_timeout_drops_silent_peer(make_server):
    srv, h = await make_server(ping_interval=0.1, ping_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /v1/control HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    await asyncio.sleep(0)
    assert len(srv.connections) == 1
    # Never answer the server's pings: it must drop us.
    async def drain():
        while await reader.read(4096):
            pass
    await asyncio.wait_for(drain(), 5)
    writer.close()
    for _ in range(50):
        if not srv.connections:
            break
        await asyncio.sleep(0.02)
    assert not srv.connections


async def test_binary_roundtrip_and_close_hook(make_server):
    srv, h = await make_server()
    client = await GatewayClient.connect(srv.url, "disp")
    try:
        assert (await client.call("media.open", call_id="c1"))["channel"] == 7
        pcm = bytes(640)
        for i in range(3):
            await client.send_audio(7, i, i * 320, pcm)
        frames = client.audio()
        got = [await asyncio.wait_for(anext(frames), 5) for _ in range(3)]
        assert [(f.channel, f.seq, f.timestamp, f.payload) for f in got] == [(7, i, i * 320, pcm) for i in range(3)]
    finally:
        await client.close()
    for _ in range(50):
        if len(h.closed) == 2:
            break
        await asyncio.sleep(0.02)
    assert h.closed[1] == ("closed", "alice") and h.closed[0].startswith("c")


async def test_binary_before_hello_is_dropped(make_server):
    srv, _ = await make_server()
    async with connect(srv.url) as ws:
        await ws.send(media.pack(1, 0, 0, bytes(10)))
        assert "result" in await rpc(ws, 1, "hello", token="disp")
        conn = next(iter(srv.connections))
        assert conn.stats["binary_in_dropped"] == 1


async def test_events_subscribe_and_resume_after_cut(make_server):
    srv, h = await make_server()
    all_events, h.events = h.events, h.events[:5]
    client = await GatewayClient.connect(srv.url, "obs", backoff=(0.02, 0.1))
    try:
        await client.subscribe(since_seq=0)
        it = client.events()
        first = [(await asyncio.wait_for(anext(it), 5))["seq"] for _ in range(5)]
        assert first == [1, 2, 3, 4, 5]
        # Network cut: the server drops the connection; the client resumes from seq it saw.
        await asyncio.sleep(0.05)
        h.events = all_events  # 6..20 are published while the console is away
        await h.conns[0].close(1011, "cut")
        rest = [(await asyncio.wait_for(anext(it), 5))["seq"] for _ in range(15)]
        assert rest == list(range(6, 21))
        assert client.reconnects == 1
    finally:
        await client.close()


async def test_slow_subscriber_gets_overflow(make_server):
    srv, h = await make_server(send_queue_size=4, subscription_grace_s=0.05)
    h.events = [{"seq": i, "type": "call.state", "time": "t", "session_id": None, "data": {"pad": "x" * 100_000}}
                for i in range(1, 400)]
    async with connect(srv.url, max_queue=1, max_size=None, compression=None) as ws:
        assert "result" in await rpc(ws, 1, "hello", token="obs")
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "events.subscribe", "params": {"since_seq": 0}}))
        await asyncio.sleep(1.0)  # do not read: the outbox fills, the pump is cut
        seen = []
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if msg.get("method") == "event":
                seen.append(msg["params"])
                if msg["params"]["type"] == "events.overflow":
                    break
        overflow = seen[-1]
        assert overflow["seq"] == seen[-2]["seq"] == len(seen) - 1
        assert overflow["data"]["resume_since_seq"] == overflow["seq"]
        assert "result" in await rpc(ws, 3, "session.list")  # still usable
