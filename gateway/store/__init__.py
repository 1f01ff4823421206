"""The gateway's durable state in one SQLite file: events, sessions, calls (CDR), broadcasts, SMS,
audit, idempotency keys.

One writer connection (aiosqlite, WAL, synchronous=NORMAL). Every write goes through a bounded
queue drained by one writer task, which commits whatever has accumulated in one transaction
(group commit) and only then resolves each caller's future: a write has been committed when its
coroutine returns. Event seqs are assigned by the writer, so they are strictly increasing, and
they are never reused (AUTOINCREMENT keeps its high-water mark in `sqlite_sequence`).

After each commit the writer hands the batch's events, in seq order, to the listeners registered
with `add_listener` (the EventBus fans out from there): a listener never sees an event that is not
stored, and never sees two events out of order. Reads use a second, read-only connection so they
never queue behind a write batch (":memory:" has no second connection: reads share the writer's).

Modules: schema.py (SCHEMA_VERSION, migrations), writer.py (`StoreWriter`: connections, the one
writer task, group commit, per-op savepoints), batch.py (a batch's plain writes in one trip to the
database thread), units.py (`atomic` units: `Tx`, `SyncTx`, run in a savepoint), rows.py (the
record tables' columns, row <-> SQL; `Event`), tables.py (`Store`: the tables' accessors).
gateway/sms_store.py holds the SMS read queries used inside units of work.
"""

from .rows import BROADCAST_COLUMNS, CALL_COLUMNS, SESSION_COLUMNS, SMS_COLUMNS, Event, EventListener, _row_out
from .schema import _MIGRATIONS, SCHEMA_VERSION
from .tables import Store
from .units import SyncTx, Tx, Work
from .writer import StoreWriter

__all__ = [
    "BROADCAST_COLUMNS", "CALL_COLUMNS", "SCHEMA_VERSION", "SESSION_COLUMNS", "SMS_COLUMNS", "_MIGRATIONS",
    "Event", "EventListener", "Store", "StoreWriter", "SyncTx", "Tx", "Work", "_row_out",
]
