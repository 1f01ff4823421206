"""One event fanned out to N parked subscribers costs one encoding and no per-subscriber Python
work beyond the write (issue 13): no params dict, no outbox entry, no pump or writer wake-up.

Real sockets on 127.0.0.1, a real SQLite store and event bus; nothing is timed: the encoder,
`Event.to_params` and `Outbox.put` are counted while events are published.
"""

from __future__ import annotations

import asyncio
import contextlib
from asyncio.selector_events import _SelectorSocketTransport

from websockets.frames import Frame

from gateway.client import GatewayClient
from gateway.events import EventBus
from gateway.outbox import Outbox
from gateway.protocol import Principal, Registry, codec
from gateway.server import ControlServer, ServerConfig, ServerHooks
from gateway.store import Event, Store

N = 20
EVENTS = 5


@contextlib.asynccontextmanager
async def subscribed(tmp_path):
    """A store, its bus and a control server with N clients subscribed, every pump parked."""
    store = Store(tmp_path / "gateway.db")
    await store.open()
    bus = EventBus(store)
    subs = []
    registry = Registry()

    async def subscribe(ctx, p):
        sub = bus.subscribe(p.since_seq or 0)
        subs.append(sub)
        ctx.connection.start_subscription(sub)
        return {"since_seq": p.since_seq or 0}

    async def create(ctx, p):  # a write with its event, as session.create: the reply waits for its commit
        ev = await bus.publish("session.state", {"title": p.title})
        return {"seq": ev.seq}

    registry.register("events.subscribe", subscribe)
    registry.register("session.create", create)
    srv = ControlServer(registry, {"tok": Principal("alice", "dispatcher")}.get, ServerHooks(), ServerConfig())
    await srv.start()
    clients = [GatewayClient(srv.url, "tok", client_name=f"c{i}", reconnect=False) for i in range(N)]
    try:
        for c in clients:
            await c.open()
            await c.subscribe(0)
        async with asyncio.timeout(30):  # every pump has replayed and waits for live events
            while not (len(subs) == N and all(s.live and s._waiter is not None for s in subs)):
                await asyncio.sleep(0.01)
        yield store, bus, srv, clients
    finally:
        for c in clients:
            await c.close()
        await srv.stop()
        bus.close()
        await store.close()


async def received(c: GatewayClient) -> list[dict]:
    got = []
    async for ev in c.events():
        got.append(ev)
        if len(got) == EVENTS:
            return got
    return got


async def published_and_received(bus: EventBus, clients: list[GatewayClient]) -> None:
    """EVENTS events published one commit each; every client receives all of them, in order."""
    for i in range(EVENTS):
        await bus.publish("call.state", {"i": i})
    async with asyncio.timeout(30):
        got = await asyncio.gather(*(received(c) for c in clients))
    assert all([e["data"]["i"] for e in g] == list(range(EVENTS)) for g in got)


async def test_one_encoding_and_no_queueing_per_event_for_n_subscribers(tmp_path, monkeypatch) -> None:
    async with subscribed(tmp_path) as (store, bus, srv, clients):
        counts = {"encode": 0, "to_params": 0, "put": 0}
        real_encode, real_to_params, real_put = codec.encode_stored_event, Event.to_params, Outbox.put

        def encode(*args):  # a stored event's frame: around its stored data JSON (no params dict)
            counts["encode"] += 1
            return real_encode(*args)

        def to_params(self):
            counts["to_params"] += 1
            return real_to_params(self)

        def put(self, item, **kw):
            counts["put"] += 1
            return real_put(self, item, **kw)

        monkeypatch.setattr(codec, "encode_stored_event", encode)
        monkeypatch.setattr(Event, "to_params", to_params)
        monkeypatch.setattr(Outbox, "put", put)
        await published_and_received(bus, clients)
        assert counts == {"encode": EVENTS, "to_params": 0, "put": 0}


async def test_the_events_of_one_commit_go_to_a_subscriber_in_one_write(tmp_path, monkeypatch) -> None:
    """A commit of EVENTS events (an SMS batch: every start or receipt of a tick) is one write per
    parked subscriber, not one per event (before: EVENTS sends each; at 1,000 SMPP messages/s, 3
    events a message, the sends were ~5 % of the gateway's CPU)."""
    async with subscribed(tmp_path) as (store, bus, srv, clients):
        writes = 0
        write = _SelectorSocketTransport.write

        def counted(self, data):
            nonlocal writes
            writes += self.get_extra_info("sockname")[1] == srv.port  # the server's side only
            return write(self, data)

        monkeypatch.setattr(_SelectorSocketTransport, "write", counted)
        await store.atomic_sync(lambda tx: tx.emit_each("call.state", [(None, {"i": i}) for i in range(EVENTS)]))
        async with asyncio.timeout(30):
            got = await asyncio.gather(*(received(c) for c in clients))
        assert all([e["data"]["i"] for e in g] == list(range(EVENTS)) for g in got)
        assert writes == N


async def test_a_commit_s_frames_are_built_once_for_every_subscriber(tmp_path, monkeypatch) -> None:
    """The WebSocket framing of an event (header and payload, the same bytes for every connection
    without extensions) is built once per event, not once per subscriber as `websockets.broadcast`
    does (before: N x EVENTS frames built by the server for EVENTS events to N subscribers)."""
    async with subscribed(tmp_path) as (store, bus, srv, clients):
        built = 0
        serialize = Frame.serialize

        def counted(self, *, mask, extensions=None):
            nonlocal built
            built += not mask  # the server's frames (a client masks its own)
            return serialize(self, mask=mask, extensions=extensions)

        monkeypatch.setattr(Frame, "serialize", counted)
        await published_and_received(bus, clients)
        assert built == EVENTS


async def test_a_reply_goes_out_before_the_fan_out_of_its_own_commit(tmp_path, monkeypatch) -> None:
    """The events of a commit reach the subscribers after the replies waiting on that commit
    (before: the N subscribers' writes, then the reply: with 1,000 subscribers every reply of the
    batch waited for 1,000 writes). Every subscriber still gets the event; the creator, a
    subscriber too, gets its reply first (replies may overtake events)."""
    async with subscribed(tmp_path) as (store, bus, srv, clients):
        order: list[str] = []
        write = _SelectorSocketTransport.write

        def recorded(self, data):
            if self.get_extra_info("sockname")[1] == srv.port:  # the server's side only
                order.append("event" if b'"method":"event"' in data else "reply")
            return write(self, data)

        monkeypatch.setattr(_SelectorSocketTransport, "write", recorded)
        async with asyncio.timeout(30):
            reply = await clients[0].call("session.create", title="t")
            got = await asyncio.gather(*(anext(c.events()) for c in clients))
        assert all(e["seq"] == reply["seq"] and e["data"]["title"] == "t" for e in got)
        assert order == ["reply"] + ["event"] * N


async def test_a_round_of_several_commits_builds_each_commit_s_frames_once(tmp_path, monkeypatch) -> None:
    """Commits made while a fan-out round is pending go out in one round. The bus handed each
    subscriber all the round's commits in turn and the server kept the frames of one commit, so
    with two commits every subscriber built both again (2 x N frames; workload (b) of issue 13:
    ~10 % of the gateway's CPU). Now each commit's frames are built once, every subscriber gets
    both events in order."""
    async with subscribed(tmp_path) as (store, bus, srv, clients):
        built = 0
        serialize = Frame.serialize

        def counted(self, *, mask, extensions=None):
            nonlocal built
            built += not mask
            return serialize(self, mask=mask, extensions=extensions)

        monkeypatch.setattr(Frame, "serialize", counted)
        bus._delivery = asyncio.get_running_loop().call_later(3600, lambda: None)  # a round is pending
        held = bus._delivery
        first = await bus.publish("call.state", {"i": 0})
        second = await bus.publish("call.state", {"i": 1})
        assert len(bus._pending) == 2  # both commits wait for the same round
        held.cancel()
        bus._delivery = None
        bus._deliver()
        async with asyncio.timeout(30):
            got = await asyncio.gather(*(received_n(c, 2) for c in clients))
        assert all([e["seq"] for e in g] == [first.seq, second.seq] for g in got)
        assert built == 2


async def received_n(c: GatewayClient, n: int) -> list[dict]:
    got = []
    async for ev in c.events():
        got.append(ev)
        if len(got) == n:
            break
    return got
