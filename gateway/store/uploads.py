"""The uploads' tables: `uploads` (who uploaded which bytes: one row per hash and principal) and
`upload_refs` (which feedback, in which incident, refers to them).

A mixin of `Store` (gateway/store/tables.py): writes go through the one writer, reads through the
read connection. The files themselves are gateway/uploads/blobs.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.timeutil import now_iso

UPLOAD_COLUMNS = ("sha256", "principal", "role", "type", "size", "created_at")


class UploadTables:
    """Accessors of the upload tables (mixed into `Store`)."""

    async def add_upload(self, sha256: str, principal: str, role: str, type: str, size: int) -> None:
        """Record that `principal` uploaded these bytes (again: its orphan clock starts anew)."""
        await self._submit(  # type: ignore[attr-defined]
            "INSERT INTO uploads (sha256, principal, role, type, size, created_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (sha256, principal) DO UPDATE SET created_at = excluded.created_at",
            (sha256, principal, role, type, int(size), now_iso()))

    async def uploads_of(self, sha256: str) -> list[dict[str, Any]]:
        """Every principal's row of one hash (empty: unknown)."""
        rows = await self._read(  # type: ignore[attr-defined]
            f"SELECT {', '.join(UPLOAD_COLUMNS)} FROM uploads WHERE sha256 = ?", (sha256,))
        return [dict(zip(UPLOAD_COLUMNS, r)) for r in rows]

    async def pending_upload_bytes(self, principal: str) -> int:
        """The bytes of this principal's uploads that no feedback of its own refers to yet."""
        rows = await self._read(  # type: ignore[attr-defined]
            "SELECT COALESCE(SUM(size), 0) FROM uploads u WHERE principal = ? AND NOT EXISTS"
            " (SELECT 1 FROM upload_refs r WHERE r.sha256 = u.sha256 AND r.principal = u.principal)",
            (principal,))
        return int(rows[0][0])

    async def upload_referenced(self, sha256: str) -> bool:
        rows = await self._read(  # type: ignore[attr-defined]
            "SELECT 1 FROM upload_refs WHERE sha256 = ? LIMIT 1", (sha256,))
        return bool(rows)

    async def upload_known(self, sha256s: Sequence[str]) -> set[str]:
        """Which of these hashes have a row."""
        if not sha256s:
            return set()
        rows = await self._read(  # type: ignore[attr-defined]
            f"SELECT DISTINCT sha256 FROM uploads WHERE sha256 IN ({', '.join('?' * len(sha256s))})",
            tuple(sha256s))
        return {r[0] for r in rows}

    async def prune_upload_refs(self, before: str) -> int:
        """Forget references made before `before` (they go with their incident's events)."""
        return await self._submit(  # type: ignore[attr-defined]
            "DELETE FROM upload_refs WHERE created_at < ?", (before,))

    async def prune_orphan_uploads(self, before: str) -> list[str]:
        """Delete the rows uploaded before `before` that no feedback of their principal refers
        to; the hashes of those rows (their files may now be unused)."""
        rows = await self.atomic(lambda tx: tx.fetchall(  # type: ignore[attr-defined]
                "DELETE FROM uploads WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM upload_refs r"
                " WHERE r.sha256 = uploads.sha256 AND r.principal = uploads.principal) RETURNING sha256",
                (before,)))
        return sorted({r[0] for r in rows})
