"""Units of work (`Store.atomic`, `Store.atomic_sync`): what a unit sees (`Tx`, `SyncTx`) and how
the writer runs one in a savepoint of its batch transaction (`run_unit`, `run_sync_unit`).

A unit's statements and the events it emits are committed together or not at all: an exception in
the work rolls the unit back (to its savepoint) and is its result; the rest of the batch commits.
Its events get seqs in order, from the seq the writer hands it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiosqlite

from .batch import INSERT_EVENT as _INSERT_EVENT, PlainOp, write_batch
from .rows import EventRow, _event_rows


class Tx:
    """What a unit of work (`Store.atomic`) sees: statements and events of one savepoint inside
    the writer's batch transaction. Its events get seqs in order; all of it commits or none."""

    def __init__(self, conn: aiosqlite.Connection, next_seq: int) -> None:
        self._conn = conn
        self.next_seq = next_seq
        self.events: list[EventRow] = []
        self.datas: list[dict[str, Any]] = []  # each event's data as given (see `emit_each`)

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
        return (await self.emit_many(type, session_id, [data]))[0]

    async def emit_many(self, type: str, session_id: str | None, datas: Sequence[dict[str, Any]]) -> list[int]:
        """Append one event per `datas` item, in order, in one statement; their seqs."""
        return await self.emit_each(type, [(session_id, d) for d in datas])

    async def emit_each(self, type: str, items: Sequence[tuple[str | None, dict[str, Any]]]) -> list[int]:
        """Append one event of `type` per (session_id, data), in order, in one statement; their seqs."""
        rows = _event_rows(self.next_seq, type, items)
        if rows:
            await self._conn.executemany(_INSERT_EVENT, rows)
        return _stored(self, rows, items)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement over many rows (one trip to the database thread)."""
        await self._conn.executemany(sql, rows)


class SyncTx:
    """What a unit of work run in the database thread (`Store.atomic_sync`) sees: the same as a
    `Tx`, as plain calls on the sqlite3 connection (no trip per statement)."""

    def __init__(self, conn: sqlite3.Connection, next_seq: int) -> None:
        self._conn = conn
        self.next_seq = next_seq
        self.events: list[EventRow] = []
        self.datas: list[dict[str, Any]] = []  # each event's data as given (see `emit_each`)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._conn.execute(sql, params)
        try:
            return cur.rowcount
        finally:
            cur.close()

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def emit_each(self, type: str, items: Sequence[tuple[str | None, dict[str, Any]]]) -> list[int]:
        rows = _event_rows(self.next_seq, type, items)
        if rows:
            self._conn.executemany(_INSERT_EVENT, rows)
        return _stored(self, rows, items)


def _stored(tx: Tx | SyncTx, rows: list[EventRow], items: Sequence[tuple[str | None, dict[str, Any]]]) -> list[int]:
    """After their insert succeeded: the rows are the unit's events (their data dicts kept for the
    listeners), its next seq moves past them; their seqs. (A `Tx` and a `SyncTx` differ only in how
    the statement reaches SQLite.)"""
    tx.events.extend(rows)
    tx.datas.extend(d for _, d in items)
    tx.next_seq += len(rows)
    return [r[0] for r in rows]



Work = Callable[[Tx], Awaitable[Any]]
SyncWork = Callable[[SyncTx], Any]


async def run_unit(conn: aiosqlite.Connection, work: Work, next_seq: int) -> tuple[Any, Tx | None]:
    """One `atomic` unit in a savepoint: (its result, its `Tx`), or (the exception it raised, None)
    once rolled back. A database that lost the transaction raises."""
    if not conn.in_transaction:
        await conn.execute("BEGIN")  # a savepoint must not be the outermost transaction
    await conn.execute("SAVEPOINT unit")
    tx = Tx(conn, next_seq)
    try:
        result = await work(tx)
    except Exception as exc:  # noqa: BLE001 - the unit's own failure, reported to its caller
        if not conn.in_transaction:
            raise
        await conn.execute("ROLLBACK TO unit")
        await conn.execute("RELEASE unit")
        return exc, None
    await conn.execute("RELEASE unit")
    return result, tx


def run_sync_unit(db: sqlite3.Connection, work: SyncWork, next_seq: int) -> tuple[Any, SyncTx | None]:
    """`run_unit` for an `atomic_sync` unit: the same steps, all in the database thread."""
    if not db.in_transaction:
        db.execute("BEGIN")
    db.execute("SAVEPOINT unit")
    tx = SyncTx(db, next_seq)
    try:
        result = work(tx)
    except Exception as exc:  # noqa: BLE001 - the unit's own failure, reported to its caller
        if not db.in_transaction:
            raise
        db.execute("ROLLBACK TO unit")
        db.execute("RELEASE unit")
        return exc, None
    db.execute("RELEASE unit")
    return result, tx


def write_with_units(db: sqlite3.Connection, events: Sequence[PlainOp], writes: Sequence[PlainOp],
                     units: Sequence[tuple[int, SyncWork]], first: int, time: str
                     ) -> tuple[list[EventRow], list[PlainOp], dict[int, Any], list[dict[str, Any] | None]]:
    """`write_batch` (without its commit when units follow), then each unit (`run_sync_unit`: its
    events take the next seqs), then the commit. What `write_batch` returns, each unit's result
    (or exception) added under its key, and each event's data as given (None for write_batch's:
    decoded from the row)."""
    rows: list[EventRow] = []
    owners: list[PlainOp] = []
    results: dict[int, Any] = {}
    if events or writes:
        rows, owners, results = write_batch(db, events, writes, first, time, not units)
    datas: list[dict[str, Any] | None] = [None] * len(rows)
    for key, work in units:
        results[key], tx = run_sync_unit(db, work, first + len(rows))
        if tx is not None:
            rows.extend(tx.events)
            datas.extend(tx.datas)
    if units:
        db.commit()
    return rows, owners, results, datas
