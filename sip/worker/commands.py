"""A worker's command handlers (main thread): each `cmd_<name>` answers one command the gateway
sent over stdin; `_handle` turns its result or failure into the reply.

Part of `Worker` (process.py), which drains the command queue between pjsua2 polls. The stream
commands live in streams.py; what ends a call's media, in calls.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from ..admission import decided_reason
from .io_budget import IoBudget, call_keys
from .pjcalls import INVALID_URI_STATUS, PJ_ETOOMANY, WCall
from .slot_waits import SlotWaits, WaitingDial, no_slot_message

WAITING = object()  # cmd_dial's answer for a dial waiting for a call slot: its reply comes later
# dial's media_dir -> pjmedia_dir of our side of the audio stream (CallSetting.mediaDir)
MEDIA_DIRS = {
    "sendonly": pj.PJMEDIA_DIR_ENCODING,
    "recvonly": pj.PJMEDIA_DIR_DECODING,
    "sendrecv": pj.PJMEDIA_DIR_ENCODING_DECODING,
}


class CommandError(Exception):
    """A command refused: `reason` is the stable reason the gateway maps to a SipError."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason


class NoSlot(Exception):
    """makeCall found every pjsua call slot taken; `lingering` of them are held by ended calls."""

    def __init__(self, lingering: int) -> None:
        super().__init__(f"no pjsua call slot ({lingering} held by ended calls)")
        self.lingering = lingering


@dataclass
class Placement:
    """What makeCall needs for one dial (kept while the dial waits for a slot)."""

    call: WCall
    uri: str
    prm: Any  # pj.CallOpParam
    timeout: float | None  # the dial's `timeout`: unanswered this long, hung up (calls.py)


class CallCommands:
    """Part of `Worker` (process.py): the call commands, on the main thread."""

    cfg: dict[str, Any]
    ep: Any
    calls: dict[str, WCall]
    graveyard: list[Any]
    held_refusals: Any  # calls.py
    refused: dict[int, Any]  # calls.py: refused INVITEs, each holding a pjsua slot
    slot_waits: SlotWaits  # dials waiting for a pjsua call slot (slot_waits.py)
    running: bool
    budget: IoBudget

    def _handle(self, cmd: dict[str, Any]) -> None:
        if self.slot_waits and self.slot_waits.hold_back(cmd):
            return  # names a call whose dial waits for a slot: runs once that dial is settled
        rid = cmd.get("id")
        try:
            op = cmd.get("cmd")
            fn = getattr(self, f"cmd_{op}", None)
            if fn is None:
                raise CommandError("invalid-params", f"unknown command {op!r}")
            result = fn(cmd)
        except Exception as e:  # noqa: BLE001 -- every failure is a reply (_reply_error)
            self._reply_error(rid, e)
            return
        if result is not WAITING:  # a waiting dial is answered later (retry_slot_waits)
            self.emit({"type": "reply", "id": rid, "ok": True, "result": result or {}})

    def _reply_error(self, rid: Any, e: Exception) -> None:
        if isinstance(e, CommandError):
            self.emit({"type": "reply", "id": rid, "ok": False, "reason": e.reason, "message": e.message})
        elif isinstance(e, pj.Error):
            reason = "no-capacity" if e.status == PJ_ETOOMANY else "sip-error"
            self.emit({"type": "reply", "id": rid, "ok": False, "reason": reason,
                       "message": f"{e.title}: {e.reason}", "status": e.status})
        else:  # our own bug: keep the worker alive, report generically
            self.emit({"type": "reply", "id": rid, "ok": False, "reason": "internal-error",
                       "message": f"{type(e).__name__}: {e}"})

    def _call(self, cmd: dict[str, Any]) -> WCall:
        call = self.calls.get(cmd.get("call_id", ""))
        if call is None or call.done:
            raise CommandError("no-such-call", f"no call {cmd.get('call_id')!r}")
        return call

    def cmd_ping(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"calls": len(self.calls)}

    def cmd_shutdown(self, cmd: dict[str, Any]) -> None:
        self.running = False

    def cmd_dial(self, cmd: dict[str, Any], *, may_wait: bool = True) -> dict[str, Any] | object:
        """Place a call; WAITING when every pjsua slot is taken but ended calls still hold some:
        it waits in `slot_waits` (slot_waits.py) and is answered from `retry_slot_waits`.
        `may_wait` False (a conference trunk): `no-capacity` at once instead."""
        call_id = cmd["call_id"]
        if call_id in self.calls or call_id in self.slot_waits:
            raise CommandError("invalid-state", "call id already in use")
        if self._slots_promised() >= self.max_calls and self.held_refusals:
            self._answer_held_refusals(for_dial=True)  # a dial outranks a held refusal
        if self._slots_promised() >= self.max_calls:
            # Never let pjsua reach its own limit: past it, 2.15.1 may abort the process.
            raise CommandError("no-capacity", "worker is at its call limit")
        media_dir = cmd.get("media_dir")
        if media_dir is not None and media_dir not in MEDIA_DIRS:
            raise CommandError("invalid-params", f"media_dir {media_dir!r} is not one of {sorted(MEDIA_DIRS)}")
        stream = cmd.get("stream")
        if stream is not None and (not isinstance(stream, str) or not stream):
            raise CommandError("invalid-params", "stream must be a stream id")
        acc = self._account_for(cmd.get("from_uri"), cmd.get("display_name"))
        if not self.budget.reserve(call_id, call_keys(1), time.monotonic()):
            # Its sockets would not fit pjsua's I/O queue now (io_budget.py): another worker.
            raise CommandError("no-capacity", "worker has no room for a call's sockets right now")
        call = WCall(self, acc, call_id, outbound=True)
        prm = pj.CallOpParam(True)
        if media_dir is not None:
            dirs = pj.IntVector()
            dirs.append(MEDIA_DIRS[media_dir])  # one audio stream
            prm.opt.mediaDir = dirs
            prm.opt.flag |= pj.PJSUA_CALL_SET_MEDIA_DIR  # and it persists for later offers
            call.media_dir = media_dir
        call.stream_on_answer = stream  # attached when answered (streams.py, `answered`)
        call.port_on_media = stream is None  # the stream is its audio: no port of its own
        for name, value in (cmd.get("headers") or {}).items():
            h = pj.SipHeader()
            h.hName, h.hValue = str(name), str(value)
            prm.txOption.headers.append(h)
        placement = Placement(call, cmd["uri"], prm, float(cmd["timeout"]) if cmd.get("timeout") else None)
        if may_wait and self.slot_waits:  # earlier dials wait for a slot: this one waits behind them
            self.slot_waits.park(call_id, cmd.get("id"), placement, time.monotonic())
            return WAITING
        try:
            self._place(placement)
        except NoSlot as e:
            if not may_wait or e.lingering <= 0:  # nothing will free a slot (or a trunk): now
                self._abandon(call)
                raise CommandError("no-capacity", no_slot_message(e.lingering)) from None
            self.slot_waits.park(call_id, cmd.get("id"), placement, time.monotonic())
            return WAITING
        return {}

    @property
    def max_calls(self) -> int:
        return int(self.cfg.get("max_calls") or 4)  # pjsua's maxCalls too (endpoint.py)

    def _slots_promised(self) -> int:
        """Live calls and dials waiting for a slot: what cmd_dial holds within max_calls."""
        return len(self.calls) + len(self.slot_waits)

    def _place(self, p: Placement) -> None:
        """makeCall; NoSlot on PJ_ETOOMANY (the call is not placed and may be tried again).
        Any other failure abandons the call and raises the dial's error."""
        call = p.call
        # Ended calls' Call objects go first: pjsua may give the new call one of their slots, and
        # a Call destroyed after that hangs up whatever call then holds its slot.
        self._release_graveyard()
        self.calls[call.call_id] = call
        try:
            call.makeCall(p.uri, p.prm)
        except pj.Error as e:
            already_ended = call.done  # pjsua may report DISCONNECTED from inside makeCall
            self.calls.pop(call.call_id, None)
            if e.status == PJ_ETOOMANY and not already_ended:
                # Every slot is taken; those no live call (nor a refused INVITE) holds are held
                # by calls that ended for us, until pjsua hears the end of their BYE or CANCEL.
                raise NoSlot(self.max_calls - len(self.calls) - len(self.refused)) from None
            self._abandon(call)
            if e.status in INVALID_URI_STATUS:
                raise CommandError("invalid-uri", f"{e.reason}: {p.uri!r}") from None
            if already_ended:
                raise CommandError("target-unreachable", e.reason) from None
            raise
        if p.timeout:
            call.deadline = time.monotonic() + p.timeout

    def _abandon(self, call: WCall) -> None:
        """A dial that did not become a call: its sockets' budget back, its Call to the graveyard."""
        self.calls.pop(call.call_id, None)
        self.budget.release(call.call_id, time.monotonic())
        call.done = True
        self.graveyard.append(call)

    def retry_slot_waits(self) -> None:
        """Main loop, after a poll: place the waiting dials, oldest first, while pjsua has slots;
        refuse those that waited long enough, or all when nothing will free a slot. Each one's
        reply goes out when it is settled, then the commands its call held back, in order."""
        while (first := self.slot_waits.first()) is not None:
            try:
                self._place(first.placement)
            except NoSlot as e:
                for dial, why in self.slot_waits.give_up(time.monotonic(), e.lingering):
                    self._abandon(dial.placement.call)
                    self._settle(dial, CommandError("no-capacity", why))
                return
            except Exception as e:  # noqa: BLE001 -- its reply says why
                self._settle(first, e)
            else:
                self._settle(first, None)

    def drop_slot_waits(self, reason: str, message: str) -> None:
        """Refuse every waiting dial (the worker is stopping)."""
        for dial in self.slot_waits.all():
            self._abandon(dial.placement.call)
            self._settle(dial, CommandError(reason, message))

    def _settle(self, dial: WaitingDial, error: Exception | None) -> None:
        held = self.slot_waits.settle(dial)
        if error is None:
            self.emit({"type": "reply", "id": dial.rid, "ok": True, "result": {}})
        else:
            self._reply_error(dial.rid, error)
        for cmd in held:
            self._handle(cmd)

    def cmd_answer(self, cmd: dict[str, Any]) -> None:
        call = self._call(cmd)
        prm = pj.CallOpParam(True)
        prm.statusCode = int(cmd.get("code", 200))
        call.answer(prm)

    def cmd_reject(self, cmd: dict[str, Any]) -> None:
        call = self._call(cmd)
        if call.outbound or call.confirmed:
            raise CommandError("invalid-state", "only an unanswered inbound call can be rejected")
        call.local_end = "reject"
        self.stop_media(call)
        prm = pj.CallOpParam(True)
        prm.statusCode = int(cmd.get("code", 486))
        reason = decided_reason(prm.statusCode)
        if cmd.get("failover"):  # the call belongs on another worker: the front tries the next
            prm.reason = str(cmd.get("reason") or "Try Another Worker")
        elif reason is not None:  # the front passes it on instead of trying another worker
            prm.reason = reason
        call.hangup(prm)

    def cmd_hangup(self, cmd: dict[str, Any]) -> None:
        call = self._call(cmd)
        self._hangup(call, "hangup")

    def _hangup(self, call: WCall, why: str) -> None:
        if call.local_end is None:
            call.local_end = why
        self.stop_media(call)  # before the BYE/CANCEL: no frame may reach a stream being torn down
        prm = pj.CallOpParam(True)
        if not call.outbound and not call.confirmed:
            prm.statusCode = 603 if why != "timeout" else 480
        call.hangup(prm)

    def cmd_hold(self, cmd: dict[str, Any]) -> None:
        call = self._call(cmd)
        call.setHold(pj.CallOpParam(True))
        call.held = True

    def cmd_unhold(self, cmd: dict[str, Any]) -> None:
        call = self._call(cmd)
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        call.reinvite(prm)
        call.held = False

    def cmd_dtmf(self, cmd: dict[str, Any]) -> None:
        digits = str(cmd.get("digits", ""))
        if not digits or any(d not in "0123456789*#ABCDabcd" for d in digits):
            raise CommandError("invalid-params", "digits must be 0-9 * # A-D")
        self._call(cmd).dialDtmf(digits)

    def cmd_transfer(self, cmd: dict[str, Any]) -> None:
        self._call(cmd).xfer(cmd["uri"], pj.CallOpParam(True))

    def cmd_listen(self, cmd: dict[str, Any]) -> None:
        """Turn forwarding of call audio to the gateway on or off (saves the copy when off)."""
        call = self._call(cmd)
        if call.port is None and call.audio_media is not None:  # a stream's call, media up
            self.bridge_port(call, call.audio_media)
        port = self.ensure_port(call)
        port.listening = bool(cmd.get("on", True))
