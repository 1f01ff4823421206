"""Peer programs as processes: find the binary (missing = test failure), start, read logs, stop.

A missing peer binary FAILS the test (pytest.fail), never skips it: the peers are part of the
test contract (./scripts/install.sh --test installs them all).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest


def require_binary(name: str) -> str:
    """Path of the peer program `name`; fails the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"peer binary {name!r} not found on PATH: run ./scripts/install.sh --test",
                    pytrace=False)
    return path


def read_log(path: Path) -> str:
    """A peer's log or trace file as text ("" while it does not exist yet)."""
    return path.read_text(errors="replace") if path.exists() else ""


async def start_process(
    args: Sequence[str], *, cwd: Path | None = None, log: Path | None = None
) -> asyncio.subprocess.Process:
    """Start a peer; stdout and stderr go to `log` (or nowhere), stdin is closed."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("wb")) if log is not None else asyncio.subprocess.DEVNULL
        return await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
        )


async def stop_process(proc: asyncio.subprocess.Process | None, grace: float = 3.0) -> None:
    """Stop a peer: SIGTERM, wait up to `grace` seconds, then SIGKILL. No-op when it has exited."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def kill_process(proc: asyncio.subprocess.Process | None) -> None:
    """SIGKILL a peer at once (a crash, as tests of failover want) and reap it."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()
