"""`Store`: the tables' accessors on top of the one writer (gateway/store/writer.py).

Events (read, prune), sessions, calls (CDR), broadcasts, the SMS outbox, audit and idempotency keys;
the audit chain comes from gateway/store/audit.py, the field terminals' tables from
gateway/store/terminals.py, the uploads' from gateway/store/uploads.py.
Every write goes through the writer's queue (`_submit`), every read through the read connection
(`_read`). The SMS read queries used inside units of work live in gateway/sms_store.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.audit.request import RequestAudit
from gateway.timeutil import now_iso

from .rows import (_EVENT_COLUMNS, BROADCAST_COLUMNS, CALL_COLUMNS, SESSION_COLUMNS, SMS_COLUMNS, Event, _row_out,
                   _upsert)
from .audit import AuditTables, audit_statement
from .terminals import TerminalTables
from .uploads import UploadTables
from .writer import StoreWriter

_MAX_PAGE = 10_000


class Store(AuditTables, TerminalTables, UploadTables, StoreWriter):
    """The gateway's durable state in one SQLite file (see gateway/store/__init__.py)."""

    # `put_session`s returned (+1 each, as it returns) and in progress: a read of the sessions
    # begun and ended with none in progress and the version unchanged saw exactly that many
    # (gateway/services/sessions.py keeps `session.list` on it).
    sessions_version = 0
    sessions_writing = 0

    # ---- events ----------------------------------------------------------------------------

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        limit = max(1, min(int(limit), _MAX_PAGE))
        rows = await self._read(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (int(seq), limit))
        return [Event(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    async def last_seq(self) -> int:
        return self._seq

    async def prune_events(self, before_seq: int) -> int:
        """Delete events with seq < before_seq (retention). Seqs are still never reused."""
        return await self._submit("DELETE FROM events WHERE seq < ?", (int(before_seq),))

    # ---- sessions and calls ----------------------------------------------------------------

    async def _get_row(self, table: str, key: str, columns: Sequence[str], value: str) -> dict[str, Any] | None:
        rows = await self._read(f"SELECT {', '.join(columns)}, extra FROM {table} WHERE {key} = ?", (value,))
        return _row_out(columns, rows[0]) if rows else None

    async def _list_rows(self, table: str, key: str, columns: Sequence[str], where: str | None,
                         value: Any, limit: int, newest: bool = False) -> list[dict[str, Any]]:
        rows = await self._select(table, key, (*columns, "extra"), where, value, limit, newest)
        return [_row_out(columns, r) for r in rows]

    async def _select(self, table: str, key: str, columns: Sequence[str], where: str | None,
                      value: Any, limit: int, newest: bool = False) -> list[tuple]:
        """Rows of `table` (where `where` = `value`, unless None) in (created_at, key) order: the
        first `limit`, or with `newest` the last `limit`, still oldest first."""
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        params: tuple[Any, ...] = ()
        if value is not None:
            sql, params = sql + f" WHERE {where} = ?", (value,)
        order = f" ORDER BY created_at DESC, {key} DESC" if newest else f" ORDER BY created_at, {key}"
        rows = await self._read(sql + order + " LIMIT ?", (*params, limit))
        if newest:
            rows.reverse()
        return rows

    async def put_session(self, row: dict[str, Any], event: tuple[str, dict[str, Any]] | None = None,
                          audit: RequestAudit | None = None) -> Event | None:
        """Insert or update a session. Keys absent from `row` keep their stored value;
        `extra` (a dict) replaces the stored one. Unknown keys raise ValueError. With `event`
        (type, data): that event too, committed with the row or not at all; returns it. With
        `audit` (not yet written): the request's ok audit row too, in the same way."""
        sql, params = _upsert("sessions", "session_id", SESSION_COLUMNS, row)
        also = audit_statement(audit) if audit is not None and not audit.written else None
        self.sessions_writing += 1
        try:
            if event is None:
                await self._submit(sql, params, also=also)
                stored = None
            else:
                stored = await self.write_emitting(sql, params, event[0], row["session_id"], event[1], also=also)
        finally:
            self.sessions_writing -= 1
            self.sessions_version += 1
        if also is not None:
            audit.written = True  # type: ignore[union-attr]
        return stored

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        return await self._get_row("sessions", "session_id", SESSION_COLUMNS, session_id)

    async def list_sessions(self, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest `limit` sessions (of `state`), oldest first, with `extra`. The newest, not the
        oldest: a command room's history grows past any limit, and the incidents it looks for are
        the recent ones (the oldest 1000 before: after a thousand sessions a list never showed a
        new one)."""
        return await self._list_rows("sessions", "session_id", SESSION_COLUMNS, "state", state, limit, newest=True)

    async def list_session_rows(self, state: str | None = None, limit: int = 1000) -> list[tuple]:
        """`list_sessions` as bare rows of SESSION_COLUMNS (no `extra`): what `session.list` shows."""
        return await self._select("sessions", "session_id", SESSION_COLUMNS, "state", state, limit, newest=True)

    async def put_call(self, row: dict[str, Any]) -> None:
        """Insert or update a call detail record (same rules as `put_session`)."""
        await self._submit(*_upsert("calls", "call_id", CALL_COLUMNS, row))

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        return await self._get_row("calls", "call_id", CALL_COLUMNS, call_id)

    async def list_calls(self, session_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return await self._list_rows("calls", "call_id", CALL_COLUMNS, "session_id", session_id, limit)

    async def put_broadcast(self, row: dict[str, Any]) -> None:
        """Insert or update a broadcast record (same rules as `put_session`)."""
        await self._submit(*_upsert("broadcasts", "broadcast_id", BROADCAST_COLUMNS, row))

    async def get_broadcast(self, broadcast_id: str) -> dict[str, Any] | None:
        return await self._get_row("broadcasts", "broadcast_id", BROADCAST_COLUMNS, broadcast_id)

    async def list_broadcasts(self, session_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return await self._list_rows("broadcasts", "broadcast_id", BROADCAST_COLUMNS, "session_id",
                                     session_id, limit)

    # ---- SMS outbox ----------------------------------------------------------------------

    async def insert_sms(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue many messages in one transaction: durable before any provider sees them."""
        if not rows:
            return
        cols = [*SMS_COLUMNS, "extra"]
        sql = f"INSERT INTO sms ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        params = [(*(r.get(c) for c in SMS_COLUMNS), json.dumps(r.get("extra") or {})) for r in rows]
        await self._submit(sql, params, many=True)

    async def update_sms(self, message_id: str, **changes: Any) -> None:
        """Change some columns of one message (state, attempts, provider_id, ...)."""
        bad = set(changes) - set(SMS_COLUMNS) - {"extra"}
        if bad:
            raise ValueError(f"sms: unknown columns {sorted(bad)}")
        if "extra" in changes:
            changes["extra"] = json.dumps(changes["extra"] or {})
        changes.setdefault("updated_at", now_iso())
        sets = ", ".join(f"{c} = ?" for c in changes)
        await self._submit(f"UPDATE sms SET {sets} WHERE message_id = ?", (*changes.values(), message_id))

    async def get_sms(self, message_id: str) -> dict[str, Any] | None:
        return await self._get_row("sms", "message_id", SMS_COLUMNS, message_id)

    async def find_sms(self, *, send_id: str | None = None, provider_id: str | None = None,
                       states: Sequence[str] | None = None, recipient: str | None = None,
                       limit: int = 100_000) -> list[dict[str, Any]]:
        where, params = [], []
        for col, val in (("send_id", send_id), ("provider_id", provider_id), ("recipient", recipient)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        sql = f"SELECT {', '.join(SMS_COLUMNS)}, extra FROM sms"
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = " ORDER BY created_at DESC, message_id" if recipient else " ORDER BY created_at, message_id"
        rows = await self._read(sql + order + " LIMIT ?", (*params, limit))
        return [_row_out(SMS_COLUMNS, r) for r in rows]

    async def sms_counts(self, send_id: str) -> dict[str, int]:
        rows = await self._read("SELECT state, COUNT(*) FROM sms WHERE send_id = ? GROUP BY state", (send_id,))
        return {state: n for state, n in rows}

    # ---- idempotency (audit: gateway/store/audit.py) -------------------------------------------------------------

    async def idempotency_get(self, principal: str, key: str, method: str) -> dict[str, Any] | None:
        """The result stored for (principal, method, key), or None."""
        row = await self.idempotency_get_row(principal, key, method)
        return row["result"] if row else None

    async def idempotency_get_row(self, principal: str, key: str, method: str) -> dict[str, Any] | None:
        """{"principal", "key", "method", "result", "time"} for (principal, method, key), or None."""
        rows = await self._read(
            "SELECT result, time FROM idempotency WHERE principal = ? AND method = ? AND key = ?",
            (principal, method, key))
        if not rows:
            return None
        result, time = rows[0]
        return {"principal": principal, "key": key, "method": method,
                "result": json.loads(result), "time": time}

    async def idempotency_put(self, principal: str, key: str, method: str,
                              result: dict[str, Any]) -> bool:
        """Store the first result for (principal, method, key). Returns False (and keeps the
        first) if one was already stored."""
        changed = await self._submit(
            "INSERT INTO idempotency (principal, method, key, result, time) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (principal, method, key) DO NOTHING",
            (principal, method, key, json.dumps(result), now_iso()))
        return bool(changed)

    async def prune_sms_reports(self, before_time: str, limit: int = 10_000) -> int:
        """Delete up to `limit` SMS receipts and up to `limit` inbound messages received before
        `before_time`; how many rows in all."""
        receipts = await self._submit(
            "DELETE FROM sms_receipts WHERE (provider, provider_id, status) IN (SELECT provider, provider_id,"
            " status FROM sms_receipts WHERE received_at < ? ORDER BY received_at LIMIT ?)",
            (before_time, int(limit)))
        inbound = await self._submit(
            "DELETE FROM sms_inbound WHERE (provider, provider_id) IN (SELECT provider, provider_id"
            " FROM sms_inbound WHERE received_at < ? ORDER BY received_at LIMIT ?)", (before_time, int(limit)))
        return int(receipts) + int(inbound)

    async def prune_idempotency(self, before_time: str) -> int:
        """Delete idempotency keys stored before `before_time` (ISO 8601, same format)."""
        return await self._submit("DELETE FROM idempotency WHERE time < ?", (before_time,))
