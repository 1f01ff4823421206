"""The store's one writer: connections, the bounded write queue, group commit, `atomic` units.

One writer connection (aiosqlite, WAL, synchronous=NORMAL). Every write goes through a bounded
queue drained by one writer task, which commits whatever has accumulated in one transaction
(group commit) and only then resolves each caller's future: a write has been committed when its
coroutine returns. Event seqs are assigned by the writer, so they are strictly increasing, and
they are never reused (AUTOINCREMENT keeps its high-water mark in `sqlite_sequence`).

A write that fails alone is undone alone (per-op savepoints, events one by one after a failed
batch insert) and reported to its caller; the rest of the batch commits. After each commit the
writer hands the batch's events, in seq order, to the listeners registered with `add_listener`.
Reads use a second, read-only connection so they never queue behind a write batch (":memory:" has
no second connection: reads share the writer's); WAL checkpoints run on a third, never in the
writer's commits (gateway/store/checkpoint.py). `Store` (gateway/store/tables.py) adds the
tables' accessors on top of `StoreWriter`. A batch's plain writes are gateway/store/batch.py; what
a unit of work sees and how it runs in its savepoint, gateway/store/units.py; the stored `Event`,
gateway/store/rows.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite
import structlog

from gateway import text
from gateway.audit.chain import sql_row_hash
from gateway.errors import InvalidParams, Unavailable
from gateway.protocol.codec import encode_json as encode_data
from gateway.timeutil import now_iso

from .batch import write_batch
from .checkpoint import INTERVAL_S, Checkpointer
from .rows import Event, EventListener, EventRow
from .schema import SCHEMA_VERSION, migrate
from .units import SyncTx, SyncWork, Work, run_sync_unit, run_unit, write_with_units

log = structlog.get_logger("gateway.store")

R = TypeVar("R")


class _Op:
    """One queued write. `sql is None` means: append the event (type, session_id, data); both
    `sql` and `type`: the write and its event (`write_emitting`); `also`: a statement committed
    with the write or not at all (a request's audit row, gateway/audit/request.py)."""

    __slots__ = ("fut", "sql", "params", "type", "session_id", "data", "many", "work", "sync", "also")

    def __init__(self, fut: asyncio.Future[Any], sql: str | None, params: Sequence[Any] = (),
                 type: str = "", session_id: str | None = None, data: str = "{}",
                 many: bool = False, work: Work | SyncWork | None = None, sync: bool = False,
                 also: tuple[str, Sequence[Any]] | None = None) -> None:
        self.fut, self.sql, self.params = fut, sql, params
        self.type, self.session_id, self.data = type, session_id, data
        self.many = many  # params is a list of rows for executemany
        self.work = work  # a unit of work (Store.atomic), run in a savepoint of the batch
        self.sync = sync  # work is a SyncWork (Store.atomic_sync): run in the database thread
        self.also = also


_STOP = object()


class StoreWriter:
    """The connections and the one writer task; `Store` adds the tables (gateway/store/tables.py)."""

    def __init__(self, path: str | Path, *, max_batch: int = 512, queue_size: int = 8192,
                 busy_timeout_ms: int = 5000, checkpoint_interval_s: float = INTERVAL_S) -> None:
        self.path = str(path)
        self._checkpoint_interval_s = checkpoint_interval_s
        self.checkpointer: Checkpointer | None = None  # WAL checkpoints (none for ":memory:")
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
            if not memory:  # checkpoints on a connection of their own, not in the writer's commits
                await self._writer.execute("PRAGMA wal_autocheckpoint=0")
            await migrate(self._writer, self.path)
            await self._writer.create_function("audit_hash", 9, sql_row_hash, deterministic=True)
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
                self.checkpointer = Checkpointer(self.path, self._busy_timeout_ms, self._checkpoint_interval_s)
                await self.checkpointer.start()
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

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _pragmas(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")

    async def _close_connections(self) -> None:
        if self.checkpointer is not None:
            await self.checkpointer.stop()
            self.checkpointer = None
        for conn in {id(c): c for c in (self._reader, self._writer) if c is not None}.values():
            try:
                await conn.close()
            except Exception:  # pragma: no cover - closing a broken connection
                log.exception("store.close_failed", path=self.path)
        self._reader = self._writer = None

    # ---- events ----------------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        """Call `listener(events)` after each commit with the batch's events in seq order.

        Runs in the writer task once the batch's writers are woken (before any of them resumes):
        it must not block or raise (exceptions are logged and dropped).
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
        payload = encode_data(data if data is not None else {})
        return await self._submit(None, (), type=type, session_id=session_id, data=payload)

    async def write_emitting(self, sql: str, params: Sequence[Any], type: str, session_id: str | None,
                             data: dict[str, Any], also: tuple[str, Sequence[Any]] | None = None) -> Event:
        """One write and the event it causes (and `also`, a statement after them: a request's
        audit row), committed together or not at all (a failing write stores no event), in the
        batch's one trip to the database thread: unlike `atomic`, no await per statement.
        Returns the stored event once committed."""
        if not type or not isinstance(type, str):
            raise ValueError("event type must be a non-empty string")
        payload = encode_data(data)
        return await self._submit(sql, params, type=type, session_id=session_id, data=payload, also=also)

    async def atomic(self, work: Work) -> Any:
        """Run `work(tx)` in the writer, inside a savepoint of its batch transaction: its
        statements and the events it emits (`tx.emit`) are committed together or not at all
        (an exception rolls the unit back and is raised here; the rest of the batch commits).
        Returns what `work` returned, once committed. Keep `work` short: the batch waits for it."""
        return await self._submit(None, (), work=work)

    async def atomic_sync(self, work: Callable[[SyncTx], R]) -> R:
        """`atomic` for a unit that only reads, decides and writes: `work(sync_tx)` runs whole in
        the database thread, its savepoint included, in one trip there instead of one per
        statement (at carrier rates the trips, each waiting for a busy event loop, were the time,
        not SQLite). `work` must not block on anything but SQLite: the writer waits for it."""
        return await self._submit(None, (), work=work, sync=True)

    # ---- health ----------------------------------------------------------------------------

    async def healthy(self) -> bool:
        return await self.readiness() is None

    async def readiness(self) -> str | None:
        """None while the store can serve; else why not (for /readyz)."""
        if not self._open or self._closing:
            return "the store is closed"
        if self._writer_task is None or self._writer_task.done():
            return "the store's writer task has stopped"
        try:
            async with asyncio.timeout(2.0):
                rows = await self._read("SELECT 1", ())
            return None if rows[0][0] == 1 else "the store answered a read wrongly"
        except TimeoutError:
            log.warning("store.unhealthy", path=self.path, error="read timed out")
            return "a read of the store took more than 2 s"
        except Exception as exc:
            log.warning("store.unhealthy", path=self.path, error=repr(exc))
            return f"a read of the store failed: {type(exc).__name__}"

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read on the read-only connection, for the query modules beside the store
        (gateway/sms_store.py: the same call works on a `Tx` inside a unit of work)."""
        return await self._read(sql, params)

    # ---- internals -------------------------------------------------------------------------

    async def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        if self._reader is None:
            raise Unavailable("the store is not open", reason="shutting-down")
        return list(await self._reader.execute_fetchall(sql, params))

    async def _submit(self, sql: str | None, params: Sequence[Any], **event: Any) -> Any:
        # event: type/session_id/data for an event append, or many=True for executemany
        if not self._open or self._closing:
            raise Unavailable("the store is closed", reason="shutting-down")
        _check_text(sql, params, event)  # a text SQLite cannot hold fails here, not in a batch
        if sql is not None and event.get("type"):
            _check_text(None, (), event)  # the event of a write_emitting
        if event.get("also") is not None:
            _check_text(*event["also"], {})
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

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """`fn(sqlite3_connection, *args)` in the writer connection's thread, in one round trip.
        aiosqlite (pinned <0.23) runs every call of a connection in its one thread through
        `Connection._execute`, the call behind its own execute/commit; `fn` runs in that order."""
        conn = self._writer
        assert conn is not None
        return conn._execute(lambda: fn(conn._conn, *args))

    async def _commit(self, batch: list[_Op]) -> None:
        conn = self._writer
        assert conn is not None
        events = [op for op in batch if op.sql is None and op.work is None]
        others = [op for op in batch if op.sql is not None]
        units = [op for op in batch if op.work is not None]
        time = now_iso()
        first = self._seq + 1
        rows: list[tuple[int, str, str, str | None, str]] = []
        datas: list[dict[str, Any] | None] = []  # the units' events' data as given; None: decode the row
        try:
            owners: list[Any] = []
            results: dict[int, Any] = {}
            if all(op.sync for op in units):
                # Events, writes, every unit in its savepoint and the commit: one trip to the
                # writer's thread for the whole batch (each trip waits for a busy event loop: a
                # batch of k units took k + 1 of them, and the SMS send window and the webhooks'
                # answers waited on every one).
                rows, owners, results, datas = await self._in_thread(
                    write_with_units, events, others, [(id(op), op.work) for op in units], first, time)
            else:
                # Events and writes in one trip; then each unit (an `atomic` unit: a trip per
                # statement), then the commit.
                if events or others:
                    rows, owners, results = await self._in_thread(write_batch, events, others, first, time, False)
                    datas = [None] * len(rows)
                for op in units:
                    results[id(op)] = await self._run_unit(conn, op, first + len(rows), rows, datas)
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
        stored: list[Event] = []
        if rows:
            self._seq = rows[-1][0]
            stored = [Event(r[0], r[1], r[2], r[3], json.loads(r[4]) if d is None else d, r[4])
                      for r, d in zip(rows, datas, strict=True)]
            for op, ev in zip(owners, stored):  # the units' events come last and have no op
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
        # The listeners after the writers are woken (they still run before any of them resumes):
        # a listener that hands its work to a callback of its own (the event bus's fan-out) lets
        # the replies waiting on this commit go out first.
        for listener in list(self._listeners) if stored else ():
            try:
                listener(stored)
            except Exception:
                log.exception("store.listener_failed", listener=repr(listener))

    async def _run_unit(self, conn: aiosqlite.Connection, op: _Op, next_seq: int, rows: list[EventRow],
                        datas: list[Any]) -> Any:
        """One `atomic` unit in a savepoint (gateway/store/units.py); its events are added to `rows`
        (their data dicts to `datas`).
        An exception in the work is its result (the unit is rolled back); a database that lost the
        transaction raises. An `atomic_sync` unit runs whole in the database thread, in one trip."""
        assert op.work is not None
        if op.sync:
            result, tx = await self._in_thread(run_sync_unit, op.work, next_seq)
        else:
            result, tx = await run_unit(conn, op.work, next_seq)  # type: ignore[arg-type]
        if tx is not None:
            rows.extend(tx.events)
            datas.extend(tx.datas)
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
