"""Presence of field terminals, sans I/O: who is online, since when, and who missed heartbeats.

A terminal is online while it has at least one authenticated connection that keeps beating
(`terminal.report` or `ping` at least every `interval_s`). It goes offline when its last
connection closes (`connection-closed`) or when it stayed silent `missed` intervals
(`heartbeat-missed`: the caller then closes its connections, so "online" always means "a live,
beating connection"). Callers pass the time: `mono` (monotonic seconds) for deadlines, `wall`
(epoch seconds) for what is shown as `last_seen`. Every change is returned as a `PresenceChange`
for the caller to store and publish; nothing here does I/O.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any


class Presence(str, enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"


class Reason(str, enum.Enum):
    HELLO = "hello"  # a connection said hello
    HEARTBEAT_MISSED = "heartbeat-missed"
    CONNECTION_CLOSED = "connection-closed"
    GATEWAY_STOPPED = "gateway-stopped"
    GATEWAY_RESTARTED = "gateway-restarted"  # it was online when the gateway last went down (kill -9)


@dataclass(frozen=True)
class PresenceChange:
    terminal_id: str
    state: Presence
    reason: Reason
    last_seen: float | None  # wall epoch seconds of the last sign of life
    connections: tuple[Hashable, ...] = ()  # heartbeat-missed: the connections to close

    def data(self, last_seen_iso: str | None) -> dict[str, Any]:
        return {"terminal_id": self.terminal_id, "state": self.state.value,
                "reason": self.reason.value, "last_seen": last_seen_iso}


@dataclass
class TerminalPresence:
    terminal_id: str
    state: Presence = Presence.OFFLINE
    connections: dict[Hashable, None] = field(default_factory=dict)  # in the order they came
    beat_mono: float = 0.0  # last sign of life (monotonic)
    last_seen: float | None = None  # the same, wall clock epoch seconds


class PresenceTable:
    """Presence of every known terminal (`terminal_ids`); unknown ids are refused by the caller."""

    def __init__(self, terminal_ids: Iterable[str], *, interval_s: float, missed: int) -> None:
        if interval_s <= 0 or missed < 1:
            raise ValueError("interval_s must be > 0 and missed >= 1")
        self.window_s = interval_s * missed
        self._terms = {tid: TerminalPresence(tid) for tid in terminal_ids}
        # (beat, tie-break, terminal) for every beat of an online terminal, oldest first: the next
        # deadline and the expired ones without a look at every terminal. An entry is current while
        # its terminal is online with that beat; older ones are dropped when they come to the top.
        self._beats: list[tuple[float, int, str]] = []
        self._order = itertools.count()

    def __contains__(self, terminal_id: object) -> bool:
        return terminal_id in self._terms

    def get(self, terminal_id: str) -> TerminalPresence:
        return self._terms[terminal_id]

    def all(self) -> list[TerminalPresence]:
        return list(self._terms.values())

    def online(self, terminal_id: str) -> bool:
        return self._terms[terminal_id].state is Presence.ONLINE

    def connected(self, terminal_id: str, conn: Hashable, mono: float, wall: float) -> PresenceChange | None:
        """A connection of `terminal_id` said hello: online (a change only if it was offline)."""
        t = self._terms[terminal_id]
        t.connections[conn] = None
        t.beat_mono, t.last_seen = mono, wall
        heapq.heappush(self._beats, (mono, next(self._order), terminal_id))
        if t.state is Presence.ONLINE:
            return None
        t.state = Presence.ONLINE
        return PresenceChange(terminal_id, Presence.ONLINE, Reason.HELLO, wall)

    def beat(self, terminal_id: str, conn: Hashable, mono: float, wall: float) -> bool:
        """A heartbeat on `conn`; False when that connection is not (or no longer) counted."""
        t = self._terms[terminal_id]
        if conn not in t.connections:
            return False
        t.beat_mono, t.last_seen = mono, wall
        heapq.heappush(self._beats, (mono, next(self._order), terminal_id))
        return True

    def restore(self, terminal_id: str, last_seen: float | None, was_online: bool) -> PresenceChange | None:
        """At start, what the store kept: its last sign of life; and if it was online when the
        gateway went down without saying so, the offline that was never recorded."""
        t = self._terms[terminal_id]
        t.last_seen = last_seen
        if not was_online or t.state is Presence.ONLINE:
            return None
        return PresenceChange(terminal_id, Presence.OFFLINE, Reason.GATEWAY_RESTARTED, last_seen)

    def disconnected(self, terminal_id: str, conn: Hashable,
                     reason: Reason = Reason.CONNECTION_CLOSED) -> PresenceChange | None:
        """`conn` closed: offline when it was the terminal's last connection."""
        t = self._terms[terminal_id]
        if conn not in t.connections:
            return None
        del t.connections[conn]
        if t.connections or t.state is Presence.OFFLINE:
            return None
        t.state = Presence.OFFLINE
        return PresenceChange(terminal_id, Presence.OFFLINE, reason, t.last_seen)

    def expire(self, mono: float) -> list[PresenceChange]:
        """Terminals silent for the whole window: offline, with the connections to close."""
        out = []
        while self._beats and mono - self._beats[0][0] >= self.window_s:
            beat, _, tid = heapq.heappop(self._beats)
            t = self._terms[tid]
            if t.state is Presence.ONLINE and t.beat_mono == beat:  # its newest beat: silent since
                conns = tuple(t.connections)
                t.connections.clear()
                t.state = Presence.OFFLINE
                out.append(PresenceChange(t.terminal_id, Presence.OFFLINE, Reason.HEARTBEAT_MISSED,
                                          t.last_seen, conns))
        return out

    def next_deadline(self) -> float | None:
        """The monotonic time the next online terminal runs out of heartbeats, if any."""
        while self._beats:
            beat, _, tid = self._beats[0]
            t = self._terms[tid]
            if t.state is Presence.ONLINE and t.beat_mono == beat:
                return beat + self.window_s
            heapq.heappop(self._beats)  # an older beat, or a terminal gone offline
        return None

    def stop_all(self) -> list[PresenceChange]:
        """The gateway stops: every online terminal goes offline (`gateway-stopped`)."""
        out = []
        for t in self._terms.values():
            if t.state is Presence.ONLINE:
                t.connections.clear()
                t.state = Presence.OFFLINE
                out.append(PresenceChange(t.terminal_id, Presence.OFFLINE, Reason.GATEWAY_STOPPED,
                                          t.last_seen))
        return out
