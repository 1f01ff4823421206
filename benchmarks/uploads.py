"""Upload benchmark: terminals uploading photos over HTTP while a console pings the control
channel, to show uploads stream to disk without stalling the gateway's event loop.

    python -m benchmarks.uploads [--size-mb 5] [--count 20] [--concurrency 4]

The gateway runs in its own process (benchmarks/gateway_process.py's `GatewayProcess`, with one
terminal in its directory). `count` uploads of `size-mb` MiB each (random bytes behind a JPEG
signature, so each is new) go `concurrency` at a time, while a console sends `ping` every 20 ms:
upload throughput and latency, the gateway's CPU, and the ping round trips idle vs during the
uploads (a blocked loop would show as ping outliers). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from benchmarks.control_stats import ms, pct
from benchmarks.gateway_process import TOKEN, GatewayProcess
from gateway.client import GatewayClient

TERMINAL_TOKEN = "bench-terminal-upload-token"


async def pings(client: GatewayClient, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await client.call("ping")
        out.append(time.perf_counter() - t0)
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace, gw: GatewayProcess) -> dict[str, Any]:
    size = int(args.size_mb * 1024 * 1024)
    url = f"http://127.0.0.1:{gw.http_port}/v1/uploads"
    headers = {"Authorization": f"Bearer {TERMINAL_TOKEN}", "Content-Type": "image/jpeg"}
    console = await GatewayClient.connect(gw.url, TOKEN)
    idle: list[float] = []
    busy: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(pings(console, stop, idle))
    await asyncio.sleep(2)
    stop.set()
    await task
    slots = asyncio.Semaphore(args.concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    # Made before the clock starts: generating them would stall this process's loop (and pings).
    bodies = [b"\xff\xd8\xff\xe0" + os.urandom(size - 4) for _ in range(args.count)]

    async def one(http: aiohttp.ClientSession, body: bytes) -> None:
        async with slots:
            t0 = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

    stop = asyncio.Event()
    task = asyncio.create_task(pings(console, stop, busy))
    cpu0 = gw.sample()["cpu_s"] or 0.0
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(one(http, body) for body in bodies))
    wall = time.perf_counter() - t0
    cpu1 = gw.sample()["cpu_s"] or 0.0
    stop.set()
    await task
    await console.close()
    return {
        "uploads": args.count, "size_mb": args.size_mb, "concurrency": args.concurrency,
        "statuses": statuses, "wall_s": round(wall, 2),
        "throughput_mb_s": round(args.count * size / 1024 / 1024 / wall, 1),
        "upload_ms": {"p50": ms(pct(latencies, 50)), "p99": ms(pct(latencies, 99)), "max": ms(max(latencies))},
        "gateway_cpu_s": round(cpu1 - cpu0, 2), "gateway_cpu_pct_of_core": round(100 * (cpu1 - cpu0) / wall, 1),
        "ping_idle_ms": {"p50": ms(pct(idle, 50)), "p99": ms(pct(idle, 99)), "max": ms(max(idle))},
        "ping_during_uploads_ms": {"p50": ms(pct(busy, 50)), "p99": ms(pct(busy, 99)), "max": ms(max(busy)),
                                   "n": len(busy)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mb", type=float, default=5)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as tmp:
        tokens = (f'{{"{TOKEN}" = {{principal = "bench", role = "dispatcher"}}, '
                  f'"{TERMINAL_TOKEN}" = {{principal = "unit-1", role = "terminal"}}}}')
        gw = GatewayProcess(Path(tmp), "info", extra={
            "auth.tokens": tokens, "directory.endpoint": '[{name = "unit-1", kind = "terminal"}]',
            "uploads.max_bytes": str(int(args.size_mb * 1024 * 1024) + 1024),
            "uploads.max_concurrent": str(args.concurrency), "uploads.min_free_bytes": "0"})
        gw.start()
        try:
            print(json.dumps(asyncio.run(run(args, gw)), indent=2))
        finally:
            gw.stop()


if __name__ == "__main__":
    main()
