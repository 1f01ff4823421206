"""The indicators' facts in the store: what gateway/kpi/availability.py and timeliness.py compute from.

Written here: runs of the gateway (start, heartbeat, clean stop, and the deadlines in effect),
part state changes, maintenance windows (tables of schema 15). Read here, and nowhere held in
memory: those, and the dispatch facts other services store anyway - calls (created, answered,
ended, SIP code), broadcast targets (`broadcast.target` events with state connected), SMS (the
outbox and its delivery receipts), terminal instructions (queued, delivered, acknowledged).
Every target is judged against the deadlines of the run it started in.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_right
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.store import Store
from gateway.store.audit import audit_in
from gateway.store.units import Tx
from gateway.timeutil import epoch_to_iso, iso_to_epoch, now_iso

from .availability import Maintenance, Run, Transition
from .timeliness import Target

# A call's final answer from the far end (486 busy, 603 declined...) counts as an answer in time;
# 487 only ever answers our own CANCEL, and these causes are ours, not the callee's.
_OUR_CAUSES = frozenset({"no-answer", "local-hangup", "worker-crashed", "gateway-shutdown", "lost",
                         "sip-unavailable", "sip-error"})


def _t(iso: str | None) -> float | None:
    return None if iso is None else iso_to_epoch(iso)


# ---- writes (each through the one writer) ---------------------------------------------------

async def start_run(store: Store, deadlines: Mapping[str, float], when: str | None = None) -> int:
    when = when or now_iso()

    async def work(tx: Tx) -> int:
        await tx.execute("INSERT INTO kpi_runs (started_at, last_seen, pid, deadlines) VALUES (?, ?, ?, ?)",
                         (when, when, os.getpid(), json.dumps(dict(deadlines))))
        return int((await tx.fetchall("SELECT last_insert_rowid()"))[0][0])

    return await store.atomic(work)


async def heartbeat(store: Store, run_id: int, when: str | None = None) -> None:
    """The run is alive now; this write is also the store's writability probe."""
    await store.atomic(lambda tx: tx.execute("UPDATE kpi_runs SET last_seen = ? WHERE run_id = ?",
                                             (when or now_iso(), run_id)))


async def stop_run(store: Store, run_id: int) -> None:
    when = now_iso()
    await store.atomic(lambda tx: tx.execute(
        "UPDATE kpi_runs SET last_seen = ?, stopped_at = ? WHERE run_id = ?", (when, when, run_id)))


async def record_state(store: Store, run_id: int, part: str, up: bool, cause: str, when: str) -> None:
    await store.atomic(lambda tx: tx.execute(
        "INSERT INTO kpi_part_states (run_id, time, part, up, cause) VALUES (?, ?, ?, ?, ?)",
        (run_id, when, part, int(up), cause[:500])))


async def add_maintenance(store: Store, start: float, end: float, parts: Sequence[str], reason: str,
                          created_by: str) -> dict[str, Any]:
    row = (epoch_to_iso(start), epoch_to_iso(end), json.dumps(list(parts)), reason, created_by, now_iso())

    async def work(tx: Tx) -> int:
        await tx.execute("INSERT INTO kpi_maintenance (start_at, end_at, parts, reason, created_by, created_at)"
                         " VALUES (?, ?, ?, ?, ?, ?)", row)
        return int((await tx.fetchall("SELECT last_insert_rowid()"))[0][0])

    mid = await store.atomic(work)
    return {"maintenance_id": mid, "start": row[0], "end": row[1], "parts": list(parts) or ["*"],
            "reason": reason, "created_by": created_by}


_WINDOW = "SELECT maintenance_id, start_at, end_at, parts, reason, created_by, created_at FROM kpi_maintenance"


def _window(row: Sequence[Any], now: float) -> dict[str, Any]:
    start, end = iso_to_epoch(row[1]), iso_to_epoch(row[2])
    return {"maintenance_id": row[0], "start": row[1], "end": row[2], "parts": json.loads(row[3]) or ["*"],
            "reason": row[4], "created_by": row[5] or "", "created_at": row[6],
            "state": "planned" if now < start else "ongoing" if now < end else "over"}


async def list_maintenance(store: Store, since: float | None, until: float | None, now: float,
                           limit: int) -> list[dict[str, Any]]:
    """The windows overlapping [since, until) (either open), by start; at most `limit`."""
    lo = epoch_to_iso(since) if since is not None else ""
    hi = epoch_to_iso(until) if until is not None else "~"  # after every ISO time
    rows = await store.fetchall(f"{_WINDOW} WHERE end_at > ? AND start_at < ? ORDER BY start_at, maintenance_id"
                                " LIMIT ?", (lo, hi, limit))
    return [_window(r, now) for r in rows]


class MaintenanceOver(Exception):
    """The window has ended: it is part of reports already given (see `remove_maintenance`)."""


async def remove_maintenance(store: Store, maintenance_id: int, now: float, principal: str,
                             role: str) -> tuple[str, dict[str, Any]] | None:
    """Take a window back: one not started yet is deleted ("deleted"); one under way is ended
    now ("ended": what is past stays declared, as reports already read it); one that has ended
    raises `MaintenanceOver`. None: no such window. The window as it was is written to the
    audit chain in the same unit as the change, so the change can be neither lost nor hidden."""

    async def work(tx: Tx) -> tuple[str, dict[str, Any]] | None:
        rows = await tx.fetchall(f"{_WINDOW} WHERE maintenance_id = ?", (maintenance_id,))
        if not rows:
            return None
        before = _window(rows[0], now)
        if before["state"] == "over":
            raise MaintenanceOver(before["end"])
        if before["state"] == "planned":
            action, after = "deleted", before
            await tx.execute("DELETE FROM kpi_maintenance WHERE maintenance_id = ?", (maintenance_id,))
        else:
            action, after = "ended", {**before, "end": epoch_to_iso(now), "state": "over"}
            await tx.execute("UPDATE kpi_maintenance SET end_at = ? WHERE maintenance_id = ?",
                             (after["end"], maintenance_id))
        record = {k: v for k, v in before.items() if k != "state"}
        if action == "ended":
            record["ended_at"] = after["end"]
        await audit_in(tx, principal, role, f"kpi.maintenance.{action}", record)
        return action, after

    return await store.atomic(work)


# ---- reads ----------------------------------------------------------------------------------

async def load_availability(store: Store, since: float, until: float
                            ) -> tuple[list[Run], list[Transition], list[Maintenance]]:
    """Every run (few: one per start), the state changes of the runs overlapping the window, the
    maintenance windows overlapping it."""
    runs = [Run(r[0], iso_to_epoch(r[1]), iso_to_epoch(r[2]), _t(r[3])) for r in await store.fetchall(
        "SELECT run_id, started_at, last_seen, stopped_at FROM kpi_runs ORDER BY run_id")]
    lo, hi = epoch_to_iso(since), epoch_to_iso(until)
    last = runs[-1].run_id if runs else None
    ids = [r.run_id for r in runs if r.started < until
           and (max(r.last_seen, r.stopped or 0.0) >= since or r.run_id == last)]
    transitions: list[Transition] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows = await store.fetchall(
            f"SELECT run_id, time, part, up, cause FROM kpi_part_states WHERE run_id IN ({','.join('?' * len(chunk))})"
            " AND time < ? ORDER BY run_id, time, id", (*chunk, hi))
        transitions += [Transition(r[0], iso_to_epoch(r[1]), r[2], bool(r[3]), r[4]) for r in rows]
    maint = [Maintenance(r[0], iso_to_epoch(r[1]), iso_to_epoch(r[2]), tuple(json.loads(r[3])), r[4], r[5] or "")
             for r in await store.fetchall(
                 "SELECT maintenance_id, start_at, end_at, parts, reason, created_by FROM kpi_maintenance"
                 " WHERE end_at > ? AND start_at < ? ORDER BY start_at", (lo, hi))]
    return runs, transitions, maint


class Deadlines:
    """The deadlines in effect when a target started: those its run recorded (else `current`)."""

    def __init__(self, runs: Sequence[tuple[float, Mapping[str, float]]], current: Mapping[str, float]) -> None:
        self._starts = [s for s, _ in runs]
        self._values = [dict(current, **d) for _, d in runs]
        self._current = dict(current)

    def longest(self) -> float:
        """The longest deadline of any channel in any run: a target older than this is due."""
        return max(v for d in (self._current, *self._values) for v in d.values())

    def of(self, channel: str, started: float) -> float:
        i = bisect_right(self._starts, started) - 1
        return (self._values[i] if i >= 0 else self._current)[channel]


async def deadlines(store: Store, current: Mapping[str, float]) -> Deadlines:
    rows = await store.fetchall("SELECT started_at, deadlines FROM kpi_runs ORDER BY started_at")
    return Deadlines([(iso_to_epoch(r[0]), json.loads(r[1])) for r in rows], current)


@dataclass(frozen=True)
class TargetRows:
    """The stored rows the targets of a window are made of (read with `load_target_rows`)."""

    calls: list[Any]
    broadcasts: list[Any]
    connected: list[Any]  # (broadcast_id, target, first time connected)
    sms: list[Any]
    delivered: list[Any]  # (message_id, first delivery receipt)
    deliveries: list[Any]


async def load_target_rows(store: Store, since: float, until: float) -> TargetRows:
    """Every dispatched target that started in [since, until), as stored rows (the reads only:
    `targets` turns them into `Target`s, off the event loop for a long window). When each broadcast
    target connected and each SMS was first reported delivered are read by the keys of the window's
    rows (indexes of schema 16), so a slice of an old window reads nothing of what came after it."""
    lo, hi = epoch_to_iso(since), epoch_to_iso(until)
    calls = await store.fetchall(
        "SELECT call_id, remote_uri, created_at, answered_at, ended_at, sip_code, cause FROM calls"
        " WHERE direction = 'outbound' AND created_at >= ? AND created_at < ?", (lo, hi))
    broadcasts, connected = await _rows_and_firsts(
        store, "SELECT broadcast_id, created_at, ended_at, extra FROM broadcasts"
               " WHERE created_at >= ? AND created_at < ?",
        "SELECT json_extract(data, '$.broadcast_id'), json_extract(data, '$.target'), min(time) FROM events"
        " WHERE type = 'broadcast.target' AND json_extract(data, '$.broadcast_id') IN ({})"
        " AND json_extract(data, '$.state') = 'connected' GROUP BY 1, 2", lo, hi)
    sms, delivered = await _rows_and_firsts(
        store, "SELECT message_id, recipient, created_at, state, updated_at, error FROM sms"
               " WHERE created_at >= ? AND created_at < ?",
        "SELECT message_id, min(received_at) FROM sms_receipts WHERE message_id IN ({})"
        " AND status IN ('delivered', 'read') GROUP BY message_id", lo, hi)
    deliveries = await store.fetchall(
        "SELECT d.instruction_id, d.terminal_id, d.queued_at, d.delivered_at, d.acknowledged_at, d.state,"
        " d.error, i.require_ack FROM terminal_deliveries d JOIN terminal_instructions i"
        " USING (instruction_id) WHERE d.queued_at >= ? AND d.queued_at < ?", (lo, hi))
    return TargetRows(calls, broadcasts, connected, sms, delivered, deliveries)


async def load_targets(store: Store, since: float, until: float, dl: Deadlines) -> list[Target]:
    return targets(await load_target_rows(store, since, until), dl)


def targets(rows: TargetRows, dl: Deadlines) -> list[Target]:
    """One `Target` per dispatched target, with what became of it. Pure: no I/O."""
    out: list[Target] = []
    for call_id, uri, created, answered, ended, code, cause in rows.calls:
        start = iso_to_epoch(created)
        final = (answered is None and ended is not None and code is not None and 300 <= code <= 699
                 and code != 487 and cause not in _OUR_CAUSES)
        reached = _t(answered) if answered else (_t(ended) if final else None)
        why = (f"answered {code}" if final else f"ended: {cause}" if ended and not answered else
               "connected late" if answered else "")
        out.append(Target("call", call_id, uri or "", start, dl.of("call", start), reached,
                          None if reached is not None else _t(ended), why))
    connected = {(b, t): iso_to_epoch(when) for b, t, when in rows.connected}
    for bid, created, ended, extra in rows.broadcasts:
        start = iso_to_epoch(created)
        for t in json.loads(extra or "{}").get("targets", []):
            if t.get("kind") != "sip":
                continue  # a multicast zone plays at once: no one to reach
            reached = connected.get((bid, t["target"]))
            why = "connected late" if reached else f"{t.get('state')}" + (f": {t['cause']}" if t.get("cause") else "")
            out.append(Target("broadcast", bid, t["target"], start, dl.of("broadcast", start), reached,
                              None if reached else _t(ended), why))
    receipts = {m: iso_to_epoch(when) for m, when in rows.delivered}
    for mid, recipient, created, state, updated, error in rows.sms:
        start = iso_to_epoch(created)
        reached = receipts.get(mid) or (_t(updated) if state == "delivered" else None)
        final = state in ("undelivered", "failed")
        why = "delivered late" if reached else f"{state}" + (f": {error}" if error else "")
        out.append(Target("sms", mid, recipient, start, dl.of("sms", start), reached,
                          _t(updated) if final and reached is None else None, why))
    for iid, terminal, queued, delivered, acked, state, error, require_ack in rows.deliveries:
        start = iso_to_epoch(queued)
        reached = _t(acked) if require_ack else _t(delivered)
        why = ("acknowledged late" if require_ack and acked else "delivered late" if delivered and not require_ack
               else f"{'not acknowledged' if require_ack and delivered else 'not delivered'} ({state})"
               + (f": {error}" if error else ""))
        out.append(Target("instruction", iid, terminal, start, dl.of("instruction", start), reached, None, why))
    return out


async def _rows_and_firsts(store: Store, rows_sql: str, firsts_sql: str, lo: str, hi: str
                           ) -> tuple[list[Any], list[Any]]:
    """The rows made in [lo, hi), and when each of their keys (first column) first reached:
    `firsts_sql` with `{}` for the keys' placeholders, run for 500 keys at a time."""
    rows = await store.fetchall(rows_sql, (lo, hi))
    firsts: list[Any] = []
    for i in range(0, len(rows), 500):
        keys = [r[0] for r in rows[i:i + 500]]
        firsts += await store.fetchall(firsts_sql.format(",".join("?" * len(keys))), keys)
    return rows, firsts
