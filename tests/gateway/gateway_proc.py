"""The gateway run as its own process (`python -m gateway.cli serve --set ...`), as an operator
runs it: started, stopped (SIGTERM) or killed (-9) by PID, its JSON log and its SQLite store read
from outside (read-only) while it runs or after it died."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.config import load_config
from tests.gateway.conftest import TOKENS, _toml
from tests.peers.prism import repo_root


class GatewayProc:
    """`python -m gateway.cli serve` with `overrides`; started and stopped (or killed) by PID."""

    def __init__(self, overrides: dict[str, Any], log_dir: Path, *, new_session: bool = False) -> None:
        tokens = ", ".join(f'"{t}" = {{principal = "{p}", role = "{r}"}}' for t, (p, r) in TOKENS.items())
        self.sets = [f"{k}={v if isinstance(v, str) else _toml(v)}" for k, v in overrides.items()] + [f"auth.tokens={{{tokens}}}"]
        config = load_config(None, {}, self.sets)
        self.store_path = config.store_path
        scheme = "wss" if config.control.tls_cert else "ws"
        self.url = f"{scheme}://127.0.0.1:{config.control.port}/v1/control"
        self.control_port = config.control.port
        self.log_dir = log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.new_session = new_session  # its own process group: group signals reach only it

    @property
    def log(self) -> Path:
        return self.log_dir / f"gateway-{self.starts}.log"

    async def start(self, timeout: float = 60) -> float:
        self.starts += 1
        args = [sys.executable, "-m", "gateway.cli", "serve"]
        for s in self.sets:
            args += ["--set", s]
        t0 = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *args, cwd=repo_root(), stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=self.new_session)
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
                with contextlib.suppress(OSError):
                    _, w = await asyncio.open_connection("127.0.0.1", self.control_port)
                    w.close()
                    return time.monotonic() - t0
                await asyncio.sleep(0.05)

    async def kill9(self) -> None:
        assert self.proc is not None and self.proc.returncode is None, "gateway not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, grace: float = 10) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def log_events(self, start: int, event: str) -> list[dict]:
        out = []
        for line in (self.log_dir / f"gateway-{start}.log").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict) and rec.get("event") == event:
                    out.append(rec)
        return out


def store_rows(path: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of `sql` read straight from the store at `path` (read-only; the gateway may be
    running, busy or dead)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return db.execute(sql, params).fetchall()


@contextlib.asynccontextmanager
async def gateway_proc(overrides: dict[str, Any], log_dir: Path) -> AsyncIterator[GatewayProc]:
    gw = GatewayProc(overrides, log_dir)
    try:
        yield gw
    finally:
        await gw.stop()


async def wait_until(pred, timeout: float, what: str, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)
