"""A control connection's outbox: bounded queues of outgoing frames, each kind on its own budget.

Sans-I/O apart from its two asyncio events: gateway/connection.py's writer task drains it, the
connection's reader and subscription pump fill it.
"""

from __future__ import annotations

import asyncio
import collections


class Outbox:
    """Bounded queues of outgoing frames: `soft` bounds events, `hard` bounds replies, `media`
    bounds audio frames on a budget of their own.

    Replies (`urgent`) go out before queued events and media, so a command's answer never waits
    behind a burst of events; events keep their own order (and an overflow notice comes after the
    events before it). Audio and events take turns; audio never takes an event's room, so a
    console's audio can never cut its event subscription: when the link is slow, audio frames
    are what gives way (the caller counts them), never events.
    """

    def __init__(self, soft: int, hard: int, media: int) -> None:
        self._items: collections.deque[str | bytes] = collections.deque()
        self._urgent: collections.deque[str | bytes] = collections.deque()
        self._media: collections.deque[bytes] = collections.deque()
        self.soft, self.hard, self.media = soft, hard, media
        self._media_turn = False
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._items) + len(self._urgent) + len(self._media)

    def put(self, item: str | bytes, *, reserve: bool = False, urgent: bool = False) -> bool:
        if len(self._items) + len(self._urgent) >= (self.hard if reserve or urgent else self.soft):
            return False
        (self._urgent if urgent else self._items).append(item)
        self._ready.set()
        if len(self._items) >= self.soft:
            self._space.clear()
        return True

    def put_media(self, frame: bytes) -> bool:
        """Queue an audio frame in its own budget; False (dropped) when that budget is full."""
        if len(self._media) >= self.media:
            return False
        self._media.append(frame)
        self._ready.set()
        return True

    async def get(self) -> str | bytes:
        while not self:
            self._ready.clear()
            await self._ready.wait()
        if self._urgent:
            return self._urgent.popleft()
        self._media_turn = not self._media_turn
        if self._media and (self._media_turn or not self._items):
            return self._media.popleft()
        item = self._items.popleft()
        if len(self._items) < self.soft:
            self._space.set()
        return item

    async def wait_space(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._space.wait(), timeout)
            return True
        except TimeoutError:
            return False
