"""sip/lifeline.py with real processes the test starts: the parent-death signal, and the record a
start reaps after a kill -9 (only when the gateway that wrote it is dead)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sip.lifeline import ChildRecord

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
        assert not record.path.exists()
        assert record.reap() == []  # nothing left
    finally:
        for p in (sleeper, owner):
            if p.poll() is None:
                p.kill()
                p.wait()
