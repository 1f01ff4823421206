"""Which broadcast holds which speaker (sans-I/O: no asyncio, no sockets, no clock).

A target (speaker, phone or zone name) has at most one holder. Priorities are ranked by the
configured order (`priorities[0]` is the highest); each broadcast gets a start order the first
time it claims. `claim()` decides every requested target against its current holder:

- free, or already held by the claimant         -> granted
- held by a broadcast of LOWER priority          -> pre-empted: the claimant takes it; the old
  holder is reported in `Claim.preempted` and, if its policy is "resume", waits for the target
- held by a broadcast of HIGHER priority         -> refused (`Claim.refused`: target, holder)
- held by a broadcast of EQUAL priority          -> the equal-priority rule:
    "first" (default): the first holder keeps it; the later claimant is refused (reported
                       `busy`, held-by the other broadcast). First come, first served: two
                       dispatchers on the same level never cut each other off mid-message.
    "last":            a later-started claimant pre-empts it, as if it had a higher priority.

A refused claimant does not wait for the target: only pre-empted broadcasts wait (and only with
the "resume" policy). The service may claim again later. Each claim is decided for all targets
first and then applied, so an invalid request (unknown priority, bad target) changes nothing, and
every target ends in exactly one of the three lists.

`release(broadcast_id, targets=None)` gives targets up (all of them, and leaves every waiting list,
when `targets` is None). A released target goes to the first waiting broadcast, waiting lists being
ordered by priority (highest first) then start order (earliest first; latest first under the
"last" rule, so the most recent cut-off is restored first); it returns
`[(target, next_holder_id or None)]` for every target the broadcast held.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.errors import Conflict, InvalidParams

Policy = Literal["resume", "end"]
EqualRule = Literal["first", "last"]


@dataclass(frozen=True)
class Holder:
    """A broadcast as the arbiter sees it: priority rank (0 = highest) and start order."""

    broadcast_id: str
    priority: str
    rank: int
    order: int
    policy: Policy = "resume"


@dataclass
class Claim:
    granted: list[str] = field(default_factory=list)
    preempted: list[tuple[str, str]] = field(default_factory=list)  # (target, from broadcast id)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (target, holder broadcast id)

    @property
    def acquired(self) -> list[str]:
        """Every target the claimant now holds (granted or taken by pre-emption)."""
        return self.granted + [t for t, _ in self.preempted]


class Arbiter:
    def __init__(
        self,
        priorities: Sequence[str],
        *,
        preempted_policy: Policy = "resume",
        equal_priority: EqualRule = "first",
    ) -> None:
        prios = tuple(priorities)
        if not prios or len(set(prios)) != len(prios):
            raise ValueError(f"priorities must be non-empty and distinct: {prios!r}")
        if preempted_policy not in ("resume", "end"):
            raise ValueError(f"preempted_policy {preempted_policy!r} is not 'resume' or 'end'")
        if equal_priority not in ("first", "last"):
            raise ValueError(f"equal_priority {equal_priority!r} is not 'first' or 'last'")
        self.priorities = prios
        self._rank = {p: i for i, p in enumerate(prios)}
        self.preempted_policy: Policy = preempted_policy
        self.equal_priority: EqualRule = equal_priority
        self._orders = itertools.count()
        self._known: dict[str, Holder] = {}  # broadcast id -> Holder
        self._holder: dict[str, Holder] = {}  # target -> holder
        self._waiting: dict[str, list[Holder]] = {}  # target -> sorted waiting broadcasts

    # ---------------------------------------------------------------- queries

    def rank(self, priority: str) -> int:
        try:
            return self._rank[priority]
        except (KeyError, TypeError):
            raise InvalidParams(
                f"unknown priority {priority!r}",
                details={"priority": priority, "known": list(self.priorities)},
            ) from None

    def holder(self, target: str) -> str | None:
        h = self._holder.get(target)
        return h.broadcast_id if h else None

    def waiting(self, target: str) -> list[str]:
        return [h.broadcast_id for h in self._waiting.get(target, ())]

    def held_by(self, broadcast_id: str) -> list[str]:
        return [t for t, h in self._holder.items() if h.broadcast_id == broadcast_id]

    def waiting_for(self, broadcast_id: str) -> list[str]:
        return [t for t, ws in self._waiting.items() if any(w.broadcast_id == broadcast_id for w in ws)]

    def snapshot(self) -> dict[str, dict[str, object]]:
        """`{target: {"holder": id, "waiting": [ids]}}` (for `broadcast.get` and tests)."""
        return {t: {"holder": h.broadcast_id, "waiting": self.waiting(t)} for t, h in self._holder.items()}

    # ---------------------------------------------------------------- commands

    def claim(
        self,
        broadcast_id: str,
        priority: str,
        targets: Iterable[str],
        *,
        policy: Policy | None = None,
    ) -> Claim:
        """Take `targets` for `broadcast_id` as far as the rules allow (see the module docstring)."""
        if not isinstance(broadcast_id, str) or not broadcast_id:
            raise InvalidParams("broadcast id must be a non-empty string")
        rank = self.rank(priority)
        policy = policy or self.preempted_policy
        if policy not in ("resume", "end"):
            raise InvalidParams(f"unknown pre-emption policy {policy!r}", details={"policy": policy})
        if isinstance(targets, str):
            raise InvalidParams("targets must be a list of names, not a string")
        wanted = list(dict.fromkeys(targets))
        for t in wanted:
            if not isinstance(t, str) or not t:
                raise InvalidParams(f"invalid target {t!r}", details={"target": t})
        me = self._known.get(broadcast_id)
        if me is not None and (me.priority != priority or me.policy != policy):
            raise Conflict(
                f"broadcast {broadcast_id} already claims with priority {me.priority}",
                details={"broadcast_id": broadcast_id, "priority": me.priority},
            )
        if me is None:
            me = Holder(broadcast_id, priority, rank, next(self._orders), policy)

        # Decide everything first, then apply: no half state if anything above raised.
        result = Claim()
        for t in wanted:
            cur = self._holder.get(t)
            if cur is None or cur.broadcast_id == broadcast_id:
                result.granted.append(t)
            elif self._key(me) < self._key(cur) and (me.rank < cur.rank or self.equal_priority == "last"):
                result.preempted.append((t, cur.broadcast_id))
            else:
                result.refused.append((t, cur.broadcast_id))

        self._known.setdefault(broadcast_id, me)
        for t in result.granted:
            self._holder[t] = me
        for t, _ in result.preempted:
            old = self._holder[t]
            self._remove_waiting(t, broadcast_id)  # a waiter taking its target back by force
            if old.policy == "resume":
                self._waiting.setdefault(t, []).append(old)
                self._waiting[t].sort(key=self._key)
            self._holder[t] = me
        for t in result.granted:
            self._remove_waiting(t, broadcast_id)
        self._forget_idle()
        return result

    def release(
        self, broadcast_id: str, targets: Iterable[str] | None = None
    ) -> list[tuple[str, str | None]]:
        """Give up targets; returns `(target, next holder id or None)` for each one it held."""
        if targets is None:
            chosen = self.held_by(broadcast_id) + self.waiting_for(broadcast_id)
        elif isinstance(targets, str):
            raise InvalidParams("targets must be a list of names, not a string")
        else:
            chosen = list(dict.fromkeys(targets))
        handed: list[tuple[str, str | None]] = []
        for t in chosen:
            self._remove_waiting(t, broadcast_id)
            cur = self._holder.get(t)
            if cur is None or cur.broadcast_id != broadcast_id:
                continue
            queue = self._waiting.get(t)
            if queue:
                nxt = queue.pop(0)
                if not queue:
                    del self._waiting[t]
                self._holder[t] = nxt
                handed.append((t, nxt.broadcast_id))
            else:
                del self._holder[t]
                handed.append((t, None))
        self._forget_idle()
        return handed

    # ---------------------------------------------------------------- internals

    def _key(self, h: Holder) -> tuple[int, int]:
        """Sort key of contenders for one target: lower wins (holds, or is first to get it back).

        Priority first; among equals the earlier start under "first", the later under "last".
        """
        return (h.rank, h.order if self.equal_priority == "first" else -h.order)

    def _remove_waiting(self, target: str, broadcast_id: str) -> None:
        queue = self._waiting.get(target)
        if queue:
            queue[:] = [w for w in queue if w.broadcast_id != broadcast_id]
            if not queue:
                del self._waiting[target]

    def _forget_idle(self) -> None:
        active = {h.broadcast_id for h in self._holder.values()}
        active |= {w.broadcast_id for ws in self._waiting.values() for w in ws}
        for bid in [b for b in self._known if b not in active]:
            del self._known[bid]

    def check(self) -> None:
        """Assert the invariants (tests call this after every step)."""
        for t, queue in self._waiting.items():
            cur = self._holder.get(t)
            assert cur is not None, f"{t}: waiters but no holder"
            assert queue == sorted(queue, key=self._key), f"{t}: waiting list out of order"
            ids = [w.broadcast_id for w in queue]
            assert len(ids) == len(set(ids)), f"{t}: a broadcast waits twice"
            assert cur.broadcast_id not in ids, f"{t}: holder also waits"
            for w in queue:
                assert self._key(cur) < self._key(w), f"{t}: waiter {w.broadcast_id} outranks holder"
                assert w.policy == "resume", f"{t}: waiter {w.broadcast_id} has policy end"
