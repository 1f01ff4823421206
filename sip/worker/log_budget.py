"""How much pjsua may write to a worker's log (sans-I/O, no pjsua2).

pjsua logs one line per datagram it cannot parse ("Dropping 4000 bytes packet from ...", level
2, the default), so hostile traffic wrote about 200 bytes to the worker's log per datagram, without
bound: SIP fuzzing grew a worker log by 3.3 MB in 20 s. `LogBudget` is a token bucket over bytes;
the writer (pjcalls.py `WLogWriter`) drops what is over it and, at most once a second, says how
many lines it dropped (that line is paid for from the same budget).
"""

from __future__ import annotations

RATE_BYTES_S = 32 * 1024  # sustained: about 115 MB an hour at the worst
BURST_BYTES = 256 * 1024  # a start-up, a crash's last lines, a short storm: all written
NOTICE_BYTES = 96  # the "N lines dropped" line, at most
NOTICE_EVERY_S = 1.0


class LogBudget:
    def __init__(self, rate: float = RATE_BYTES_S, burst: float = BURST_BYTES) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None
        self._noticed_at = float("-inf")
        self.dropped = 0  # lines dropped and not reported yet

    def take(self, size: int, now: float) -> tuple[bool, int]:
        """Whether a line of `size` bytes may be written now, and how many dropped lines to report
        before it (0: none, or not yet)."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        report = self.dropped if self.dropped and now - self._noticed_at >= NOTICE_EVERY_S else 0
        need = size + (NOTICE_BYTES if report else 0)
        if need > self._tokens:
            self.dropped += 1
            return False, 0
        self._tokens -= need
        if report:
            self.dropped = 0
            self._noticed_at = now
        return True, report
