"""One batch of the store's group commit, written in the writer connection's thread in one call.

aiosqlite runs each call of a connection in that connection's thread and wakes the event loop with
its result: one round trip per statement. A batch used to cost one for the events' insert, two
for each write (the statement, closing its cursor), two or three for each savepoint and one for
the commit: a `session.create` (its row, its event, its audit row) took ~10 of them, each a
thread switch and a loop wake-up. `write_batch` does the plain part of a batch (events, writes,
writes that emit an event or carry a statement with them, `also`: a request's audit row; the
commit when no unit of work follows) in one call in the writer's thread
(`StoreWriter._in_thread`), with the same rules as before: the events in one insert (one by one,
seqs only for those stored, when that fails); each write undone alone when it fails (one
statement is atomic in SQLite; an executemany, or a write with its event or its `also`, gets a
savepoint: all of it or none); a database that lost the transaction fails the batch.

A batch whose units of work are all `atomic_sync` (gateway/store/units.py `write_with_units`) adds
each unit in its savepoint (`run_sync_unit`) and the commit to the same call: one trip for the whole batch (it was one
per unit and one for the commit, each waiting for a busy event loop, issue 13).

Runs outside the event loop: it touches only the sqlite3 connection and the ops' SQL fields
(never their futures), and returns what the writer task then resolves.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol, Sequence

import structlog

log = structlog.get_logger("gateway.store")

INSERT_EVENT = "INSERT INTO events (seq, type, time, session_id, data) VALUES (?, ?, ?, ?, ?)"

Row = tuple[int, str, str, "str | None", str]


class PlainOp(Protocol):
    """What `write_batch` reads of a queued write (gateway/store/writer.py `_Op`)."""

    sql: str | None
    params: Sequence[Any]
    type: str
    session_id: str | None
    data: str
    many: bool
    also: tuple[str, Sequence[Any]] | None


def write_batch(db: sqlite3.Connection, events: Sequence[PlainOp], writes: Sequence[PlainOp],
                first: int, time: str, commit: bool) -> tuple[list[Row], list[PlainOp], dict[int, Any]]:
    """Events (`sql is None`), then writes (a write with a `type` also appends that event, both or
    neither), then the commit if `commit`. Returns the stored event rows in seq order (from
    `first`), the op of each row, and per failed op (`id(op)`) its exception / per write its rowcount."""
    results: dict[int, Any] = {}
    rows: list[Row] = [(first + i, op.type, time, op.session_id, op.data) for i, op in enumerate(events)]
    owners: list[PlainOp] = list(events)
    began = False
    if rows:
        try:
            db.executemany(INSERT_EVENT, rows)
        except Exception as exc:
            log.warning("store.events_isolated", events=len(rows), error=repr(exc))
            db.rollback()
            rows, owners = _events_one_by_one(db, events, first, time, results)
        began = True
    for op in writes:
        # A write that fails (a constraint, a value SQLite cannot bind) is undone alone and
        # reported to its caller; the batch goes on.
        guarded = op.many or bool(op.type) or op.also is not None
        if guarded:
            if not db.in_transaction:
                db.execute("BEGIN")  # else RELEASE of the savepoint would commit
            db.execute("SAVEPOINT op")
        try:
            cur = (db.executemany if op.many else db.execute)(op.sql, op.params)  # type: ignore[arg-type]
            results[id(op)] = cur.rowcount
            cur.close()
            if op.type:
                row = (first + len(rows), op.type, time, op.session_id, op.data)
                db.execute(INSERT_EVENT, row)
            if op.also is not None:  # a statement that commits with the write or not at all
                db.execute(*op.also).close()
            if op.type:
                rows.append(row)
                owners.append(op)
        except Exception as exc:
            if began and not db.in_transaction:
                raise  # SQLite rolled the whole transaction back: the batch is lost
            if guarded and db.in_transaction:
                db.execute("ROLLBACK TO op")
            results[id(op)] = exc  # only this write fails
            log.warning("store.write_failed", sql=(op.sql or "")[:80], error=repr(exc))
        if guarded and db.in_transaction:
            db.execute("RELEASE op")
        began = True
    if commit:
        db.commit()
    return rows, owners, results


def _events_one_by_one(db: sqlite3.Connection, events: Sequence[PlainOp], first: int, time: str,
                       failed: dict[int, Any]) -> tuple[list[Row], list[PlainOp]]:
    """After the events' insert failed: each event alone; seqs only for stored ones, no gap."""
    rows: list[Row] = []
    owners: list[PlainOp] = []
    db.execute("BEGIN")  # one transaction for the batch: RELEASE must not commit
    for op in events:
        row = (first + len(rows), op.type, time, op.session_id, op.data)
        db.execute("SAVEPOINT ev")
        try:
            db.execute(INSERT_EVENT, row)
            rows.append(row)
            owners.append(op)
        except Exception as exc:
            if not db.in_transaction:
                raise
            db.execute("ROLLBACK TO ev")
            failed[id(op)] = exc
            log.warning("store.event_failed", type=op.type[:64], error=repr(exc))
        db.execute("RELEASE ev")
    return rows, owners

