"""Uploaded files on disk, content-addressed: `<root>/<aa>/<sha256>` (`aa`: the hash's first two
hex digits, so no directory holds everything).

A file being received goes to `<root>/tmp/` (the same file system, so the rename is atomic),
hashed as it is written; `commit` syncs it and renames it to its hash's path, or drops it when
that path already exists (the same bytes were uploaded before: stored once). A reader therefore
never sees a partial file under a hash. What is left in `tmp/` belongs to a gateway that died
mid-upload and is removed at start. Every file operation runs in a thread (`asyncio.to_thread`):
the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import threading
import time
from pathlib import Path

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class TempBlob:
    """One file being received: bytes appended in a thread, hashed as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._hash = hashlib.sha256()
        self._file = open(path, "xb")  # noqa: SIM115 - closed by commit or discard
        # A write cancelled on the loop side still runs in its thread: discard waits for it.
        self._lock = threading.Lock()

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)
        self.size += len(data)

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._file.closed:
                return
            self._file.write(data)
            self._hash.update(data)  # hashlib releases the GIL for large buffers

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _seal(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def _drop(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
            self.path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    def path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ValueError(f"not a SHA-256 in hex: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256

    async def start(self) -> int:
        """Create the directories; remove what a gateway killed mid-upload left in tmp/ (how many)."""
        return await asyncio.to_thread(self._start)

    def _start(self) -> int:
        self.tmp.mkdir(parents=True, exist_ok=True)
        left = list(self.tmp.iterdir())
        for p in left:
            p.unlink(missing_ok=True)
        return len(left)

    async def open_temp(self) -> TempBlob:
        name = f"up-{os.getpid()}-{time.monotonic_ns()}-{os.urandom(4).hex()}"
        return await asyncio.to_thread(TempBlob, self.tmp / name)

    async def commit(self, blob: TempBlob) -> bool:
        """Move a complete blob under its hash; True if new, False if those bytes were stored."""
        return await asyncio.to_thread(self._commit, blob)

    def _commit(self, blob: TempBlob) -> bool:
        blob._seal()
        final = self.path(blob.sha256)
        if final.exists():
            blob.path.unlink(missing_ok=True)
            return False
        final.parent.mkdir(exist_ok=True)
        os.replace(blob.path, final)
        return True

    async def free_bytes(self) -> int:
        """Free space (for this user) on the file system of the uploads."""
        return (await asyncio.to_thread(shutil.disk_usage, self.root)).free

    async def discard(self, blob: TempBlob) -> None:
        await asyncio.to_thread(blob._drop)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path(sha256).is_file)

    async def remove(self, sha256: str) -> bool:
        def unlink() -> bool:
            try:
                self.path(sha256).unlink()
                return True
            except FileNotFoundError:
                return False
        return await asyncio.to_thread(unlink)

    async def stored(self, before: float) -> list[str]:
        """The hashes of the files last modified at or before `before` (epoch seconds)."""
        return await asyncio.to_thread(self._stored, before)

    def _stored(self, before: float) -> list[str]:
        out = []
        for fan in self.root.iterdir():
            if fan == self.tmp or not fan.is_dir() or len(fan.name) != 2:
                continue
            for p in fan.iterdir():
                if SHA256_RE.match(p.name):
                    try:
                        if p.stat().st_mtime <= before:
                            out.append(p.name)
                    except FileNotFoundError:
                        pass
        return out
