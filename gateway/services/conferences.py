"""Conferences: SIP calls mixed by one worker's conference bridge, owned by an incident session.

The conference core (gateway.state.conference) decides what is allowed; the calls service places
and ends the members' calls; the SIP supervisor tells the worker holding them whom to mix
(sip/worker/conference.py). Every member change is published as `conference.member` in the
conference's session. A conference lives on the worker of its first member (its home, which
records it). A worker keeps one slot free for a trunk: a member that would take it goes to
another worker, linked to the last one by a trunk (SIP supervisor `conf_trunk`), so the workers
form a chain (docs/design.md, "Conferences across workers"). A call moved in from a worker
outside the chain is refused (`other-worker`).
A console member (`add_console`) is a port in the home worker's bridge, fed and heard over a
media channel of the console's connection (gateway.services.media); the channel closing, or the
connection lost, takes it out.

Dial-in: a conference created with `dial_in` gets a number (`calls.conference_dial_in_prefix` and
six random digits; URI `sip:<number>@sip.host:sip.port`). An inbound call to it is claimed for
the conference's session, answered and added as a member; with a PIN the member stays `joining`
(out of the mix) until the caller typed it (DTMF, `PinEntry`), and is hung up after
`calls.conference_pin_attempts` wrong ones (left, cause `wrong-pin`) or when it has not typed it
`calls.conference_pin_timeout_s` after the answer (cause `pin-timeout`). A caller that reached
a worker outside the conference's chain is refused 503 without the DECIDED reason: the Kamailio
front fails over to the next worker until the INVITE reaches one of the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from gateway.errors import Conflict, GatewayError, NotFound, Unavailable
from gateway.events import EventBus
from gateway.services.calls import CallService
from gateway.services.conference_dial_in import DialIn, DialInMixin
from gateway.services.media import MediaService
from gateway.services.sessions import SessionService
from gateway.services.voice import VoiceService
from gateway.state import CallState
from gateway.state.conference import Conference, MemberChange, MemberState, PinEntry
from gateway.tasks import OwnedTasks
from sip.errors import SipError
from sip.events import SipEvent

log = structlog.get_logger(__name__)


@dataclass
class _Live:
    conf: Conference
    worker: int | None = None  # its home: the SIP worker whose conference bridge records it
    workers: list[int] = field(default_factory=list)  # the chain of workers, home first, trunked
    recording: Path | None = None  # the WAV its worker writes the mix to (record: true)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one change at a time
    pin: str | None = None  # dial-in PIN
    pins: dict[str, PinEntry] = field(default_factory=dict)  # call_id -> its caller's PIN entry
    terminals: dict[str, tuple[str, bool]] = field(default_factory=dict)  # one-time number -> (terminal_id, chair)


class ConferenceService(DialInMixin):
    def __init__(self, bus: EventBus, sessions: SessionService, calls: CallService, *,
                 media: MediaService, recordings_dir: Path, dial_in: DialIn = DialIn(),
                 voice: VoiceService | None = None) -> None:
        self._voice = voice  # a terminal's microphone joins through its voice bridge
        self.recordings_dir = recordings_dir  # conference WAVs: <conference_id>.wav
        self._dial_in_cfg = dial_in
        self._numbers: dict[str, str] = {}  # dial-in number -> conference_id
        self._bus = bus
        self._sessions = sessions
        self._calls = calls
        self._media = media
        self._consoles: set[str] = set()  # port ids of console members in the bridge
        self._live: dict[str, _Live] = {}
        self._by_call: dict[str, tuple[str, str]] = {}  # call_id -> (conference_id, member_id)
        self._tasks = OwnedTasks()
        calls.on_connected.append(self._call_connected)
        calls.on_ended.append(self._call_ended)
        calls.on_voice.append(self._call_voice)
        calls.on_dtmf.append(self._call_dtmf)
        calls.inbound_claims.append(self._claim)
        calls.on_incoming.append(self._call_incoming)
        # Before the calls service hangs the session's calls up: the members leave with the
        # conference ("session-closed"), not one by one as if each phone had hung up.
        sessions.on_close.insert(0, self.close_session)

    async def stop(self) -> None:
        for live in list(self._live.values()):
            with contextlib.suppress(GatewayError):
                await self.end(live.conf.conference_id, cause="gateway-shutdown")
        await self._tasks.cancel_all()

    # -- methods -------------------------------------------------------------------------------
    async def create(self, *, principal: str, session_id: str | None, title: str | None,
                     record: bool, dial_in: dict | None = None) -> dict:
        if session_id:
            await self._sessions.require_open(session_id)
        else:
            session_id = (await self._sessions.create(title=title or "Conference", created_by=principal,
                                                      origin="conference"))["session_id"]
        conf = Conference("conf-" + uuid.uuid4().hex[:16], session_id, title=title, record=record)
        live = self._live[conf.conference_id] = _Live(conf)
        if dial_in is not None:
            number = self._new_number()
            self._numbers[number] = conf.conference_id
            live.pin = dial_in.get("pin")
            conf.dial_in = {"number": number, "uri": f"sip:{number}@{self._dial_in_cfg.hostport}",
                            "pin_required": live.pin is not None}
        log.info("conference.created", conference_id=conf.conference_id, session_id=session_id)
        return conf.public()

    async def add(self, *, principal: str, conference_id: str, target: str | None, call_id: str | None,
                  chair: bool) -> dict:
        live = self._get(conference_id)
        async with live.lock:
            if call_id is not None:
                return await self._move_in(live, call_id, chair)
            return await self._dial_in(live, principal, target or "", chair)

    async def add_console(self, conn: object, *, conference_id: str, rate: int, chair: bool) -> dict:
        """The calling console's own audio as a member: a port in the conference worker's bridge
        (the fullest worker with room for a conference without one yet), on a new media channel
        of `conn` (`media` in the result): the console's frames go into the mix, and the mix of
        everyone else comes back on it."""
        live = self._get(conference_id)
        async with live.lock:
            if live.conf.ended:
                raise Conflict("the conference has ended", reason="invalid-state",
                               details={"conference_id": conference_id})
            member_id = "m-" + uuid.uuid4().hex[:12]
            port_id = "console-" + member_id
            await self._publish(live, live.conf.add(member_id, port_id, chair=chair, console=True))
            self._by_call[port_id] = (conference_id, member_id)
            member = live.conf.member(member_id)
            try:
                live.worker = await self._sip().conf_console(live.worker, conference_id, port_id,
                                                             muted=member.muted)
            except (SipError, GatewayError) as e:
                self._by_call.pop(port_id, None)
                await self._left(live, member_id, "failed")
                full = getattr(e, "reason", None) == "no-capacity"  # the port takes a call slot
                raise Unavailable("the conference's SIP worker has no room for the console" if full
                                  else "the console could not join the conference's SIP worker",
                                  reason="no-capacity" if full else "sip-unavailable",
                                  details={"conference_id": conference_id, "why": str(e)}) from None
            self._consoles.add(port_id)
            live.workers = live.workers or [live.worker]  # the console's worker is the home
            if live.conf.record and live.recording is None:
                await self._record(live)
            media = self._media.open_port(conn, port_id, rate,
                                          lambda cause: self._console_gone(conference_id, member_id, cause))
            await self._publish(live, live.conf.joined(member_id))
            return {**member.public(), "media": media}

    def owns(self, port_id: str) -> bool:
        """A console member's port: its SIP events (voice, the worker gone) come here."""
        return port_id in self._consoles

    def on_port_event(self, ev: SipEvent) -> None:
        if ev.kind == "voice":
            self._call_voice(ev.call_id, bool(ev.extra.get("talking")))
        elif ev.state == "disconnected":  # its worker is gone (crashed): the member with it
            conference_id, member_id = self._by_call.get(ev.call_id, ("", ""))
            self._console_gone(conference_id, member_id, ev.cause or "worker-crashed")

    def on_trunk_event(self, ev: SipEvent) -> None:
        """A trunk between two of a conference's workers was lost or is restored (the SIP
        supervisor redials it): published as `conference.trunk` in the conference's session."""
        live = self._live.get(str(ev.extra.get("conference_id") or ""))
        if live is None or ev.state not in ("lost", "restored"):
            return
        log.info("conference.trunk", conference_id=live.conf.conference_id, state=ev.state,
                 workers=ev.extra.get("workers"), cause=ev.cause)
        data = {"conference_id": live.conf.conference_id, "session_id": live.conf.session_id,
                "state": ev.state, "workers": list(ev.extra.get("workers") or []), "cause": ev.cause}
        self._tasks.spawn(self._bus.publish("conference.trunk", data, session_id=live.conf.session_id),
                          f"conference.trunk {live.conf.conference_id}")

    def _console_gone(self, conference_id: str, member_id: str, cause: str) -> None:
        """A console member's channel closed or its connection was lost: it leaves (`cause`)."""
        self._tasks.spawn(self._console_leave(conference_id, member_id, cause), f"conference.console {member_id}")

    async def _console_leave(self, conference_id: str, member_id: str, cause: str) -> None:
        live = self._live.get(conference_id)
        if live is None:
            return
        async with live.lock:
            member = live.conf.member(member_id)
            # Its port leaves the worker first: once `left` is out, its call slot is free.
            if member.call_id in self._consoles:  # not gone already (removed, or the conference ended)
                await self._hangup(member.call_id)
            await self._left(live, member_id, cause)

    async def remove(self, conference_id: str, member_id: str) -> dict:
        live = self._get(conference_id)
        async with live.lock:
            member = live.conf.member(member_id)
            change = live.conf.leave(member_id, "removed")
            if change is None:
                raise Conflict("the member has left", reason="invalid-state",
                               details={"conference_id": conference_id, "member_id": member_id})
            await self._publish(live, change)
        await self._hangup(member.call_id)
        return member.public()

    async def mute(self, conference_id: str, member_id: str | None, all_but_chair: bool, muted: bool) -> dict:
        live = self._get(conference_id)
        async with live.lock:
            conf = live.conf
            changes = (conf.set_all_but_chair_muted(muted) if all_but_chair
                       else [c for c in [conf.set_muted(member_id or "", muted)] if c is not None])
            for change in changes:
                m = change.member
                if m["state"] in (MemberState.JOINED, MemberState.MUTED):
                    with contextlib.suppress(SipError):  # a call ending meanwhile leaves on its own
                        await self._sip().conf_mute(conf.member(m["member_id"]).call_id, muted)
                await self._publish(live, change)
            return {"conference_id": conference_id, "members": [m.public() for m in conf.members.values()]}

    async def end(self, conference_id: str, *, cause: str = "conference-ended") -> dict:
        live = self._get(conference_id)
        async with live.lock:
            changes = live.conf.end(cause)
            for change in changes:
                await self._publish(live, change)
        self._live.pop(conference_id, None)
        for number in [n for n, c in self._numbers.items() if c == conference_id]:
            del self._numbers[number]
        for change in changes:
            await self._hangup(live.conf.member(change.member["member_id"]).call_id)
        await self._close(live)
        log.info("conference.ended", conference_id=conference_id, cause=cause)
        return live.conf.public()

    def get(self, conference_id: str) -> dict:
        return self._get(conference_id).conf.public()

    def list(self, session_id: str | None = None) -> list[dict]:
        """The live conferences (of `session_id`), in the order they were created."""
        return [live.conf.public() for live in self._live.values()
                if session_id is None or live.conf.session_id == session_id]

    async def close_session(self, session_id: str) -> None:
        for live in [c for c in self._live.values() if c.conf.session_id == session_id]:
            with contextlib.suppress(GatewayError):
                await self.end(live.conf.conference_id, cause="session-closed")

    # -- members -------------------------------------------------------------------------------
    async def _move_in(self, live: _Live, call_id: str, chair: bool) -> dict:
        """Escalation: a connected call joins the mix where it is; no new INVITE to the phone."""
        call = self._calls.require_live(call_id)
        if call.state is not CallState.CONNECTED:
            raise Conflict("only a connected call can be moved into a conference", reason="invalid-state",
                           details={"call_id": call_id, "state": call.state.value})
        if call_id in self._by_call:
            raise Conflict("that call is in a conference already", reason="already-member",
                           details={"call_id": call_id, "conference_id": self._by_call[call_id][0]})
        worker = self._calls.worker_of(call_id)
        if live.worker is not None and worker not in live.workers:
            raise Conflict("the call is on another SIP worker than the conference", reason="other-worker",
                           details={"call_id": call_id, "conference_id": live.conf.conference_id})
        member_id = await self._member(live, call_id, None, chair)
        if live.worker is None and worker is not None:
            live.worker, live.workers = worker, [worker]
        await self._join(live, member_id)
        return live.conf.member(member_id).public()

    async def _dial_in(self, live: _Live, principal: str, target: str, chair: bool) -> dict:
        if live.conf.ended:
            raise Conflict("the conference has ended", reason="invalid-state",
                           details={"conference_id": live.conf.conference_id})
        call = await self._dial_member(live, principal, target)
        call_id = call["call_id"]
        if live.worker is None:
            live.worker = self._calls.worker_of(call_id)
            live.workers = [live.worker] if live.worker is not None else []
        member_id = await self._member(live, call_id, target, chair)
        # Answered, or ended, before it was a member: its hook found no member then.
        try:
            if self._calls.require_live(call_id).state is CallState.CONNECTED:
                await self._join(live, member_id)
        except NotFound:
            await self._call_gone(live, call_id, member_id)
        return live.conf.member(member_id).public()

    async def _dial_member(self, live: _Live, principal: str, target: str) -> dict:
        """Dial on the last worker of the chain while it keeps a slot for a trunk; else extend
        the chain by one worker (a trunk to the last) and dial there."""
        async def dial(worker: int | None) -> dict:
            return await self._calls.dial(target=target, session_id=live.conf.session_id, principal=principal,
                                          worker=worker)

        if not live.workers:
            return await dial(None)
        tail = live.workers[-1]
        if self._sip().free_slots(tail) >= 2:
            try:
                return await dial(tail)
            except Unavailable as e:
                if e.reason != "no-capacity":
                    raise
        try:
            worker = await self._sip().conf_trunk(live.conf.conference_id, tail, exclude=set(live.workers))
        except SipError as e:
            raise Unavailable("no SIP worker has room for the conference to grow", reason="no-capacity",
                              details={"conference_id": live.conf.conference_id, "workers": live.workers,
                                       "error": str(e)}) from None
        live.workers.append(worker)
        log.info("conference.spanned", conference_id=live.conf.conference_id, workers=live.workers)
        return await dial(worker)

    async def _member(self, live: _Live, call_id: str, target: str | None, chair: bool) -> str:
        member_id = "m-" + uuid.uuid4().hex[:12]
        change = live.conf.add(member_id, call_id, target=target, chair=chair)
        self._by_call[call_id] = (live.conf.conference_id, member_id)
        await self._publish(live, change)
        return member_id

    async def _join(self, live: _Live, member_id: str) -> None:
        """The member's call is connected: its worker mixes it with the others."""
        member = live.conf.member(member_id)
        if member.state is not MemberState.JOINING or member.call_id in live.pins:
            return  # joined already, or a dial-in caller still typing the PIN
        if live.conf.record and live.recording is None and live.worker is not None:
            await self._record(live)
        try:
            await self._sip().conf_join(member.call_id, live.conf.conference_id, muted=member.muted)
        except SipError as e:
            log.warning("conference.join_failed", member_id=member_id, reason=getattr(e, "reason", None))
            await self._left(live, member_id, "failed")
            await self._hangup(member.call_id)
            return
        await self._publish(live, live.conf.joined(member_id))

    async def _left(self, live: _Live, member_id: str, cause: str) -> None:
        change = live.conf.leave(member_id, cause)
        if change is not None:
            await self._publish(live, change)

    def _call_connected(self, call_id: str) -> None:
        if call_id in self._by_call:
            self._tasks.spawn(self._on_call(call_id, connected=True), f"conference.join {call_id}")

    def _call_ended(self, call_id: str) -> None:
        if call_id in self._by_call:
            self._tasks.spawn(self._on_call(call_id, connected=False), f"conference.leave {call_id}")

    def _call_voice(self, call_id: str, talking: bool) -> None:
        """Voice activity (rate limited by the worker): published when the member's changes."""
        conference_id, member_id = self._by_call.get(call_id, ("", ""))
        live = self._live.get(conference_id)
        change = live.conf.set_talking(member_id, talking) if live is not None else None
        if live is not None and change is not None:
            self._tasks.spawn(self._publish(live, change), f"conference.voice {member_id}")

    async def _on_call(self, call_id: str, *, connected: bool) -> None:
        conference_id, member_id = self._by_call.get(call_id, ("", ""))
        live = self._live.get(conference_id)
        if live is None:
            self._by_call.pop(call_id, None)
            return
        async with live.lock:
            if connected:
                await self._join(live, member_id)
                return
            await self._call_gone(live, call_id, member_id)

    async def _call_gone(self, live: _Live, call_id: str, member_id: str) -> None:
        self._by_call.pop(call_id, None)
        live.pins.pop(call_id, None)
        joined = live.conf.member(member_id).state is not MemberState.JOINING
        await self._left(live, member_id, "hangup" if joined else "failed")

    # -- recording -----------------------------------------------------------------------------
    async def _record(self, live: _Live) -> None:
        """The conference's worker writes the mix (every member heard) to one WAV."""
        assert live.worker is not None
        path = self.recordings_dir / f"{live.conf.conference_id}.wav"
        try:
            await asyncio.to_thread(self.recordings_dir.mkdir, parents=True, exist_ok=True)
            await self._sip().conf_record(live.worker, live.conf.conference_id, str(path))
        except (OSError, SipError) as e:
            log.warning("conference.record_failed", conference_id=live.conf.conference_id, error=str(e))
            return
        live.recording = path

    async def _close(self, live: _Live) -> None:
        """The worker drops the conference; a recording is complete then and is announced."""
        if live.worker is None:
            return
        for worker in reversed(live.workers[1:]):  # trunks and sub-bridges first, the home last
            try:
                await self._sip().conf_close(worker, live.conf.conference_id)
            except (SipError, GatewayError) as e:
                log.warning("conference.close_failed", conference_id=live.conf.conference_id, worker=worker,
                            error=str(e))
        try:
            await self._sip().conf_close(live.worker, live.conf.conference_id)
        except (SipError, GatewayError) as e:
            log.warning("conference.close_failed", conference_id=live.conf.conference_id, error=str(e))
            return
        if live.recording is None:
            return
        size = await asyncio.to_thread(lambda p: p.stat().st_size if p.exists() else 0, live.recording)
        await self._bus.publish("conference.recording",
                                {"conference_id": live.conf.conference_id, "session_id": live.conf.session_id,
                                 "file": live.recording.name, "bytes": size, "format": "wav"},
                                session_id=live.conf.session_id)

    # -- helpers -------------------------------------------------------------------------------
    def _get(self, conference_id: str) -> _Live:
        live = self._live.get(conference_id)
        if live is None:
            raise NotFound("no such conference, or it has ended", reason="no-such-conference",
                           details={"conference_id": conference_id})
        return live

    def _sip(self):
        if self._calls.sip is None:
            raise Unavailable("the SIP side is not up", reason="sip-unavailable")
        return self._calls.sip

    async def _hangup(self, call_id: str) -> None:
        """The member's call is hung up; a console member's port leaves the bridge, its channel
        closes."""
        self._by_call.pop(call_id, None)
        if call_id in self._consoles:
            self._consoles.discard(call_id)
            self._media.call_ended(call_id)
            with contextlib.suppress(SipError, GatewayError):
                await self._sip().conf_console_leave(call_id)
            return
        with contextlib.suppress(GatewayError):
            await self._calls.hangup(call_id)

    async def _publish(self, live: _Live, change: MemberChange) -> None:
        await self._bus.publish("conference.member",
                                {"conference_id": live.conf.conference_id, "session_id": live.conf.session_id,
                                 **change.member}, session_id=live.conf.session_id)
