"""Audio never cuts a console's event subscription (issue 7, section 5).

Real sockets on 127.0.0.1: a console listens to four calls (audio at full rate, 4 x 50 frames/s)
and follows a busy event stream; its link stalls for 1.5 s (the client stops reading, small
socket buffers so the stall reaches the gateway's send queue quickly). Audio and events have
separate budgets: audio frames are dropped (and counted), the subscription is kept, no event lost.
"""

from __future__ import annotations

import asyncio
import json
import socket

from websockets.asyncio.client import connect

from gateway.protocol import Principal, Registry
from gateway.server import ControlServer, ServerConfig, ServerHooks

FRAME = bytes(12 + 640)  # header + 20 ms of 16 kHz PCM16
CHANNELS = 4
EVENTS_PER_S = 20


async def test_audio_at_full_rate_never_cuts_the_subscription() -> None:
    registry = Registry()
    conns = []
    tasks: list[asyncio.Task] = []

    async def subscribe(ctx, p):
        async def live():
            seq = p.since_seq or 0
            while True:
                seq += 1
                yield {"seq": seq, "type": "call.state", "time": "t", "session_id": None, "data": {"i": seq}}
                await asyncio.sleep(1 / EVENTS_PER_S)

        ctx.connection.start_subscription(live())
        return {"since_seq": p.since_seq or 0}

    async def media_open(ctx, p):
        conn = ctx.connection
        conns.append(conn)
        sock = conn._ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a slow link fills fast

        async def audio():
            loop = asyncio.get_running_loop()
            start = loop.time()
            n = 0
            while not conn.closed:
                for _ in range(CHANNELS):
                    conn.send_binary(FRAME)
                n += 1
                await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))  # real time

        tasks.append(asyncio.get_running_loop().create_task(audio()))
        return {"channel": 1}

    registry.register("events.subscribe", subscribe)
    registry.register("media.open", media_open)
    srv = ControlServer(registry, {"obs": Principal("olga", "dispatcher")}.get, ServerHooks(),
                        ServerConfig(send_queue_size=64, subscription_grace_s=0.2, close_timeout=0.5))
    await srv.start()
    client_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client_sock.connect(("127.0.0.1", srv.port))
    events: list[dict] = []
    binary = 0
    try:
        async with connect(srv.url, sock=client_sock, max_queue=4, compression=None) as ws:
            async def read(seconds: float) -> None:
                nonlocal binary
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while (left := end - loop.time()) > 0:
                    try:
                        msg = await asyncio.wait_for(ws.recv(), left)
                    except TimeoutError:
                        return
                    if isinstance(msg, bytes):
                        binary += 1
                    elif msg.startswith('{"jsonrpc":"2.0","method":"event"'):
                        events.append(json.loads(msg)["params"])

            for i, (method, params) in enumerate((("hello", {"token": "obs"}), ("media.open", {"call_id": "c1"}),
                                                  ("events.subscribe", {"since_seq": 0}))):
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}))
            await read(1.0)
            ws.transport.pause_reading()  # the link stalls
            await asyncio.sleep(1.5)
            ws.transport.resume_reading()
            await read(2.0)
    finally:
        for t in tasks:
            t.cancel()
        await srv.stop()
    stats = conns[0].stats
    assert [e for e in events if e["type"] == "events.overflow"] == [], "audio cut the subscription"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2 * EVENTS_PER_S
    assert stats["binary_out_dropped"] > 0  # audio is what gave way, and it was counted
    assert binary > 50 * CHANNELS  # audio flowed before and after the stall
