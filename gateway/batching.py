"""One write for many callers: what arrives while a batch is being written goes in the next one.

    batcher = Batcher(write_all, name="sms.receipts")   # write_all(items) -> one result per item
    result = await batcher.submit(item)                 # returns once its batch is written

At most one `write_all` runs at a time (one owned task); the items that arrived meanwhile are
written together by the next call, at most `max_items` at once. So under load the number of writes
(store transactions, units of work) is one per tick, not one per caller, and when idle an item is
written at once (no timer, no added delay). A batch that raises is written again item by item, so
one bad item fails only its own caller. The pending list is bounded by the callers (each caller
holds one slot of its own limit: `sms.in_flight`, `sms.intake_limit`), and `submit` refuses beyond
`max_pending` as a last guard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import structlog

from gateway.errors import Unavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(self, write_all: Callable[[list[T]], Awaitable[Sequence[R]]], *, name: str,
                 max_items: int = 500, max_pending: int = 100_000) -> None:
        self._write_all = write_all
        self.name = name
        self.max_items = max_items
        self.max_pending = max_pending
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # write_all calls so far (tests count them)

    async def submit(self, item: T) -> R:
        """Write `item` with whatever else is pending; its result once written. A caller cancelled
        while it waits does not take its item back: it is written all the same."""
        return await asyncio.shield(self.put(item))

    def put(self, item: T) -> asyncio.Future[R]:
        """`submit` without the wait: the future of `item`'s result, set once its batch is written
        (the batcher owns the write; cancelling the future does not take the item back)."""
        if len(self._pending) >= self.max_pending:
            raise Unavailable(f"{self.name}: too many writes pending", reason="overloaded",
                              details={"pending": len(self._pending)})
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, fut))
        if self._task is None:
            self._task = loop.create_task(self._run(), name=self.name)
        return fut

    async def drain(self) -> None:
        """Until every pending item is written (at stop)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self.max_items], self._pending[self.max_items:]
                await self._write(batch)
        finally:
            self._task = None
            for _, fut in self._pending:  # only when cancelled: nobody is left to write them
                if not fut.done():
                    fut.set_exception(Unavailable(f"{self.name}: stopped", reason="shutting-down"))
            self._pending = []

    async def _write(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        try:
            results = await self._write_all([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - each item alone, so one bad item fails alone
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            log.warning("batch.split", name=self.name, items=len(batch), error=repr(exc))
            for one in batch:
                await self._write([one])
            return
        except BaseException as exc:
            for _, fut in batch:
                _settle(fut, exc=Unavailable(f"{self.name}: stopped", reason="shutting-down"))
            raise exc
        for (_, fut), result in zip(batch, results, strict=True):
            _settle(fut, result=result)


def _settle(fut: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
