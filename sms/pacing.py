"""When each queued message is marked `sending` and when it goes to the provider (sans-I/O).

A message goes through two steps before the provider call: it is *prepared* (marked `sending` in
the store, durably, which takes a commit) and then *sent* when its sender's token bucket
(`sms.rate_per_s`, `sms.burst`) and the in-flight limit allow. Preparing runs ahead of the tokens,
up to `window` messages, so a slow commit does not cost sending time; the token is taken at the
moment of the call, so a stalled commit never makes a burst larger than the bucket allows.

    pacer = Pacer(SenderRates(rate, burst), window=in_flight)
    pacer.push("m1", "+1500...", at=0.0)          # queued, due at `at` (wall clock)
    for message_id in pacer.to_prepare(now):       # mark them sending (one unit), then for each:
        pacer.prepared("m1", "+1500...")           #   ready to go (or pacer.dropped(): not started)
    for message_id in pacer.to_send(mono):         # a token and a call slot each: call the provider
        ...; pacer.done()                          # the call is over
    pacer.wait(now, mono)                          # seconds until more can happen (None: when woken)

Wall-clock `now` decides what is due (retry backoffs are stored as epoch seconds); monotonic `mono`
feeds the buckets. Everything is passed in: tests drive it with a fake clock.
"""

from __future__ import annotations

import collections
import heapq

from sms.outbox import SenderRates


class Pacer:
    def __init__(self, rates: SenderRates, window: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.rates = rates
        self.window = window  # prepared and not yet sent, and calls in flight: at most this many each
        self._due: dict[str, list[tuple[float, str]]] = {}  # sender -> heap of (at, message_id)
        self._ready: dict[str, collections.deque[str]] = {}  # sender -> prepared, in order
        self.queued = 0
        self.preparing = 0
        self.ready = 0
        self.calls = 0

    def push(self, message_id: str, sender: str, at: float) -> None:
        """A queued message, due at `at` (wall clock)."""
        heapq.heappush(self._due.setdefault(sender, []), (at, message_id))
        self.queued += 1

    def to_prepare(self, now: float) -> list[tuple[str, str]]:
        """(message_id, sender) of the due messages to mark `sending` now: as many as the window
        has room for, earliest first within each sender."""
        room = self.window - self.preparing - self.ready
        out: list[tuple[str, str]] = []
        for sender in list(self._due):
            heap = self._due[sender]
            while heap and len(out) < room and heap[0][0] <= now:
                out.append((heapq.heappop(heap)[1], sender))
            if not heap:
                del self._due[sender]
        self.queued -= len(out)
        self.preparing += len(out)
        return out

    def prepared(self, message_id: str, sender: str) -> None:
        """Marked `sending`: it goes when its sender has a token."""
        self.preparing -= 1
        self.ready += 1
        self._ready.setdefault(sender, collections.deque()).append(message_id)

    def dropped(self) -> None:
        """A message handed out by `to_prepare` was not started (gone, or pushed back)."""
        self.preparing -= 1

    def to_send(self, mono: float) -> list[tuple[str, str]]:
        """(message_id, sender) of the prepared messages that go now: a token each from their
        sender's bucket and a free call slot. A caller that woke late takes the tokens saved in
        the meantime (up to the burst) at once."""
        out: list[tuple[str, str]] = []
        for sender in list(self._ready):
            ready = self._ready[sender]
            while ready and self.calls + len(out) < self.window and self.rates.try_take(sender, mono):
                out.append((ready.popleft(), sender))
            if not ready:
                del self._ready[sender]
        self.ready -= len(out)
        self.calls += len(out)
        return out

    def done(self) -> None:
        """A provider call is over (whatever its outcome)."""
        self.calls -= 1

    def wait(self, now: float, mono: float) -> float | None:
        """Seconds until `to_prepare` or `to_send` may hand out more; None when only a `prepared`,
        `done` or `push` can change that (the caller waits to be woken)."""
        waits: list[float] = []
        if self.preparing + self.ready < self.window:
            waits += [max(0.0, heap[0][0] - now) for heap in self._due.values() if heap]
        if self.calls < self.window:
            waits += [max(0.0, self.rates.next_send_at(sender, mono) - mono) for sender in self._ready]
        return min(waits) if waits else None
