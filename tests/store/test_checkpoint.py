"""WAL checkpoints run beside the writer, not inside its commits (gateway/store/checkpoint.py).

Before, SQLite checkpointed in the commit that took the WAL past 1,000 pages, in the writer's
thread: that commit took 15-22 ms instead of 1-3 and every write queued behind it waited (every
~2 s at 200 control requests a second). Observed through the WAL file: a commit that checkpoints
resets the WAL, so its file stops growing at ~1,000 pages; with checkpoints elsewhere it grows
until the checkpointer has run, then the next write starts it again from the top."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gateway.store import Store

PAGE = 4096
AUTO_MARK = 1000 * PAGE  # SQLite's default wal_autocheckpoint, in bytes of WAL


async def write_pages(store: Store, pages: int) -> None:
    """About `pages` pages of WAL, in commits of ~10 pages (an event of ~3.5 KB each)."""
    blob = "x" * 3500
    for i in range(0, pages, 10):
        await asyncio.gather(*(store.append_event("t", None, {"i": i + k, "pad": blob}) for k in range(10)))


def wal_size(db: Path) -> int:
    return os.path.getsize(f"{db}-wal")


async def test_the_writer_s_commits_never_checkpoint(db_path: Path) -> None:
    store = Store(db_path, checkpoint_interval_s=3600)  # the checkpointer does not run here
    await store.open()
    try:
        await write_pages(store, 1500)
        assert wal_size(db_path) > 1.3 * AUTO_MARK  # before: reset by a commit at ~1,000 pages
        assert store.checkpointer is not None and store.checkpointer.runs == 0
    finally:
        await store.close()
    assert not os.path.exists(f"{db_path}-wal")  # the last connection's close checkpointed it


async def test_the_checkpointer_copies_the_wal_and_the_next_write_restarts_it(db_path: Path) -> None:
    store = Store(db_path, checkpoint_interval_s=0.01)
    await store.open()
    try:
        await write_pages(store, 300)
        ckpt = store.checkpointer
        assert ckpt is not None
        runs = ckpt.runs
        async with asyncio.timeout(10):  # the task runs on its own, every interval
            while ckpt.runs < runs + 2:
                await asyncio.sleep(0.01)
        busy, frames, done = await ckpt.checkpoint()
        assert busy == 0 and done == frames  # everything copied into the database file
        size = wal_size(db_path)
        await write_pages(store, 100)
        assert wal_size(db_path) == size  # written again from the WAL's top, not appended
        assert len(await store.events_after(0, 1000)) == 400
    finally:
        await store.close()


async def test_a_checkpoint_failing_for_a_while_is_logged_once_a_minute_then_its_recovery(db_path: Path) -> None:
    """A checkpoint that fails at every try (its connection gone; a full disk alike) logs one
    error with the count, not one a second; the first success after says so."""
    import aiosqlite
    from structlog.testing import capture_logs

    from gateway.store.checkpoint import Checkpointer

    store = Store(db_path, checkpoint_interval_s=3600)
    await store.open()
    cp = Checkpointer(str(db_path), busy_timeout_ms=1000, interval_s=0.01)
    await cp.start()
    try:
        assert cp._conn is not None
        with capture_logs() as logs:
            await cp._conn.close()  # every checkpoint now fails
            async with asyncio.timeout(10):
                while cp.failing < 30:
                    await asyncio.sleep(0.01)
            failed = [e for e in logs if e["event"] == "store.checkpoint_failed"]
            assert len(failed) == 1 and failed[0]["failing"] == 1, failed
            cp._conn = await aiosqlite.connect(str(db_path))  # the cause goes away
            async with asyncio.timeout(10):
                while cp.failing:
                    await asyncio.sleep(0.01)
            recovered = [e for e in logs if e["event"] == "store.checkpoint_recovered"]
            assert len(recovered) == 1 and recovered[0]["failed"] >= 30, recovered
    finally:
        await cp.stop()
        await store.close()
