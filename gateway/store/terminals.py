"""The field terminals' tables: `terminal_track` (every position a terminal reported),
`terminal_presence` (each one's last presence), `terminal_instructions` and `terminal_deliveries`
(an instruction's state at each terminal).

`TerminalTables` is a mixin of `Store` (gateway/store/tables.py): writes go through the one
writer, reads through the read connection. The delivery queries (`DELIVERY_COLUMNS`, `deliveries`,
`update_delivery`) take a `Store` or a `Tx`, so a unit of work (`Store.atomic`) reads and writes
a delivery and emits its event together.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
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
        """The newest position (by fix time, then arrival) of each terminal that has one: one
        read per 500 terminals, each terminal's row found through the (terminal_id, time) index."""
        out = {}
        for i in range(0, len(terminal_ids), 500):
            chunk = terminal_ids[i:i + 500]
            rows = await self._read(  # type: ignore[attr-defined]
                f"WITH ids (tid) AS (VALUES {', '.join(['(?)'] * len(chunk))}) {_SELECT} WHERE id IN"
                " (SELECT (SELECT t.id FROM terminal_track t WHERE t.terminal_id = ids.tid"
                " ORDER BY t.time DESC, t.id DESC LIMIT 1) FROM ids)", tuple(chunk))
            out.update((r[1], _point(r)) for r in rows)
        return out

    async def prune_track(self, before_time: str, limit: int = 10_000) -> int:
        """Delete up to `limit` positions received before `before_time` (retention)."""
        return await self._submit(  # type: ignore[attr-defined]
            "DELETE FROM terminal_track WHERE id IN (SELECT id FROM terminal_track WHERE received_at < ?"
            " ORDER BY received_at LIMIT ?)", (before_time, int(limit)))

    async def count_track_points(self, terminal_id: str) -> int:
        rows = await self._read(  # type: ignore[attr-defined]
            "SELECT COUNT(*) FROM terminal_track WHERE terminal_id = ?", (terminal_id,))
        return int(rows[0][0])


INSTRUCTION_COLUMNS = ("instruction_id", "session_id", "text", "require_ack", "ack_timeout_s", "fallback",
                       "targets", "created_by", "created_at")
DELIVERY_COLUMNS = ("delivery_id", "instruction_id", "terminal_id", "state", "deadline", "queued_at",
                    "delivered_at", "acknowledged_at", "fallback_at", "sms_message_id", "sms_queued", "error")


def _instruction(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(INSTRUCTION_COLUMNS, row))
    out["require_ack"], out["targets"] = bool(out["require_ack"]), json.loads(out["targets"])
    return out


async def insert_instruction(tx: Any, ins: dict[str, Any]) -> None:
    row = {**ins, "require_ack": int(ins["require_ack"]), "targets": json.dumps(ins["targets"])}
    await tx.execute(f"INSERT INTO terminal_instructions ({', '.join(INSTRUCTION_COLUMNS)})"
                     f" VALUES ({', '.join('?' * len(INSTRUCTION_COLUMNS))})",
                     tuple(row[c] for c in INSTRUCTION_COLUMNS))


async def insert_deliveries(tx: Any, instruction_id: str, deadlines: dict[str, float | None],
                            queued_at: str) -> None:
    """One `queued` delivery per terminal (`deadlines`: terminal -> its ack deadline), in order."""
    await tx.executemany("INSERT INTO terminal_deliveries (instruction_id, terminal_id, state, deadline, queued_at)"
                         " VALUES (?, ?, 'queued', ?, ?)",
                         [(instruction_id, tid, d, queued_at) for tid, d in deadlines.items()])


async def deliveries(db: Any, where: str, params: Sequence[Any] = (), limit: int = 100_000) -> list[dict[str, Any]]:
    """Delivery rows matching `where` (SQL over DELIVERY_COLUMNS), in delivery order."""
    rows = await db.fetchall(f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM terminal_deliveries WHERE {where}"
                             " ORDER BY delivery_id LIMIT ?", (*params, int(limit)))
    return [dict(zip(DELIVERY_COLUMNS, r)) for r in rows]


async def update_delivery(tx: Any, delivery_id: int, changes: dict[str, Any]) -> None:
    bad = set(changes) - set(DELIVERY_COLUMNS)
    if bad:
        raise ValueError(f"terminal_deliveries: unknown columns {sorted(bad)}")
    sets = ", ".join(f"{c} = ?" for c in changes)
    await tx.execute(f"UPDATE terminal_deliveries SET {sets} WHERE delivery_id = ?", (*changes.values(), delivery_id))


async def get_instruction(db: Any, instruction_id: str) -> dict[str, Any] | None:
    rows = await db.fetchall(f"SELECT {', '.join(INSTRUCTION_COLUMNS)} FROM terminal_instructions"
                             " WHERE instruction_id = ?", (instruction_id,))
    return _instruction(rows[0]) if rows else None


async def get_instructions(db: Any, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Instructions by id (the ones that exist), one read per 500 ids."""
    wanted, out = list(dict.fromkeys(ids)), {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        rows = await db.fetchall(f"SELECT {', '.join(INSTRUCTION_COLUMNS)} FROM terminal_instructions"
                                 f" WHERE instruction_id IN ({', '.join('?' * len(chunk))})", chunk)
        out.update((r[0], _instruction(r)) for r in rows)
    return out


async def prune_instructions(store: Any, before_time: str, limit: int = 10_000) -> int:
    """Retention: delete up to `limit` instructions created before `before_time` with their
    deliveries, in one unit of work; how many rows in all. An instruction one of whose terminals
    has not received it yet is kept (it is still delivered when that terminal comes back)."""

    async def work(tx: Any) -> int:
        ids = [r[0] for r in await tx.fetchall(
            "SELECT instruction_id FROM terminal_instructions i WHERE created_at < ? AND NOT EXISTS"
            " (SELECT 1 FROM terminal_deliveries d WHERE d.instruction_id = i.instruction_id"
            " AND d.delivered_at IS NULL) ORDER BY created_at LIMIT ?", (before_time, int(limit)))]
        deleted = 0
        for i in range(0, len(ids), 500):  # a bounded number of SQL variables per statement
            chunk, marks = ids[i:i + 500], ", ".join("?" * len(ids[i:i + 500]))
            deleted += await tx.execute(f"DELETE FROM terminal_deliveries WHERE instruction_id IN ({marks})", chunk)
            deleted += await tx.execute(f"DELETE FROM terminal_instructions WHERE instruction_id IN ({marks})", chunk)
        return deleted

    return int(await store.atomic(work))


async def latest_incidents(db: Any) -> dict[str, str]:
    """Each terminal's incident: the session of the latest instruction it was given with one."""
    rows = await db.fetchall(
        "SELECT d.terminal_id, i.session_id, MAX(d.delivery_id) FROM terminal_deliveries d"
        " JOIN terminal_instructions i ON i.instruction_id = d.instruction_id"
        " WHERE i.session_id IS NOT NULL GROUP BY d.terminal_id")  # SQLite: the row of the MAX
    return {tid: sid for tid, sid, _ in rows}


async def put_presences(tx: Any, datas: Sequence[dict[str, Any]]) -> None:
    """Keep terminals' last presence (`terminal.presence` data) across restarts, in one statement."""
    changed = now_iso()
    await tx.executemany("INSERT INTO terminal_presence (terminal_id, state, reason, last_seen, changed_at)"
                         " VALUES (?, ?, ?, ?, ?) ON CONFLICT (terminal_id) DO UPDATE SET state = excluded.state,"
                         " reason = excluded.reason, last_seen = excluded.last_seen,"
                         " changed_at = excluded.changed_at",
                         [(d["terminal_id"], d["state"], d["reason"], d["last_seen"], changed) for d in datas])


async def presences(db: Any) -> dict[str, dict[str, Any]]:
    rows = await db.fetchall("SELECT terminal_id, state, reason, last_seen FROM terminal_presence")
    return {r[0]: {"state": r[1], "reason": r[2], "last_seen": r[3]} for r in rows}
