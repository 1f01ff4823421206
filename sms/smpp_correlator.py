"""The correlator the SMPP provider gives aiosmpplib's ESME (sms/smpp.py): the library's own
in-memory one, its expiry sweep throttled."""

from __future__ import annotations

import time

from aiosmpplib.correlator import SimpleCorrelator


class Correlator(SimpleCorrelator):
    """aiosmpplib's in-memory correlator (requests <-> responses, submit_sm <-> receipts), its
    expiry sweep run at most every `sweep_s`. The library sweeps all its tables on every put and
    get: three or four times a message, each over every request in flight and every message
    waiting for its receipt (~5-10 % of the gateway's Python time at 1,000 messages/s). An entry
    now expires up to `sweep_s` after its TTL (15 s for a response, 3 days for a receipt); `send()`
    keeps its own timeout, so nothing waits on that."""

    def __init__(self, name: str, sweep_s: float = 1.0) -> None:
        super().__init__(name)
        self.sweep_s = sweep_s
        self.swept_at = float("-inf")  # monotonic time of the last sweep

    async def _remove_expired(self) -> None:
        now = time.monotonic()
        if now - self.swept_at >= self.sweep_s:
            self.swept_at = now
            await super()._remove_expired()
