"""Who may take a call slot: inbound shares that keep a reserve for `call.dial`, the ringing limit
per source, and the SIP answers that carry these refusals. Pure (no pjsua2, no sockets): used by
the supervisor (shares), the workers (their refusals) and the Kamailio front's config (which
refusals it fails over on).

A worker holds `calls_per_worker` calls (4 with the pjsua2 wheel) and an inbound call holds one
from its INVITE, ringing, until it ends. `sip.dispatch_reserve` slots of the gateway's
`max_workers * calls_per_worker` are kept from inbound calls: each worker gets a fixed inbound
share (`inbound_shares`), so no worker ever needs to ask the others before it answers an INVITE,
and a flood is refused where it lands. Dials may use every slot.
"""

from __future__ import annotations

from dataclasses import dataclass

# A worker at its inbound share: 503 (the gateway, not the callee, cannot take the call now), with
# Retry-After. Behind the front it never reaches the caller while another worker has room: the
# front fails over on it. pjsua's own answer when every slot is taken is "486 Busy Here".
WORKER_FULL = (503, "Worker Full")
RETRY_AFTER_S = 5
# A source with `max_ringing_per_source` unanswered calls: 486. A 503 would tell an upstream proxy
# or trunk that the whole gateway is down (RFC 3261 21.5.4: it may stop sending us every call for
# Retry-After, or retry elsewhere at once); the limit is about this source's calls, and "busy" is
# what the source's next caller really meets.
TOO_MANY_RINGING = (486, "Too Many Ringing Calls")
# Refusals a worker answers per second (token bucket, as many in a burst). Each refused call has
# had its RTP and RTCP sockets opened by pjsua before the worker sees it, and a closed socket's
# ioqueue slot is only reused 500 ms later: the wheel's ioqueue has 64 slots, and refusing a flood
# at 150 INVITEs/s exhausted it within a second (a pjsua assertion aborts the worker). Past the
# budget a refused call is held, unanswered (its pjsua slot taken, so pjsua itself answers further
# INVITEs 486 without opening sockets), until the budget allows, or a dial needs its slot.
REFUSALS_PER_S = 5.0
# The reason phrase of a refusal the gateway's user chose (`call.reject`, the ring timeout) when its
# code is one the front fails over on: the front passes it to the caller instead of ringing the
# call again on another worker.
DECIDED = "Declined by Gateway"
# Final answers from a worker that the front retries on the next worker (Kamailio t_check_status).
FAILOVER_STATUS = "486|5[0-9][0-9]"


def fails_over(code: int) -> bool:
    """True when the front would try another worker on this final answer (see FAILOVER_STATUS)."""
    return code == 486 or 500 <= code <= 599


def decided_reason(code: int) -> str | None:
    """The reason phrase for a refusal the gateway's user chose: DECIDED when the front would
    otherwise fail over on `code`; None (pjsua's default phrase) otherwise."""
    return DECIDED if fails_over(code) else None


def inbound_shares(workers: int, calls_per_worker: int, reserve: int, *, spread: bool = True) -> list[int]:
    """Inbound calls each worker may hold so that `reserve` slots of all of them stay for dials.

    `spread` (a front spreads inbound calls over the workers): the total inbound share,
    workers*calls_per_worker - reserve, is spread evenly, the remainder to the highest-numbered
    workers, so worker 0 (always started first, and the one dials fill first) keeps free slots
    whenever there is a reserve at all. Without a front only worker 0 is called: it gets all it
    can hold of the total, the others none."""
    total = max(0, workers * calls_per_worker - max(0, reserve))
    if not spread:
        return [min(calls_per_worker, total)] + [0] * (workers - 1)
    base, extra = divmod(total, workers)
    return [min(calls_per_worker, base + (1 if i >= workers - extra else 0)) for i in range(workers)]


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str
    retry_after: int | None = None


def admit_inbound(*, inbound: int, share: int, ringing_from_source: int,
                  max_ringing_per_source: int) -> Refusal | None:
    """Whether a worker takes a new inbound call: None, or how it refuses it.

    `inbound`: inbound calls the worker holds now; `ringing_from_source`: those of them still
    unanswered from the new call's source address; `max_ringing_per_source` 0: no limit here (the
    front enforces it)."""
    if max_ringing_per_source and ringing_from_source >= max_ringing_per_source:
        return Refusal(*TOO_MANY_RINGING)
    if inbound >= share:
        return Refusal(*WORKER_FULL, retry_after=RETRY_AFTER_S)
    return None


class RefusalBudget:
    """A token bucket of refusals: `take(now)` is True when one may be answered now."""

    def __init__(self, rate: float = REFUSALS_PER_S, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = rate if burst is None else burst
        self._tokens = self.burst
        self._at: float | None = None

    def take(self, now: float, *, borrow: bool = False) -> bool:
        """One refusal now? `borrow`: also on credit, down to -burst (a dial that needs the slot
        of a held refusal), repaid before the next ordinary one: the average rate still holds."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1 or (borrow and self._tokens > -self.burst):
            self._tokens -= 1
            return True
        return False


def source_host(address: str) -> str:
    """The host of a pjsip source address ("127.0.0.1:5060", "[::1]:5060")."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    return host.strip("[]")
