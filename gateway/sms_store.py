"""SMS statements run inside one store transaction (`Store.atomic`): receipts and inbound messages
are stored, deduplicated and published together, before the provider is answered.

`sms_receipts` keeps every receipt under (provider, provider_id, status): the same report twice is
acted on once, across restarts. A receipt whose message is not known yet (it overtook the API reply)
stays with `message_id` NULL until the message's provider id is stored, then is applied.
`sms_inbound` keeps every inbound message; `dedup_key` finds an earlier delivery of it: the
provider's id (Twilio's MessageSid), or a key of what it carries when the provider has no stable
id (SMPP, within `sms.inbound_dedup_window_s`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from gateway.store import SMS_COLUMNS, Tx, _row_out

_SELECT = f"SELECT {', '.join(SMS_COLUMNS)}, extra FROM sms"


class Db(Protocol):
    """Where a read runs: a `Tx` (inside a unit of work) or the `Store` (its read connection)."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ...) -> list[Any]: ...


async def stale(db: Db, state: str, before: str, after: tuple[str, str] | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
    """Messages in `state` not updated since `before` (ISO), oldest first: one page after the
    (updated_at, message_id) of the previous page's last row."""
    sql = _SELECT + " WHERE state = ? AND updated_at < ?"
    params: list[Any] = [state, before]
    if after is not None:
        sql += " AND (updated_at, message_id) > (?, ?)"
        params += list(after)
    rows = await db.fetchall(sql + " ORDER BY updated_at, message_id LIMIT ?", (*params, limit))
    return [_row_out(SMS_COLUMNS, r) for r in rows]


async def last_inbound(db: Db, sender: str) -> dict[str, Any] | None:
    """The newest inbound message from `sender` (session_id, seq, received_at), or None."""
    rows = await db.fetchall("SELECT session_id, seq, received_at FROM sms_inbound WHERE sender = ?"
                             " ORDER BY received_at DESC LIMIT 1", (sender,))
    return dict(zip(("session_id", "seq", "received_at"), rows[0])) if rows else None


async def message(tx: Tx, message_id: str) -> dict[str, Any] | None:
    rows = await tx.fetchall(_SELECT + " WHERE message_id = ?", (message_id,))
    return _row_out(SMS_COLUMNS, rows[0]) if rows else None


async def message_by_provider_id(tx: Tx, provider: str, provider_id: str) -> dict[str, Any] | None:
    rows = await tx.fetchall(_SELECT + " WHERE provider_id = ? AND provider = ? LIMIT 1", (provider_id, provider))
    return _row_out(SMS_COLUMNS, rows[0]) if rows else None


async def awaiting_receipt(tx: Tx, provider: str, recipient: str, unsure: tuple[str, ...]) -> dict[str, Any] | None:
    """The oldest message to `recipient` whose last attempt timed out with no provider id: the one
    a receipt for an unknown id from that number may be for (SMPP cannot be asked)."""
    marks = ", ".join("?" * len(unsure))
    rows = await tx.fetchall(
        _SELECT + f" WHERE recipient = ? AND provider = ? AND state = 'queued' AND provider_id IS NULL"
        f" AND attempts > 0 AND error IN ({marks}) ORDER BY created_at, message_id LIMIT 1",
        (recipient, provider, *unsure))
    return _row_out(SMS_COLUMNS, rows[0]) if rows else None


async def update(tx: Tx, message_id: str, changes: dict[str, Any], now: str) -> None:
    changes = {**changes, "updated_at": now}
    if "extra" in changes:
        changes["extra"] = json.dumps(changes["extra"] or {})
    sets = ", ".join(f"{c} = ?" for c in changes)
    await tx.execute(f"UPDATE sms SET {sets} WHERE message_id = ?", (*changes.values(), message_id))


async def add_receipt(tx: Tx, provider: str, provider_id: str, status: str, error_code: str | None,
                      recipient: str | None, now: str) -> bool:
    """Store a receipt; False when the same (provider id, status) was stored before."""
    return bool(await tx.execute(
        "INSERT INTO sms_receipts (provider, provider_id, status, error_code, recipient, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (provider, provider_id, status, error_code, recipient, now)))


async def match_receipt(tx: Tx, provider: str, provider_id: str, status: str, message_id: str) -> None:
    await tx.execute("UPDATE sms_receipts SET message_id = ? WHERE provider = ? AND provider_id = ?"
                     " AND status = ?", (message_id, provider, provider_id, status))


async def unmatched_receipts(tx: Tx, provider: str, provider_id: str) -> list[tuple[str, str | None]]:
    """(status, error_code) of the receipts stored for `provider_id` before its message was known."""
    rows = await tx.fetchall(
        "SELECT status, error_code FROM sms_receipts WHERE provider_id = ? AND provider = ?"
        " AND message_id IS NULL ORDER BY received_at", (provider_id, provider))
    return [(r[0], r[1]) for r in rows]


async def unmatched_receipts_from(tx: Tx, provider: str, recipient: str, since: str,
                                  statuses: tuple[str, ...]) -> list[tuple[str, str, str | None]]:
    """(provider_id, status, error_code) of receipts from `recipient` since `since` that matched no
    message (SMPP: their SMSC id never reached us), oldest first."""
    marks = ", ".join("?" * len(statuses))
    rows = await tx.fetchall(
        "SELECT provider_id, status, error_code FROM sms_receipts WHERE recipient = ? AND provider = ?"
        f" AND message_id IS NULL AND received_at >= ? AND status IN ({marks}) ORDER BY received_at",
        (recipient, provider, since, *statuses))
    return [(r[0], r[1], r[2]) for r in rows]


async def inbound_seen(db: Db, provider: str, dedup_key: str, since: str) -> bool:
    """Whether an inbound message with this key was stored at or after `since` ("" = ever)."""
    rows = await db.fetchall("SELECT 1 FROM sms_inbound WHERE provider = ? AND dedup_key = ?"
                             " AND received_at >= ?", (provider, dedup_key, since))
    return bool(rows)


async def add_inbound(tx: Tx, row: dict[str, Any]) -> None:
    """Insert an inbound message (its dedup was checked with `inbound_seen` in the same unit)."""
    cols = ("provider", "provider_id", "dedup_key", "sender", "recipient", "body", "session_id",
            "in_reply_to", "seq", "received_at")
    await tx.execute(f"INSERT INTO sms_inbound ({', '.join(cols)})"
                     f" VALUES ({', '.join('?' * len(cols))})", tuple(row[c] for c in cols))
