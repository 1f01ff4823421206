"""The SMSC test peer: tests/peers/smpp_sim/sim.js (the npm `smpp` library's server side) as a process.

Install once: `npm ci --prefix tests/peers/smpp_sim` (node and the `smpp` package missing = the test
FAILS). The simulator answers bind_transceiver (wrong password -> ESME_RINVPASWD), submit_sm (a
message id, or the status configured for a rejected destination), sends a delivery receipt for every
accepted submit_sm that asked for one, a mobile-originated UCS-2 deliver_sm on `send_mo()`, and
records every PDU: `events` holds them as dicts (`event`: bind_transceiver, submit_sm, enquire_link...;
an accepted submit_sm carries `t`: CLOCK_MONOTONIC seconds when it was answered, Python's `time.monotonic()`).
Like an SMSC it keeps every deliver_sm until it is answered ESME_ROK: an error answer is retried after
`retry_ms`, one left unanswered by a dropped session is delivered again after the next bind
(`redeliver` events). `silent` destinations get no submit_sm_resp (their receipt still comes);
`no_receipt` destinations get no receipt.

`kill()` SIGKILLs it (a crashed SMSC); `start()` again on the same port brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.peers.ports import free_tcp_port

SIM_DIR = Path(__file__).resolve().parent / "smpp_sim"
ESME_RINVDSTADR = 0x0B
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58


def require_sim() -> str:
    """The node binary; fails the test when node or the smpp package is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found on PATH: the SMPP simulator needs it (apt-get install nodejs)",
                    pytrace=False)
    if not (SIM_DIR / "node_modules" / "smpp" / "package.json").exists():
        pytest.fail(f"npm package smpp missing: run `npm ci --prefix {SIM_DIR}`", pytrace=False)
    return node


class SmppSim:
    def __init__(self, *, port: int | None = None, system_id: str = "gw", password: str = "secret",
                 reject: dict[str, int] | None = None, stat: dict[str, str] | None = None,
                 receipt_delay_ms: int = 50, silent: list[str] | None = None,
                 no_receipt: list[str] | None = None, retry_ms: int = 100) -> None:
        self.port = port or free_tcp_port()
        self.config: dict[str, Any] = {
            "port": self.port, "system_id": system_id, "password": password,
            "reject": reject or {}, "stat": stat or {}, "receipt_delay_ms": receipt_delay_ms,
            "silent": silent or [], "no_receipt": no_receipt or [], "retry_ms": retry_ms,
        }
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        node = require_sim()
        self._proc = await asyncio.create_subprocess_exec(
            node, str(SIM_DIR / "sim.js"), json.dumps(self.config), cwd=SIM_DIR,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read(self._proc))
        await self.wait_for(lambda e: e["event"] == "listening" and e["pid"] == self._proc.pid,
                            timeout=timeout)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            event = json.loads(line)
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    async def wait_for(self, pred: Any, *, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The first `count` recorded events matching `pred` (a kind or a predicate), waiting for them."""
        match = (lambda e: e["event"] == pred) if isinstance(pred, str) else pred
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len([e for e in self.events if match(e)]) >= count)
        return [e for e in self.events if match(e)][:count]

    async def _command(self, cmd: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self._proc.stdin.drain()

    async def send_mo(self, sender: str, to: str, text: str, *, parts: list[str] | None = None, ref: int = 1,
                      coding: str = "ucs2") -> None:
        """A mobile-originated deliver_sm (data_coding 8, UTF-16BE; 3 with coding="latin1") to a
        bound session (kept until it is acknowledged, like every deliver_sm). `parts`: instead of
        `text`, a concatenated message, one deliver_sm per part (UDH with reference `ref`)."""
        command: dict[str, object] = {"cmd": "mo", "from": sender, "to": to, "text": text, "coding": coding}
        if parts is not None:
            command |= {"parts": parts, "ref": ref}
        await self._command(command)

    async def kill(self) -> None:
        """SIGKILL the simulator (our own child, by its PID) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def stop(self) -> None:
        await self.kill()
