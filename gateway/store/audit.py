"""The audit table, hash-chained (gateway/audit/chain.py): who did what, tamper-evident.

Each row is one INSERT ... SELECT through the store's one writer, so rows are chained in the order
they are committed whatever the number of concurrent callers: the statement reads the last row's
hash, gives the new row the next id (above AUTOINCREMENT's mark) and stores its hash, computed by
`audit_hash` (a deterministic SQL function on the writer connection: `chain.sql_row_hash`).

`audit_chain` holds named points of the chain: `anchor`, what precedes the first kept row (id 0
and 64 zeros at first; the last row retention pruned, afterwards), and `migrated`, the last row
that existed before the store had a chain (chained when the store was migrated to schema 14).
Retention removes a prefix of the chain only, moving `anchor` in the same unit.
"""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from gateway.audit.chain import COLUMNS, GENESIS, Head, row_hash
from gateway.audit.request import RequestAudit
from gateway.timeutil import now_iso

from .rows import audit_params_text

_LAST = "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"
_LAST_HASH = "SELECT hash FROM audit ORDER BY id DESC LIMIT 1"
_ANCHOR_HASH = "SELECT hash FROM audit_chain WHERE name = 'anchor'"
_MARK = "SELECT seq FROM sqlite_sequence WHERE name = 'audit'"
# One statement per row, a plain write of the group commit: the next id (above AUTOINCREMENT's
# mark), the last row's hash (or the anchor's) and the new hash (`audit_hash`, registered on the
# writer connection: gateway.audit.chain.row_hash) are all read inside the writer's transaction,
# after every row before it in the batch.
_INSERT = f"""INSERT INTO audit ({', '.join(COLUMNS)})
    SELECT n.id, ?1, ?2, ?3, ?4, ?5, ?6, ?7, n.prev, audit_hash(n.id, ?1, ?2, ?3, ?4, ?5, ?6, ?7, n.prev)
    FROM (SELECT max(coalesce(({_MARK}), 0), coalesce((SELECT max(id) FROM audit), 0)) + 1 AS id,
                 coalesce(({_LAST_HASH}), ({_ANCHOR_HASH}), '{GENESIS}') AS prev) AS n"""
_SET_POINT = ("INSERT INTO audit_chain (name, id, hash, time) VALUES (?, ?, ?, ?)"
              " ON CONFLICT (name) DO UPDATE SET id = excluded.id, hash = excluded.hash, time = excluded.time")


async def chain_existing(conn: aiosqlite.Connection) -> None:
    """Migration step (schema 14): chain the rows written before the chain existed, in id order,
    from an anchor just below the first kept row; record the last one as `migrated`."""
    rows = await conn.execute_fetchall(f"SELECT {', '.join(COLUMNS[:-2])} FROM audit ORDER BY id")
    mark = (await conn.execute_fetchall(_MARK)) or [(0,)]
    anchor_id = rows[0][0] - 1 if rows else int(mark[0][0] or 0)
    prev, now = GENESIS, now_iso()
    updates = []
    for row in rows:
        prev_hash, prev = prev, row_hash(row, prev)
        updates.append((prev_hash, prev, row[0]))
    await conn.executemany("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", updates)
    await conn.execute(_SET_POINT, ("anchor", anchor_id, GENESIS, now))
    await conn.execute(_SET_POINT, ("migrated", rows[-1][0] if rows else anchor_id, prev, now))


async def audit_in(tx: Any, principal: str | None, role: str | None, method: str, params: dict[str, Any],
                   result: str = "ok") -> None:
    """One audit row written inside a unit of work (`Store.atomic`): chained like `add_audit`'s,
    committed with the change it records or not at all."""
    await tx.execute(_INSERT, (now_iso(), principal, role, method, audit_params_text(params), result, None))


def audit_statement(audit: RequestAudit) -> tuple[str, tuple[Any, ...]]:
    """The `ok` row of a request, as the statement its one write commits with it (`also`)."""
    return _INSERT, (now_iso(), audit.principal, audit.role, audit.method, audit_params_text(audit.params),
                     "ok", None)


class AuditTables:
    """Accessors of the audit table (mixed into `Store`)."""

    async def add_audit(self, principal: str | None, role: str | None, method: str,
                        params: dict[str, Any], result: str, error_reason: str | None = None) -> None:
        """Record one command, chained to the row before it. Values under secret-looking keys
        (token, password...) are masked; oversized or deeply nested params are kept as a bounded
        digest (`audit_params_text`)."""
        if result not in ("ok", "error"):
            raise ValueError("audit result must be 'ok' or 'error'")
        await self._submit(_INSERT, (now_iso(), principal, role, method, audit_params_text(params),  # type: ignore[attr-defined]
                                     result, error_reason))

    async def list_audit(self, limit: int = 100, principal: str | None = None) -> list[dict[str, Any]]:
        """The newest audit rows first."""
        keys = COLUMNS[:-2]
        sql = f"SELECT {', '.join(keys)} FROM audit"
        params: tuple[Any, ...] = ()
        if principal is not None:
            sql, params = sql + " WHERE principal = ?", (principal,)
        rows = await self._read(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))  # type: ignore[attr-defined]
        return [{**dict(zip(keys, r)), "params": json.loads(r[5])} for r in rows]

    async def audit_head(self) -> Head | None:
        """The chain's last row (id, hash), or None while the table is empty."""
        rows = await self._read(_LAST, ())  # type: ignore[attr-defined]
        return Head(int(rows[0][0]), rows[0][1]) if rows and rows[0][1] else None

    async def prune_audit(self, before_time: str, limit: int = 10_000) -> int:
        """Delete up to `limit` of the oldest audit rows, those before the first row recorded at
        or after `before_time` (a prefix of the chain), moving the anchor to the last one deleted."""
        async def work(tx: Any) -> int:
            first_kept = await tx.fetchall(
                "SELECT id FROM audit WHERE time >= ? ORDER BY time LIMIT 1", (before_time,))
            bound = first_kept[0][0] if first_kept else None
            rows = await tx.fetchall(
                "SELECT id, hash FROM audit WHERE id < coalesce(?, (SELECT max(id) + 1 FROM audit))"
                " ORDER BY id LIMIT ?", (bound, int(limit)))
            if not rows:
                return 0
            last_id, last_hash = rows[-1]
            await tx.execute("DELETE FROM audit WHERE id <= ?", (last_id,))
            await tx.execute(_SET_POINT, ("anchor", last_id, last_hash or GENESIS, now_iso()))
            return len(rows)

        return await self.atomic(work)  # type: ignore[attr-defined]
