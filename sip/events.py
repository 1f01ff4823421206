"""What the supervisor reports: one SipEvent per call event or REGISTER outcome."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SipEvent:
    call_id: str
    kind: str  # "incoming" | "state" | "dtmf" | "transfer" | "media" (extra["status"]: active,
    #            local-hold, remote-hold, none, error: sent when a call's audio (re)negotiates)
    #            | "registration" (call_id "", sip_code/reason of the REGISTER outcome, extra:
    #            registrar, expires, active; sent when the outcome changes)
    #            | "voice" (a conference member: extra talking, level; rate limited by the worker)
    state: str | None  # "calling" | "early" | "connecting" | "confirmed" | "disconnected"
    sip_code: int | None = None
    reason: str | None = None
    cause: str | None = None
    remote_uri: str | None = None
    local_uri: str | None = None
    worker: int | None = None
    extra: dict = field(default_factory=dict)


