"""Rate limit of live-location events, sans I/O: at most one per terminal per interval, and the
newest position never dropped.

`offer(key, fix_time, item, now)` says what to do with a new position:
- `PUBLISH`: nothing published for this key within the interval: publish it now;
- `DEFERRED`: too soon; it is kept as the key's pending item (replacing an older pending one:
  coalesced) and `due(now)` hands it out at last publish + interval (a trailing publish);
- `STALE`: older (by its fix time) than what was published or is pending: not published live
  (it is still stored in the track).
`due(now)` returns the pending items whose time came, each with how many it stands for, oldest
first. The pending slots are also kept in a heap by the time they are due, so `next_due` and
`due` cost what is due, not a look at every terminal (the service asks on every deferred report).
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any


class Offer(enum.Enum):
    PUBLISH = "publish"
    DEFERRED = "deferred"
    STALE = "stale"


@dataclass
class _Slot:
    last_publish: float  # monotonic
    last_time: float  # fix time (epoch) of the newest published or pending item
    pending: Any = None
    coalesced: int = 0  # items the pending one replaced


class LocationGate:
    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.interval_s = interval_s
        self._slots: dict[Hashable, _Slot] = {}
        self._due: list[tuple[float, int, Hashable]] = []  # (due time, tie-break, key): the pending slots
        self._order = itertools.count()

    def offer(self, key: Hashable, fix_time: float, item: Any, now: float) -> Offer:
        slot = self._slots.get(key)
        if slot is None:
            self._slots[key] = _Slot(now, fix_time)
            return Offer.PUBLISH
        if fix_time < slot.last_time:
            return Offer.STALE
        slot.last_time = fix_time
        if slot.pending is None and now - slot.last_publish >= self.interval_s:
            slot.last_publish = now
            return Offer.PUBLISH
        if slot.pending is not None:
            slot.coalesced += 1
        else:
            heapq.heappush(self._due, (slot.last_publish + self.interval_s, next(self._order), key))
        slot.pending = item
        return Offer.DEFERRED

    def due(self, now: float) -> list[tuple[Hashable, Any, int]]:
        """(key, item, coalesced) for each pending item whose interval has passed."""
        out = []
        while self._due:
            key = self._due[0][2]
            slot = self._slots[key]
            if slot.pending is not None and now - slot.last_publish < self.interval_s:
                break  # the earliest pending one is not due yet
            heapq.heappop(self._due)
            if slot.pending is not None:
                out.append((key, slot.pending, slot.coalesced))
                slot.pending, slot.coalesced, slot.last_publish = None, 0, now
        return out

    def flush(self) -> list[tuple[Hashable, Any, int]]:
        """Every pending item at once (the gateway stops: the newest position is not lost)."""
        out = [(k, s.pending, s.coalesced) for k, s in self._slots.items() if s.pending is not None]
        for s in self._slots.values():
            s.pending, s.coalesced = None, 0
        self._due.clear()
        return out

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None
