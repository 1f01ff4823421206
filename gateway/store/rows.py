"""The columns of the store's record tables and how a row dict becomes SQL and back.

`_upsert` builds the insert-or-update of a record (keys absent from the row keep their stored value,
`extra` is a JSON dict); `_row_out` turns a selected row back into a dict; `_redact` masks values
under secret-looking keys before they reach the audit table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.timeutil import now_iso

SESSION_COLUMNS = ("session_id", "title", "state", "created_at", "closed_at", "created_by")
CALL_COLUMNS = (
    "call_id", "session_id", "direction", "local_uri", "remote_uri", "state", "created_at",
    "answered_at", "ended_at", "sip_code", "cause", "worker",
)
SMS_COLUMNS = (
    "message_id", "send_id", "session_id", "sender", "recipient", "body", "encoding", "segments",
    "state", "attempts", "next_attempt_at", "provider", "provider_id", "error", "created_at",
    "updated_at",
)
BROADCAST_COLUMNS = (
    "broadcast_id", "session_id", "state", "priority", "created_at", "ended_at", "created_by",
    "end_reason", "recording",
)
_SECRET_KEYS = frozenset({"token", "password", "secret", "auth_token", "api_key"})


def _upsert(table: str, key: str, columns: Sequence[str], row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    unknown = set(row) - set(columns) - {"extra"}
    if unknown:
        raise ValueError(f"{table}: unknown columns {sorted(unknown)}")
    if not row.get(key):
        raise ValueError(f"{table}: {key} is required")
    given = [c for c in columns if c in row and c != key]
    values = {c: row.get(c) for c in columns}
    if values.get("created_at") is None:
        values["created_at"] = now_iso()
    extra = row.get("extra")
    cols = [*columns, "extra"]
    params = (*(values[c] for c in columns), json.dumps(extra if extra is not None else {}))
    updates = [f"{c} = excluded.{c}" for c in given if c != "created_at" or row[c] is not None]
    if "extra" in row:
        updates.append("extra = excluded.extra")
    conflict = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
    sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
           f" ON CONFLICT ({key}) {conflict}")
    return sql, params


def _row_out(columns: Sequence[str], r: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(columns, r))
    out["extra"] = json.loads(r[len(columns)]) if r[len(columns)] else {}
    return out


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("***" if isinstance(k, str) and k.lower() in _SECRET_KEYS else _redact(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value
