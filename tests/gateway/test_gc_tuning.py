"""After start-up the gateway freezes the heap start-up built: a full collection then walks only
what was made since (issue 13: at SMPP 1,000/s the collector's full collections walked the ~65,000
start-up objects every few seconds, 0.8 s of CPU per 10,000 messages). In-process, with the
collector's own counts; the test process's heap is unfrozen again at the end."""

from __future__ import annotations

import gc

from gateway.gc_freeze import freeze_startup_heap


def test_a_full_collection_walks_only_what_was_made_after_the_freeze() -> None:
    gc.unfreeze()  # whatever an earlier test froze: this one counts from nothing frozen
    try:
        gc.collect()
        before = len(gc.get_objects())
        frozen = freeze_startup_heap()
        assert frozen >= 0.9 * before  # what was tracked then, less the garbage collected first
        made = [[i] for i in range(1000)]  # made after: the collector still sees these
        tracked = len(gc.get_objects())
        assert 1000 <= tracked < before // 10, (tracked, before)
        del made
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # garbage made after the freeze is still collected
    finally:
        gc.unfreeze()
