"""`dispatch-gateway audit verify | export | verify-export`: the store read directly (read-only,
beside a running gateway: WAL readers do not block it), no gateway process needed.

An export is a JSON Lines file: a header line, one line per audit row (the columns as stored,
`params` the stored JSON text, so every hash can be recomputed), then a signature line:

    {"type":"header","format":"dispatch-gateway-audit-export-1","since":..,"until":..,"created_at":..,"first_id":..,"last_id":..}
    {"type":"row","id":..,"time":..,...,"prev_hash":..,"hash":..}
    {"type":"signature","alg":"HMAC-SHA256","rows":N,"mac":"<hex>"}

`mac` is HMAC-SHA256, with the configured key, of every byte of the file before the signature
line. The rows are a contiguous piece of the chain (each links to the one before), so a reader
holding the key can check that nothing in the file changed, and anyone can check the piece links.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.timeutil import now_iso

from .chain import COLUMNS, Head, Report, Row, verify

EXPORT_FORMAT = "dispatch-gateway-audit-export-1"
CHAIN_SCHEMA = 14  # the first store schema with the chain
MIN_KEY_BYTES = 16


class AuditError(Exception):
    """A store or an export that cannot be read, verified or written; the message says why."""


def store_time(text: str) -> str:
    """An ISO 8601 date or time (UTC unless it says otherwise) in the store's format."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise AuditError(f"not an ISO 8601 date or time: {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _connect(db: str | Path) -> sqlite3.Connection:
    if not Path(db).is_file():
        raise AuditError(f"no store at {db}")
    conn = sqlite3.connect(f"file:{Path(db).resolve()}?mode=ro", uri=True, isolation_level=None)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < CHAIN_SCHEMA:
        conn.close()
        raise AuditError(f"{db}: the audit table has no chain yet (schema {version}): "
                         "start the gateway once to migrate it")
    return conn


def _rows(conn: sqlite3.Connection, where: str = "", params: tuple[Any, ...] = ()) -> Iterator[Row]:
    for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit {where} ORDER BY id", params):
        yield Row(*r)


def _point(conn: sqlite3.Connection, name: str) -> Head | None:
    r = conn.execute("SELECT id, hash, time FROM audit_chain WHERE name = ?", (name,)).fetchone()
    return Head(int(r[0]), r[1], r[2]) if r else None


def verify_store(db: str | Path, heads: list[Head]) -> tuple[Report, dict[str, Any]]:
    """Walk the whole chain in one read transaction; the report and the chain's points. `heads`
    must be read before (a head recorded meanwhile may name a row this snapshot lacks)."""
    conn = _connect(db)
    try:
        conn.execute("BEGIN")
        anchor = _point(conn, "anchor")
        migrated = _point(conn, "migrated")
        if anchor is None:
            raise AuditError(f"{db}: the chain's anchor is missing (audit_chain table edited?)")
        report = verify(_rows(conn), anchor, heads)
        conn.execute("COMMIT")
    finally:
        conn.close()
    points = {"anchor": {"id": anchor.id, "hash": anchor.hash},
              "migrated": {"id": migrated.id, "at": migrated.time} if migrated else None}
    return report, points


def load_key(key: str | None, key_file: str | None) -> bytes:
    """The export key: the file's content (a trailing newline dropped) or the configured value."""
    if key_file:
        try:
            data = Path(key_file).read_bytes().rstrip(b"\r\n")
        except OSError as err:
            raise AuditError(f"audit.export_key_file: cannot read {key_file}: {err.strerror}") from None
    elif key:
        data = key.encode()
    else:
        raise AuditError("no export key: set audit.export_key_file (a file, mode 0600) or "
                         "DISPATCH_GATEWAY__AUDIT__EXPORT_KEY")
    if len(data) < MIN_KEY_BYTES:
        raise AuditError(f"the export key is too short: at least {MIN_KEY_BYTES} bytes")
    return data


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def export(db: str | Path, out: str | Path, key: bytes, since: str | None, until: str | None) -> dict[str, Any]:
    """Write the rows recorded in [since, until) to `out` (complete or not at all), signed."""
    since_t, until_t = store_time(since) if since else "", store_time(until) if until else now_iso()
    conn = _connect(db)
    tmp = Path(f"{out}.tmp-{os.getpid()}")
    mac = hmac.new(key, digestmod=hashlib.sha256)
    try:
        conn.execute("BEGIN")
        lo = conn.execute("SELECT id FROM audit WHERE time >= ? ORDER BY time LIMIT 1", (since_t,)).fetchone()
        hi = conn.execute("SELECT id FROM audit WHERE time < ? ORDER BY time DESC LIMIT 1", (until_t,)).fetchone()
        first, last = (lo[0], hi[0]) if lo and hi and lo[0] <= hi[0] else (None, None)
        n, prev = 0, None
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:  # who did what: 0600
            def put(obj: dict[str, Any]) -> None:
                data = _line(obj)
                mac.update(data)
                f.write(data)
            put({"type": "header", "format": EXPORT_FORMAT, "since": since_t or None, "until": until_t,
                 "created_at": now_iso(), "first_id": first, "last_id": last})
            for row in (_rows(conn, "WHERE id BETWEEN ? AND ?", (first, last)) if first is not None else ()):
                if not row.intact() or (prev is not None and row.prev_hash != prev):
                    raise AuditError(f"the store's chain is broken at row {row.id}: run `dispatch-gateway "
                                     "audit verify`; nothing exported")
                put({"type": "row", **dict(zip(COLUMNS, (getattr(row, c) for c in COLUMNS)))})
                n, prev = n + 1, row.hash
            f.write(_line({"type": "signature", "alg": "HMAC-SHA256", "rows": n, "mac": mac.hexdigest()}))
            f.flush()
            os.fsync(f.fileno())
        conn.execute("COMMIT")
        os.replace(tmp, out)
    finally:
        conn.close()
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "rows": n, "first_id": first, "last_id": last, "since": since_t or None,
            "until": until_t}


def verify_export(path: str | Path, key: bytes) -> dict[str, Any]:
    """Check an export's signature, then that its rows are intact and link; AuditError says where not."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise AuditError(f"cannot read {path}: {err.strerror}") from None
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    try:
        sig = json.loads(last)
        assert isinstance(sig, dict) and sig.get("type") == "signature" and sig.get("alg") == "HMAC-SHA256"
    except (ValueError, AssertionError):
        raise AuditError(f"{path}: the last line is not an HMAC-SHA256 signature") from None
    body += b"\n"
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest(), str(sig.get("mac", ""))):
        raise AuditError(f"{path}: the signature does not match: the file was changed, or another key signed it")
    lines = [json.loads(x) for x in body.splitlines()]
    header, rows = lines[0], [Row(**{c: d.get(c) for c in COLUMNS}) for d in lines[1:]]
    if header.get("format") != EXPORT_FORMAT or len(rows) != sig.get("rows"):
        raise AuditError(f"{path}: not a complete {EXPORT_FORMAT} file")
    for i, row in enumerate(rows):
        if not row.intact() or (i and row.prev_hash != rows[i - 1].hash):
            raise AuditError(f"{path}: row {row.id} (line {i + 2}) does not verify")  # signed broken: not ours
    return {"path": str(path), "ok": True, "rows": len(rows), "first_id": header.get("first_id"),
            "last_id": header.get("last_id"), "since": header.get("since"), "until": header.get("until")}
