"""The loop-lag probe (gateway/loop_lag.py) sees a stall of the event loop: a callback that works
60 ms shows as a lateness of at least 50 ms, in both measures; a callback that sleeps 60 ms (as a
process waiting for a core does: no CPU) only in the wall-clock one."""

from __future__ import annotations

import asyncio
import time

from gateway import loop_lag


async def lateness(hold) -> tuple[float, float]:
    """The largest lateness in each measure while `hold` runs once as a callback of the loop."""
    seen: list[float] = []
    own: list[float] = []
    done = asyncio.Event()

    def observe(lag: float) -> None:
        seen.append(lag)
        if len(seen) == 3:  # the probe runs: hold the loop once
            asyncio.get_running_loop().call_soon(hold)
        elif len(seen) > 3 and max(seen) >= 0.05:
            done.set()

    task = asyncio.create_task(loop_lag.run(observe, own.append, interval_s=0.005))
    try:
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        task.cancel()
    assert all(lag >= 0 for lag in seen + own)
    return max(seen), max(own)


def work(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:  # deliberately blocking: the stall under measurement
        pass


async def test_a_stall_of_the_loop_s_own_work_shows_in_both_measures() -> None:
    wall, own = await lateness(lambda: work(0.06))
    assert wall >= 0.05 and own >= 0.05


async def test_a_stall_without_cpu_shows_in_the_wall_clock_measure_only() -> None:
    wall, own = await lateness(lambda: time.sleep(0.06))  # deliberately blocking, no CPU
    assert wall >= 0.05 and own < 0.02
