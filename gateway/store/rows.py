"""The columns of the store's record tables and how a row dict becomes SQL and back.

`_upsert` builds the insert-or-update of a record (keys absent from the row keep their stored value,
`extra` is a JSON dict); `_row_out` turns a selected row back into a dict; `audit_params_text`
masks values under secret-looking keys and bounds what reaches the audit table. The events table's
row: `Event` (a stored event, as listeners and readers get it), `_EVENT_COLUMNS`, and `_event_rows`
(the rows a unit's events are inserted as).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.protocol.codec import encode_json as encode_data
from gateway.timeutil import now_iso

_EVENT_COLUMNS = "seq, type, time, session_id, data"
EventRow = tuple[int, str, str, str | None, str]  # seq, type, time, session_id, data (JSON)



@dataclass(frozen=True, slots=True)
class Event:
    """A stored event. `data` is shared between subscribers: treat it as read-only. `data_json`,
    when known, is `data` as stored (the codec's compact JSON): a notification frame is built
    around it instead of encoding `data` again (`codec.encode_stored_event`)."""

    seq: int
    type: str
    time: str  # ISO 8601 UTC with ms and "Z"
    session_id: str | None
    data: dict[str, Any]
    data_json: str | None = field(default=None, compare=False, repr=False)

    def to_params(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "time": self.time,
                "session_id": self.session_id, "data": self.data}


EventListener = Callable[[Sequence[Event]], None]


def _event_rows(first_seq: int, type: str, items: Sequence[tuple[str | None, dict[str, Any]]]) -> list[EventRow]:
    time = now_iso()
    return [(first_seq + i, type, time, session_id, encode_data(d)) for i, (session_id, d) in enumerate(items)]


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
AUDIT_PARAMS_MAX_BYTES = 8192  # an audit row's params, encoded; larger ones are kept as a digest
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


_scan = json.JSONDecoder().scan_once  # the C scanner json.loads runs under three Python frames


def _row_out(columns: Sequence[str], r: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(columns, r))
    out["extra"] = _extra(r[len(columns)])
    return out


def _extra(text: str | None) -> dict[str, Any]:
    """A row's `extra` (JSON as `_upsert` and the SMS inserts write it), decoded: "{}" not at all,
    the rest by json's C scanner called directly (a row is read at every step of an SMS: json.loads'
    Python frames and whitespace matches cost more than the row); a text it does not take whole
    (whitespace around it, not JSON) goes through json.loads, which decodes or raises as before."""
    if not text or text == "{}":
        return {}
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else json.loads(text)


_MAX_DEPTH = 32  # deeper containers are cut (and the row becomes a digest)
_HEAD_CHARS = 256


def _redact(value: Any) -> tuple[Any, bool]:
    """`value` with values under secret-looking keys masked, containers deeper than `_MAX_DEPTH`
    replaced by "..."; and whether anything was cut. Iterative: any depth is safe."""
    cut = False

    def copy(v: Any) -> Any:
        return {} if isinstance(v, dict) else [] if isinstance(v, list | tuple) else v

    root = copy(value)
    stack = [(value, root, 0)] if root is not value else []
    while stack:
        src, dst, depth = stack.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for k, v in items:
            if isinstance(src, dict) and isinstance(k, str) and k.lower() in _SECRET_KEYS:
                out: Any = "***"
            elif isinstance(v, dict | list | tuple) and depth + 1 >= _MAX_DEPTH:
                out, cut = "...", True
            else:
                out = copy(v)
                if out is not v:
                    stack.append((v, out, depth + 1))
            if isinstance(dst, dict):
                dst[k] = out
            else:
                dst.append(out)
    return root, cut


def audit_params_text(params: Any) -> str:
    """The JSON stored for an audit row's params: redacted, and at most `AUDIT_PARAMS_MAX_BYTES`.
    Params larger than that or nested deeper than `_MAX_DEPTH` are stored as a digest of their
    redacted encoding: `{"digest": {"bytes", "sha256", "head", "depth_cut"}}`."""
    redacted, cut = _redact(params if params is not None else {})
    text = json.dumps(redacted, default=str)
    encoded = text.encode("utf-8", "backslashreplace")
    if len(encoded) <= AUDIT_PARAMS_MAX_BYTES and not cut:
        return text
    return json.dumps({"digest": {"bytes": len(encoded), "sha256": hashlib.sha256(encoded).hexdigest(),
                                  "head": text[:_HEAD_CHARS], "depth_cut": cut}})
