"""Child process of test_crash: publish forever, print "SEQ n" after each publish returns."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog

from gateway.events import EventBus
from gateway.store import Store


async def main(path: str) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    store = Store(path)
    await store.open()
    bus = EventBus(store)
    os.write(1, b"READY\n")

    async def publisher(p: int) -> None:
        i = 0
        while True:
            ev = await bus.publish("crash.test", {"p": p, "i": i})
            os.write(1, f"SEQ {ev.seq}\n".encode())  # one write per line: atomic on a pipe
            i += 1

    async with asyncio.TaskGroup() as tg:
        for p in range(8):
            tg.create_task(publisher(p))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
