"""Test helpers: a client-like consumer of the event bus."""

from __future__ import annotations

from gateway.events import OVERFLOW, EventBus


async def consume(bus: EventBus, since: int, until: int, *, queue_size: int | None = None,
                  resume: bool = True) -> tuple[list[int], int]:
    """Read events since..until, resubscribing after each overflow like a client must.

    Returns every seq received (in order) and the number of overflows seen.
    """
    seqs: list[int] = []
    overflows = 0
    cursor = since
    while cursor < until:
        sub = bus.subscribe(cursor, queue_size=queue_size)
        try:
            async for ev in sub:
                if ev.type == OVERFLOW:
                    assert ev.seq == cursor and ev.data == {"last_seq": cursor, "reason": "slow-subscriber"}
                    overflows += 1
                    break
                seqs.append(ev.seq)
                cursor = ev.seq
                if cursor >= until:
                    break
        finally:
            sub.close()
        if not resume:
            break
    return seqs, overflows
