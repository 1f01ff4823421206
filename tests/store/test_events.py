"""EventBus over a real SQLite store: ordering, replay racing live, overflow and resume."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from gateway.errors import InvalidParams, Unavailable
from gateway.events import OVERFLOW, EventBus
from gateway.store import Store

from .helpers import consume


async def test_publish_stores_before_delivery(store: Store, bus: EventBus) -> None:
    sub = bus.subscribe(0)
    ev = await bus.publish("session.state", {"state": "open"}, session_id="s1")
    assert ev.seq == 1 and bus.last_seq == 1
    got = await asyncio.wait_for(anext(sub), 5)
    assert got == ev
    assert (await store.events_after(0)) == [ev]
    assert bus.subscriber_count == 1
    sub.close()
    assert bus.subscriber_count == 0
    with pytest.raises(StopAsyncIteration):
        await anext(sub)


async def test_close_wakes_a_waiting_consumer(bus: EventBus) -> None:
    sub = bus.subscribe(0)
    task = asyncio.create_task(anext(sub))
    await asyncio.sleep(0.05)
    assert sub.live and not task.done()
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(task, 5)


async def test_concurrent_publishers_and_subscribers(bus: EventBus) -> None:
    """20 publishers x 200 events while 5 subscribers (some joining mid-way) consume."""
    pre = 300
    for i in range(pre):
        await bus.publish("pre", {"i": i})
    publishers, per = 20, 200
    until = pre + publishers * per
    received: dict[int, list] = {}

    async def subscriber(since: int) -> None:
        sub = bus.subscribe(since)
        events = []
        async for ev in sub:
            assert ev.type != OVERFLOW
            events.append(ev)
            if ev.seq == until:
                break
        sub.close()
        received[since] = events

    async def publisher(p: int) -> None:
        for i in range(per):
            await bus.publish("load", {"p": p, "i": i}, session_id=f"s{p}")
            if i % 50 == 0:
                await asyncio.sleep(0)

    async def late_joiners() -> None:
        await asyncio.sleep(0.02)
        tg_tasks = [asyncio.create_task(subscriber(max(0, bus.last_seq - 100)))]
        await asyncio.sleep(0.02)
        tg_tasks.append(asyncio.create_task(subscriber(bus.last_seq)))
        await asyncio.gather(*tg_tasks)

    async with asyncio.timeout(30):
        async with asyncio.TaskGroup() as tg:
            for since in (0, 17, pre):
                tg.create_task(subscriber(since))
            tg.create_task(late_joiners())
            for p in range(publishers):
                tg.create_task(publisher(p))

    assert len(received) == 5
    for since, events in received.items():
        assert [e.seq for e in events] == list(range(since + 1, until + 1)), since
        per_pub: dict[int, list[int]] = {}
        for e in events:
            if e.type == "load":
                assert e.session_id == f"s{e.data['p']}"
                per_pub.setdefault(e.data["p"], []).append(e.data["i"])
        for p, idx in per_pub.items():
            assert idx == sorted(idx)  # each publisher's events keep their order
    assert received[0][pre].data == {"p": received[0][pre].data["p"], "i": 0}


@pytest.mark.parametrize(("page_size", "queue_size"), [(500, 1000), (40, 64)])
async def test_subscribe_while_publishing_heavily(store: Store, page_size: int, queue_size: int) -> None:
    """Replay racing live: subscribers join at random moments and random since_seq."""
    bus = EventBus(store, queue_size=queue_size, page_size=page_size)
    stop = asyncio.Event()

    async def publisher(p: int) -> None:
        i = 0
        while not stop.is_set():
            await bus.publish("load", {"p": p, "i": i})
            i += 1

    rng = random.Random(7)
    results: list[tuple[int, int, list[int], int]] = []

    async def joiner() -> None:
        for _ in range(6):
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            since = rng.randint(0, bus.last_seq)
            until = bus.last_seq + rng.randint(50, 1500)
            seqs, overflows = await consume(bus, since, until)
            results.append((since, until, seqs, overflows))

    async with asyncio.timeout(30):
        async with asyncio.TaskGroup() as tg:
            pubs = [tg.create_task(publisher(p)) for p in range(8)]
            joiners = [tg.create_task(joiner()) for _ in range(3)]
            await asyncio.gather(*joiners)
            stop.set()
            await asyncio.gather(*pubs)
    assert len(results) == 18
    for since, until, seqs, _ in results:
        assert seqs == list(range(since + 1, until + 1))
    bus.close()


async def test_replay_survives_live_queue_filling_before_iteration(store: Store) -> None:
    """A subscription not yet iterating is still replaying: a full live queue is not fatal."""
    bus = EventBus(store, queue_size=5, page_size=10)
    sub = bus.subscribe(0)
    for i in range(100):
        await bus.publish("t", {"i": i})
    got = [(await anext(sub)).seq for _ in range(100)]
    assert got == list(range(1, 101))
    assert not sub.overflowed
    await bus.publish("t", {"i": 100})
    assert (await asyncio.wait_for(anext(sub), 5)).seq == 101
    assert sub.live
    await bus.publish("t", {"i": 101})
    assert (await asyncio.wait_for(anext(sub), 5)).seq == 102
    sub.close()


async def test_slow_subscriber_overflows_fast_one_keeps_up_and_resumes(store: Store) -> None:
    bus = EventBus(store, queue_size=1000)
    await bus.publish("t", {"i": 0})
    slow = bus.subscribe(0, queue_size=64)
    assert (await anext(slow)).seq == 1 and slow.live  # now live, then it stops reading
    total = 1 + 20 * 150

    fast = asyncio.create_task(consume(bus, 1, total, resume=False))
    await asyncio.sleep(0.01)

    async def publisher() -> None:
        for i in range(150):
            await bus.publish("t", {"i": i})

    t0 = time.perf_counter()
    async with asyncio.timeout(20):  # the publishers never wait for the slow subscriber
        await asyncio.gather(*(publisher() for _ in range(20)))
    publish_s = time.perf_counter() - t0
    assert slow.overflowed and len(slow._queue) <= 64
    assert slow not in bus._subs  # detached: no more work for it on publish

    seqs, overflows = await asyncio.wait_for(fast, 10)
    assert overflows == 0 and seqs == list(range(2, total + 1))

    # the slow one drains what it had, then gets one overflow event, then stops
    tail = [ev async for ev in slow]
    assert tail[-1].type == OVERFLOW
    delivered = [ev.seq for ev in tail[:-1]]
    last = delivered[-1]
    assert delivered == list(range(2, last + 1)) and 2 <= last < total
    assert tail[-1].seq == last and tail[-1].data == {"resume_since_seq": last, "reason": "slow-subscriber"}
    assert slow.last_seq == last

    # resuming from last_seq gets the rest, no gap, no duplicate
    rest, overflows = await consume(bus, last, total)
    assert rest == list(range(last + 1, total + 1)) and overflows == 0
    assert publish_s < 10


async def test_bus_close_ends_subscriptions(store: Store) -> None:
    bus = EventBus(store)
    subs = [bus.subscribe(0) for _ in range(3)]
    assert bus.subscriber_count == 3
    bus.close()
    assert bus.subscriber_count == 0
    for sub in subs:
        with pytest.raises(StopAsyncIteration):
            await anext(sub)
    await store.append_event("t")  # no longer fanned out by the closed bus: nothing breaks
    with pytest.raises(Unavailable):
        bus.subscribe(0)


async def test_since_seq_ahead_of_the_store_is_refused(store: Store) -> None:
    bus = EventBus(store)
    for i in range(3):
        await bus.publish("t", {"i": i})
    with pytest.raises(InvalidParams) as err:
        bus.subscribe(4)  # a seq this store never gave: never silently skip what comes next
    assert err.value.reason == "seq-ahead"
    assert err.value.details == {"since_seq": 4, "last_seq": 3}
    sub = bus.subscribe(3)  # the last seq itself is fine: live from here
    await bus.publish("t", {"i": 3})
    assert (await asyncio.wait_for(anext(sub), 5)).seq == 4
    sub.close()
    bus.close()


async def test_a_subscription_made_between_a_commit_and_its_fan_out(store: Store, bus: EventBus) -> None:
    """The fan-out follows the tasks a commit woke: the publisher resumes with its event stored
    but not yet handed on. A subscription made then, from the committed seq or from before it,
    gets every later event once, in order, and the pending one exactly when it asked for it."""
    first = await bus.publish("session.state", {"i": 0})
    assert bus.fan_out_lag() == (0, None) and bus._pending  # stored, not yet handed on
    late = bus.subscribe(first.seq)  # from what hello would say now
    early = bus.subscribe(first.seq - 1)
    await bus.publish("session.state", {"i": 1})
    await bus.publish("session.state", {"i": 2})
    async with asyncio.timeout(5):
        assert [(await anext(late)).data["i"] for _ in range(2)] == [1, 2]
        assert [(await anext(early)).data["i"] for _ in range(3)] == [0, 1, 2]
    assert late.last_seq == early.last_seq == bus.last_seq
    late.close()
    early.close()
