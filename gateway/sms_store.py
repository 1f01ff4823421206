"""SMS statements run inside one store transaction (`Store.atomic`): receipts and inbound messages
are stored, deduplicated and published together, before the provider is answered.

`sms_receipts` keeps every receipt under (provider, provider_id, status): the same report twice is
acted on once, across restarts. A receipt whose message is not known yet (it overtook the API reply)
stays with `message_id` NULL until the message's provider id is stored, then is applied.
The batch forms (`messages`, `by_provider_ids`, `write`, `add_receipts`, `insert`) read or write
many rows in one statement per 500, so a batch of N changes is a handful of statements, not N.
The functions that take a `SyncTx` run in the database thread (`Tx.run`): a unit's statements
are one trip there together.
`sms_inbound` keeps every inbound message; `dedup_key` finds an earlier delivery of it: the
provider's id (Twilio's MessageSid), or a key of what it carries when the provider has no stable
id (SMPP, within `sms.inbound_dedup_window_s`).
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Sequence
from typing import Any, Protocol

from gateway.store import SMS_COLUMNS, SyncTx, Tx, _row_out

_SELECT = f"SELECT {', '.join(SMS_COLUMNS)}, extra FROM sms"
CHUNK = 500  # ids per IN (...) list
MUTABLE = ("state", "attempts", "next_attempt_at", "provider_id", "error", "updated_at")  # what a change writes
_INSERT_RECEIPT = ("INSERT INTO sms_receipts (provider, provider_id, status, error_code, recipient, message_id,"
                   " received_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")


mutable_of = operator.itemgetter(*MUTABLE)  # a row's MUTABLE values, as a tuple (one C call)
_WRITES = (*(False for _ in MUTABLE[:-1]), True)  # updated_at is always written


@functools.cache
def _update(changed: tuple[bool, ...]) -> tuple[str, operator.itemgetter]:
    """For the `MUTABLE` columns that changed (one flag each): the UPDATE of those columns and what
    takes its parameters from a row (built once per set of columns: a unit's rows fall into two
    or three such sets, and a row's statement is then found and filled without Python per column)."""
    columns = [c for c, w in zip(MUTABLE, changed) if w]
    return (f"UPDATE sms SET {', '.join(f'{c} = ?' for c in columns)} WHERE message_id = ?",
            operator.itemgetter(*columns, "message_id"))


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


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


def messages(tx: SyncTx, message_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The rows of these messages by id (those that exist)."""
    out: dict[str, dict[str, Any]] = {}
    for part in _chunks(list(dict.fromkeys(message_ids))):
        rows = tx.fetchall(_SELECT + f" WHERE message_id IN ({', '.join('?' * len(part))})", tuple(part))
        out.update((r[0], _row_out(SMS_COLUMNS, r)) for r in rows)
    return out


def by_provider_ids(tx: SyncTx, provider: str, provider_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The rows of the messages with these provider ids, by provider id."""
    out: dict[str, dict[str, Any]] = {}
    for part in _chunks(list(dict.fromkeys(provider_ids))):
        rows = tx.fetchall(_SELECT + f" WHERE provider_id IN ({', '.join('?' * len(part))})"
                                 " AND provider = ?", (*part, provider))
        for r in rows:
            row = _row_out(SMS_COLUMNS, r)
            out.setdefault(row["provider_id"], row)
    return out


def write(tx: SyncTx, rows: Sequence[dict[str, Any]], before: dict[str, tuple[Any, ...]] | None = None) -> None:
    """Write the changing columns (`MUTABLE`) of these rows, as they are now: only those that
    differ from `before` (message_id -> the row's `MUTABLE` values when it was read, `mutable_of`;
    all of them for a row not in it), one statement per set of columns. A column written is an
    index entry rewritten (state and next_attempt_at, provider_id, state and updated_at have one
    each), so a receipt's change writes its state and time, not the provider id it already had.
    A row holds every `MUTABLE` column (it was read whole)."""
    groups: dict[tuple[bool, ...], list[dict[str, Any]]] = {}
    everything = (True,) * len(MUTABLE)
    ne, before = operator.ne, before or {}
    for r in rows:
        old = before.get(r["message_id"])
        changed = everything if old is None else tuple(map(operator.or_, map(ne, mutable_of(r), old), _WRITES))
        groups.setdefault(changed, []).append(r)
    for changed, group in groups.items():
        sql, params = _update(changed)
        tx.executemany(sql, list(map(params, group)))


def insert(tx: SyncTx, rows: Sequence[dict[str, Any]]) -> None:
    """Queue many messages (one statement)."""
    cols = [*SMS_COLUMNS, "extra"]
    sql = f"INSERT INTO sms ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    tx.executemany(sql, [(*map(r.get, SMS_COLUMNS), _extra_text(r.get("extra"))) for r in rows])


def _extra_text(extra: dict[str, Any] | None) -> str:
    return json.dumps(extra) if extra else "{}"  # most messages have none: not encoded


def add_receipts(tx: SyncTx, provider: str,
                 receipts: Sequence[tuple[str, str, str | None, str | None, str | None]], now: str) -> list[bool]:
    """Store receipts (provider_id, status, error_code, recipient, message_id: its message when
    already known, else None: `match_receipts` sets it later); for each, False when the same
    (provider id, status) was stored before or earlier in `receipts`."""
    seen: set[tuple[str, str]] = set()
    for part in _chunks(list(dict.fromkeys(r[0] for r in receipts))):
        rows = tx.fetchall("SELECT provider_id, status FROM sms_receipts WHERE provider = ?"
                                 f" AND provider_id IN ({', '.join('?' * len(part))})", (provider, *part))
        seen.update((r[0], r[1]) for r in rows)
    new: list[bool] = []
    for provider_id, status, *_ in receipts:
        new.append((provider_id, status) not in seen)
        seen.add((provider_id, status))
    tx.executemany(_INSERT_RECEIPT, [(provider, *r, now) for r, fresh in zip(receipts, new) if fresh])
    return new


def match_receipts(tx: SyncTx, provider: str, matches: Sequence[tuple[str, str, str]]) -> None:
    """Mark receipts (provider_id, status) as their message's (message_id), in one statement."""
    if matches:
        tx.executemany("UPDATE sms_receipts SET message_id = ? WHERE provider = ? AND provider_id = ?"
                             " AND status = ?", [(m, provider, p, s) for p, s, m in matches])


def unmatched_receipts_of(tx: SyncTx, provider: str, provider_ids: Sequence[str]) -> dict[str, list[tuple[str, str | None]]]:
    """(status, error_code) of the receipts stored for these provider ids before their message was
    known, by provider id, oldest first."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for part in _chunks(list(dict.fromkeys(provider_ids))):
        rows = tx.fetchall(
            "SELECT provider_id, status, error_code FROM sms_receipts WHERE message_id IS NULL AND provider = ?"
            f" AND provider_id IN ({', '.join('?' * len(part))}) ORDER BY received_at", (provider, *part))
        for r in rows:
            out.setdefault(r[0], []).append((r[1], r[2]))
    return out


def awaiting_receipt(tx: SyncTx, provider: str, recipient: str, unsure: tuple[str, ...]) -> dict[str, Any] | None:
    """The oldest message to `recipient` whose last attempt timed out with no provider id: the one
    a receipt for an unknown id from that number may be for (SMPP cannot be asked)."""
    marks = ", ".join("?" * len(unsure))
    rows = tx.fetchall(
        _SELECT + f" WHERE recipient = ? AND provider = ? AND state = 'queued' AND provider_id IS NULL"
        f" AND attempts > 0 AND error IN ({marks}) ORDER BY created_at, message_id LIMIT 1",
        (recipient, provider, *unsure))
    return _row_out(SMS_COLUMNS, rows[0]) if rows else None


def unmatched_receipts_from(tx: SyncTx, provider: str, recipient: str, since: str,
                                  statuses: tuple[str, ...]) -> list[tuple[str, str, str | None]]:
    """(provider_id, status, error_code) of receipts from `recipient` since `since` that matched no
    message (SMPP: their SMSC id never reached us), oldest first."""
    marks = ", ".join("?" * len(statuses))
    rows = tx.fetchall(
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
