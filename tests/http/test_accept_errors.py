"""Out of file descriptors, a listener logs its failed accepts at most once per interval
(issue 8 §2: 292 MB of EMFILE lines in 75 s). The listener runs in a child process with a low
RLIMIT_NOFILE so that only that process runs out; it is killed by its PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import textwrap

from tests.peers.prism import repo_root

CHILD = textwrap.dedent("""
    import asyncio, os, resource, sys
    from gateway import http
    from gateway.limits import throttle_accept_errors

    async def main():
        if sys.argv[1] == "throttled":
            throttle_accept_errors(asyncio.get_running_loop(), 60)
        listener = await http.start("127.0.0.1", 0, {}, [],
                                    http.HttpLimits(header_timeout_s=60, max_connections_per_source=10_000))
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 10, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        print("PORT", http.bound_port(listener), flush=True)
        await asyncio.sleep(float(sys.argv[2]))
        print("ALIVE", flush=True)
        os._exit(0)

    asyncio.run(main())
""")


async def accept_error_lines(mode: str, seconds: float = 3.0) -> tuple[int, bool]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, mode, str(seconds), cwd=repo_root(),
        env={**os.environ, "PYTHONPATH": str(repo_root())},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    writers = []
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"PORT"), line
        port = int(line.split()[1])
        for _ in range(60):  # held: each takes a descriptor until there is none
            _, w = await asyncio.open_connection("127.0.0.1", port)
            writers.append(w)
        out = await asyncio.wait_for(proc.stdout.read(), 60)
        await proc.wait()
    finally:
        for w in writers:
            w.close()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    lines = [ln for ln in text.splitlines() if "accept" in ln and ("resource" in ln or "accept-failed" in ln)]
    return len(lines), "ALIVE" in text


async def test_accept_errors_are_logged_once_per_interval():
    # Without the throttle ("plain"), Python 3.11 logged 799 lines in these 3 s: asyncio retries
    # the accept once per backlog slot, each failing again, each logged with its traceback.
    count, alive = await accept_error_lines("throttled")
    assert alive and count == 1

