"""A `session.create` or `session.close` over the control channel is one commit: the session row,
its event and the request's ok audit row together (gateway/audit/request.py); before, the audit
row was a second commit waited for in turn. A write that fails is undone with its ok row and
audited with its failure; an ok row that cannot be written undoes the write. The chain verifies."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.client import RemoteError

ROOT = Path(__file__).resolve().parents[2]


def _sqlite_cli(db: str, sql: str) -> None:
    """A trigger added by the sqlite3 program beside the running gateway: a write that fails."""
    subprocess.run(["sqlite3", db, sql], check=True, capture_output=True, timeout=30)


def _rows(db: str, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def _verify(data_dir: str) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "verify", "--set",
                           f"gateway.data_dir={data_dir}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _counting_commits(gw, monkeypatch) -> list[int]:
    """The writer's commits (batch sizes), counted at the store's one commit step."""
    batches: list[int] = []
    real = gw.store._commit

    async def commit(batch):
        batches.append(len(batch))
        await real(batch)

    monkeypatch.setattr(gw.store, "_commit", commit)
    return batches


async def test_create_and_close_are_one_commit_each_with_their_audit_row(start_gateway, connect,
                                                                          monkeypatch) -> None:
    gw = await start_gateway()
    client = await connect(gw)
    batches = _counting_commits(gw, monkeypatch)
    created = await client.call("session.create", title="fire at the depot")
    assert batches == [1]  # before: [1, 1] (the row and event, then the audit row)
    await client.call("session.close", session_id=created["session_id"])
    assert batches == [1, 1]
    audit = _rows(gw.store.path, "SELECT method, principal, role, result, params FROM audit ORDER BY id")
    assert [(m, p, r, res) for m, p, r, res, _ in audit] == [
        ("session.create", "alice", "dispatcher", "ok"), ("session.close", "alice", "dispatcher", "ok")]
    assert json.loads(audit[0][4]) == {"title": "fire at the depot"}
    code, out, err = await asyncio.to_thread(_verify, str(Path(gw.store.path).parent))
    assert code == 0 and out["rows"] == 2, err


@pytest.mark.parametrize("trigger", [
    # the session's own write fails
    "CREATE TRIGGER refuse BEFORE INSERT ON sessions WHEN NEW.title = 'refused'"
    " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    # its ok audit row fails: the session and its event must go with it
    "CREATE TRIGGER refuse BEFORE INSERT ON audit WHEN NEW.result = 'ok' AND NEW.params LIKE '%refused%'"
    " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
])
async def test_a_failed_create_is_undone_alone_and_audited_with_its_failure(start_gateway, connect,
                                                                            trigger: str) -> None:
    gw = await start_gateway()
    client = await connect(gw)
    await client.call("session.create", title="before")
    await asyncio.to_thread(_sqlite_cli, gw.store.path, trigger)
    refused, after = await asyncio.gather(client.call("session.create", title="refused"),
                                          client.call("session.create", title="after"),
                                          return_exceptions=True)
    assert isinstance(refused, RemoteError) and refused.reason == "internal-error"
    assert not isinstance(after, BaseException)
    db = gw.store.path
    assert sorted(t for (t,) in _rows(db, "SELECT title FROM sessions")) == ["after", "before"]
    assert sorted(json.loads(d)["title"] for (d,) in _rows(db, "SELECT data FROM events WHERE type = 'session.state'")) \
        == ["after", "before"]
    audit = _rows(db, "SELECT params, result, error_reason FROM audit ORDER BY id")
    assert sorted((json.loads(p)["title"], res, why) for p, res, why in audit) == [
        ("after", "ok", None), ("before", "ok", None), ("refused", "error", "internal-error")]
    code, out, err = await asyncio.to_thread(_verify, str(Path(db).parent))
    assert code == 0 and out["rows"] == 3, err
