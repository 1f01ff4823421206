"""Running SIPp for the Kamailio tests: UAS "workers" that stay up, UAC runs that finish."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from sip.kamailio import sip_options_ping
from tests.peers.ports import free_udp_port
from tests.peers.process import kill_process, read_log, require_binary, start_process

HOST = "127.0.0.1"
_INVITE = re.compile(r"^INVITE sip:", re.M)


def sipp_bin() -> str:
    return require_binary("sipp")


class SippUas:
    """A SIPp UAS bound on HOST:port, answering OPTIONS and INVITEs, logging every message."""

    def __init__(self, scenario: Path, port: int | None, workdir: Path, name: str) -> None:
        """`port` None: a free port chosen at start, and another one if someone takes it between
        the choice and SIPp's bind (seen once in CI: "Unable to bind main socket, errno = 98")."""
        self.scenario, self.name = scenario, name
        self.port, self._any_port = (port or 0), port is None
        self.msg_log = workdir / f"{name}_messages.log"
        self.out = workdir / f"{name}.out"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 5.0) -> None:
        for _ in range(3 if self._any_port else 1):
            if self._any_port:
                self.port = free_udp_port(HOST)
            if await self._start(timeout):
                return
        raise AssertionError(f"{self.name}: no port could be bound: {self.out.read_text()[-2000:]}")

    async def _start(self, timeout: float) -> bool:
        """True once it answers OPTIONS; False if it could not bind its port (and may try another)."""
        self.proc = await start_process(
            [sipp_bin(), "-sf", str(self.scenario), "-i", HOST, "-p", str(self.port),
             "-nostdin", "-trace_msg", "-message_file", str(self.msg_log)],
            log=self.out,
        )
        deadline = time.monotonic() + timeout
        while not await sip_options_ping(HOST, self.port, timeout=0.2):
            if self.proc.returncode is not None:
                out = self.out.read_text()
                if self._any_port and "Unable to bind main socket" in out:
                    return False
                # SIPp's reason comes first, its statistics screen after: both, the reason kept whole
                why = [line for line in out.splitlines() if "Unable" in line or "rror" in line][:5]
                raise AssertionError("\n".join(why) + "\n" + out[-1500:])
            assert time.monotonic() < deadline, f"{self.name} not answering on {self.port}"
        return True

    def invites(self) -> int:
        """INVITE requests this UAS received (from its message trace)."""
        return len(_INVITE.findall(self.received()))

    def received(self) -> str:
        return read_log(self.msg_log)

    async def kill(self) -> None:
        await kill_process(self.proc)


async def run_sipp(*args: str, cwd: Path, timeout: float = 60.0) -> tuple[int, str]:
    """Run a SIPp client to completion; (exit code, output). 0 = every call succeeded."""
    proc = await asyncio.create_subprocess_exec(
        sipp_bin(), *args, "-nostdin", cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        await kill_process(proc)
        raise
    return proc.returncode, out.decode(errors="replace")


def successful_calls(output: str) -> int:
    """'Successful call' total from SIPp's final statistics screen."""
    counts = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return int(counts[-1]) if counts else 0
