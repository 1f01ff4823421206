"""Dial-in to conferences: numbers callers dial (with an optional DTMF PIN) and one-time numbers
a field terminal's voice bridge dials. Part of `ConferenceService` (gateway/services/conferences.py,
which holds the conferences, their locks and members): see the Dial-in paragraph there and in
docs/design.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog

from gateway.errors import Conflict, GatewayError, Unavailable
from gateway.state.conference import PinEntry

if TYPE_CHECKING:  # pragma: no cover
    from gateway.services.calls import CallService
    from gateway.services.conferences import _Live
    from gateway.services.voice import VoiceService
    from gateway.tasks import OwnedTasks

log = structlog.get_logger("gateway.services.conferences")

_USER_RE = re.compile(r"^<?sips?:([^@;>]+)@")  # the user part of a SIP URI (a local URI, To)


class DialIn(NamedTuple):
    prefix: str = "conf"  # a dial-in number: prefix + 6 digits
    pin_attempts: int = 3  # wrong PINs before the caller is hung up
    hostport: str = "127.0.0.1:5060"  # the gateway's public SIP address, for the dial-in URI
    pin_timeout_s: float = 30.0  # a caller without the right PIN this long after the answer is hung up


class DialInMixin:
    """Part of `ConferenceService`: the dial-in numbers and what an inbound call to one does."""

    _dial_in_cfg: DialIn
    _numbers: dict[str, str]  # number -> conference_id
    _live: dict[str, _Live]
    _by_call: dict[str, tuple[str, str]]
    _calls: CallService
    _voice: VoiceService | None
    _tasks: OwnedTasks
    _get: Any
    _member: Any
    _join: Any
    _left: Any
    _hangup: Any
    _sip: Any

    def _new_number(self) -> str:
        while True:
            number = f"{self._dial_in_cfg.prefix}{secrets.randbelow(10**6):06d}"
            if number not in self._numbers:
                return number

    def _dialled(self, local_uri: str) -> _Live | None:
        live = self._live.get(self._numbers.get(self._number_of(local_uri), ""))
        return live if live is not None and not live.conf.ended else None

    @staticmethod
    def _number_of(local_uri: str) -> str:
        m = _USER_RE.match(local_uri.strip())
        return m.group(1) if m else ""

    async def add_terminal(self, *, principal: str, conference_id: str, terminal_id: str, chair: bool) -> dict:
        """A field terminal's microphone: its voice bridge (Janus's SIP plugin, gateway.services.voice)
        dials a one-time number of the conference (no PIN); that call joins like a dial-in caller,
        as member `target: terminal:<terminal_id>`. Answers the bridge (`state: requested`)."""
        if self._voice is None:
            raise Unavailable("terminal voice is not configured", reason="video-unavailable")
        live = self._get(conference_id)
        async with live.lock:
            if live.conf.ended:
                raise Conflict("the conference has ended", reason="invalid-state",
                               details={"conference_id": conference_id})
            # Its call takes a slot on a worker of the conference: refused now when none has one,
            # not after the terminal was asked and Janus dialled.
            if not self._sip().has_room(live.workers):
                raise Unavailable("no SIP worker of the conference has room for the terminal",
                                  reason="no-capacity",
                                  details={"conference_id": conference_id, "workers": live.workers})
            number = self._new_number()
            self._numbers[number] = conference_id
            live.terminals[number] = (terminal_id, chair)
        try:
            bridge = await self._voice.bridge(principal=principal, terminal_id=terminal_id,
                                              target=f"sip:{number}@{self._dial_in_cfg.hostport}",
                                              session_id=live.conf.session_id)
        except GatewayError:
            self._numbers.pop(number, None)
            live.terminals.pop(number, None)
            raise
        return {"conference_id": conference_id, "terminal_id": terminal_id, **bridge}

    def _claim(self, local_uri: str) -> str | None:
        """An inbound call to a dial-in number belongs to its conference's session."""
        live = self._dialled(local_uri)
        return live.conf.session_id if live is not None else None

    def _call_incoming(self, call_id: str) -> None:
        call = self._calls.require_live(call_id)
        live = self._dialled(call.row.get("local_uri") or "")
        if live is not None:
            self._tasks.spawn(self._dialled_in(live, call_id), f"conference.dial_in {call_id}")

    async def _dialled_in(self, live: _Live, call_id: str) -> None:
        """A caller dialled the conference: answered, a member; joined now or once the PIN is typed."""
        worker = self._calls.worker_of(call_id)
        async with live.lock:
            if live.conf.ended:
                with contextlib.suppress(GatewayError):
                    await self._calls.reject(call_id, 404)
                return
            if live.worker is not None and worker not in live.workers:
                # Workers outside the conference's chain: refused 503 without the DECIDED reason,
                # so the Kamailio front offers the INVITE to the next worker, until it is there.
                log.info("conference.dial_in_elsewhere", call_id=call_id, worker=worker, conference_worker=live.worker)
                with contextlib.suppress(GatewayError):
                    await self._calls.reject(call_id, 503, failover_cause="conference-elsewhere")
                return
            if live.worker is None and worker is not None:
                live.worker, live.workers = worker, [worker]
            row = self._calls.require_live(call_id).row
            terminal = live.terminals.pop(self._number_of(row.get("local_uri") or ""), None)
            if terminal is not None:  # a terminal's voice bridge: its number is used up
                self._numbers.pop(self._number_of(row["local_uri"]), None)
                await self._member(live, call_id, f"terminal:{terminal[0]}", terminal[1])
            else:
                member_id = await self._member(live, call_id, row.get("remote_uri"), False)
                if live.pin is not None:
                    entry = live.pins[call_id] = PinEntry(live.pin, attempts=self._dial_in_cfg.pin_attempts)
                    self._tasks.spawn(self._pin_deadline(live, call_id, member_id, entry),
                                      f"conference.pin_deadline {call_id}")
        try:
            await self._calls.answer(call_id)
        except GatewayError as e:  # the caller gave up meanwhile: its end hook makes it leave
            log.info("conference.dial_in_answer_failed", call_id=call_id, error=str(e))

    def _call_dtmf(self, call_id: str, digit: str) -> None:
        conference_id, member_id = self._by_call.get(call_id, ("", ""))
        live = self._live.get(conference_id)
        if live is not None and call_id in live.pins:
            self._tasks.spawn(self._pin_digit(live, call_id, member_id, digit), f"conference.pin {call_id}")

    async def _pin_deadline(self, live: _Live, call_id: str, member_id: str, entry: PinEntry) -> None:
        """The caller has `pin_timeout_s` from now (its answer) to type the right PIN; else it
        leaves with cause `pin-timeout` and is hung up."""
        await asyncio.sleep(self._dial_in_cfg.pin_timeout_s)
        async with live.lock:
            if live.pins.get(call_id) is not entry or live.conf.ended:  # typed in time, refused, gone
                return
            del live.pins[call_id]
            log.info("conference.pin_timeout", call_id=call_id, member_id=member_id,
                     timeout_s=self._dial_in_cfg.pin_timeout_s)
            await self._left(live, member_id, "pin-timeout")
        await self._hangup(call_id)

    async def _pin_digit(self, live: _Live, call_id: str, member_id: str, digit: str) -> None:
        async with live.lock:
            entry = live.pins.get(call_id)
            verdict = entry.digit(digit) if entry is not None else None
            log.info("conference.pin_digit", call_id=call_id, verdict=verdict)
            if verdict == "ok":
                del live.pins[call_id]
                await self._join(live, member_id)
            elif verdict == "refused":
                del live.pins[call_id]
                await self._left(live, member_id, "wrong-pin")
        if verdict == "refused":
            await self._hangup(call_id)
