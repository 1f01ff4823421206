"""A broadcast and its targets as the service holds them while it runs, and their public views
(what `broadcast.get` and the `broadcast.target`/`broadcast.state` events show)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from gateway.broadcast.config import Zone
from gateway.broadcast.machine import BroadcastState, TargetState
from gateway.broadcast.multicast import MulticastSender
from gateway.broadcast.sources import LiveSource, Source
from gateway.timeutil import now_iso


@dataclass
class Target:
    key: str  # the arbiter's name for it: "sip:..." URI or "zone:NAME"
    name: str  # as the dispatcher named it (directory name, URI, zone:NAME)
    uri: str | None = None
    zone: Zone | None = None
    profile: str | None = None
    state: TargetState = TargetState.PENDING
    attempts: int = 0
    call_id: str | None = None
    sip_code: int | None = None
    cause: str | None = None
    holder: str | None = None  # the broadcast that holds (busy) or took (pre-empted) it
    sender: MulticastSender | None = None
    connected_at: float | None = None

    def public(self) -> dict[str, Any]:
        out = {"target": self.name, "kind": "zone" if self.zone else "sip", "state": self.state.value,
               "attempts": self.attempts, "sip_code": self.sip_code, "cause": self.cause}
        if self.uri:
            out["uri"] = self.uri
        if self.holder:
            out["holder"] = self.holder
        return out


@dataclass
class Broadcast:
    broadcast_id: str
    session_id: str
    priority: str
    created_by: str
    source_desc: dict[str, Any]
    source: Source
    max_duration_s: float | None
    targets: dict[str, Target]
    created_at: str = field(default_factory=now_iso)
    state: BroadcastState = BroadcastState.STARTING
    end_reason: str | None = None
    recording: str | None = None
    live: LiveSource | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    begun: asyncio.Future[dict[str, Any]] | None = None  # its public view once started (claims made)
    started_audio_at: float | None = None
    frames_sent: int = 0

    def by_call(self, call_id: str) -> Target | None:
        return next((t for t in self.targets.values() if t.call_id == call_id), None)

    def public(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self.targets.values():
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        return {"broadcast_id": self.broadcast_id, "session_id": self.session_id,
                "state": self.state.value, "priority": self.priority, "source": self.source_desc,
                "created_by": self.created_by, "created_at": self.created_at,
                "end_reason": self.end_reason, "recording": self.recording, "targets": counts}
