"""Publish throughput with durable group commit (not a test: run it by hand).

    python -m tests.store.bench_publish [events] [publishers]
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

from gateway.events import EventBus
from gateway.store import Store


async def run(events: int, publishers: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "bench.db")
        await store.open()
        bus = EventBus(store)
        sub = bus.subscribe(0)  # one live subscriber, as with a connected console
        per = events // publishers

        async def publisher(p: int) -> None:
            for i in range(per):
                await bus.publish("call.state", {"call_id": f"c{p}", "state": "confirmed", "i": i},
                                  session_id="s1")

        async def reader() -> None:
            async for ev in sub:
                if ev.seq == per * publishers:
                    return

        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(reader())
            for p in range(publishers):
                tg.create_task(publisher(p))
        rate = per * publishers / (time.perf_counter() - t0)
        sub.close()
        await store.close()
        return rate


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    publishers = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    rates = [asyncio.run(run(events, publishers)) for _ in range(3)]
    print(f"events={events} publishers={publishers} runs=" + ", ".join(f"{r:,.0f}" for r in rates)
          + f" median={statistics.median(rates):,.0f} events/s")


if __name__ == "__main__":
    main()
