"""The audit chain's core (pure: no I/O): each row's hash, and the walk that finds the first row
edited, inserted or deleted.

A row's hash is SHA-256, lowercase hex, of the UTF-8 bytes of the JSON array

    ["dispatch-gateway-audit-1", id, time, principal, role, method, params, result, error_reason, prev_hash]

serialised as RFC 8785 (JCS) does for these types: no whitespace, strings with only `"`, `\\` and
control characters escaped (`\\b \\f \\n \\r \\t`, others `\\u00xx`), other characters as themselves,
integers in decimal, null for NULL. `params` is the stored TEXT as it is (not re-parsed), `id` the
row's INTEGER PRIMARY KEY, `prev_hash` the hash of the row before it (by id) or, for the first row
kept, the anchor's hash: 64 zeros at the start of the chain, or the hash of the last row retention
pruned. Python's `json.dumps(fields, ensure_ascii=False, separators=(",", ":"))` is that form.

Because the id is hashed, renumbering rows (to make room for an inserted one, or to hide a
deleted one) changes their hashes; because each row names the hash before it, removing a row breaks
the link of the row after it. Removing rows at the end leaves no broken link: that is what the
chain heads (recorded outside the table, gateway/audit/heads.py) catch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

VERSION_TAG = "dispatch-gateway-audit-1"
GENESIS = "0" * 64  # prev_hash of the first row ever

# The audit table's columns in chain order (the hashed ones, then prev_hash and hash).
HASHED = ("id", "time", "principal", "role", "method", "params", "result", "error_reason")
COLUMNS = (*HASHED, "prev_hash", "hash")


def canonical(fields: Sequence[Any], prev_hash: str) -> bytes:
    """The bytes hashed for a row: `fields` are its HASHED values in order."""
    return json.dumps([VERSION_TAG, *fields, prev_hash], ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def row_hash(fields: Sequence[Any], prev_hash: str) -> str:
    return hashlib.sha256(canonical(fields, prev_hash)).hexdigest()


def sql_row_hash(*values: Any) -> str:
    """The SQL function `audit_hash(id, time, principal, role, method, params, result,
    error_reason, prev_hash)` the store's writer registers: the same hash, computed in the INSERT."""
    return row_hash(values[:-1], values[-1])


@dataclass(frozen=True, slots=True)
class Row:
    """One stored audit row (COLUMNS order)."""

    id: int
    time: str
    principal: str | None
    role: str | None
    method: str
    params: str
    result: str
    error_reason: str | None
    prev_hash: str | None
    hash: str | None

    @property
    def fields(self) -> tuple[Any, ...]:
        return (self.id, self.time, self.principal, self.role, self.method, self.params,
                self.result, self.error_reason)

    def intact(self) -> bool:
        """Its content, id and link still give its hash."""
        return self.hash is not None and self.prev_hash is not None \
            and row_hash(self.fields, self.prev_hash) == self.hash


@dataclass(frozen=True, slots=True)
class Head:
    """A chain head recorded outside the table: row `id` had hash `hash` at `time`."""

    id: int
    hash: str
    time: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # "edited" | "inserted" | "deleted"
    row_id: int  # the first row concerned (for "deleted": the first missing id, or the row after)
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "row_id": self.row_id, "message": self.message}


@dataclass(slots=True)
class Report:
    rows: int = 0
    first_id: int | None = None
    last_id: int | None = None
    last_hash: str | None = None
    heads_checked: int = 0
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "first_id": self.first_id, "last_id": self.last_id,
                "last_hash": self.last_hash, "heads_checked": self.heads_checked,
                "problem": self.problem.to_dict() if self.problem else None}


def _pairs(rows: Iterable[Row]) -> Iterator[tuple[Row, Row | None]]:
    it = iter(rows)
    cur = next(it, None)
    while cur is not None:
        nxt = next(it, None)
        yield cur, nxt
        cur = nxt


def verify(rows: Iterable[Row], anchor: Head, heads: Iterable[Head] = ()) -> Report:
    """Walk `rows` (in id order) from `anchor` (the row before the first kept one); the report
    names the first problem. `heads` catch rows removed from the end (or a rewritten tail)."""
    report = Report()
    prev_id, prev_hash = anchor.id, anchor.hash
    heads = sorted(heads, key=lambda h: h.id)
    wanted = {h.id for h in heads}
    hashes: dict[int, str] = {}  # of the rows heads name (not of every row: the table may be large)
    for row, nxt in _pairs(rows):
        report.rows += 1
        if report.first_id is None:
            report.first_id = row.id
        if not row.intact():
            # The chain passing over it (the next row links to the one before it), or a row
            # with no hash at all, was put there; otherwise its content was changed.
            if row.hash is None or (nxt is not None and nxt.prev_hash == prev_hash):
                report.problem = Problem("inserted", row.id,
                                         f"row {row.id} was inserted: it is not part of the chain "
                                         f"(row {prev_id} is followed by "
                                         f"{'row ' + str(nxt.id) if nxt is not None else 'nothing'} in the chain)")
            else:
                report.problem = Problem("edited", row.id,
                                         f"row {row.id} was edited: its content no longer gives its hash")
            return report
        if row.prev_hash != prev_hash:
            if row.id > prev_id + 1:
                missing = (f"row {prev_id + 1}" if row.id == prev_id + 2
                           else f"rows {prev_id + 1} to {row.id - 1}")
                report.problem = Problem("deleted", prev_id + 1,
                                         f"{missing} deleted: row {row.id} links to a row that is gone")
            elif prev_id > anchor.id:
                report.problem = Problem("edited", prev_id,
                                         f"row {prev_id} was edited and its hash recomputed: "
                                         f"row {row.id} no longer links to it")
            else:
                report.problem = Problem("deleted", row.id,
                                         f"rows before row {row.id} deleted: it does not link to the "
                                         f"chain's anchor (row {anchor.id})")
            return report
        prev_id, prev_hash = row.id, row.hash
        if row.id in wanted:
            hashes[row.id] = row.hash  # type: ignore[assignment]
    report.last_id, report.last_hash = (prev_id, prev_hash) if report.rows else (None, None)
    for head in heads:
        if head.id <= anchor.id:
            continue  # pruned since
        report.heads_checked += 1
        if head.id > prev_id:
            first = prev_id + 1
            report.problem = Problem("deleted", first,
                                     f"rows {first} to {head.id} deleted: the chain head recorded at "
                                     f"{head.time or '?'} names row {head.id}, the table ends at row {prev_id}")
            return report
        if head.id not in hashes:  # within the chain, yet no such row (ids above a restore's gap)
            report.problem = Problem("deleted", head.id,
                                     f"row {head.id} deleted: the chain head recorded at {head.time or '?'} "
                                     f"names it (rows lost to a restore of an older backup are reported so)")
            return report
        if hashes[head.id] != head.hash:
            report.problem = Problem("edited", head.id,
                                     f"row {head.id} differs from the chain head recorded at "
                                     f"{head.time or '?'}: the chain was rewritten from there or before")
            return report
    return report
