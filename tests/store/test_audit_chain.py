"""The audit chain on a real store file, tampered with by the sqlite3 CLI, checked by
`dispatch-gateway audit verify` (a process of its own): the first edited, inserted or deleted
row is named, exit status 1; an untouched store verifies (issue 12, "Audit that holds up")."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit.chain import GENESIS, Head, Row, row_hash, verify
from gateway.audit.heads import append_head
from gateway.retention import Retention, RetentionPolicy
from gateway.events import EventBus
from gateway.store import _MIGRATIONS, Store

ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 32


def sqlite_cli(db: Path, sql: str) -> None:
    """Tamper as an operator with shell access would: the sqlite3 program, not our code."""
    subprocess.run(["sqlite3", str(db), sql], check=True, capture_output=True, timeout=30)


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, out, proc.stderr


def verify_cli(db: Path, heads: Path | None = None) -> tuple[int, dict, str]:
    return cli("audit", "verify", "--db", str(db), "--heads", str(heads or db.with_suffix(".heads")))


async def fill(db: Path, n: int = 10) -> None:
    async with Store(db) as store:
        for i in range(n):
            await store.add_audit("alice", "dispatcher", "session.create", {"title": f"t{i}"}, "ok")


async def test_untouched_store_verifies(db_path: Path) -> None:
    await fill(db_path)
    code, out, err = await asyncio.to_thread(verify_cli, db_path)
    assert code == 0, err
    assert out["ok"] and out["rows"] == 10 and (out["first_id"], out["last_id"]) == (1, 10)
    assert out["anchor"] == {"id": 0, "hash": GENESIS}


@pytest.mark.parametrize(("sql", "kind", "row", "words"), [
    ("UPDATE audit SET params = '{\"title\": \"forged\"}' WHERE id = 4", "edited", 4, "row 4 was edited"),
    ("UPDATE audit SET principal = 'mallory' WHERE id = 1", "edited", 1, "row 1 was edited"),
    ("DELETE FROM audit WHERE id = 6", "deleted", 6, "row 6 deleted"),
    ("DELETE FROM audit WHERE id IN (3, 4, 5)", "deleted", 3, "rows 3 to 5 deleted"),
    ("DELETE FROM audit WHERE id <= 2", "deleted", 1, "rows 1 to 2 deleted"),
    # An insert at the end, as a plain INSERT would be made: no hash of the chain.
    ("INSERT INTO audit (time, principal, role, method, params, result)"
     " VALUES ('2026-12-02T03:00:00.000Z', 'mallory', 'admin', 'call.dial', '{}', 'ok')", "inserted", 11,
     "row 11 was inserted"),
    # An insert in the middle: rows 7.. moved up one to make room, row 7 a copy of row 6.
    ("UPDATE audit SET id = id + 1000 WHERE id >= 7; UPDATE audit SET id = id - 999 WHERE id > 1000;"
     " INSERT INTO audit SELECT 7, time, 'mallory', role, method, params, result, error_reason, prev_hash, hash"
     " FROM audit WHERE id = 6", "inserted", 7, "row 7 was inserted"),
])
async def test_tampering_found_at_the_right_row(db_path: Path, sql: str, kind: str, row: int, words: str) -> None:
    await fill(db_path)
    await asyncio.to_thread(sqlite_cli, db_path, sql)
    code, out, err = await asyncio.to_thread(verify_cli, db_path)
    assert code == 1, (out, err)
    assert out["problem"]["kind"] == kind and out["problem"]["row_id"] == row, out
    assert words in err, err


async def test_edit_with_recomputed_hash_found_by_the_next_row(db_path: Path) -> None:
    """Whoever knows the hash rule and rewrites one row's hash breaks the next row's link."""
    await fill(db_path)
    rows = await asyncio.to_thread(lambda: sqlite3.connect(db_path).execute(
        "SELECT id, time, principal, role, method, params, result, error_reason, prev_hash FROM audit"
        " WHERE id = 5").fetchone())
    forged = (*rows[:2], "mallory", *rows[3:8])
    new_hash = row_hash(forged, rows[8])
    await asyncio.to_thread(sqlite_cli, db_path,
                            f"UPDATE audit SET principal = 'mallory', hash = '{new_hash}' WHERE id = 5")
    code, out, err = await asyncio.to_thread(verify_cli, db_path)
    assert code == 1 and out["problem"] == {"kind": "edited", "row_id": 5, "message": out["problem"]["message"]}
    assert "row 5 was edited and its hash recomputed" in err


async def test_rows_deleted_at_the_end_found_by_a_recorded_head(db_path: Path, tmp_path: Path) -> None:
    await fill(db_path)
    heads = tmp_path / "heads.jsonl"
    async with Store(db_path) as store:
        head = await store.audit_head()
    assert head is not None and head.id == 10
    append_head(heads, Head(head.id, head.hash, "2026-12-02T03:00:00.000Z"))
    assert (await asyncio.to_thread(verify_cli, db_path, heads))[0] == 0
    await asyncio.to_thread(sqlite_cli, db_path, "DELETE FROM audit WHERE id >= 9")
    code, out, err = await asyncio.to_thread(verify_cli, db_path, heads)
    assert code == 1 and out["problem"]["kind"] == "deleted" and out["problem"]["row_id"] == 9
    assert "rows 9 to 10 deleted" in err and "names row 10" in err


async def test_concurrent_writers_keep_one_chain(db_path: Path) -> None:
    async with Store(db_path) as store:
        await asyncio.gather(*(store.add_audit(f"p{i % 7}", "dispatcher", "m", {"i": i}, "ok") for i in range(400)))
    code, out, err = await asyncio.to_thread(verify_cli, db_path)
    assert code == 0 and out["rows"] == 400 and out["last_id"] == 400, err


async def test_rows_of_a_version_13_store_chained_at_migration(db_path: Path) -> None:
    def v13() -> None:
        with sqlite3.connect(db_path) as conn:
            for v in range(1, 14):
                for stmt in _MIGRATIONS[v]:
                    conn.execute(stmt)
            conn.executemany("INSERT INTO audit (time, principal, role, method, params, result)"
                             " VALUES (?, 'old', 'admin', 'session.create', '{}', 'ok')",
                             [(f"2026-01-0{i}T00:00:00.000Z",) for i in range(1, 6)])
            conn.execute("DELETE FROM audit WHERE id = 1")  # pruned before the chain existed
            conn.execute("PRAGMA user_version = 13")
        conn.close()
    await asyncio.to_thread(v13)
    await fill(db_path, 2)  # opens (migrates), then chains new rows onto the old ones
    code, out, err = await asyncio.to_thread(verify_cli, db_path)
    assert code == 0, err
    assert (out["rows"], out["first_id"], out["last_id"]) == (6, 2, 7)
    assert out["anchor"]["id"] == 1 and out["migrated"]["id"] == 5
    await asyncio.to_thread(sqlite_cli, db_path, "UPDATE audit SET method = 'call.dial' WHERE id = 3")
    assert (await asyncio.to_thread(verify_cli, db_path))[1]["problem"]["row_id"] == 3


async def test_retention_prunes_a_prefix_and_the_chain_still_verifies(db_path: Path) -> None:
    await fill(db_path, 30)
    async with Store(db_path) as store:
        retention = Retention(store, EventBus(store), RetentionPolicy(audit_keep_days=1),
                              clock=lambda: dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
        await store.add_audit("bob", "dispatcher", "x", {}, "ok")  # still the last row: pruned too
        assert (await retention.prune_once())["audit"] == 31
        await fill_more(store)
    code, out, err = await asyncio.to_thread(verify_cli, db_path)
    assert code == 0, err
    assert out["anchor"]["id"] == 31 and out["first_id"] == 32
    await asyncio.to_thread(sqlite_cli, db_path, "DELETE FROM audit WHERE id = 32")
    assert (await asyncio.to_thread(verify_cli, db_path))[1]["problem"]["kind"] == "deleted"


async def fill_more(store: Store) -> None:
    for i in range(3):
        await store.add_audit("carol", "dispatcher", "y", {"i": i}, "ok")


async def test_export_signed_and_checked(db_path: Path, tmp_path: Path) -> None:
    await fill(db_path)
    out_file = tmp_path / "audit.jsonl"
    env = {"DISPATCH_GATEWAY__AUDIT__EXPORT_KEY": KEY}
    code, out, err = await asyncio.to_thread(
        cli, "audit", "export", str(out_file), "--db", str(db_path), "--since", "2000-01-01", env=env)
    assert code == 0 and out["rows"] == 10 and (out["first_id"], out["last_id"]) == (1, 10), err
    assert out_file.stat().st_mode & 0o777 == 0o600
    lines = out_file.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header" and json.loads(lines[-1])["alg"] == "HMAC-SHA256"
    assert KEY not in out_file.read_text() and KEY not in err
    code, out, err = await asyncio.to_thread(cli, "audit", "verify-export", str(out_file), "--db", str(db_path), env=env)
    assert code == 0 and out["ok"] and out["rows"] == 10, err
    # a key in a file works the same; another key does not verify
    key_file = tmp_path / "export.key"
    key_file.write_text(KEY + "\n")
    assert (await asyncio.to_thread(cli, "audit", "verify-export", str(out_file), "--db", str(db_path),
                                    env={"DISPATCH_GATEWAY__AUDIT__EXPORT_KEY_FILE": str(key_file)}))[0] == 0
    code, _, err = await asyncio.to_thread(cli, "audit", "verify-export", str(out_file), "--db", str(db_path),
                                           env={"DISPATCH_GATEWAY__AUDIT__EXPORT_KEY": "x" * 32})
    assert code == 1 and "signature does not match" in err
    # one character changed in a row: the signature no longer matches
    text = out_file.read_text()
    assert '\\"t3\\"' in text
    out_file.write_text(text.replace('\\"t3\\"', '\\"t9\\"', 1))
    code, _, err = await asyncio.to_thread(cli, "audit", "verify-export", str(out_file), "--db", str(db_path), env=env)
    assert code == 1 and "signature does not match" in err


async def test_export_window_and_key_never_on_the_command_line(db_path: Path, tmp_path: Path) -> None:
    await fill(db_path, 3)
    await asyncio.to_thread(sqlite_cli, db_path,
                            "UPDATE audit SET time = '2026-01-0' || id || 'T00:00:00.000Z'")  # breaks the hashes
    code, _, err = await asyncio.to_thread(cli, "audit", "export", str(tmp_path / "x.jsonl"), "--db", str(db_path),
                                           "--set", f"audit.export_key={KEY}")
    assert code == 2 and "secret" in err and KEY not in err
    code, _, err = await asyncio.to_thread(cli, "audit", "export", str(tmp_path / "x.jsonl"), "--db", str(db_path),
                                           env={"DISPATCH_GATEWAY__AUDIT__EXPORT_KEY": KEY})
    assert code == 1 and "chain is broken at row 1" in err and not (tmp_path / "x.jsonl").exists()


def test_verify_core_without_a_store() -> None:
    """The pure walk: a row that does not link and has no gap before it after the anchor."""
    rows, prev = [], GENESIS
    for i in range(1, 4):
        fields = (i, "t", "p", "r", "m", "{}", "ok", None)
        h = row_hash(fields, prev)
        rows.append(Row(*fields, prev, h))
        prev = h
    assert verify(rows, Head(0, GENESIS)).ok
    assert verify(rows[1:], Head(0, GENESIS)).problem.kind == "deleted"
    assert verify(rows, Head(0, GENESIS), [Head(3, "f" * 64)]).problem.row_id == 3


async def test_heads_filed_and_logged_once_per_move_across_restarts(db_path: Path, tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    from gateway.audit.heads import ChainHeads, read_heads

    heads_file = tmp_path / "heads.jsonl"
    await fill(db_path, 3)
    async with Store(db_path) as store:
        with capture_logs() as logs:
            first = ChainHeads(store.audit_head, heads_file, interval_s=3600)
            await first.start()  # records the head at once
            await first.stop()  # the head has not moved: nothing more
            again = ChainHeads(store.audit_head, heads_file, interval_s=3600)
            await again.start()  # a restart: the file's last head is the head, nothing appended
            await store.add_audit("bob", "dispatcher", "x", {}, "ok")
            await again.stop()  # moved: recorded at stop
    assert [h.id for h in read_heads(heads_file)] == [3, 4]
    assert [e["id"] for e in logs if e["event"] == "audit.chain_head"] == [3, 4]
    code, out, err = await asyncio.to_thread(verify_cli, db_path, heads_file)
    assert code == 0 and out["heads_checked"] == 2, err


async def test_rows_lost_to_a_restore_are_reported_deleted_not_reused(db_path: Path, tmp_path: Path) -> None:
    """Restore of an older backup: the audit ids the replaced store gave are not given again, so
    the head filed for a lost row names a row that is gone, not another row."""
    from gateway.backup import backup, restore

    await fill(db_path, 5)
    await asyncio.to_thread(backup, db_path, tmp_path / "b.db")
    await fill(db_path, 5)
    heads = tmp_path / "heads.jsonl"
    async with Store(db_path) as store:
        head = await store.audit_head()
    append_head(heads, Head(head.id, head.hash, "2026-12-02T03:00:00.000Z"))
    await asyncio.to_thread(restore, tmp_path / "b.db", db_path)
    await fill(db_path, 2)
    code, out, err = await asyncio.to_thread(verify_cli, db_path)  # no heads: the chain itself holds
    assert code == 0 and (out["rows"], out["last_id"]) == (7, 12), err
    code, out, err = await asyncio.to_thread(verify_cli, db_path, heads)
    assert code == 1 and out["problem"]["kind"] == "deleted" and out["problem"]["row_id"] == 10
    assert "row 10 deleted" in err
