"""The field terminals' tables: `terminal_track`, every position a terminal reported.

A mixin of `Store` (gateway/store/tables.py): writes go through the one writer, reads through
the read connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.timeutil import now_iso

TRACK_COLUMNS = ("lat", "lon", "accuracy_m", "time", "altitude", "speed", "heading", "battery", "status")
_SELECT = f"SELECT id, terminal_id, {', '.join(TRACK_COLUMNS)}, received_at FROM terminal_track"


def _point(row: Sequence[Any]) -> dict[str, Any]:
    out = {"id": row[0], "terminal_id": row[1]}
    out.update((k, v) for k, v in zip(TRACK_COLUMNS, row[2:-1]) if v is not None)
    out["received_at"] = row[-1]
    return out


class TerminalTables:
    """Accessors of the terminal tables (mixed into `Store`)."""

    async def add_track_point(self, terminal_id: str, fix: dict[str, Any]) -> None:
        """Store one position (`fix`: lat, lon, accuracy_m, time and the optional fields)."""
        cols = ("terminal_id", *TRACK_COLUMNS, "received_at")
        await self._submit(  # type: ignore[attr-defined]
            f"INSERT INTO terminal_track ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            (terminal_id, *(fix.get(c) for c in TRACK_COLUMNS), now_iso()))

    async def track(self, terminal_id: str, since: str | None, until: str | None,
                    limit: int) -> list[dict[str, Any]]:
        """Positions of one terminal by fix time (then arrival), since..until inclusive; at most
        `limit` (the oldest first)."""
        where, params = ["terminal_id = ?"], [terminal_id]
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if until is not None:
            where.append("time <= ?")
            params.append(until)
        rows = await self._read(  # type: ignore[attr-defined]
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY time, id LIMIT ?", (*params, int(limit)))
        return [_point(r) for r in rows]

    async def last_track_points(self, terminal_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The newest position (by fix time) of each terminal that has one."""
        out = {}
        for tid in terminal_ids:
            rows = await self._read(  # type: ignore[attr-defined]
                f"{_SELECT} WHERE terminal_id = ? ORDER BY time DESC, id DESC LIMIT 1", (tid,))
            if rows:
                out[tid] = _point(rows[0])
        return out

    async def count_track_points(self, terminal_id: str) -> int:
        rows = await self._read(  # type: ignore[attr-defined]
            "SELECT COUNT(*) FROM terminal_track WHERE terminal_id = ?", (terminal_id,))
        return int(rows[0][0])
