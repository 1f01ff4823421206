"""What the control channel's request mix asks of the store, counted (not timed): commits of the
writer (group-commit batches), the writes they carried, and the reads of the sessions.

    python -m benchmarks.control_store_trips [--clients 20] [--rate 200] [--duration 8] [--json-out F]

A gateway in this process (tests/gateway/conftest.py's configuration, a real store in a temp dir)
and `--clients` dispatcher clients sending the mix of benchmarks/control_channel.py (ping 50 %,
session.list 40 %, session.create 10 %, open loop at `--rate`). Counts hold on a shared machine
where timings do not: each reply waits for every commit it needs, and a read of the sessions is a
trip to the reader's thread. Prints JSON: per 1,000 requests, the writer's commits and the
session reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from gateway.app import Gateway
from gateway.client import GatewayClient
from tests.gateway.conftest import gateway_config

MIX = (("ping", 0.5), ("session.list", 0.4), ("session.create", 0.1))


async def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-store-trips-") as tmp:
        gw = Gateway(gateway_config(Path(tmp), **{"control.request_budget.dispatcher": "{rate = 10000, burst = 10000}"}))
        await gw.start()
        counts = {"commits": 0, "ops_committed": 0, "session_reads": 0}
        commit, reads = gw.store._commit, gw.store.list_session_rows

        async def counted_commit(batch):
            counts["commits"] += 1
            counts["ops_committed"] += len(batch)
            await commit(batch)

        async def counted_reads(*a, **kw):
            counts["session_reads"] += 1
            return await reads(*a, **kw)

        gw.store._commit, gw.store.list_session_rows = counted_commit, counted_reads
        clients = [await GatewayClient.connect(gw.control.url, "tok-dispatcher", reconnect=False)
                   for _ in range(args.clients)]
        rng = random.Random(13)
        n = int(args.rate * args.duration)
        methods = rng.choices([m for m, _ in MIX], [w for _, w in MIX], k=n)
        t0 = time.monotonic()
        tasks = []
        for i, method in enumerate(methods):
            await asyncio.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
            params = {"title": f"load-{i}"} if method == "session.create" else {}
            tasks.append(asyncio.create_task(clients[i % len(clients)].call(method, **params)))
        await asyncio.gather(*tasks)
        for c in clients:
            await c.close()
        await gw.stop()
    per = 1000 / n
    return {"requests": n, "mix": dict(MIX), "counts": counts,
            "per_1000_requests": {k: round(v * per, 1) for k, v in counts.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--json-out", default=None, help="also write the JSON summary here (the gateway logs to stdout)")
    args = p.parse_args()
    out = json.dumps(asyncio.run(run(args)), indent=1)
    print(out)
    if args.json_out:
        Path(args.json_out).write_text(out + "\n")


if __name__ == "__main__":
    main()
