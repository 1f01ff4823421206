"""The event bus: publish = store, then fan out; subscribe(since_seq) = replay, then live.

Fan-out follows each commit (`Store.add_listener`) in loop callbacks of its own, after the tasks
waiting on that commit have run (their replies go out before the commit's events reach, say,
1,000 subscribers), commits in the order they were made, so subscribers receive events in seq
order however many tasks publish at once, and only events that are stored. Each subscription
has a bounded live queue; the publisher never waits for it.

The fan-out goes in rounds, each in slices: a round takes every commit waiting and the
subscribers of that moment, and hands those commits to at most `slice_size` subscribers per loop
turn (fewer when the round holds several commits: `slice_size` subscriber-commits a turn), so
the loop answers other requests between slices instead of stalling on 1,000 subscribers' writes
(30-50 ms in one callback before; issue 13): the next slice is a timer due at once, which the
loop runs after the I/O its poll found, so a request waits for at most the slice under way. Commits made meanwhile wait for the next round,
which starts only once the last slice of this one is done: no subscriber gets a later commit
before an earlier one. A subscription made during a round is not in it; the round's commits were
stored before it was made, so its replay reads them from the store (or it asked to start after
them), and the next round has it.

A subscription starts in replay: it registers its live queue first, then reads stored events after
`since_seq` page by page. While it replays, its live queue only has to cover the time since the
last read began; if it fills up it is emptied and the replay simply reads on from the store (the
store has everything). Once a read comes back short with the live queue intact, the subscription
is live: the rest of the page, then the queue, skipping seqs already delivered. A live queue that
overflows ends the subscription with one `events.overflow` event (seq = last delivered,
`data.resume_since_seq` the same); the client resumes with `subscribe(since_seq=last_seq)`.
A `since_seq` ahead of the last stored seq is refused (`seq-ahead`), and so is one older than
what retention kept (`seq-pruned`; 0 always means "everything still stored").
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from gateway.errors import InvalidParams, Unavailable
from gateway.store import Event, Store
from gateway.timeutil import now_iso

log = structlog.get_logger(__name__)

OVERFLOW = "events.overflow"
SLICE_SIZE = 200  # subscriber-commits handed on per loop turn (at 30-50 µs each: a 6-10 ms stall)
_ids = itertools.count(1)


def overflow_event(seq: int, reason: str) -> Event:
    """The one shape of `events.overflow`, whoever cuts the subscriber: the bus (`reason`
    "slow-subscriber") or the connection's send queue ("slow-consumer"). `seq` is the last event
    delivered; the client resumes with `events.subscribe {since_seq: resume_since_seq}`."""
    return Event(seq, OVERFLOW, now_iso(), None, {"resume_since_seq": seq, "reason": reason})


class EventBus:
    def __init__(self, store: Store, queue_size: int = 1000, *, page_size: int = 500,
                 slice_size: int = SLICE_SIZE) -> None:
        if queue_size < 1 or page_size < 1 or slice_size < 1:
            raise ValueError("queue_size, page_size and slice_size must be positive")
        self._store = store
        self.queue_size = queue_size
        self.page_size = page_size
        self.slice_size = slice_size
        self._subs: set[Subscription] = set()
        self._closed = False
        # The oldest seq still stored, as retention last found it (0: nothing pruned yet).
        self.oldest_seq = 0
        # Commits not yet handed to the subscribers: those made since the last delivery callback
        # (one or two: the writer makes at most one commit per round trip to its thread).
        self._pending: deque[Sequence[Event]] = deque()
        # The round being handed on: its commits, its subscribers (as when it began), how many of
        # them have had it.
        self._round: list[Sequence[Event]] = []
        self._round_subs: list[Subscription] = []
        self._served = 0
        self._delivery: asyncio.Handle | None = None
        store.add_listener(self._fan_out)

    @property
    def last_seq(self) -> int:
        """The seq of the last stored event."""
        return self._store.committed_seq

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def fan_out_lag(self) -> tuple[int, int | None]:
        """(how many stored events the most lagging subscriber has yet to be handed, the seq it
        waits for: None when every subscriber is up to date) for /metrics."""
        last = self.last_seq
        behind = min((s._last for s in self._subs), default=last)
        return last - behind, (behind + 1 if behind < last else None)

    async def publish(self, type: str, data: dict[str, Any], session_id: str | None = None) -> Event:
        """Store the event (committed on return) and hand it to every live subscriber."""
        return await self._store.append_event(type, session_id, data)

    def subscribe(self, since_seq: int, *, queue_size: int | None = None) -> Subscription:
        """Every stored event with seq > since_seq, then live ones; no gap, no duplicate."""
        if self._closed:
            raise Unavailable("the event bus is closed", reason="shutting-down")
        if since_seq < 0:
            raise ValueError("since_seq must be >= 0")
        if since_seq > self.last_seq:
            # A seq this store never gave (a client of another gateway, or of a database restored
            # from an older backup): refused, since events stored later would be skipped silently.
            raise InvalidParams(f"since_seq {since_seq} is ahead of the last stored event",
                                reason="seq-ahead", details={"since_seq": since_seq,
                                                             "last_seq": self.last_seq})
        if 0 < since_seq < self.oldest_seq - 1:
            # Events after since_seq were pruned (retention): resuming would skip them silently.
            # since_seq 0 asks for everything still stored and is always accepted.
            raise InvalidParams(f"events after {since_seq} were pruned", reason="seq-pruned",
                                details={"since_seq": since_seq, "oldest_seq": self.oldest_seq})
        sub = Subscription(self, int(since_seq), queue_size or self.queue_size)
        self._subs.add(sub)
        return sub

    def close(self) -> None:
        """End every subscription and detach from the store."""
        self._closed = True
        for sub in list(self._subs):
            sub.close()
        self._store.remove_listener(self._fan_out)
        if self._delivery is not None:
            self._delivery.cancel()
            self._delivery = None
        self._pending.clear()
        self._end_round()

    def _detach(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def _fan_out(self, events: Sequence[Event]) -> None:
        """The store's listener: a commit's events, handed on once the tasks it woke have run."""
        self._pending.append(events)
        if self._delivery is None:
            self._delivery = asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        """One slice: the round's commits to the next subscribers of the round (a new round when
        the last one is done); another loop turn for the rest."""
        self._delivery = None
        if self._served >= len(self._round_subs):
            if not self._pending:
                return
            self._round = list(self._pending)
            self._pending.clear()
            self._round_subs = list(self._subs)
            self._served = 0
        commits, subs = self._round, self._round_subs
        end = min(len(subs), self._served + max(1, self.slice_size // len(commits)))
        part = subs[self._served:end]
        for events in commits:  # commit by commit: each subscriber still gets them in order, and
            for sub in part:    # a commit's frames are built once (`events_wire` keeps the last)
                sub._push(events)
        self._served = end
        if end == len(subs):
            self._end_round()
        if end < len(subs) or self._pending:
            # As a timer due now, not call_soon: the loop's next turn runs what its poll found
            # (requests read from sockets) before the next slice, not after it.
            self._delivery = asyncio.get_running_loop().call_later(0, self._deliver)

    def _end_round(self) -> None:
        self._round, self._round_subs, self._served = [], [], 0


class Subscription:
    """Async iterator of `Event`. One consumer at a time; `close()` ends the iteration."""

    def __init__(self, bus: EventBus, since_seq: int, queue_size: int) -> None:
        self.id = next(_ids)
        self._bus = bus
        self._last = since_seq
        self._max = queue_size
        self._queue: deque[Event] = deque()
        self._page: deque[Event] = deque()
        self._live = False
        self._lost = False  # replay mode: the live queue was emptied since the last read began
        self._overflowed = False
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[Event], bool] | None = None
        self._flush: Callable[[], None] | None = None
        self._sink_all: Callable[[Sequence[Event]], bool] | None = None
        self._log = log.bind(subscription=self.id, since_seq=since_seq)

    def set_sink(self, sink: Callable[[Event], bool] | None, flush: Callable[[], None] | None = None,
                 sink_all: Callable[[Sequence[Event]], bool] | None = None) -> None:
        """`sink(event)` takes live events straight from the fan-out, in its turn of the loop,
        while the consumer is parked on an empty queue (everything before handed over): no queue,
        no wake-up. A False from it sends that event and the rest through the queue, as without
        a sink (the consumer then meets them in order and applies its own back-pressure).
        `flush()` is called once after the sink took a commit's events (one write for them all).
        `sink_all(events)`, tried first when a commit's events are exactly the next ones, takes
        all of them or none (False: `sink` one by one, as above)."""
        self._sink, self._flush, self._sink_all = sink, flush, sink_all

    @property
    def last_seq(self) -> int:
        """The seq of the last event delivered (since_seq before the first)."""
        return self._last

    @property
    def live(self) -> bool:
        return self._live

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._detach(self)
            self._queue.clear()
            self._page.clear()
            self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._page:
                ev = self._page.popleft()
                if ev.seq > self._last:
                    self._last = ev.seq
                    return ev
                continue
            if not self._live:
                await self._read_page()
                continue
            if self._queue:
                ev = self._queue.popleft()
                if ev.seq <= self._last:
                    continue
                if ev.seq != self._last + 1:  # cannot happen; heal from the store if it does
                    self._log.error("events.gap_detected", last_seq=self._last, got=ev.seq)
                    self._live, self._lost = False, True
                    self._queue.clear()
                    continue
                self._last = ev.seq
                return ev
            if self._overflowed:
                self.close()
                return overflow_event(self._last, "slow-subscriber")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def _read_page(self) -> None:
        self._lost = False
        size = self._bus.page_size
        page = await self._bus._store.events_after(self._last, size)
        if self._closed:
            return
        self._page.extend(page)
        # A short page has everything committed before the read began; the untouched live
        # queue has everything fanned out since. Together: no gap.
        if len(page) < size and not self._lost:
            self._live = True
            self._drop_covered()
            self._log.debug("events.subscription_live", last_seq=page[-1].seq if page else self._last)

    def _push(self, events: Sequence[Event]) -> None:
        if self._closed or self._overflowed:
            return
        if self._sink is not None and self._parked():
            if (self._sink_all is not None and events and events[0].seq == self._last + 1
                    and events[-1].seq == self._last + len(events) and self._sink_all(events)):
                self._last = events[-1].seq  # the commit's events, in order, no gap: all taken
                return
            try:
                taken = self._sink_some(events)
            finally:
                if self._flush is not None:
                    self._flush()
            events = events[taken:]
            if not events:
                return
        room = self._max - len(self._queue)
        if len(events) > room and self._live:
            room += self._drop_covered()
        if len(events) <= room:
            self._queue.extend(events)
        elif not self._live:
            self._queue.clear()  # the replay will read these from the store
            self._lost = True
            return
        else:
            self._queue.extend(events[:room])
            self._overflowed = True
            self._bus._detach(self)
            self._log.warning("events.subscriber_overflow", queue_size=self._max,
                              delivered_seq=self._last, queued_to=self._queue[-1].seq if self._queue else None)
        self._wake()

    def _parked(self) -> bool:
        """Live, nothing pending, and the consumer waiting for the next event."""
        return (self._live and not self._queue and not self._page and self._waiter is not None
                and not self._waiter.done())

    def _sink_some(self, events: Sequence[Event]) -> int:
        """Hand events to the sink in order until it refuses one; how many were consumed."""
        sink, n = self._sink, 0
        assert sink is not None
        for ev in events:
            if ev.seq > self._last:
                if ev.seq != self._last + 1 or not sink(ev):
                    break  # a gap (healed by the queue path) or no room: the queue takes the rest
                self._last = ev.seq
            n += 1
        return n

    def _drop_covered(self) -> int:
        """Drop queued events already delivered or pending in the replay page; how many."""
        covered = self._page[-1].seq if self._page else self._last
        n = 0
        while self._queue and self._queue[0].seq <= covered:
            self._queue.popleft()
            n += 1
        return n

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
