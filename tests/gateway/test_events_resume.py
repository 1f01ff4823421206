"""Durable events through the real gateway: a console cut mid-stream resumes and misses nothing."""

from __future__ import annotations

import asyncio

import pytest

from tests.peers.sipp import sipp_uas


async def test_console_cut_while_events_flow_resumes_without_gap_or_duplicate(start_gateway, connect) -> None:
    gw = await start_gateway()
    producer = await connect(gw, "tok-dispatcher-2")
    console = await connect(gw, "tok-observer")  # reconnects by itself, resubscribing from last seq
    start_seq = console.hello["seq"]
    await console.subscribe(start_seq)
    total = 300
    received: list[dict] = []

    async def produce() -> None:
        for i in range(total):
            await producer.call("session.create", title=f"incident {i}")

    async def consume() -> None:
        async for ev in console.events():
            received.append(ev)
            if sum(1 for e in received if e["type"] == "session.state") >= total:
                return

    producing = asyncio.create_task(produce())
    consuming = asyncio.create_task(consume())
    # Cut the console's connection twice while events are being produced, the second time once
    # it is back (events buffered before the first cut can bring 100 before it has reconnected).
    for cut in range(2):
        async with asyncio.timeout(30):
            while len(received) < 50 * (cut + 1) or console.reconnects < cut:
                await asyncio.sleep(0.01)
        console._ws.transport.abort()  # a network cut: no close handshake
    await asyncio.wait_for(producing, 60)
    await asyncio.wait_for(consuming, 60)
    assert console.reconnects >= 2
    seqs = [e["seq"] for e in received]
    assert seqs == sorted(set(seqs)), "duplicate or out-of-order event"
    assert seqs == list(range(start_seq + 1, start_seq + 1 + len(seqs))), "gap in the events"
    titles = [e["data"]["title"] for e in received if e["type"] == "session.state"]
    assert titles == [f"incident {i}" for i in range(total)]


@pytest.mark.peers
async def test_shutdown_hangs_up_calls_with_bye_and_records_them(start_gateway, connect) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    await alice.subscribe(alice.hello["seq"])
    async with sipp_uas("answer", calls=2) as uas:
        ids = [(await alice.call("call.dial", target=uas.uri))["call_id"] for _ in range(2)]
        async with asyncio.timeout(10):
            while not all(r["state"] == "connected" for r in [await gw.store.get_call(c) for c in ids]):
                await asyncio.sleep(0.05)
        store_path = gw.config.store_path
        await gw.stop()
        res = await uas.wait(10)
    assert res.returncode == 0, res.errors
    assert res.successful == 2 and res.count("BYE sip:") >= 2  # each call ended with a BYE
    # Every call and its end were stored before the store closed.
    from gateway.store import Store

    async with Store(store_path) as store:
        rows = [await store.get_call(c) for c in ids]
        events = await store.events_after(0, 10_000)
    assert all(r["state"] == "ended" and r["ended_at"] for r in rows)
    ended = {e.data["call_id"] for e in events if e.type == "call.state" and e.data["state"] == "ended"}
    assert ended == set(ids)


async def test_subscribe_ahead_of_the_store_is_refused(start_gateway, connect) -> None:
    from gateway.client import RemoteError

    gw = await start_gateway()
    olga = await connect(gw, "tok-observer")
    await olga.call("ping")
    alice = await connect(gw)
    await alice.call("session.create", title="one")
    last = gw.bus.last_seq
    with pytest.raises(RemoteError) as err:
        await olga.call("events.subscribe", since_seq=last + 100)
    assert (err.value.code, err.value.reason) == (-32602, "seq-ahead")
    assert err.value.details == {"since_seq": last + 100, "last_seq": last}
    assert (await olga.call("events.subscribe", since_seq=last))["last_seq"] == last


async def test_a_since_seq_beyond_int64_is_invalid_params(start_gateway, connect) -> None:
    from gateway.client import RemoteError

    gw = await start_gateway()
    olga = await connect(gw, "tok-observer")
    for since in (2**63, 2**63 + 5, 10**30):
        with pytest.raises(RemoteError) as err:
            await olga.call("events.subscribe", since_seq=since)
        assert (err.value.code, err.value.reason) == (-32602, "invalid-params"), since
    assert (await olga.call("events.subscribe", since_seq=0))["since_seq"] == 0


async def test_pipelined_subscribes_leave_no_subscription_behind(start_gateway) -> None:
    """2,000 `events.subscribe` sent without waiting: each replaces the last, most pumps are
    cancelled before they ever run; once the connection closes the bus has no subscriber left."""
    import json

    import websockets

    from tests.gateway.gateway_proc import wait_until

    # what is tested is the pipelining: in flight and budget limits lifted so every subscribe runs
    gw = await start_gateway(**{"control.max_in_flight": 4096,
                                "control.request_budget.observer": "{rate = 100000, burst = 100000}"})
    base = gw.bus.subscriber_count
    async with websockets.connect(gw.control.url, max_size=None) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "hello",
                                  "params": {"token": "tok-observer"}}))
        assert "result" in json.loads(await ws.recv())
        n = 2000
        for i in range(1, n + 1):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "events.subscribe",
                                      "params": {"since_seq": 0}}))
        replies = 0
        while replies < n:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            replies += "id" in msg
        assert gw.bus.subscriber_count <= base + 1
    await wait_until(lambda: gw.bus.subscriber_count == base, 30, "the bus to drop every subscription")


async def test_a_subscriber_that_stops_reading_after_overflow_is_dropped(start_gateway) -> None:
    """A raw client with tiny socket buffers subscribes and never reads: it is cut with
    `events.overflow`, and since it neither resubscribes nor reads, the gateway closes it once
    `control.overflow_close_s` has passed instead of holding its send queues."""
    import json
    import socket

    import websockets

    from tests.gateway.gateway_proc import wait_until

    gw = await start_gateway(**{"control.send_queue": 8, "control.overflow_close_s": 1})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.control.port))
    async with websockets.connect(gw.control.url, sock=sock, max_queue=1, max_size=None) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "hello",
                                  "params": {"token": "tok-observer"}}))
        assert "result" in json.loads(await ws.recv())
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe", "params": {}}))
        assert "result" in json.loads(await ws.recv())
        (conn,) = gw.control.connections
        for _ in range(400):  # ~4 MB of events: far beyond the socket buffers and the send queue
            await gw.bus.publish("test.filler", {"pad": "x" * 10_000})
        await wait_until(lambda: conn.stats["overflows"] >= 1, 30, "the subscriber to be cut")
        await wait_until(lambda: conn.closed and not gw.control.connections, 30,
                         "the gateway to drop the stalled connection")
