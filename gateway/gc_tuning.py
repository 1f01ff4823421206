"""The Python garbage collector once the gateway process has started (`gateway.app.run`).

- What start-up built (modules, classes, configuration, the services and their tables) is moved
  out of the collector's way: `gc.collect()`, then `gc.freeze()`. CPython's full (generation 2)
  collection walks every tracked object, and under SMS load (thousands of rows, events and
  provider objects made and dropped a second) the gateway ran one every few seconds, each
  walking the ~65,000 objects start-up left, which stay for the process's life. Frozen, they sit
  in the permanent generation: a collection walks only what was made since. Objects frozen here
  that later become unreachable in a cycle are not reclaimed (a bounded, one-time amount:
  start-up's); anything freed by its reference count is freed as before.
- The young generation is collected every `YOUNG_THRESHOLD` container allocations instead of
  CPython's 700: most of what a message makes (dicts, futures, tasks) is freed by its reference
  count within the tick, and a young collection every 700 allocations walked it still alive
  (the older generations keep their ratios, 10 and 10). Cyclic garbage waits a little longer.

Measured at SMPP 1,000/s, 10,000 messages, with `gc.callbacks` (docs/benchmarks.md, issue 13
session 18): collector CPU 2.0-2.2 s a run before; frozen, 1.1-1.3 s (full collections 0.8 ->
0.2 s); frozen and 10,000, 0.6 s (1,262 young collections -> 147).
"""

from __future__ import annotations

import gc

import structlog

log = structlog.get_logger("gateway.gc")

YOUNG_THRESHOLD = 10_000


def settle_after_startup() -> int:
    """Collect what start-up left as garbage, freeze the rest, widen the young generation; how
    many objects were frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    frozen = gc.get_freeze_count()
    log.info("gc.settled", frozen=frozen, thresholds=gc.get_threshold())
    return frozen
