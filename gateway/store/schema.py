"""The store's schema: SCHEMA_VERSION and the migrations that build it, applied at open.

Each entry of `_MIGRATIONS` moves the schema from version n-1 to n; `migrate` applies the missing
ones in one transaction, under the write lock, and refuses a database written by a newer gateway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiosqlite
import structlog

from gateway.errors import Unavailable

log = structlog.get_logger("gateway.store")


async def _chain_existing(conn: aiosqlite.Connection) -> None:
    from .audit import chain_existing  # audit.py imports the writer, which imports this module

    await chain_existing(conn)

SCHEMA_VERSION = 16

# Each entry moves the schema from version n-1 to n; applied in one transaction at open.
# A step is a statement, or a coroutine function run on the connection (a step SQL alone cannot do).
_MIGRATIONS: dict[int, tuple[str | Callable[[aiosqlite.Connection], Awaitable[None]], ...]] = {
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
    8: (  # field terminals: every reported position (gateway/store/terminals.py)
        """CREATE TABLE terminal_track (
            id INTEGER PRIMARY KEY,
            terminal_id TEXT NOT NULL,
            time TEXT NOT NULL,
            received_at TEXT NOT NULL,
            lat REAL NOT NULL,
            lon REAL NOT NULL,
            accuracy_m REAL NOT NULL,
            altitude REAL,
            speed REAL,
            heading REAL,
            battery REAL,
            status TEXT
        )""",
        "CREATE INDEX terminal_track_time ON terminal_track (terminal_id, time)",
        "CREATE INDEX terminal_track_received ON terminal_track (received_at)",
    ),
    9: (  # instructions to terminals and their delivery at each (gateway/services/instructions.py)
        """CREATE TABLE terminal_instructions (
            instruction_id TEXT PRIMARY KEY,
            session_id TEXT,
            text TEXT NOT NULL,
            require_ack INTEGER NOT NULL,
            ack_timeout_s REAL NOT NULL,
            fallback TEXT NOT NULL,
            targets TEXT NOT NULL DEFAULT '[]',
            created_by TEXT,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE terminal_deliveries (
            delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
            instruction_id TEXT NOT NULL,
            terminal_id TEXT NOT NULL,
            state TEXT NOT NULL,
            deadline REAL,
            queued_at TEXT NOT NULL,
            delivered_at TEXT,
            acknowledged_at TEXT,
            fallback_at TEXT,
            sms_message_id TEXT,
            sms_queued INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            UNIQUE (instruction_id, terminal_id)
        )""",
        "CREATE INDEX terminal_deliveries_undelivered ON terminal_deliveries (terminal_id, delivery_id)"
        " WHERE delivered_at IS NULL",
        "CREATE INDEX terminal_deliveries_deadline ON terminal_deliveries (deadline) WHERE deadline IS NOT NULL",
        "CREATE INDEX terminal_deliveries_sms ON terminal_deliveries (state) WHERE sms_queued = 0",
    ),
    10: (  # uploads (photos, audio clips) and the feedback referring to them (gateway/store/uploads.py)
        """CREATE TABLE uploads (
            sha256 TEXT NOT NULL,
            principal TEXT NOT NULL,
            role TEXT NOT NULL,
            type TEXT NOT NULL,
            size INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (sha256, principal)
        ) WITHOUT ROWID""",
        "CREATE INDEX uploads_created ON uploads (created_at)",
        """CREATE TABLE upload_refs (
            sha256 TEXT NOT NULL,
            feedback_id TEXT NOT NULL,
            principal TEXT NOT NULL,
            session_id TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (sha256, feedback_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX upload_refs_created ON upload_refs (created_at)",
    ),
    11: (  # each terminal's last presence: survives a restart (gateway/store/terminals.py)
        """CREATE TABLE terminal_presence (
            terminal_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            last_seen TEXT,
            changed_at TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
    12: (  # a principal's uploads, for its quota of unreferenced bytes (gateway/store/uploads.py)
        "CREATE INDEX uploads_principal ON uploads (principal)",
    ),
    13: (  # a terminal's own instructions (terminal.instructions); instructions by age (retention)
        "CREATE INDEX terminal_deliveries_terminal ON terminal_deliveries (terminal_id, delivery_id)",
        "CREATE INDEX terminal_instructions_created ON terminal_instructions (created_at)",
    ),
    14: (  # the audit table hash-chained (gateway/store/audit.py, gateway/audit/chain.py)
        "ALTER TABLE audit ADD COLUMN prev_hash TEXT",
        "ALTER TABLE audit ADD COLUMN hash TEXT",
        """CREATE TABLE audit_chain (
            name TEXT PRIMARY KEY,
            id INTEGER NOT NULL,
            hash TEXT NOT NULL,
            time TEXT NOT NULL
        ) WITHOUT ROWID""",
        _chain_existing,  # the rows already there are chained now
    ),
    15: (  # the two indicators' own facts (gateway/kpi/facts.py): runs, part states, maintenance
        """CREATE TABLE kpi_runs (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            stopped_at TEXT,
            pid INTEGER,
            deadlines TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE kpi_part_states (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL,
            time TEXT NOT NULL,
            part TEXT NOT NULL,
            up INTEGER NOT NULL,
            cause TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX kpi_part_states_run ON kpi_part_states (run_id, time)",
        """CREATE TABLE kpi_maintenance (
            maintenance_id INTEGER PRIMARY KEY AUTOINCREMENT,
            start_at TEXT NOT NULL,
            end_at TEXT NOT NULL,
            parts TEXT NOT NULL DEFAULT '[]',
            reason TEXT NOT NULL DEFAULT '',
            created_by TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX kpi_maintenance_end ON kpi_maintenance (end_at)",
        # when each broadcast target connected (timeliness), without reading every event
        "CREATE INDEX events_broadcast_target ON events (time) WHERE type = 'broadcast.target'",
        "CREATE INDEX calls_created ON calls (created_at)",
        "CREATE INDEX broadcasts_created ON broadcasts (created_at)",
        "CREATE INDEX sms_created ON sms (created_at)",
        "CREATE INDEX terminal_deliveries_queued ON terminal_deliveries (queued_at)",
    ),
    16: (  # timeliness reads a window's reaches by its targets' keys, not by time up to now (kpi/facts.py)
        "DROP INDEX events_broadcast_target",
        "CREATE INDEX events_broadcast_target_id ON events (json_extract(data, '$.broadcast_id'))"
        " WHERE type = 'broadcast.target'",
        "CREATE INDEX sms_receipts_message ON sms_receipts (message_id) WHERE message_id IS NOT NULL",
    ),
}


async def migrate(conn: aiosqlite.Connection, path: str) -> None:
    """Bring the database on the writer connection `conn` to SCHEMA_VERSION."""
    await conn.execute("BEGIN IMMEDIATE")  # re-read the version under the write lock
    try:
        version = (await conn.execute_fetchall("PRAGMA user_version"))[0][0]
        if version > SCHEMA_VERSION:
            raise Unavailable("the database was written by a newer gateway",
                              reason="store-schema-too-new",
                              details={"path": path, "user_version": version,
                                       "supported": SCHEMA_VERSION})
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for stmt in _MIGRATIONS[v]:
                if callable(stmt):
                    await stmt(conn)
                else:
                    await conn.execute(stmt)
            await conn.execute(f"PRAGMA user_version={v}")
            log.info("store.migrated", path=path, schema_version=v)
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
