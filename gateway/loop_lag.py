"""How late the event loop runs a timer: the longest stall of the loop, as /metrics sees it.

A task sleeps `interval_s` again and again; how much later than asked it wakes is the time the
loop spent in other callbacks (or descheduled) past the timer's due time, so the largest lateness
of a period is close to its longest single callback (within `interval_s`). Each lateness is handed
to `observe` (the `dispatch_loop_lag_seconds` histogram, gateway/metrics/registry.py). On a busy
machine most of a lateness can be the process waiting for a core; `observe_own` gets the part the
loop's own work explains: the lateness, but at most the CPU time the loop's thread used meanwhile
(`dispatch_loop_lag_own_seconds`). At 10 ms, 100 wake-ups a second: a few microseconds each.
Owned by the gateway's housekeeping tasks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

INTERVAL_S = 0.01


async def run(observe: Callable[[float], None], observe_own: Callable[[float], None] | None = None,
              interval_s: float = INTERVAL_S) -> None:
    """Observe the loop's lateness on a timer of `interval_s` until cancelled.

    The timer is a chain of `call_at` callbacks (one timer handle a wake-up), not a task sleeping
    (a future, a timer and a task step each time: with the prometheus_client histograms before
    gateway/metrics/light.py, ~40 us a wake-up, 3.5 % of the gateway's CPU in workload (a))."""
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def tick(due: float, cpu: float) -> None:
        nonlocal handle
        now, used = loop.time(), time.thread_time()
        handle = loop.call_at(now + interval_s, tick, now + interval_s, used)  # first: whatever observe does
        late = max(0.0, now - due)
        observe(late)
        if observe_own is not None:
            observe_own(min(late, used - cpu))

    due = loop.time() + interval_s
    handle = loop.call_at(due, tick, due, time.thread_time())
    try:
        await loop.create_future()  # until cancelled
    finally:
        handle.cancel()
