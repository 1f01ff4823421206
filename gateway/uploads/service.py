"""Uploads: photos and short audio clips received over the http port, stored once by SHA-256.

`receive` takes one upload as an async stream of chunks: the declared type must be one the
gateway takes and agree with the first bytes (gateway/uploads/sniff.py); the bytes go to a temp
file, hashed as they are written, at most `uploads.max_bytes` of them, all within
`uploads.body_timeout_s`; at most `uploads.max_concurrent` uploads at once (one more is refused
at once, never queued). Only a complete, checked upload is renamed under its hash and recorded
(`uploads` row: hash, principal, type, size); a refused or broken one leaves nothing behind.

Who may read one (`open_for`): the principal that uploaded it, and once feedback refers to it
(it is part of an incident), every role that reads incidents (dispatcher, observer, admin).

Retention (`prune`, called by gateway/retention.py): references go with their incident's
events (`store.events_keep_days`); an upload no reference holds is an orphan and its row goes
after `uploads.orphan_keep_s`; a file with no row left (or none ever: a gateway killed between
the rename and the row) is removed. A per-hash lock orders that removal against a new upload of
the same bytes, so a file is never removed under a row that was just written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.config_schema import UploadsConfig
from gateway.errors import Forbidden, GatewayError, NotFound
from gateway.protocol import Principal
from gateway.protocol.methods import ADMIN, DISPATCHER, READ, TERMINAL
from gateway.store import Store
from gateway.timeutil import epoch_to_iso

from . import sniff
from .blobs import SHA256_RE, BlobStore, TempBlob

log = structlog.get_logger(__name__)

WRITE_BATCH = 256 * 1024  # bytes gathered before one write in a thread
UPLOADERS = frozenset({TERMINAL, DISPATCHER, ADMIN})


class UploadRefused(GatewayError):
    """An upload the gateway does not take; `status` is the HTTP status it is answered with."""

    status, reason = 400, "bad-upload"


class TooLarge(UploadRefused):
    status, reason = 413, "too-large"


class UnsupportedType(UploadRefused):
    status, reason = 415, "unsupported-type"


class TypeMismatch(UploadRefused):
    status, reason = 415, "type-mismatch"


class Incomplete(UploadRefused):
    """The body ended before its declared length, or the connection was lost."""

    status, reason = 400, "incomplete-upload"


class BodyTimeout(UploadRefused):
    status, reason = 408, "body-timeout"


class Busy(UploadRefused):
    status, reason = 503, "busy"


class StorageFull(UploadRefused):
    status, reason = 507, "storage-full"


class QuotaExceeded(UploadRefused):
    status, reason = 507, "quota-exceeded"


def upload_url(sha256: str) -> str:
    """Where an upload is downloaded (on the http port)."""
    return f"/v1/uploads/{sha256}"


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int
    type: str
    new: bool  # False: this principal uploaded the same bytes before (never says whether others did)

    def public(self) -> dict[str, Any]:
        return {"upload_id": self.sha256, "sha256": self.sha256, "size": self.size, "type": self.type,
                "url": upload_url(self.sha256)}


@dataclass(frozen=True)
class Readable:
    path: Path
    type: str
    size: int


class UploadService:
    def __init__(self, store: Store, config: UploadsConfig, root: str | Path,
                 is_terminal: Callable[[str], bool]) -> None:
        self._store, self.config = store, config
        self.blobs = BlobStore(root)
        self._is_terminal = is_terminal  # a terminal principal must be one of the directory
        self._slots = asyncio.Semaphore(config.max_concurrent)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def start(self) -> None:
        left = await self.blobs.start()
        if left:
            log.info("uploads.tmp-cleared", files=left)

    def _lock(self, sha256: str) -> asyncio.Lock:
        lock = self._locks.get(sha256)
        if lock is None:
            lock = self._locks[sha256] = asyncio.Lock()
        return lock

    # -- receiving ---------------------------------------------------------------------------
    def check_start(self, principal: Principal, content_type: str | None, length: int | None) -> str:
        """What can be refused before a byte of the body is read (also for Expect: 100-continue):
        the role, the declared type, a declared length over the limit. The type to expect."""
        if principal.role not in UPLOADERS:
            raise Forbidden(f"role {principal.role!r} may not upload", details={"role": principal.role})
        if principal.role == TERMINAL and not self._is_terminal(principal.name):
            raise Forbidden(f"principal {principal.name!r} is not a terminal of the directory",
                            details={"principal": principal.name})
        kind = sniff.declared(content_type)
        if kind is None:
            raise UnsupportedType("Content-Type must be one of " + ", ".join(sniff.TYPES),
                                  details={"content_type": (content_type or "")[:100],
                                           "accepted": list(sniff.TYPES)})
        if length is not None and length > self.config.max_bytes:
            raise TooLarge(f"upload of {length} bytes is over the limit of {self.config.max_bytes}",
                           details={"size": length, "max_bytes": self.config.max_bytes})
        return kind

    async def receive(self, principal: Principal, content_type: str | None, length: int | None,
                      chunks: AsyncIterator[bytes]) -> Stored:
        kind = self.check_start(principal, content_type, length)
        if self._slots.locked():
            raise Busy("too many uploads at once; try again shortly",
                       details={"max_concurrent": self.config.max_concurrent})
        async with self._slots:
            await self._check_space(length or 0)
            pending = await self._check_quota(principal, length or 0)
            blob = await self.blobs.open_temp()
            try:
                try:
                    async with asyncio.timeout(self.config.body_timeout_s):  # the body only
                        await self._fill(blob, kind, chunks)
                except TimeoutError:
                    raise BodyTimeout(f"upload not received within {self.config.body_timeout_s:g} s",
                                      details={"body_timeout_s": self.config.body_timeout_s}) from None
                self._quota_left(principal, pending, blob.size)
                async with self._lock(blob.sha256):
                    await self.blobs.commit(blob)  # stored once, whoever uploaded them
                    new = not any(r["principal"] == principal.name
                                  for r in await self._store.uploads_of(blob.sha256))
                    await self._store.add_upload(blob.sha256, principal.name, principal.role, kind, blob.size)
            except BaseException:
                await asyncio.shield(self.blobs.discard(blob))  # a renamed one: nothing to remove
                raise
        stored = Stored(blob.sha256, blob.size, kind, new)
        log.info("upload.stored", sha256=stored.sha256, size=stored.size, type=kind, again=not new,
                 principal=principal.name)
        return stored

    async def _check_space(self, length: int) -> None:
        """The disk also holds the event store: an upload that would leave less than
        `uploads.min_free_bytes` free (by its declared length, else its limit) is refused."""
        free = await self.blobs.free_bytes()
        need = (length or self.config.max_bytes) + self.config.min_free_bytes
        if free < need:
            log.warning("upload.storage-full", free_bytes=free, min_free_bytes=self.config.min_free_bytes)
            raise StorageFull("not enough free disk space for uploads",
                              details={"min_free_bytes": self.config.min_free_bytes})

    async def _check_quota(self, principal: Principal, length: int) -> int:
        """One principal may keep `uploads.max_pending_bytes` of uploads that no feedback refers
        to yet (a terminal cannot fill the disk for everybody); its pending bytes now."""
        if not self.config.max_pending_bytes:
            return 0
        pending = await self._store.pending_upload_bytes(principal.name)
        self._quota_left(principal, pending, length)
        return pending

    def _quota_left(self, principal: Principal, pending: int, size: int) -> None:
        quota = self.config.max_pending_bytes
        if quota and pending + size > quota:
            raise QuotaExceeded(
                f"{principal.name!r} has {pending} bytes of uploads no feedback refers to yet; "
                f"with this one that is over {quota}: send the feedback first",
                details={"pending_bytes": pending, "max_pending_bytes": quota})

    async def _fill(self, blob: TempBlob, kind: str, chunks: AsyncIterator[bytes]) -> None:
        limit, pending, checked = self.config.max_bytes, bytearray(), False
        total = 0
        async for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise TooLarge(f"upload is over the limit of {limit} bytes", details={"max_bytes": limit})
            pending += chunk
            if not checked and len(pending) >= sniff.SNIFF_BYTES:
                self._check_content(kind, bytes(pending[:sniff.SNIFF_BYTES]))
                checked = True
            if checked and len(pending) >= WRITE_BATCH:
                await blob.write(bytes(pending))
                pending.clear()
        if total == 0:
            raise UploadRefused("the upload is empty", reason="empty-upload")
        if not checked:
            self._check_content(kind, bytes(pending))
        if pending:
            await blob.write(bytes(pending))

    @staticmethod
    def _check_content(kind: str, head: bytes) -> None:
        found = sniff.sniff(head)
        if found != kind:
            raise TypeMismatch(f"declared {kind} but the content is {found or 'of no accepted type'}",
                               details={"declared": kind, "content": found})

    # -- reading -----------------------------------------------------------------------------
    async def open_for(self, principal: Principal, sha256: str) -> Readable:
        """The file of an upload if `principal` may read it: NotFound (`no-such-upload`) for an
        unknown hash, Forbidden for one it may not read."""
        if not SHA256_RE.match(sha256):
            raise NotFound("not an upload id (64 lowercase hex digits)", reason="no-such-upload",
                           details={"upload_id": sha256[:80]})
        rows = await self._store.uploads_of(sha256)
        if not rows:
            raise NotFound("no such upload", reason="no-such-upload", details={"upload_id": sha256})
        own = any(r["principal"] == principal.name for r in rows)
        if not own and not (principal.role in READ and await self._store.upload_referenced(sha256)):
            raise Forbidden("this upload is not in an incident this token may read",
                            details={"upload_id": sha256})
        path = self.blobs.path(sha256)
        if not await self.blobs.exists(sha256):
            log.error("upload.file-missing", sha256=sha256, path=str(path))
            raise NotFound("the upload's file is gone", reason="no-such-upload", details={"upload_id": sha256})
        return Readable(path, rows[0]["type"], rows[0]["size"])

    # -- retention ---------------------------------------------------------------------------
    async def prune(self, refs_before: str | None, now: dt.datetime) -> dict[str, int]:
        """Drop references older than `refs_before` (None: kept), then orphan rows and files."""
        counts = {"upload_refs": 0, "uploads": 0, "upload_files": 0}
        if refs_before is not None:
            counts["upload_refs"] = await self._store.prune_upload_refs(refs_before)
        orphan_cut = now.timestamp() - self.config.orphan_keep_s
        shas = await self._store.prune_orphan_uploads(epoch_to_iso(orphan_cut))
        counts["uploads"] = len(shas)
        stray = await self.blobs.stored(before=orphan_cut)  # by mtime; those with rows stay
        for i in range(0, len(stray), 500):
            known = await self._store.upload_known(stray[i:i + 500])
            shas.extend(s for s in stray[i:i + 500] if s not in known)
        for sha in sorted(set(shas)):
            async with self._lock(sha):
                if not await self._store.uploads_of(sha) and await self.blobs.remove(sha):
                    counts["upload_files"] += 1
        return counts

