"""Chain heads recorded outside the store: the log (`audit.chain_head`) and an append-only file.

A head is the last audit row's id and hash at a moment. Rows deleted from the end of the table, or
a chain rewritten from some row on, still verify row by row; a head recorded earlier does not
match them (`gateway/audit/chain.py` `verify`). So the gateway writes the head, when it has moved,
every `audit.head_interval_s` and once more when it stops: a structlog event (shipped off the
machine with the logs) and a JSON line appended to `audit.heads_file` and fsynced
(`{"time", "id", "hash"}`). `dispatch-gateway audit verify` reads that file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from gateway.timeutil import now_iso

from .chain import Head

log = structlog.get_logger("gateway.audit")


def append_head(path: Path, head: Head) -> None:
    """Append one head as a JSON line and fsync it (blocking: run it in a thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": head.time, "id": head.id, "hash": head.hash}, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_heads(path: Path) -> list[Head]:
    """Every head in the file (none if it does not exist). A line that is not a head (a write cut
    short by a crash) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return _parse(text.splitlines())


def _parse(lines: list[str]) -> list[Head]:
    heads = []
    for line in lines:
        try:
            d = json.loads(line)
            heads.append(Head(int(d["id"]), str(d["hash"]), str(d.get("time", ""))))
        except (ValueError, KeyError, TypeError):
            continue
    return heads


def last_head(path: Path) -> Head | None:
    """The file's last head, reading only its end (the file grows by a line a minute at most)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    heads = _parse(tail.splitlines())  # a first line cut by the seek is no JSON: skipped
    return heads[-1] if heads else None


class ChainHeads:
    """The task that records the head (owned by the app: `start` after the store opens, `stop`
    before it closes; `stop` records the last head)."""

    def __init__(self, read_head: Callable[[], Awaitable[Head | None]], path: Path | None,
                 interval_s: float) -> None:
        self._read_head, self.path, self.interval_s = read_head, path, interval_s
        self._last: Head | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.path is not None:
            self._last = await asyncio.to_thread(last_head, self.path)
        self._task = asyncio.create_task(self._run(), name="audit-chain-heads")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            await self.record()

    async def record(self) -> Head | None:
        """Record the head now if it moved since the last one recorded; the head recorded."""
        head = await self._read_head()
        if head is None or (self._last is not None and (head.id, head.hash) == (self._last.id, self._last.hash)):
            return None
        head = Head(head.id, head.hash, now_iso())
        if self.path is not None:
            await asyncio.to_thread(append_head, self.path, head)
        self._last = head
        log.info("audit.chain_head", id=head.id, hash=head.hash, at=head.time)
        return head

    async def _run(self) -> None:
        while True:
            try:
                await self.record()
            except Exception:  # a full disk, a closed store: try again at the next interval
                log.exception("audit.chain_head_failed")
            await asyncio.sleep(self.interval_s)
