"""The gateway's durable state in one SQLite file: events, sessions, calls (CDR), audit, idempotency.

One writer connection (aiosqlite, WAL, synchronous=NORMAL). Every write goes through a bounded
queue drained by one writer task, which commits whatever has accumulated in one transaction
(group commit) and only then resolves each caller's future: a write has been committed when its
coroutine returns. Event seqs are assigned by the writer, so they are strictly increasing, and
they are never reused (AUTOINCREMENT keeps its high-water mark in `sqlite_sequence`).

After each commit the writer hands the batch's events, in seq order, to the listeners registered
with `add_listener` (the EventBus fans out from there): a listener never sees an event that is not
stored, and never sees two events out of order. Reads use a second, read-only connection so they
never queue behind a write batch (":memory:" has no second connection: reads share the writer's).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from gateway import text
from gateway.errors import InvalidParams, Unavailable
from gateway.timeutil import now_iso

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 7

# Each entry moves the schema from version n-1 to n; applied in one transaction at open.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            time TEXT NOT NULL,
            session_id TEXT,
            data TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX events_session ON events (session_id, seq) WHERE session_id IS NOT NULL",
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            title TEXT,
            state TEXT,
            created_at TEXT NOT NULL,
            closed_at TEXT,
            created_by TEXT,
            extra TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX sessions_state ON sessions (state, created_at)",
        """CREATE TABLE calls (
            call_id TEXT PRIMARY KEY,
            session_id TEXT,
            direction TEXT,
            local_uri TEXT,
            remote_uri TEXT,
            state TEXT,
            created_at TEXT NOT NULL,
            answered_at TEXT,
            ended_at TEXT,
            sip_code INTEGER,
            cause TEXT,
            worker INTEGER,
            extra TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX calls_session ON calls (session_id, created_at)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time TEXT NOT NULL,
            principal TEXT,
            role TEXT,
            method TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            result TEXT NOT NULL CHECK (result IN ('ok', 'error')),
            error_reason TEXT
        )""",
        "CREATE INDEX audit_time ON audit (time)",
        """CREATE TABLE idempotency (
            principal TEXT NOT NULL,
            key TEXT NOT NULL,
            method TEXT NOT NULL,
            result TEXT NOT NULL,
            time TEXT NOT NULL,
            PRIMARY KEY (principal, key)
        ) WITHOUT ROWID""",
    ),
    2: (
        """CREATE TABLE broadcasts (
            broadcast_id TEXT PRIMARY KEY,
            session_id TEXT,
            state TEXT,
            priority TEXT,
            created_at TEXT NOT NULL,
            ended_at TEXT,
            created_by TEXT,
            end_reason TEXT,
            recording TEXT,
            extra TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX broadcasts_session ON broadcasts (session_id, created_at)",
    ),
    3: (
        """CREATE TABLE sms (
            message_id TEXT PRIMARY KEY,
            send_id TEXT NOT NULL,
            session_id TEXT,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            body TEXT NOT NULL,
            encoding TEXT,
            segments INTEGER,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            provider TEXT,
            provider_id TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT,
            extra TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX sms_pending ON sms (state, next_attempt_at)",
        "CREATE INDEX sms_send ON sms (send_id, created_at)",
        "CREATE INDEX sms_provider_id ON sms (provider_id) WHERE provider_id IS NOT NULL",
        "CREATE INDEX sms_recipient ON sms (recipient, created_at)",
    ),
    4: (  # idempotency keys are scoped by method too: a key reused on another method is new
        """CREATE TABLE idempotency_v4 (
            principal TEXT NOT NULL,
            method TEXT NOT NULL,
            key TEXT NOT NULL,
            result TEXT NOT NULL,
            time TEXT NOT NULL,
            PRIMARY KEY (principal, method, key)
        ) WITHOUT ROWID""",
        "INSERT INTO idempotency_v4 (principal, method, key, result, time)"
        " SELECT principal, method, key, result, time FROM idempotency",
        "DROP TABLE idempotency",
        "ALTER TABLE idempotency_v4 RENAME TO idempotency",
    ),
    5: (  # what providers told us, stored before they are answered (gateway/sms_store.py)
        """CREATE TABLE sms_inbound (
            provider TEXT NOT NULL,
            provider_id TEXT NOT NULL,
            dedup_key TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            body TEXT NOT NULL,
            session_id TEXT,
            in_reply_to TEXT,
            seq INTEGER,
            received_at TEXT NOT NULL,
            PRIMARY KEY (provider, provider_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX sms_inbound_key ON sms_inbound (provider, dedup_key, received_at)",
        "CREATE INDEX sms_inbound_sender ON sms_inbound (sender, received_at)",
        """CREATE TABLE sms_receipts (
            provider TEXT NOT NULL,
            provider_id TEXT NOT NULL,
            status TEXT NOT NULL,
            error_code TEXT,
            message_id TEXT,
            received_at TEXT NOT NULL,
            PRIMARY KEY (provider, provider_id, status)
        ) WITHOUT ROWID""",
        "CREATE INDEX sms_receipts_unmatched ON sms_receipts (provider_id) WHERE message_id IS NULL",
        "CREATE INDEX sms_stale ON sms (state, updated_at)",
    ),
    6: (  # the number a receipt came from (SMPP): it finds a message whose submit timed out
        "ALTER TABLE sms_receipts ADD COLUMN recipient TEXT",
        "CREATE INDEX sms_receipts_recipient ON sms_receipts (recipient, received_at) WHERE message_id IS NULL",
    ),
    7: (  # retention prunes SMS reports by the time they were received
        "CREATE INDEX sms_receipts_time ON sms_receipts (received_at)",
        "CREATE INDEX sms_inbound_time ON sms_inbound (received_at)",
    ),
}

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
_EVENT_COLUMNS = "seq, type, time, session_id, data"
_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
_SECRET_KEYS = frozenset({"token", "password", "secret", "auth_token", "api_key"})
_MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event. `data` is shared between subscribers: treat it as read-only."""

    seq: int
    type: str
    time: str  # ISO 8601 UTC with ms and "Z"
    session_id: str | None
    data: dict[str, Any]

    def to_params(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "time": self.time,
                "session_id": self.session_id, "data": self.data}


EventListener = Callable[[Sequence[Event]], None]


class _Op:
    """One queued write. `sql is None` means: append the event (type, session_id, data)."""

    __slots__ = ("fut", "sql", "params", "type", "session_id", "data", "many", "work")

    def __init__(self, fut: asyncio.Future[Any], sql: str | None, params: Sequence[Any] = (),
                 type: str = "", session_id: str | None = None, data: str = "{}",
                 many: bool = False, work: Work | None = None) -> None:
        self.fut, self.sql, self.params = fut, sql, params
        self.type, self.session_id, self.data = type, session_id, data
        self.many = many  # params is a list of rows for executemany
        self.work = work  # a unit of work (Store.atomic), run in a savepoint of the batch


class Tx:
    """What a unit of work (`Store.atomic`) sees: statements and events of one savepoint inside
    the writer's batch transaction. Its events get seqs in order; all of it commits or none."""

    def __init__(self, conn: aiosqlite.Connection, next_seq: int) -> None:
        self._conn = conn
        self.next_seq = next_seq
        self.events: list[tuple[int, str, str, str | None, str]] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; its rowcount."""
        cur = await self._conn.execute(sql, params)
        try:
            return cur.rowcount
        finally:
            await cur.close()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def emit(self, type: str, session_id: str | None, data: dict[str, Any]) -> int:
        """Append an event in this unit; its seq (delivered to listeners after the commit)."""
        row = (self.next_seq, type, now_iso(), session_id,
               json.dumps(data, separators=(",", ":"), ensure_ascii=False))
        await self._conn.execute(_INSERT_EVENT, row)
        self.events.append(row)
        self.next_seq += 1
        return row[0]


Work = Callable[[Tx], Awaitable[Any]]


_STOP = object()


class Store:
    def __init__(self, path: str | Path, *, max_batch: int = 512, queue_size: int = 8192,
                 busy_timeout_ms: int = 5000) -> None:
        self.path = str(path)
        self.max_batch = max_batch
        self._busy_timeout_ms = busy_timeout_ms
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._listeners: list[EventListener] = []
        self._seq = 0
        self._open = False
        self._closing = False
        self._writer_done = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        if not memory:
            await asyncio.to_thread(Path(self.path).parent.mkdir, parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self.path)
        try:
            await self._pragmas(self._writer)
            mode = (await self._writer.execute_fetchall("PRAGMA journal_mode=WAL"))[0][0]
            await self._writer.execute("PRAGMA synchronous=NORMAL")
            await self._migrate()
            rows = await self._writer.execute_fetchall(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
                " coalesce((SELECT max(seq) FROM events), 0))")
            self._seq = int(rows[0][0])
            if memory:
                self._reader = self._writer
            else:
                self._reader = await aiosqlite.connect(self.path)
                await self._pragmas(self._reader)
                await self._reader.execute("PRAGMA query_only=ON")
        except BaseException:
            await self._close_connections()
            raise
        self._open = True
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")
        log.info("store.opened", path=self.path, journal_mode=mode, last_seq=self._seq,
                 schema_version=SCHEMA_VERSION)

    async def close(self) -> None:
        """Commit everything already queued, then close. Later writes raise `Unavailable`."""
        if not self._open or self._closing:
            return
        self._closing = True
        try:
            if self._writer_task is not None:
                if not self._writer_task.done():
                    await self._queue.put(_STOP)
                await self._writer_task
        finally:
            await self._close_connections()
            self._open = False
        log.info("store.closed", path=self.path, last_seq=self._seq)

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _pragmas(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")

    async def _migrate(self) -> None:
        conn = self._writer
        assert conn is not None
        await conn.execute("BEGIN IMMEDIATE")  # re-read the version under the write lock
        try:
            version = (await conn.execute_fetchall("PRAGMA user_version"))[0][0]
            if version > SCHEMA_VERSION:
                raise Unavailable("the database was written by a newer gateway",
                                  reason="store-schema-too-new",
                                  details={"path": self.path, "user_version": version,
                                           "supported": SCHEMA_VERSION})
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[v]:
                    await conn.execute(stmt)
                await conn.execute(f"PRAGMA user_version={v}")
                log.info("store.migrated", path=self.path, schema_version=v)
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise

    async def _close_connections(self) -> None:
        for conn in {id(c): c for c in (self._reader, self._writer) if c is not None}.values():
            try:
                await conn.close()
            except Exception:  # pragma: no cover - closing a broken connection
                log.exception("store.close_failed", path=self.path)
        self._reader = self._writer = None

    # ---- events ----------------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        """Call `listener(events)` after each commit with the batch's events in seq order.

        Runs in the writer task: it must not block or raise (exceptions are logged and dropped).
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def committed_seq(self) -> int:
        """The seq of the last committed event (0 if none), without a query."""
        return self._seq

    async def append_event(self, type: str, session_id: str | None = None,
                           data: dict[str, Any] | None = None) -> Event:
        """Store one event; returns once it is committed, with its seq and time.

        If the caller is cancelled while waiting, the event may still be stored and delivered.
        """
        if not type or not isinstance(type, str):
            raise ValueError("event type must be a non-empty string")
        payload = json.dumps(data if data is not None else {}, separators=(",", ":"),
                             ensure_ascii=False)
        return await self._submit(None, (), type=type, session_id=session_id, data=payload)

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

    async def atomic(self, work: Work) -> Any:
        """Run `work(tx)` in the writer, inside a savepoint of its batch transaction: its
        statements and the events it emits (`tx.emit`) are committed together or not at all
        (an exception rolls the unit back and is raised here; the rest of the batch commits).
        Returns what `work` returned, once committed. Keep `work` short: the batch waits for it."""
        return await self._submit(None, (), work=work)

    # ---- sessions and calls ----------------------------------------------------------------

    async def _get_row(self, table: str, key: str, columns: Sequence[str], value: str) -> dict[str, Any] | None:
        rows = await self._read(f"SELECT {', '.join(columns)}, extra FROM {table} WHERE {key} = ?", (value,))
        return _row_out(columns, rows[0]) if rows else None

    async def _list_rows(self, table: str, key: str, columns: Sequence[str], where: str | None,
                         value: Any, limit: int) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(columns)}, extra FROM {table}"
        params: tuple[Any, ...] = ()
        if value is not None:
            sql, params = sql + f" WHERE {where} = ?", (value,)
        rows = await self._read(sql + f" ORDER BY created_at, {key} LIMIT ?", (*params, limit))
        return [_row_out(columns, r) for r in rows]

    async def put_session(self, row: dict[str, Any]) -> None:
        """Insert or update a session. Keys absent from `row` keep their stored value;
        `extra` (a dict) replaces the stored one. Unknown keys raise ValueError."""
        await self._submit(*_upsert("sessions", "session_id", SESSION_COLUMNS, row))

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        return await self._get_row("sessions", "session_id", SESSION_COLUMNS, session_id)

    async def list_sessions(self, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return await self._list_rows("sessions", "session_id", SESSION_COLUMNS, "state", state, limit)

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

    # ---- audit and idempotency -------------------------------------------------------------

    async def add_audit(self, principal: str | None, role: str | None, method: str,
                        params: dict[str, Any], result: str, error_reason: str | None = None) -> None:
        """Record one command. Values under secret-looking keys (token, password...) are masked."""
        if result not in ("ok", "error"):
            raise ValueError("audit result must be 'ok' or 'error'")
        await self._submit(
            "INSERT INTO audit (time, principal, role, method, params, result, error_reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (now_iso(), principal, role, method, json.dumps(_redact(params or {}), default=str),
             result, error_reason))

    async def list_audit(self, limit: int = 100, principal: str | None = None) -> list[dict[str, Any]]:
        """The newest audit rows first."""
        sql = "SELECT id, time, principal, role, method, params, result, error_reason FROM audit"
        params: tuple[Any, ...] = ()
        if principal is not None:
            sql, params = sql + " WHERE principal = ?", (principal,)
        rows = await self._read(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        keys = ("id", "time", "principal", "role", "method", "params", "result", "error_reason")
        return [{**dict(zip(keys, r)), "params": json.loads(r[5])} for r in rows]

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

    async def prune_audit(self, before_time: str, limit: int = 10_000) -> int:
        """Delete up to `limit` audit rows recorded before `before_time` (oldest first)."""
        return await self._submit(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? ORDER BY time LIMIT ?)",
            (before_time, int(limit)))

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

    # ---- health ----------------------------------------------------------------------------

    async def healthy(self) -> bool:
        if not self._open or self._closing or self._writer_task is None or self._writer_task.done():
            return False
        try:
            async with asyncio.timeout(2.0):
                rows = await self._read("SELECT 1", ())
            return rows[0][0] == 1
        except Exception as exc:
            log.warning("store.unhealthy", path=self.path, error=repr(exc))
            return False

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read on the read-only connection, for the query modules beside the store
        (gateway/sms_store.py: the same call works on a `Tx` inside a unit of work)."""
        return await self._read(sql, params)

    # ---- internals -------------------------------------------------------------------------

    async def _insert_events_one_by_one(self, events: list[_Op], first: int, time: str,
                                        failed: dict[int, Any]) -> list[tuple[Any, ...]]:
        """After the batch insert failed: each event alone; seqs only for stored ones, no gap."""
        conn = self._writer
        assert conn is not None
        rows: list[tuple[Any, ...]] = []
        await conn.execute("BEGIN")  # one transaction for the batch: RELEASE must not commit
        for op in events:
            row = (first + len(rows), op.type, time, op.session_id, op.data)
            await conn.execute("SAVEPOINT ev")
            try:
                await conn.execute(_INSERT_EVENT, row)
                rows.append(row)
            except Exception as exc:
                if not conn.in_transaction:
                    raise
                await conn.execute("ROLLBACK TO ev")
                failed[id(op)] = exc
                log.warning("store.event_failed", type=op.type[:64], error=repr(exc))
            await conn.execute("RELEASE ev")
        return rows

    async def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        if self._reader is None:
            raise Unavailable("the store is not open", reason="shutting-down")
        return list(await self._reader.execute_fetchall(sql, params))

    async def _submit(self, sql: str | None, params: Sequence[Any], **event: Any) -> Any:
        # event: type/session_id/data for an event append, or many=True for executemany
        if not self._open or self._closing:
            raise Unavailable("the store is closed", reason="shutting-down")
        _check_text(sql, params, event)  # a text SQLite cannot hold fails here, not in a batch
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Op(fut, sql, params, **event))
        if self._writer_done and not fut.done():
            raise Unavailable("the store is closed", reason="shutting-down")
        return await fut

    async def _write_loop(self) -> None:
        queue = self._queue
        try:
            stop = False
            while not stop:
                first = await queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        op = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if op is _STOP:
                        stop = True
                        break
                    batch.append(op)
                await self._commit(batch)
        finally:
            self._writer_done = True
            err = Unavailable("the store is closed", reason="shutting-down")
            while not queue.empty():
                op = queue.get_nowait()
                if op is not _STOP and not op.fut.done():
                    op.fut.set_exception(err)

    async def _commit(self, batch: list[_Op]) -> None:
        conn = self._writer
        assert conn is not None
        events = [op for op in batch if op.sql is None and op.work is None]
        others = [op for op in batch if op.sql is not None]
        units = [op for op in batch if op.work is not None]
        time = now_iso()
        first = self._seq + 1
        rows = [(first + i, op.type, time, op.session_id, op.data) for i, op in enumerate(events)]
        results: dict[int, Any] = {}
        try:
            began = False
            if rows:
                try:
                    await conn.executemany(_INSERT_EVENT, rows)
                except Exception as exc:
                    log.warning("store.events_isolated", events=len(rows), error=repr(exc))
                    await conn.rollback()
                    rows = await self._insert_events_one_by_one(events, first, time, results)
                    events = [op for op in events if id(op) not in results]
                began = True
            for op in others:
                # A write that fails (a constraint, a value SQLite cannot bind) is undone alone
                # and reported to its caller; the batch goes on. One statement is atomic in
                # SQLite; an executemany needs a savepoint so its earlier rows go too.
                if op.many:
                    if not conn.in_transaction:
                        await conn.execute("BEGIN")  # else RELEASE of the savepoint would commit
                    await conn.execute("SAVEPOINT op")
                try:
                    if op.many:
                        cur = await conn.executemany(op.sql, op.params)  # type: ignore[arg-type]
                    else:
                        cur = await conn.execute(op.sql, op.params)  # type: ignore[arg-type]
                    results[id(op)] = cur.rowcount
                    await cur.close()
                except Exception as exc:
                    if began and not conn.in_transaction:
                        raise  # SQLite rolled the whole transaction back: the batch is lost
                    if op.many and conn.in_transaction:
                        await conn.execute("ROLLBACK TO op")
                    results[id(op)] = exc  # only this write fails
                    log.warning("store.write_failed", sql=(op.sql or "")[:80], error=repr(exc))
                if op.many and conn.in_transaction:
                    await conn.execute("RELEASE op")
                began = True
            for op in units:
                results[id(op)] = await self._run_unit(conn, op, first + len(rows), rows)
            await conn.commit()
        except BaseException as exc:
            log.error("store.commit_failed", path=self.path, batch=len(batch), events=len(rows),
                      error=repr(exc))
            try:
                await conn.rollback()
            except BaseException:  # noqa: BLE001 - the original error is what matters
                pass
            for op in batch:
                if not op.fut.done():
                    op.fut.set_exception(exc if isinstance(exc, Exception)
                                         else Unavailable("the store is closed", reason="shutting-down"))
            if not isinstance(exc, Exception):
                raise
            return
        if rows:
            self._seq = rows[-1][0]
            stored = [Event(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
            for listener in list(self._listeners):
                try:
                    listener(stored)
                except Exception:
                    log.exception("store.listener_failed", listener=repr(listener))
            for op, ev in zip(events, stored):
                if not op.fut.done():
                    op.fut.set_result(ev)
        for op in batch:
            res = results.get(id(op), results)  # events stored above are not in results
            if res is results or op.fut.done():
                continue
            if isinstance(res, BaseException):
                op.fut.set_exception(res)
            else:
                op.fut.set_result(res)


    async def _run_unit(self, conn: aiosqlite.Connection, op: _Op, next_seq: int,
                        rows: list[tuple[int, str, str, str | None, str]]) -> Any:
        """One `atomic` unit in a savepoint; its events are added to `rows`. An exception in the
        work is its result (the unit is rolled back); a database that lost the transaction raises."""
        assert op.work is not None
        if not conn.in_transaction:
            await conn.execute("BEGIN")  # a savepoint must not be the outermost transaction
        await conn.execute("SAVEPOINT unit")
        tx = Tx(conn, next_seq)
        try:
            result = await op.work(tx)
        except Exception as exc:  # noqa: BLE001 - the unit's own failure, reported to its caller
            if not conn.in_transaction:
                raise
            await conn.execute("ROLLBACK TO unit")
            await conn.execute("RELEASE unit")
            return exc
        await conn.execute("RELEASE unit")
        rows.extend(tx.events)
        return result


def _check_text(sql: str | None, params: Sequence[Any], event: dict[str, Any]) -> None:
    """Raise InvalidParams (reason `invalid-text`) for a string SQLite cannot encode."""
    if sql is None:
        named: Any = (("type", event.get("type")), ("session_id", event.get("session_id")),
                      ("data", event.get("data")))
    else:
        rows = params if event.get("many") else (params,)
        named = ((f"param {i}", v) for row in rows for i, v in enumerate(row))
    for name, value in named:
        if isinstance(value, str) and not text.is_encodable(value):
            where = text.first_bad_text(json.loads(value)) if name == "data" else None
            raise InvalidParams(f"{name} is not valid UTF-8 text (lone surrogate)", reason="invalid-text",
                                details={"field": f"data.{where}" if where else name})
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
