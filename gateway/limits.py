"""Limits at the listeners, sans I/O: live connections per source and overall, a reserve for health
probes when those are spent, a token bucket per source for failed authentication, a request
budget per principal sized by its role, and a log line at most once per interval (accept errors).

Callers pass the time (`now`, monotonic seconds), so the rules are tested without sockets or clocks.
"""

from __future__ import annotations

import asyncio
import collections
import time
import types
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator, Mapping

import structlog

log = structlog.get_logger("gateway.limits")


class ConnectionLimits:
    """Live connections per source and overall. `admit` takes a slot or says no; `release` gives
    it back. A caller that cannot be sure to release (a handshake that fails after admission)
    passes `alive` to `admit`, and slots whose key is no longer alive are reclaimed when full."""

    def __init__(self, total: int, per_source: int) -> None:
        self.total, self.per_source = total, per_source
        self._by_source: dict[str, set[Hashable]] = collections.defaultdict(set)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def admit(self, source: str, key: Hashable, alive: Callable[[Hashable], bool] | None = None) -> bool:
        if alive is not None and (self._count >= self.total
                                  or len(self._by_source.get(source, ())) >= self.per_source):
            self._reclaim(alive)
        if self._count >= self.total or len(self._by_source.get(source, ())) >= self.per_source:
            return False
        self._by_source[source].add(key)
        self._count += 1
        return True

    def release(self, source: str, key: Hashable) -> None:
        keys = self._by_source.get(source)
        if keys is None or key not in keys:
            return
        keys.discard(key)
        self._count -= 1
        if not keys:
            del self._by_source[source]

    def _reclaim(self, alive: Callable[[Hashable], bool]) -> None:
        for source, keys in list(self._by_source.items()):
            for key in [k for k in keys if not alive(k)]:
                self.release(source, key)


class ProbeReserve:
    """A few slots kept apart for health probes, used when a listener's `ConnectionLimits` say no.
    A connection holds one while it shows its first request line (the caller answers a health
    request there and refuses anything else). When all are taken, the one waiting longest gives
    way: `admit` returns it for the caller to drop, so idle connections cannot hold the reserve.
    One already being answered is not given away."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._waiting: collections.OrderedDict[Hashable, None] = collections.OrderedDict()
        self._answering: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._answering)

    def __iter__(self) -> Iterator[Hashable]:
        return iter([*self._waiting, *self._answering])

    def admit(self, key: Hashable) -> tuple[bool, Hashable | None]:
        """(admitted?, the key that gave way for it, if any)."""
        evicted = None
        if len(self) >= self.size:
            if not self._waiting:
                return False, None
            evicted, _ = self._waiting.popitem(last=False)
        self._waiting[key] = None
        return True, evicted

    def answering(self, key: Hashable) -> None:
        if key in self._waiting:
            del self._waiting[key]
            self._answering.add(key)

    def release(self, key: Hashable) -> None:
        self._waiting.pop(key, None)
        self._answering.discard(key)


class FailureThrottle:
    """A token bucket per source, spent by failures: `burst` failures, then one more every
    1/`per_s` seconds. `retry_after(source, now)` is 0 while the source may try again. At most
    `max_sources` buckets are kept (the oldest forgotten first)."""

    def __init__(self, burst: int, per_s: float, max_sources: int = 10_000) -> None:
        self.burst, self.per_s, self.max_sources = burst, per_s, max_sources
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def _level(self, source: str, now: float) -> float:
        tokens, at = self._buckets.get(source, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_s)

    def retry_after(self, source: str, now: float) -> float:
        level = self._level(source, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.per_s

    def failed(self, source: str, now: float) -> None:
        self._buckets[source] = (max(0.0, self._level(source, now) - 1.0), now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)

    def take(self, source: str, now: float) -> float:
        """Spend a token if there is one (0.0); else how long until there is (nothing spent)."""
        wait = self.retry_after(source, now)
        if wait == 0.0:
            self.failed(source, now)
        return wait


@dataclass(frozen=True)
class RequestBudget:
    """A role's request rate: `burst` requests at once, refilled at `rate` per second."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 < self.rate <= 1_000_000:
            raise ValueError(f"rate must be a number of requests per second > 0, got {self.rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or not 1 <= self.burst <= 1_000_000:
            raise ValueError(f"burst must be an integer 1..1000000, got {self.burst!r}")


# Generous for the consoles, tight for the roles a field device or a wall display holds.
DEFAULT_REQUEST_BUDGETS: Mapping[str, RequestBudget] = types.MappingProxyType({
    "dispatcher": RequestBudget(rate=200, burst=1000),
    "admin": RequestBudget(rate=200, burst=1000),
    "observer": RequestBudget(rate=20, burst=100),
    "terminal": RequestBudget(rate=5, burst=30),
})


class RequestBudgets:
    """A token bucket per principal, sized by its role (`budgets`; a role without one is not
    limited). `take(role, principal, now)` is 0.0 when the request may run, else the seconds to
    wait. `refused` counts the refusals by role: the only trace a flood leaves (bounded)."""

    def __init__(self, budgets: Mapping[str, RequestBudget], max_principals: int = 10_000) -> None:
        self._buckets = {role: FailureThrottle(b.burst, b.rate, max_principals) for role, b in budgets.items()}
        self.refused: collections.Counter[str] = collections.Counter()

    def take(self, role: str, principal: str, now: float) -> float:
        buckets = self._buckets.get(role)
        if buckets is None:
            return 0.0
        wait = buckets.take(principal, now)
        if wait > 0:
            self.refused[role] += 1
        return wait


class EveryInterval:
    """Says yes at most once per `interval_s`, and counts the times it said no in between."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: float | None = None
        self.suppressed = 0

    def due(self, now: float | None = None) -> tuple[bool, int]:
        """(log now?, how many were suppressed since the last one logged)."""
        now = time.monotonic() if now is None else now
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return False, 0
        self._last, skipped, self.suppressed = now, self.suppressed, 0
        return True, skipped


ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message (EMFILE, ENFILE, ...)


def throttle_accept_errors(loop: asyncio.AbstractEventLoop, interval_s: float = 60.0) -> None:
    """Every listener on `loop` logs a failed accept (out of file descriptors) at most once per
    `interval_s`, with the count suppressed; asyncio itself retries the accept a second later.
    Other exceptions go to the handler that was there before."""
    previous = loop.get_exception_handler()
    if getattr(previous, "throttles_accept_errors", False):
        return  # already in place (a second gateway on this loop, in tests)
    gate = EveryInterval(interval_s)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAILED:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        due, skipped = gate.due()
        if due:
            log.error("listener.accept-failed", error=repr(context.get("exception")), suppressed=skipped)

    handler.throttles_accept_errors = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
