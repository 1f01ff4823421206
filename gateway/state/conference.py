"""A conference and its members, sans I/O: who is in it, in which state, who chairs it.

A member is `joining` (its call is being placed or moved onto the conference's worker), `joined`
(its audio is mixed with everyone else's), `muted` (it hears everyone, nobody hears it) and
finally `left`, with a cause (`removed`, `hangup`, `failed`, `conference-ended`, ...). A member
muted while still joining joins muted. "Mute all but the chair" mutes every member that is not
the chair (every member when there is no chair). `talking` (voice activity) is orthogonal to the
state: set for a member in the mix, cleared when it leaves. Each change is returned as a `MemberChange`,
which the service publishes as a `conference.member` event; nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.errors import Conflict, NotFound
from gateway.state.table import Machine


class MemberState(enum.StrEnum):
    JOINING = "joining"
    JOINED = "joined"
    MUTED = "muted"
    LEFT = "left"


class MemberInput(enum.StrEnum):
    JOINED = "joined"  # its call is connected and in the conference's mix
    MUTE = "mute"
    UNMUTE = "unmute"
    LEAVE = "leave"


_LEAVE = {MemberInput.LEAVE: MemberState.LEFT}
MEMBER_MACHINE: Machine[MemberState, MemberInput] = Machine(
    "conference member",
    {
        MemberState.JOINING: {MemberInput.JOINED: MemberState.JOINED, **_LEAVE},
        MemberState.JOINED: {MemberInput.MUTE: MemberState.MUTED, MemberInput.UNMUTE: MemberState.JOINED,
                             **_LEAVE},
        MemberState.MUTED: {MemberInput.MUTE: MemberState.MUTED, MemberInput.UNMUTE: MemberState.JOINED,
                            **_LEAVE},
        MemberState.LEFT: {},
    },
    final=frozenset({MemberState.LEFT}),
)


@dataclass
class Member:
    member_id: str
    call_id: str
    target: str | None = None  # what was dialled, for a member dialled in
    chair: bool = False
    state: MemberState = MemberState.JOINING
    mute_pending: bool = False  # muted while joining: joins muted
    cause: str | None = None
    talking: bool = False  # voice activity the worker measured (rate limited there)
    console: bool = False  # a console's own audio: `call_id` is then its port on the worker, no call


    @property
    def muted(self) -> bool:
        return self.state is MemberState.MUTED or (self.state is MemberState.JOINING and self.mute_pending)

    def public(self) -> dict:
        return {"member_id": self.member_id, "call_id": None if self.console else self.call_id,
                "console": self.console, "target": self.target,
                "chair": self.chair, "state": self.state.value, "muted": self.muted, "cause": self.cause,
                "talking": self.talking}


@dataclass(frozen=True)
class MemberChange:
    """One `conference.member` event: the member as it is after the change."""

    member: dict


@dataclass
class Conference:
    conference_id: str
    session_id: str
    title: str | None = None
    record: bool = False
    members: dict[str, Member] = field(default_factory=dict)  # member_id -> member, in order added
    ended: bool = False
    end_cause: str | None = None
    dial_in: dict | None = None  # {number, uri, pin_required}: callers dialling `uri` join it

    # queries -----------------------------------------------------------------------------
    def live_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.state is not MemberState.LEFT]

    def member(self, member_id: str) -> Member:
        m = self.members.get(member_id)
        if m is None:
            raise NotFound("no such member", reason="no-such-member",
                           details={"conference_id": self.conference_id, "member_id": member_id})
        return m

    def member_by_call(self, call_id: str) -> Member | None:
        for m in self.members.values():
            if m.call_id == call_id and m.state is not MemberState.LEFT:
                return m
        return None

    def chair(self) -> Member | None:
        return next((m for m in self.live_members() if m.chair), None)

    def public(self) -> dict:
        return {"conference_id": self.conference_id, "session_id": self.session_id, "title": self.title,
                "record": self.record, "state": "ended" if self.ended else "active",
                "cause": self.end_cause, "dial_in": self.dial_in,
                "members": [m.public() for m in self.members.values()]}

    # changes -----------------------------------------------------------------------------
    def add(self, member_id: str, call_id: str, *, target: str | None = None, chair: bool = False,
            console: bool = False) -> MemberChange:
        self._require_active()
        if member_id in self.members:
            raise Conflict("member id already in use", reason="invalid-state", details={"member_id": member_id})
        if self.member_by_call(call_id) is not None:
            raise Conflict("that call is already in this conference", reason="already-member",
                           details={"conference_id": self.conference_id, "call_id": call_id})
        if chair and self.chair() is not None:
            raise Conflict("the conference already has a chair", reason="invalid-state",
                           details={"conference_id": self.conference_id})
        m = Member(member_id, call_id, target=target, chair=chair, console=console)
        self.members[member_id] = m
        return MemberChange(m.public())

    def joined(self, member_id: str) -> MemberChange:
        m = self.member(member_id)
        m.state = MEMBER_MACHINE.next(m.state, MemberInput.JOINED)
        if m.mute_pending:
            m.mute_pending = False
            m.state = MEMBER_MACHINE.next(m.state, MemberInput.MUTE)
        return MemberChange(m.public())

    def set_muted(self, member_id: str, muted: bool) -> MemberChange | None:
        """Mute or unmute one member; None when nothing changed."""
        self._require_active()
        m = self.member(member_id)
        if m.state is MemberState.JOINING:
            if m.mute_pending == muted:
                return None
            m.mute_pending = muted
            return MemberChange(m.public())
        nxt = MEMBER_MACHINE.next(m.state, MemberInput.MUTE if muted else MemberInput.UNMUTE)
        if nxt is m.state:
            return None
        m.state = nxt
        return MemberChange(m.public())

    def set_all_but_chair_muted(self, muted: bool) -> list[MemberChange]:
        self._require_active()
        changes = [self.set_muted(m.member_id, muted) for m in self.live_members() if not m.chair]
        return [c for c in changes if c is not None]

    def set_talking(self, member_id: str, talking: bool) -> MemberChange | None:
        """Voice activity of a member in the mix (a muted one too: the chair sees who wants to
        speak); None when nothing changed or the member is not in the mix. The worker reports it
        only when it changes, and its first report can come before the answer to the join (the
        same pipe, read in one go): a joining member keeps it, and `joined` tells it."""
        m = self.members.get(member_id)
        if self.ended or m is None or m.talking == talking:
            return None
        if m.state is MemberState.JOINING:
            m.talking = talking
            return None
        if m.state not in (MemberState.JOINED, MemberState.MUTED):
            return None
        m.talking = talking
        return MemberChange(m.public())

    def leave(self, member_id: str, cause: str) -> MemberChange | None:
        """The member is out (kicked, hung up, failed to join); None if it already left."""
        m = self.member(member_id)
        if m.state is MemberState.LEFT:
            return None
        m.state = MEMBER_MACHINE.next(m.state, MemberInput.LEAVE)
        m.mute_pending = m.talking = False
        m.cause = cause
        return MemberChange(m.public())

    def end(self, cause: str = "conference-ended") -> list[MemberChange]:
        """Every member still in leaves with `cause`; the conference takes no more changes."""
        if self.ended:
            return []
        changes = [self.leave(m.member_id, cause) for m in self.live_members()]
        self.ended, self.end_cause = True, cause
        return [c for c in changes if c is not None]

    def _require_active(self) -> None:
        if self.ended:
            raise Conflict("the conference has ended", reason="invalid-state",
                           details={"conference_id": self.conference_id})


@dataclass
class PinEntry:
    """The PIN a dial-in caller types (DTMF digits), sans I/O. `#` submits what was typed; so
    does typing as many digits as the PIN has. After `attempts` wrong PINs the caller is refused.
    `digit()` answers "ok" (join), "wrong" (typed a wrong one, may try again), "refused"
    (hang up) or None (keep collecting)."""

    pin: str
    attempts: int = 3
    typed: str = ""
    wrong: int = 0

    def digit(self, d: str) -> str | None:
        if self.wrong >= self.attempts:
            return "refused"
        if d != "#":
            self.typed += d
            if len(self.typed) < len(self.pin):
                return None
        typed, self.typed = self.typed, ""
        if typed == self.pin:
            return "ok"
        self.wrong += 1
        return "refused" if self.wrong >= self.attempts else "wrong"
