"""Commands that run to their end: owned by the control server, not by the connection that sent
them, and their results kept under idempotency keys scoped by (principal, method, key).

`CommandRunner.start()` runs a command in a task of its own: the connection only waits for the
reply (`asyncio.shield`), so a lost connection cancels the wait, never the command. `finish()`
(on stop) lets the running ones end within a grace period, then cancels the rest.
`idempotent()` gives a repeat of the same (principal, method, key) the first result, running
nothing, even while the first still runs.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import structlog

from gateway.errors import Unavailable

log = structlog.get_logger("gateway.commands")


class IdempotencyStore(Protocol):
    """What `gateway.store.Store` provides: results of starts_work requests by
    (principal, method, key)."""

    async def idempotency_get(self, principal: str, key: str, method: str) -> dict | None: ...
    async def idempotency_put(self, principal: str, key: str, method: str, result: dict) -> Any: ...


class MemoryIdempotencyStore:
    """Bounded in-memory store (tests, or no database): oldest keys forgotten first."""

    def __init__(self, limit: int = 10_000) -> None:
        self._data: collections.OrderedDict[tuple[str, str, str], dict] = collections.OrderedDict()
        self._limit = limit

    async def idempotency_get(self, principal: str, key: str, method: str) -> dict | None:
        return self._data.get((principal, method, key))

    async def idempotency_put(self, principal: str, key: str, method: str, result: dict) -> None:
        self._data.setdefault((principal, method, key), result)
        while len(self._data) > self._limit:
            self._data.popitem(last=False)


class CommandRunner:
    def __init__(self, store: IdempotencyStore, *, max_running: int, grace_s: float) -> None:
        self.store = store
        self.max_running = max_running
        self.grace_s = grace_s
        self._running: set[asyncio.Task[Any]] = set()
        self._inflight: dict[tuple[str, str, str], asyncio.Future[dict]] = {}

    @property
    def full(self) -> bool:
        return len(self._running) >= self.max_running

    def start(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def finish(self) -> None:
        """Started commands end (within `grace_s`), so the services behind them stop with
        nothing half-done; what is still running then is cancelled."""
        if not self._running:
            return
        _, late = await asyncio.wait(set(self._running), timeout=self.grace_s)
        for t in late:
            t.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        log.info("control.commands.finished", cancelled=len(late))

    async def idempotent(self, principal: str, key: str, method: str,
                         run: Callable[[], Awaitable[dict]]) -> dict:
        """First result for (principal, method, key): a repeat, even a concurrent one, runs
        nothing. The same key on another method is another request. Failures are not kept."""
        k = (principal, method, key)
        pending = self._inflight.get(k)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._inflight[k] = fut
        try:
            stored = await self.store.idempotency_get(principal, key, method)
            if stored is not None:
                result = stored
            else:
                result = await run()
                if isinstance(result, dict):
                    await self.store.idempotency_put(principal, key, method, result)
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else Unavailable("interrupted"))
            fut.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._inflight[k]
