"""The Python garbage collector once the gateway process has started (`gateway.app.run`).

- What start-up built (modules, classes, configuration, the services and their tables) is moved
  out of the collector's way: `gc.collect()`, then `gc.freeze()`. CPython's full (generation 2)
  collection walks every tracked object, and under SMS load (thousands of rows, events and
  provider objects made and dropped a second) the gateway ran one every few seconds, each
  walking the ~65,000 objects start-up left, which stay for the process's life. Frozen, they sit
  in the permanent generation: a collection walks only what was made since. Objects frozen here
  that later become unreachable in a cycle are not reclaimed (a bounded, one-time amount:
  start-up's); anything freed by its reference count is freed as before.
- The collector's thresholds stay CPython's (700, 10, 10). A young collection every 10,000
  allocations cut the collector's CPU further (0.36-0.61 s against 1.1-1.3 s a run, below) but
  let cyclic garbage live ten times longer before a collection: the control channel's fuzz test
  (tests/gateway/test_control_fuzz.py, 100,000 hostile frames: websockets connections and
  exceptions in cycles, holding their buffers) grew the process 9.8 % over its warm baseline
  against 5.1 % at 700, on the same seed; its bound is 10 %, and a CI run crossed it.

Measured at SMPP 1,000/s, 10,000 messages, with `gc.callbacks` (docs/benchmarks.md, issue 13
session 18): collector CPU 2.0-2.2 s a run before; frozen, 1.1-1.3 s (full collections 0.8 ->
0.2 s); frozen with a young threshold of 10,000, 0.36-0.61 s (not kept: see above).
"""

from __future__ import annotations

import gc

import structlog

log = structlog.get_logger("gateway.gc")


def settle_after_startup() -> int:
    """Collect what start-up left as garbage and freeze the rest; how many objects were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("gc.settled", frozen=frozen, thresholds=gc.get_threshold())
    return frozen
