"""Retention: the periodic pruning of events, audit rows and idempotency keys.

A task owned by the app (started after the store opens, stopped before it closes) runs
`prune_once()` at start and then every `store.prune_interval_s`. Each table is pruned in small
deletes through the store's one writer, so a large first prune never holds the writer for long:

- events: the boundary is the first event newer than the cutoff, found by a binary search over
  seqs (a read per step, no scan); seqs below it are deleted in chunks. Seqs are never reused
  (SQLite AUTOINCREMENT keeps its high-water mark), and the event bus learns the oldest kept seq
  so a subscription from before it is refused (`seq-pruned`), not silently cut short;
- audit: rows older than the cutoff, oldest first, in chunks (indexed by time);
- idempotency keys: those stored before their cutoff;
- SMS receipts and inbound messages (`sms_receipts`, `sms_inbound`): with the events, by the
  time they were received (their events go with them);
- terminals' positions (`terminal_track`): with the events, by the time they were received;
- terminal instructions and their deliveries (`terminal_instructions`): with the events, by the
  time they were given, unless a terminal has yet to receive one (it still gets it on return);
- video recordings (`<video.recordings_dir>/<stream_id>.webm|.mkv`): with the events (their
  `video.recording` event goes then), by the file's time; a live stream's directory is left alone;
- the indicators' own facts (gateway/kpi/prune.py): with the events, keeping what a window after
  the cut-off still needs (the state each part was in at the cut-off, the end of the last run
  before a gap across it, maintenance windows across it), so its figures do not change;
- uploads (gateway/uploads/service.py `prune`): the references of feedback go with the events;
  then uploads no reference holds, older than `uploads.orphan_keep_s`, and their files.

`0` days keeps a table forever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from typing import TYPE_CHECKING

from gateway.events import EventBus
from gateway.kpi import prune as kpi_prune
from gateway.store import Store
from gateway.store.terminals import prune_instructions
from video.recording import RECORDING_RE

if TYPE_CHECKING:  # pragma: no cover
    from gateway.uploads import UploadService

log = structlog.get_logger(__name__)

CHUNK = 10_000
DAY_S = 86_400


@dataclass(frozen=True)
class RetentionPolicy:
    events_keep_days: int = 400
    audit_keep_days: int = 400
    idempotency_keep_days: int = 30
    prune_interval_s: float = 3600.0

    @classmethod
    def from_config(cls, store_config) -> RetentionPolicy:  # gateway.config.StoreConfig
        return cls(store_config.events_keep_days, store_config.audit_keep_days,
                   store_config.idempotency_keep_days, store_config.prune_interval_s)


def iso(t: dt.datetime) -> str:
    """`t` in the store's time format (see gateway.timeutil.now_iso)."""
    t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Retention:
    def __init__(self, store: Store, bus: EventBus, policy: RetentionPolicy,
                 clock: Callable[[], dt.datetime] = _utc_now, uploads: UploadService | None = None,
                 recordings_dir: Path | None = None) -> None:
        self._store, self._bus, self.policy, self.clock = store, bus, policy, clock
        self.uploads = uploads
        self.recordings_dir = recordings_dir
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention.failed")
            await asyncio.sleep(self.policy.prune_interval_s)

    def _cutoff(self, days: int) -> str | None:
        return iso(self.clock() - dt.timedelta(days=days)) if days > 0 else None

    async def prune_once(self) -> dict[str, int]:
        """Prune every table once; the number of rows deleted per table."""
        p = self.policy
        counts = {"events": 0, "audit": 0, "idempotency": 0, "sms_reports": 0, "terminal_track": 0,
                  "terminal_instructions": 0, "kpi": 0, "video_recordings": 0}
        cutoff = self._cutoff(p.events_keep_days)
        if cutoff is not None:
            counts["events"] = await self._prune_events(cutoff)
            for table, prune in (("sms_reports", self._store.prune_sms_reports),
                                 ("terminal_track", self._store.prune_track),
                                 ("terminal_instructions", self._prune_instructions),
                                 ("kpi", self._prune_kpi)):
                while (n := await prune(cutoff, CHUNK)) > 0:
                    counts[table] += n
                    if n < CHUNK:
                        break
            if self.recordings_dir is not None:
                before = (self.clock() - dt.timedelta(days=p.events_keep_days)).timestamp()
                counts["video_recordings"] = await asyncio.to_thread(
                    prune_recordings, self.recordings_dir, before)
        cutoff = self._cutoff(p.audit_keep_days)
        if cutoff is not None:
            while (n := await self._store.prune_audit(cutoff, CHUNK)) > 0:
                counts["audit"] += n
                if n < CHUNK:
                    break
        cutoff = self._cutoff(p.idempotency_keep_days)
        if cutoff is not None:
            counts["idempotency"] = await self._store.prune_idempotency(cutoff)
        if self.uploads is not None:
            counts.update(await self.uploads.prune(self._cutoff(p.events_keep_days), self.clock()))
        oldest = await self._oldest_kept()
        self._bus.oldest_seq = oldest
        log.info("retention.pruned", oldest_seq=oldest, **counts)
        return counts

    async def _prune_instructions(self, cutoff: str, limit: int) -> int:
        return await prune_instructions(self._store, cutoff, limit)

    async def _prune_kpi(self, cutoff: str, limit: int) -> int:
        return await kpi_prune.prune(self._store, cutoff, limit)

    async def _first_after(self, seq: int) -> tuple[int, str] | None:
        page = await self._store.events_after(seq, 1)
        return (page[0].seq, page[0].time) if page else None

    async def _oldest_kept(self) -> int:
        first = await self._first_after(0)
        return first[0] if first else self._store.committed_seq + 1

    async def _prune_events(self, cutoff: str) -> int:
        """Delete the events stored before `cutoff`; how many seqs were cut."""
        first = await self._first_after(0)
        if first is None or first[1] >= cutoff:
            return 0
        # The smallest s whose next event is new enough (or absent): times grow with seqs.
        lo, hi = first[0], self._store.committed_seq
        while lo < hi:
            mid = (lo + hi) // 2
            nxt = await self._first_after(mid)
            if nxt is None or nxt[1] >= cutoff:
                hi = mid
            else:
                lo = mid + 1
        nxt = await self._first_after(lo)
        boundary = nxt[0] if nxt is not None else self._store.committed_seq + 1
        deleted = 0
        for before in [*range(first[0] + CHUNK, boundary, CHUNK), boundary]:
            deleted += await self._store.prune_events(before)
        return deleted


def prune_recordings(recordings_dir: Path, before: float) -> int:
    """Delete the finished recordings in `recordings_dir` last written before `before` (epoch
    seconds); how many. Runs in a thread (a directory scan and unlinks)."""
    deleted = 0
    if not recordings_dir.is_dir():
        return 0
    for path in recordings_dir.iterdir():
        if not RECORDING_RE.match(path.name) or not path.is_file():
            continue
        try:
            if path.stat().st_mtime < before:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            continue
    if deleted:
        log.info("retention.recordings_pruned", dir=str(recordings_dir), files=deleted)
    return deleted
