"""SIP voice calls: commands from dispatchers in, SIP events from the workers in, call.state out.

The call state machine (gateway.state.call) decides what is allowed; the SIP supervisor does it;
every change is stored (call detail record) and published as a `call.state` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.directory import Directory
from gateway.errors import GatewayError, InvalidParams, NotFound, TargetError, Unavailable
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.state import CALL_MACHINE, CallInput, CallState
from gateway.state.call import SIP_STATE_INPUT
from gateway.store import Store
from gateway.timeutil import now_iso
from sip.errors import SipError
from sip.supervisor import SipEvent, SipSupervisor

log = structlog.get_logger(__name__)

EVENT_QUEUE_SIZE = 10_000
_LIVE = (CallState.DIALING, CallState.RINGING, CallState.ANSWERING, CallState.CONNECTED, CallState.HELD)


@dataclass
class LiveCall:
    row: dict[str, Any]
    state: CallState
    timer: asyncio.TimerHandle | None = None
    cause: str | None = None  # our reason for ending it, wins over what SIP reports
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def call_id(self) -> str:
        return self.row["call_id"]


class CallService:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        sessions: SessionService,
        directory: Directory,
        *,
        ring_timeout_s: float,
        dial_timeout_s: float,
    ) -> None:
        self._store = store
        self._bus = bus
        self._sessions = sessions
        self._directory = directory
        self._ring_timeout_s = ring_timeout_s
        self._dial_timeout_s = dial_timeout_s
        self.sip: SipSupervisor | None = None
        self._live: dict[str, LiveCall] = {}
        self._queue: asyncio.Queue[SipEvent | tuple[str, str]] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.on_ended: list[Callable[[str], None]] = []  # call_id; e.g. media bindings dropped
        self.on_connected: list[Callable[[str], None]] = []  # call_id; e.g. a conference member joins
        self.on_voice: list[Callable[[str, bool], None]] = []  # call_id, talking (conference members)
        self.on_dtmf: list[Callable[[str, str], None]] = []  # call_id, digit (a dial-in member's PIN)
        # An inbound call to one of these URIs' owners: local URI -> the session it belongs to
        # (a conference's dial-in number), else a new session is opened for it.
        self.inbound_claims: list[Callable[[str], str | None]] = []
        self.on_incoming: list[Callable[[str], None]] = []  # call_id, after it was announced
        sessions.on_close.append(self.hangup_session)

    # lifecycle ---------------------------------------------------------------------------
    def start(self, sip: SipSupervisor) -> None:
        self.sip = sip
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="calls.events")

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every SIP event received so far is stored and published."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()

    async def stop(self) -> None:
        await self.drain()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for live in list(self._live.values()):
            await self._end(live, sip_code=None, cause=live.cause or "gateway-shutdown")

    def live_call_ids(self) -> list[str]:
        return list(self._live)

    def list_live(self, session_id: str | None = None) -> list[dict]:
        """The calls not ended yet (of one session), oldest first."""
        return [self._public(c) for c in self._live.values()
                if session_id is None or c.row["session_id"] == session_id]

    # SIP side ----------------------------------------------------------------------------
    def on_sip_event(self, event: SipEvent) -> None:
        """Called by the supervisor on the loop; processed in order by one owned task."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Decision: a backlog of 10k SIP events means the store is stuck; log loudly, keep the
            # supervisor's reader running (blocking it would stall every call on that worker).
            log.error("calls.event_queue_full", call_id=event.call_id, kind=event.kind)

    def _timeout(self, call_id: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((call_id, "timeout"))

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, tuple):
                    await self._on_timeout(item[0])
                else:
                    with structlog.contextvars.bound_contextvars(call_id=item.call_id):
                        await self._on_event(item)
            except Exception:  # our bug: keep the consumer alive for every other call
                log.exception("calls.event_failed", item=repr(item))
            finally:
                self._queue.task_done()

    async def _on_event(self, ev: SipEvent) -> None:
        if ev.kind == "registration":
            registered = bool(ev.sip_code and 200 <= ev.sip_code < 300 and ev.extra.get("expires"))
            await self._bus.publish("sip.registration", {
                "registrar": ev.extra.get("registrar"), "sip_code": ev.sip_code, "reason": ev.reason,
                "registered": registered}, session_id=None)
            return
        if ev.kind == "incoming":
            await self._incoming(ev)
            return
        live = self._live.get(ev.call_id)
        if live is None:
            log.debug("calls.event_for_unknown_call", kind=ev.kind, state=ev.state)
            return
        if ev.kind == "dtmf":
            for hook in self.on_dtmf:
                hook(ev.call_id, str(ev.extra.get("digit") or ""))
            await self._bus.publish(
                "call.dtmf", {"call_id": ev.call_id, "digit": ev.extra.get("digit")},
                session_id=live.row["session_id"],
            )
            return
        if ev.kind == "transfer":
            await self._transfer_progress(live, ev)
            return
        if ev.kind == "voice":
            for hook in self.on_voice:
                hook(ev.call_id, bool(ev.extra.get("talking")))
            return
        inp = SIP_STATE_INPUT.get(ev.state or "")
        if inp is None:
            return
        if inp is CallInput.DISCONNECTED:
            await self._end(live, sip_code=ev.sip_code, cause=live.cause or ev.cause, reason=ev.reason)
            return
        if not CALL_MACHINE.allows(live.state, inp):
            log.debug("calls.sip_state_ignored", state=live.state.value, sip_state=ev.state)
            return
        nxt = CALL_MACHINE.next(live.state, inp)
        if ev.sip_code:
            live.row["sip_code"] = ev.sip_code
        if nxt is CallState.CONNECTED and not live.row.get("answered_at"):
            live.row["answered_at"] = now_iso()
            self._cancel_timer(live)
        if nxt is not live.state or inp is CallInput.CONFIRMED:
            await self._set(live, nxt)
            if nxt is CallState.CONNECTED:
                for hook in self.on_connected:
                    hook(live.call_id)

    async def _transfer_progress(self, live: LiveCall, ev: SipEvent) -> None:
        """NOTIFYs of our REFER: once the far end reached the target (2xx), our leg is done."""
        await self._publish(live, transfer={**ev.extra, "sip_code": ev.sip_code, "reason": ev.reason})
        done = ev.sip_code is not None and 200 <= ev.sip_code < 300
        if ev.extra.get("direction") == "outgoing" and ev.extra.get("final") and done:
            live.cause = "transferred"
            if CALL_MACHINE.allows(live.state, CallInput.HANGUP):
                with contextlib.suppress(GatewayError):
                    await self.hangup(live.call_id)

    async def _incoming(self, ev: SipEvent) -> None:
        claims = (claim(ev.local_uri or "") for claim in self.inbound_claims)
        session_id = next((s for s in claims if s), None)
        if session_id is None:
            session_id = (await self._sessions.create(
                title=f"Inbound call from {ev.remote_uri}", created_by="sip", origin="inbound-call"
            ))["session_id"]
        row = self._new_row(ev.call_id, session_id, "inbound", ev.remote_uri, ev.local_uri)
        row["worker"] = ev.worker
        live = LiveCall(row=row, state=CALL_MACHINE.next(CallState.IDLE, CallInput.INCOMING))
        self._live[ev.call_id] = live
        live.timer = asyncio.get_running_loop().call_later(self._ring_timeout_s, self._timeout, ev.call_id)
        await self._set(live, live.state)
        log.info("call.incoming", remote=ev.remote_uri, session_id=session_id)
        for hook in self.on_incoming:
            hook(ev.call_id)

    async def _on_timeout(self, call_id: str) -> None:
        live = self._live.get(call_id)
        if live is None or not CALL_MACHINE.allows(live.state, CallInput.TIMEOUT):
            return
        live.cause = "no-answer"
        inbound = live.row["direction"] == "inbound"
        await self._set(live, CALL_MACHINE.next(live.state, CallInput.TIMEOUT))
        try:
            with self._sip_errors(call_id):
                if inbound:
                    await self._sip().reject(call_id, 480)
                else:
                    await self._sip().hangup(call_id)
        except NotFound:  # nothing to end on the SIP side (its dial never went out): end it here
            if call_id in self._live:
                await self._end(live, sip_code=None, cause=live.cause)

    # commands ----------------------------------------------------------------------------
    async def dial(
        self,
        *,
        target: str,
        session_id: str | None,
        principal: str,
        from_uri: str | None = None,
        display_name: str | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        worker: int | None = None,
    ) -> dict:
        """`worker` (for conferences): place the call on that SIP worker or refuse `no-capacity`."""
        uri = self._resolve_one(target)
        if not session_id:
            session_id = (await self._sessions.create(title=f"Call to {target}", created_by=principal,
                                                      origin="call"))["session_id"]
        # Placed while the session is held open: a session.close racing this dial waits for the
        # call to be registered and dialled, then hangs it up (no live call in a closed session).
        async with self._sessions.hold_open(session_id):
            call_id = uuid.uuid4().hex
            row = self._new_row(call_id, session_id, "outbound", uri, from_uri)
            row["extra"] = {"target": target, "dialed_by": principal}
            live = LiveCall(row=row, state=CALL_MACHINE.next(CallState.IDLE, CallInput.DIAL))
            # Registered and armed in one step: however this dial is interrupted from here on,
            # the call is listed, can be hung up, and ends by its timer at the latest.
            self._live[call_id] = live
            live.timer = asyncio.get_running_loop().call_later(
                timeout_s or self._dial_timeout_s, self._timeout, call_id)
            await self._set(live, live.state)
            try:
                await self._sip().dial(call_id, uri, from_uri=from_uri, display_name=display_name,
                                       headers=headers or {}, **({"worker": worker} if worker is not None else {}))
            except SipError as err:
                if call_id in self._live:
                    await self._end(live, sip_code=None, cause=getattr(err, "reason", "sip-error"))
                raise self._map(err, call_id) from None
            if call_id not in self._live:  # hung up while the INVITE was being placed
                with contextlib.suppress(SipError):
                    await self._sip().hangup(call_id)
        log.info("call.dialing", call_id=call_id, uri=uri, session_id=session_id)
        return self._public(live)

    async def answer(self, call_id: str) -> dict:
        return await self._command(call_id, CallInput.ANSWER, lambda s: s.answer(call_id))

    async def reject(self, call_id: str, code: int = 486, *, failover_cause: str | None = None) -> dict:
        """`failover_cause`: the call belongs on another worker (a conference's dial-in): refused
        so that the Kamailio front offers it to the next worker, and ended with that cause (set
        first: the worker's report of the refusal can be handled before the command returns)."""
        if failover_cause is not None:
            self.require_live(call_id).cause = failover_cause
        return await self._command(call_id, CallInput.REJECT,
                                   lambda s: s.reject(call_id, code, failover=failover_cause is not None),
                                   cause=failover_cause or "rejected")

    async def hangup(self, call_id: str) -> dict:
        return await self._command(call_id, CallInput.HANGUP, lambda s: s.hangup(call_id),
                                   cause="local-hangup")

    async def hold(self, call_id: str) -> dict:
        return await self._command(call_id, CallInput.HOLD, lambda s: s.hold(call_id))

    async def unhold(self, call_id: str) -> dict:
        return await self._command(call_id, CallInput.UNHOLD, lambda s: s.unhold(call_id))

    async def dtmf(self, call_id: str, digits: str) -> dict:
        return await self._command(call_id, CallInput.DTMF, lambda s: s.dtmf(call_id, digits))

    async def transfer(self, call_id: str, target: str) -> dict:
        uri = self._resolve_one(target)
        return await self._command(call_id, CallInput.TRANSFER, lambda s: s.transfer(call_id, uri),
                                   transfer={"target": uri})

    async def hangup_session(self, session_id: str) -> None:
        for live in [c for c in self._live.values() if c.row["session_id"] == session_id]:
            if CALL_MACHINE.allows(live.state, CallInput.HANGUP):
                with contextlib.suppress(GatewayError):
                    await self.hangup(live.call_id)

    async def get(self, call_id: str) -> dict:
        live = self._live.get(call_id)
        if live:
            return self._public(live)
        row = await self._store.get_call(call_id)
        if row is None:
            raise NotFound("no such call", reason="no-such-call", details={"call_id": call_id})
        return row

    def worker_of(self, call_id: str) -> int | None:
        """The SIP worker holding a live call (None: not placed, or no SIP side)."""
        return self.sip.worker_of(call_id) if self.sip is not None else None

    def require_live(self, call_id: str) -> LiveCall:
        live = self._live.get(call_id)
        if live is None:
            raise NotFound("no such call, or it has ended", reason="no-such-call",
                           details={"call_id": call_id})
        return live

    # helpers -----------------------------------------------------------------------------
    async def _command(self, call_id: str, inp: CallInput, action, *, cause: str | None = None,
                       **publish_extra: Any) -> dict:
        live = self.require_live(call_id)
        before = live.state
        nxt = CALL_MACHINE.next(before, inp)  # raises invalid-state, nothing changed
        try:
            with self._sip_errors(call_id):
                await action(self._sip())
        except NotFound:
            # The SIP side has no such call (its dial never went out, or it ended unreported):
            # it is over here too; ending it is what a hangup or reject asked for.
            if call_id in self._live:
                await self._end(live, sip_code=None, cause=live.cause or cause or "lost")
                if inp in (CallInput.HANGUP, CallInput.REJECT):
                    return self._public(live)
            raise
        if cause and live.cause is None:
            live.cause = cause
        if call_id in self._live:
            if live.state is before and nxt is not before:
                await self._set(live, nxt, **publish_extra)
            elif publish_extra:  # the SIP side moved on meanwhile: report, never step back
                await self._publish(live, **publish_extra)
        return self._public(live)

    def _sip(self) -> SipSupervisor:
        if self.sip is None:
            raise Unavailable("the SIP side is not up", reason="sip-unavailable")
        return self.sip

    @contextlib.contextmanager
    def _sip_errors(self, call_id: str) -> Iterator[None]:
        try:
            yield
        except SipError as err:
            raise self._map(err, call_id) from None

    @staticmethod
    def _map(err: SipError, call_id: str) -> GatewayError:
        reason = getattr(err, "reason", "sip-error")
        details = {"call_id": call_id}
        if reason == "no-capacity":
            return Unavailable(str(err), reason="no-capacity", details=details)
        if reason in ("no-such-call",):
            return NotFound(str(err), reason="no-such-call", details=details)
        if reason in ("invalid-uri",):
            return TargetError(str(err), reason="invalid-uri", details=details)
        return Unavailable(str(err), reason="sip-unavailable", details=details)

    def _resolve_one(self, target: str) -> str:
        endpoints = self._directory.resolve(target)
        if len(endpoints) != 1:
            raise InvalidParams(
                "a call goes to one target; this names a group",
                details={"target": target, "members": len(endpoints)},
            )
        return endpoints[0].uri

    @staticmethod
    def _new_row(call_id: str, session_id: str, direction: str, remote: str | None,
                 local: str | None) -> dict[str, Any]:
        return {
            "call_id": call_id, "session_id": session_id, "direction": direction,
            "local_uri": local, "remote_uri": remote, "state": None, "created_at": now_iso(),
            "answered_at": None, "ended_at": None, "sip_code": None, "cause": None, "worker": None,
            "extra": {},
        }

    async def _set(self, live: LiveCall, state: CallState, **publish_extra: Any) -> None:
        live.state = state
        live.row["state"] = state.value
        data = {**self._public(live), **publish_extra}  # as of now: others may change it meanwhile
        await self._store.put_call(dict(live.row))
        await self._bus.publish("call.state", data, session_id=live.row["session_id"])

    async def _publish(self, live: LiveCall, **extra: Any) -> None:
        await self._bus.publish("call.state", {**self._public(live), **extra},
                                session_id=live.row["session_id"])

    async def _end(self, live: LiveCall, *, sip_code: int | None, cause: str | None,
                   reason: str | None = None) -> None:
        self._cancel_timer(live)
        self._live.pop(live.call_id, None)
        live.row.update(ended_at=now_iso(), sip_code=sip_code or live.row.get("sip_code"),
                        cause=cause or "normal")
        if reason:
            live.row["extra"] = {**live.row.get("extra", {}), "sip_reason": reason}
        await self._set(live, CallState.ENDED)
        for hook in self.on_ended:
            hook(live.call_id)
        log.info("call.ended", call_id=live.call_id, cause=live.row["cause"], sip_code=live.row["sip_code"])

    @staticmethod
    def _cancel_timer(live: LiveCall) -> None:
        if live.timer:
            live.timer.cancel()
            live.timer = None

    @staticmethod
    def _public(live: LiveCall) -> dict[str, Any]:
        r = live.row
        return {k: r.get(k) for k in ("call_id", "session_id", "direction", "remote_uri", "local_uri",
                                      "state", "created_at", "answered_at", "ended_at", "sip_code",
                                      "cause")}
