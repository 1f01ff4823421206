"""The Twilio stub (tests/peers/twilio_stub.py) in processes of its own, for benchmarks.sms.

    async with TwilioPeer(sid, token, procs=2) as peer:   # 2 processes on one port (SO_REUSEPORT)
        peer.url                                           # http://127.0.0.1:<port>
        ...
    peer.arrivals, peer.creates, peer.lookups, peer.callbacks   # merged, once stopped

In the benchmark's own process the stub served every create and POSTed every status callback
(three a message) beside the benchmark's event reader: at 1,000/s one Python process was the
bottleneck for the bare library too (837/s on the quiet machine). Here each process is a stub of
its own on the same port; the kernel spreads the API connections over them, and each POSTs the
callbacks of the messages it created (its own pool of 100 connections, as the stub has). What the
stubs saw is merged when they stop: the arrival time of every create (CLOCK_MONOTONIC: one clock
for every process, comparable with the benchmark's), the accepted creates per number, the lookups
(GET: list / fetch) and the callbacks answered. Prism (`--prism`) goes in front of `url` as before.

    python -m benchmarks.twilio_peer --port P --sid AC... --token T   # one stub process (run by TwilioPeer)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from tests.peers.ports import free_tcp_port
from tests.peers.prism import repo_root
from tests.peers.twilio_stub import TwilioStub


class TimedStub(TwilioStub):
    """The stub, noting when each create arrives (monotonic)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.arrivals: list[float] = []

    async def _create(self, request):  # type: ignore[no-untyped-def]
        self.arrivals.append(time.monotonic())
        return await super()._create(request)


def seen(stub: TimedStub) -> dict[str, Any]:
    """What one stub saw, as merged by `TwilioPeer`."""
    return {"arrivals": stub.arrivals, "creates": dict(stub.creates),
            "lookups": sum(1 for method, _ in stub.requests if method == "GET"),
            "callbacks": len(stub.callbacks), "cpu_s": round(time.process_time(), 2)}


class TwilioPeer:
    """`procs` stub processes sharing one port; started and stopped by PID (SIGTERM: each prints
    what it saw as one JSON line and exits)."""

    def __init__(self, sid: str, token: str, procs: int = 1, host: str = "127.0.0.1") -> None:
        if procs < 1:
            raise ValueError("procs must be at least 1")
        self.sid, self.token, self.procs, self.host = sid, token, procs, host
        self.port = 0
        self._children: list[asyncio.subprocess.Process] = []
        self.arrivals: list[float] = []
        self.creates: Counter[str] = Counter()
        self.lookups = 0
        self.callbacks = 0
        self.cpu_s = 0.0
        self.per_process: list[int] = []  # creates each process took

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self.port = free_tcp_port(self.host)
        try:
            for _ in range(self.procs):
                child = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "benchmarks.twilio_peer", "--host", self.host, "--port", str(self.port),
                    "--sid", self.sid, "--token", self.token, cwd=repo_root(), stdout=asyncio.subprocess.PIPE)
                self._children.append(child)
                assert child.stdout is not None
                async with asyncio.timeout(30):
                    line = await child.stdout.readline()
                if line.strip() != b"ready":
                    raise RuntimeError(f"twilio stub process {child.pid} did not start: {line!r}")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        children, self._children = self._children, []
        for child in children:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            out, _ = await child.communicate()
            lines = out.decode().strip().splitlines()
            if not lines:
                continue
            got = json.loads(lines[-1])
            self.arrivals.extend(got["arrivals"])
            self.per_process.append(len(got["arrivals"]))
            self.creates.update(got["creates"])
            self.lookups += got["lookups"]
            self.callbacks += got["callbacks"]
            self.cpu_s += got["cpu_s"]
        self.arrivals.sort()

    async def __aenter__(self) -> TwilioPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(a: argparse.Namespace) -> dict[str, Any]:
    stub = TimedStub(a.sid, a.token, host=a.host, port=a.port, reuse_port=True)
    await stub.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    out = seen(stub)
    await stub.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.twilio_peer", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sid", required=True)
    ap.add_argument("--token", required=True)
    a = ap.parse_args(argv)
    print(json.dumps(asyncio.run(serve(a))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
