"""sip/lifeline.py with real processes the test starts: the parent-death signal, and the record a
start reaps after a kill -9 (only when the gateway that wrote it is dead)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sip.lifeline import ChildRecord, exited

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = "import sys, time; time.sleep(60)"


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_child_dies_with_its_parent_even_on_kill_9() -> None:
    # parent: starts a child that asks for SIGKILL on its parent's death, prints its pid, sleeps.
    child = ("import os, signal, sys, time; from sip.lifeline import die_with_parent; "
             "die_with_parent(signal.SIGKILL, int(sys.argv[1])); time.sleep(60)")
    parent = ("import subprocess, sys, os, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())]); "
              "print(p.pid, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        grandchild = int(proc.stdout.readline())
        assert not _gone(grandchild, 0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _gone(grandchild), "the child outlived its parent"
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


def test_a_record_is_reaped_only_when_its_owner_is_dead(tmp_path: Path) -> None:
    marker = f"front-{uuid.uuid4().hex}"
    sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER, marker], start_new_session=True)
    owner = subprocess.Popen([sys.executable, "-c", SLEEPER])
    # The marker in the command line of a process of another group (an operator's `less <cfg>`).
    bystander = subprocess.Popen([sys.executable, "-c", SLEEPER, marker])
    record = ChildRecord(tmp_path / "run" / "front.pid")
    try:
        record.write(sleeper.pid, marker)
        text = record.path.read_text().splitlines()
        record.path.write_text(f"{text[0]}\n{text[1]}\n{owner.pid}\n")  # written by `owner`
        assert record.reap() == [] and sleeper.poll() is None  # its gateway still runs
        assert record.path.exists()
        owner.kill()
        owner.wait()
        assert record.reap(grace=2) == [sleeper.pid]  # the gateway is gone: its front goes
        assert sleeper.wait(5) == -signal.SIGTERM
        assert bystander.poll() is None  # not of the front's group: left alone
        assert not record.path.exists()
        assert record.reap() == []  # nothing left
    finally:
        for p in (sleeper, owner, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


async def test_exited_sees_the_process_die_while_what_it_forked_holds_its_pipe() -> None:
    # A parent that forks a child sharing its stdout (as Kamailio's main does), then sleeps.
    # Killed alone, its child keeps the pipe open: asyncio's `wait()` does not return, `exited` does.
    forks = ("import os, sys, time\n"
             "pid = os.fork()\n"
             "if pid == 0:\n    time.sleep(60); os._exit(0)\n"
             "print(pid, flush=True); time.sleep(60)\n")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", forks, stdout=asyncio.subprocess.PIPE,
                                                start_new_session=True)
    waited = asyncio.ensure_future(proc.wait())  # what the front's watch did
    try:
        child = int(await proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            assert await exited(proc) == -signal.SIGKILL
        assert not _gone(child, 0.2)  # it still runs, holding the pipe
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waited), 0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the session the test started
        await proc.stdout.read()  # to its end: the pipe closed, the transport done
        await asyncio.wait_for(waited, 10)
