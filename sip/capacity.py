"""The capacity probe, asyncio side: run `python -m sip.worker --probe` (sip/worker/probe.py) and read it.

Kept apart from sip/worker/probe.py, which imports pjsua2 and runs only inside the probe process.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from .errors import SipUnavailable
from .lifeline import preexec_die_with_parent
from .worker_process import package_root

PROBE_TIMEOUT = 15.0


async def probe_calls_per_worker(python: str = sys.executable, limit: int = 64) -> int:
    """Run `python -m sip.worker --probe` and return the last call count it reported (at most
    `limit`: the probe stops there; a source build of pjsua2 holds about a thousand).

    The probe process may end cleanly or abort on a pjsua assertion past the compiled limit;
    either way the count printed before that is the number of calls one process can hold.
    """
    proc = await asyncio.create_subprocess_exec(
        python, "-m", "sip.worker", "--probe", "--probe-limit", str(limit),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, cwd=package_root(),
        preexec_fn=preexec_die_with_parent(signal.SIGKILL),  # it holds SIP and RTP ports: not past us
    )
    best = 0
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            assert proc.stdout is not None
            async for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "ok_calls" in msg:
                    best = max(best, int(msg["ok_calls"]))
                if "max_calls" in msg:
                    best = int(msg["max_calls"])
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if best < 1:
        raise SipUnavailable("pjsua2 probe could not place a single call", reason="sip-unavailable")
    return best
