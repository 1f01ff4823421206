"""Crash durability: every event whose publish returned survives a SIGKILL of the process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from gateway.store import Store

CHILD = Path(__file__).with_name("_crash_child.py")
REPO = Path(__file__).resolve().parents[2]


async def test_sigkill_loses_no_returned_publish(db_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(db_path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    printed: list[int] = []
    try:
        async with asyncio.timeout(20):
            while len(printed) < 3000:
                line = await proc.stdout.readline()
                assert line, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
                if line.startswith(b"SEQ "):
                    printed.append(int(line.split()[1]))
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)  # no shutdown, no close, mid-write
    rest, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == -signal.SIGKILL
    for line in rest.split(b"\n")[:-1]:  # the last piece may be cut short
        if line.startswith(b"SEQ "):
            printed.append(int(line.split()[1]))

    async with Store(db_path) as store:
        stored = []
        cursor = 0
        while page := await store.events_after(cursor, 1000):
            stored.extend(e.seq for e in page)
            cursor = page[-1].seq
        last = await store.last_seq()
        missing = set(printed) - set(stored)
        assert not missing, sorted(missing)[:20]
        assert stored == list(range(1, last + 1))  # no holes either
        assert last >= max(printed)
        assert (await store.append_event("after.crash")).seq == last + 1
