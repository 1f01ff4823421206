"""Online backup while the gateway writes, restore, restart: seqs keep increasing (issue 7 s. 5)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

from gateway.client import RemoteError

ROOT = Path(__file__).resolve().parents[2]


async def _cli(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


UNLIMITED = {"control.request_budget.dispatcher": "{rate = 1000000, burst = 1000000}"}


async def test_backup_during_writes_restore_restart_seq_keeps_increasing(start_gateway, connect, tmp_path) -> None:
    # four writers back to back outrun a dispatcher's request budget (200/s) now that a
    # session.create is cheap; this test is about the backup, so the budget is lifted
    gw = await start_gateway(**UNLIMITED)
    alice = await connect(gw)
    db = gw.config.store_path
    stop = asyncio.Event()
    errors: list[RemoteError] = []
    created = 0

    async def write() -> None:
        nonlocal created
        while not stop.is_set():
            try:
                await alice.call("session.create", title=f"s{created}")
                created += 1
            except RemoteError as err:
                errors.append(err)

    writers = [asyncio.create_task(write()) for _ in range(4)]
    try:
        async with asyncio.timeout(30):
            while gw.bus.last_seq < 100:
                await asyncio.sleep(0.01)
        dest = tmp_path / "backups" / "gw.db"
        taken = await _cli("backup", str(dest), "--db", db)  # while four writers keep going
        at_backup = gw.bus.last_seq
        async with asyncio.timeout(30):
            while gw.bus.last_seq < at_backup + 100:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert errors == []
    live_last = gw.bus.last_seq
    assert 100 <= taken["last_seq"] <= at_backup < live_last and taken["bytes"] > 0
    with sqlite3.connect(dest) as conn:  # a complete, consistent file on its own
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    conn.close()
    assert seqs == list(range(1, taken["last_seq"] + 1))
    await gw.stop()

    restored = await _cli("restore", str(dest), "--db", db)
    assert restored["restored_last_seq"] == taken["last_seq"]
    assert restored["next_seq"] == live_last + 1 and Path(restored["replaced_kept_as"]).exists()

    gw2 = await start_gateway(**UNLIMITED)  # same data dir: the restored store
    assert [e.seq for e in await gw2.store.events_after(0, 10_000)] == seqs
    bob = await connect(gw2, "tok-dispatcher-2")
    assert bob.hello["seq"] == live_last  # never lower than a seq a console has seen
    await bob.subscribe(live_last)  # a console of before the restore resumes: not seq-ahead
    await bob.call("session.create", title="after restore")
    ev = await asyncio.wait_for(anext(bob.events()), 10)
    assert ev["seq"] == live_last + 1 > taken["last_seq"]
