"""The loop-lag probe (gateway/loop_lag.py) sees a stall of the event loop: a callback that holds
the loop for 50 ms shows as one lateness of at least that, and an idle loop's lateness stays small."""

from __future__ import annotations

import asyncio
import time

from gateway import loop_lag


async def test_a_stall_of_the_loop_is_observed_as_its_length() -> None:
    seen: list[float] = []
    stalled = asyncio.Event()

    def observe(lag: float) -> None:
        seen.append(lag)
        if len(seen) == 3:  # the probe runs: hold the loop once, as a long fan-out callback would
            asyncio.get_running_loop().call_soon(hold_the_loop)
        elif len(seen) > 3 and max(seen) >= 0.05:
            stalled.set()

    def hold_the_loop() -> None:
        time.sleep(0.06)  # deliberately blocking: the stall under measurement

    task = asyncio.create_task(loop_lag.run(observe, interval_s=0.005))
    try:
        async with asyncio.timeout(10):
            await stalled.wait()
    finally:
        task.cancel()
    assert max(seen) >= 0.05
    assert all(lag >= 0 for lag in seen)
