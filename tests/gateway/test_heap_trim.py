"""gateway/heap_trim.py: free pages in the middle of the C heap go back to the system."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from gateway import heap_trim

# A child process, so this test's heap is its own: 60 MB of 2 KB blocks (glibc's heap, not
# Python's small-object arenas) of which every 64th is kept, which pins the heap's top; the rest
# is freed, free but resident. RssAnon before and after one trim.
CHILD = r"""
import sys
from gateway.heap_trim import malloc_trim
def rss_anon_kb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
blocks = [bytearray(2048) for _ in range(30_000)]
kept = blocks[::64]
del blocks
before = rss_anon_kb()
released = malloc_trim()()
after = rss_anon_kb()
print(before, after, released)
"""


def test_a_trim_gives_back_the_free_pages_in_the_middle_of_the_heap() -> None:
    assert heap_trim.malloc_trim() is not None  # glibc on every machine we run on
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                         timeout=60).stdout.split()
    before, after, released = (int(x) for x in out)
    assert released == 1
    assert before - after > 30_000, (before, after)  # of ~60 MB freed, most went back


async def test_the_timer_trims_in_a_thread_until_cancelled(monkeypatch) -> None:
    calls: list[int] = []
    done = asyncio.Event()

    def fake() -> int:
        calls.append(1)
        if len(calls) == 3:
            done.set()
        return 0

    monkeypatch.setattr(heap_trim, "malloc_trim", lambda: fake)
    task = asyncio.create_task(heap_trim.run(0.01))
    await asyncio.wait_for(done.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and len(calls) >= 3
