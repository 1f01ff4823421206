"""Give the C heap's free pages back to the system, on a timer.

The gateway is a long-running process whose C heap (glibc malloc: SQLite, aiohttp, large Python
objects) is freed in the middle as often as at the top: glibc returns memory to the system only
from the top of the heap, so pages freed in the middle stay resident. The 45-minute soak saw the
gateway's RSS grow a few MB per hour while the memory in use did not (glibc's free-but-held bytes
grew instead; docs/benchmarks.md, soak). `malloc_trim(0)` releases every whole free page
(madvise), wherever it lies; it takes the heap's locks for a few milliseconds at most on a heap
of this size, so it runs in a worker thread, every `gateway.heap_trim_interval_s`.
Without glibc (musl, other platforms) there is nothing to call: one log line, no task work.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

import structlog

log = structlog.get_logger("gateway.heap_trim")


def malloc_trim() -> Callable[[], int] | None:
    """glibc's malloc_trim(0) as a callable returning 1 when memory was released, None without it."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(fn(0))


async def run(interval_s: float) -> None:
    """Trim every `interval_s` until cancelled (owned by the gateway's task set)."""
    trim = malloc_trim()
    if trim is None:
        log.info("heap_trim.unavailable")
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(trim)
        except Exception:  # never worth stopping the gateway for
            log.exception("heap_trim.failed")
