"""The bus hands a commit to many subscribers in slices, one slice per loop turn (issue 13: a
commit's fan-out to 1,000 subscribers was one callback of 30-50 ms, every other request waiting
behind it). Nothing is timed: a task that counts loop turns tells the slices apart, and the
subscribers are parked with a sink (as a connection's pump parks them) that records what each got
in which turn. A real SQLite store; the commits are handed to the bus by hand where a test needs
one to arrive while another is mid-round (the store's listener is the bus's only input).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence

from gateway.events import EventBus, Subscription
from gateway.store import Event, Store

N = 1000


class Turns:
    """Counts turns of the event loop: one step of its task per turn."""

    def __init__(self) -> None:
        self.now = 0

    async def run(self) -> None:
        while True:
            self.now += 1
            await asyncio.sleep(0)


class Parked:
    """Subscriptions parked on an empty queue, each with a sink recording (turn, index, seq)."""

    def __init__(self, bus: EventBus, turns: Turns) -> None:
        self.bus, self.turns = bus, turns
        self.subs: list[Subscription] = []
        self.got: list[list[int]] = []
        self.log: list[tuple[int, int, int]] = []
        self.changed = asyncio.Event()
        self.first_take: Callable[[], object] | None = None  # called once, in the first sink call
        self._tasks: list[asyncio.Task] = []

    async def add(self, n: int, since: int) -> list[Subscription]:
        new = [self.subscribe(since) for _ in range(n)]
        await self.parking(new)
        return new

    def subscribe(self, since: int) -> Subscription:
        sub, i = self.bus.subscribe(since), len(self.subs)
        self.subs.append(sub)
        self.got.append([])
        sub.set_sink(lambda ev, i=i: self._take(i, ev))
        self._tasks.append(asyncio.create_task(self._consume(i, sub)))
        return sub

    @staticmethod
    async def parking(subs: list[Subscription]) -> None:
        async with asyncio.timeout(30):  # each has read the store (replayed) and waits: parked
            while not all(s._parked() for s in subs):
                await asyncio.sleep(0.01)

    def _take(self, i: int, ev: Event) -> bool:
        if self.first_take is not None:
            self.first_take, first = None, self.first_take
            first()
        self.got[i].append(ev.seq)
        self.log.append((self.turns.now, i, ev.seq))
        self.changed.set()
        return True

    async def _consume(self, i: int, sub: Subscription) -> None:
        async for ev in sub:  # what the sink did not take: replayed from the store, or queued
            self.got[i].append(ev.seq)
            self.changed.set()

    async def until(self, done) -> None:
        async with asyncio.timeout(30):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    def close(self) -> None:
        for sub in self.subs:
            sub.close()
        for t in self._tasks:
            t.cancel()


@contextlib.asynccontextmanager
async def parked_bus(store: Store, **kw) -> AsyncIterator[tuple[EventBus, Parked, list[Sequence[Event]]]]:
    """A bus whose commits are held back (third item) until the test hands them on with `_fan_out`."""
    bus = EventBus(store, **kw)
    held: list[Sequence[Event]] = []
    store.remove_listener(bus._fan_out)
    store.add_listener(held.append)
    turns = Turns()
    ticker = asyncio.create_task(turns.run())
    parked = Parked(bus, turns)
    try:
        yield bus, parked, held
    finally:
        parked.close()
        ticker.cancel()
        store.remove_listener(held.append)
        bus.close()


def per_turn(log: list[tuple[int, int, int]], seq: int) -> collections.Counter[int]:
    """Subscribers handed `seq`, by loop turn."""
    return collections.Counter(turn for turn, _, s in log if s == seq)


async def test_a_commit_reaches_1000_subscribers_a_slice_per_loop_turn(store: Store) -> None:
    """Before: all 1,000 in one turn (one callback)."""
    async with parked_bus(store) as (bus, parked, held):
        await parked.add(N, 0)
        ev = await bus.publish("session.state", {"i": 0})
        bus._fan_out(held.pop())
        await parked.until(lambda: all(parked.got))
        turns = per_turn(parked.log, ev.seq)
        assert sum(turns.values()) == N and all(g == [ev.seq] for g in parked.got)
        assert max(turns.values()) <= 200 and len(turns) == N // 200  # the default slice


async def test_a_round_of_several_commits_serves_fewer_subscribers_a_turn(store: Store) -> None:
    """Commits that waited together go out together, the slice shrinking so that a turn hands on
    at most `slice_size` subscriber-commits; each subscriber gets them in seq order."""
    async with parked_bus(store) as (bus, parked, held):
        await parked.add(N, 0)
        evs = [await bus.publish("session.state", {"i": i}) for i in range(4)]
        for commit in list(held):
            bus._fan_out(commit)  # four commits before the round begins
        held.clear()
        seqs = [e.seq for e in evs]
        await parked.until(lambda: all(len(g) == 4 for g in parked.got))
        assert all(g == seqs for g in parked.got)
        served = collections.Counter(turn for turn, _, s in parked.log)
        assert max(served.values()) <= bus.slice_size  # subscriber-commits per turn
        assert max(per_turn(parked.log, seqs[0]).values()) <= bus.slice_size // 4


async def test_a_commit_made_mid_round_waits_for_the_round_to_end(store: Store) -> None:
    """Commit B arrives while commit A has reached some subscribers and not others: every
    subscriber gets A then B, each once, and B reaches nobody before A has reached everybody.
    A subscription made mid-round from before A gets A from its replay, then B; one made from A's
    seq (what `hello` says then) gets only B."""
    async with parked_bus(store) as (bus, parked, held):
        await parked.add(N, 0)
        a = await bus.publish("session.state", {"i": 0})
        commit_a = held.pop()
        b = await bus.publish("session.state", {"i": 1})
        commit_b = held.pop()
        bus._fan_out(commit_a)
        await parked.until(lambda: any(parked.got))
        reached = sum(1 for g in parked.got if g)
        assert 0 < reached < N  # mid-round

        early, late = bus.subscribe(a.seq - 1), bus.subscribe(a.seq)  # not parked: they replay
        bus._fan_out(commit_b)
        async with asyncio.timeout(30):
            assert [e.seq for e in [await anext(early), await anext(early)]] == [a.seq, b.seq]
            assert (await anext(late)).seq == b.seq
        await parked.until(lambda: all(len(g) == 2 for g in parked.got))
        assert all(g == [a.seq, b.seq] for g in parked.got)
        last_a = max(turn for turn, _, s in parked.log if s == a.seq)
        first_b = min(turn for turn, _, s in parked.log if s == b.seq)
        assert first_b > last_a
        early.close()
        late.close()


async def test_a_parked_subscription_made_mid_round_gets_the_next_round_once(store: Store) -> None:
    """Made (and parked, its replay done) while commit A is mid-round: A came from its replay,
    A's round does not hand it A again, and B's round hands it B once."""
    async with parked_bus(store, slice_size=10) as (bus, parked, held):
        await parked.add(100, 0)
        a = await bus.publish("session.state", {"i": 0})
        bus._fan_out(held.pop())
        await parked.until(lambda: any(parked.got))
        newcomer = parked.subscribe(0)
        assert 0 < bus._served < len(bus._round_subs) and newcomer not in bus._round_subs  # mid-round
        await parked.parking([newcomer])  # A replayed from the store
        b = await bus.publish("session.state", {"i": 1})
        bus._fan_out(held.pop())
        await parked.until(lambda: all(len(g) == 2 for g in parked.got))
        assert all(g == [a.seq, b.seq] for g in parked.got)


async def test_a_request_read_mid_round_is_taken_before_the_next_slice(store: Store) -> None:
    """I/O that becomes ready during a slice (a request arriving on a socket) is handled before
    the round's next slice, so it waits for one slice at most (before: the next slice, queued with
    call_soon, ran ahead of everything the loop's poll found)."""
    a, b = socket.socketpair()
    loop = asyncio.get_running_loop()
    try:
        async with parked_bus(store) as (bus, parked, held):
            await parked.add(N, 0)
            reached_when_read: list[int] = []
            loop.add_reader(b.fileno(), lambda: (b.recv(1), reached_when_read.append(sum(map(bool, parked.got)))))
            parked.first_take = lambda: a.send(b"x")  # in the first slice
            await bus.publish("session.state", {"i": 0})
            bus._fan_out(held.pop())
            await parked.until(lambda: all(parked.got))
            assert reached_when_read == [bus.slice_size]  # the first slice only
    finally:
        loop.remove_reader(b.fileno())
        a.close()
        b.close()
