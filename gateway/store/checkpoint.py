"""WAL checkpoints off the writer's path: a connection and a task of their own.

SQLite checkpoints a WAL database itself (`wal_autocheckpoint`, 1,000 pages) inside the commit
that crosses the mark, in the committing connection: for the store, in the one writer's thread,
so that commit (copying the WAL's pages into the database file and syncing both) took 15-22 ms
instead of 1-3, every ~2 s at 200 control requests a second, and every write queued behind it
waited for it (their replies too: an audit row is a write; docs/benchmarks.md, issue 13 session
20). The writer turns that off (`PRAGMA wal_autocheckpoint=0`) and this task runs a PASSIVE
checkpoint every `interval_s` on its own connection (its own thread): it copies what it can
without waiting for readers or writers, and the writer keeps committing meanwhile; the WAL is
reset by the next write after a complete one, as before. Closing the store's last connection
checkpoints what is left (SQLite does it on close).
"""

from __future__ import annotations

import asyncio

import aiosqlite
import structlog

from gateway.limits import EveryInterval

log = structlog.get_logger("gateway.store")

INTERVAL_S = 1.0
FAILED_LOG_EVERY_S = 60.0  # a checkpoint failing for a while (disk full) is logged this often, not every try


class Checkpointer:
    def __init__(self, path: str, busy_timeout_ms: int, interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self.runs = 0  # checkpoints done
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.failing = 0  # checkpoints failed in a row
        self._failed_log = EveryInterval(FAILED_LOG_EVERY_S)

    async def start(self) -> None:
        self._conn = await aiosqlite.connect(self.path)
        await self._conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        self._task = asyncio.create_task(self._run(), name="store-checkpoint")

    async def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint now: (busy, frames in the WAL, frames checkpointed)."""
        assert self._conn is not None
        rows = await self._conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        self.runs += 1
        busy, frames, done = rows[0]
        return int(busy), int(frames), int(done)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.checkpoint()
            except Exception as exc:  # a failed checkpoint leaves the WAL longer; the next one tries again
                self.failing += 1
                due, skipped = self._failed_log.due()
                if due:
                    log.error("store.checkpoint_failed", path=self.path, error=repr(exc),
                              failing=self.failing, suppressed=skipped, exc_info=self.failing == 1)
                continue
            if self.failing:
                log.info("store.checkpoint_recovered", path=self.path, failed=self.failing)
                self.failing = 0
                self._failed_log = EveryInterval(FAILED_LOG_EVERY_S)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
