"""Broadcasts: one audio source fanned out to SIP speakers/phones (paging calls) and multicast zones.

A broadcast claims its targets from the arbiter (priorities, pre-emption), dials its SIP targets
paced across the workers, sends to its zones, and pumps the source at real time into every
connected target and into its recording. Every target change is a `broadcast.target` event, every
broadcast change a `broadcast.state` event. Paging calls are the supervisor's calls like any other;
their SIP events are routed here (see `owns`). What a broadcast and a target hold:
gateway/broadcast/model.py; what a start request's targets and source become: inputs.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

from gateway.broadcast.arbiter import Arbiter
from gateway.broadcast.config import BroadcastConfig, render_headers
from gateway.broadcast.inputs import describe, make_source, resolve_targets
from gateway.broadcast.machine import (
    BROADCAST_MACHINE,
    TARGET_MACHINE,
    BroadcastInput,
    BroadcastState,
    RetryPolicy,
    TargetInput,
    TargetState,
)
from gateway.broadcast.model import Broadcast, Target
from gateway.broadcast.multicast import MulticastSender
from gateway.broadcast.recorder import Recorder
from gateway.broadcast.sources import LiveSource, pace
from gateway.directory import Directory
from gateway.errors import Conflict, InvalidParams, NotFound, Unavailable
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.store import Store
from gateway.tasks import OwnedTasks
from gateway.timeutil import now_iso
from sip.errors import SipError
from sip.supervisor import SipEvent, SipSupervisor

log = structlog.get_logger(__name__)

FRAME_S = 0.02
SETTLE_S = 3.0  # a non-live source waits this long at most for the targets to answer
END_WAIT_S = 5.0  # how long ending waits for the calls' BYEs to be confirmed
TAIL_S = 0.5  # after the last frame, before the BYE: the speakers' jitter buffers play out
EVENT_QUEUE = 10_000
EVENT_BATCH = 512  # SIP events taken off the queue and handled together (see _consume)


class _Pacer:
    """INVITEs across every broadcast at most `rate` per second, so no burst overflows a socket."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
        if delay > 0:
            await asyncio.sleep(delay)


class BroadcastService:
    def __init__(self, store: Store, bus: EventBus, sessions: SessionService, directory: Directory,
                 config: BroadcastConfig, *, data_dir: str | Path) -> None:
        self._store, self._bus, self._sessions, self._directory = store, bus, sessions, directory
        self.config = config
        self.arbiter = Arbiter(config.priorities, preempted_policy=config.preempted_policy)
        self.retry = RetryPolicy(config.retries, config.retry_delay_s)
        self._pacer = _Pacer(config.invite_pace_per_s)
        self._recordings = Path(data_dir) / config.recordings_dir
        self._media = (Path(data_dir) / config.media_dir).resolve()
        self._live: dict[str, Broadcast] = {}
        self._calls: dict[str, str] = {}  # paging call id -> broadcast id
        self._queue: asyncio.Queue[SipEvent] = asyncio.Queue(EVENT_QUEUE)
        self._tasks = OwnedTasks()
        self._lock = asyncio.Lock()  # claims and releases happen one at a time: no half states
        self.sip: SipSupervisor | None = None
        sessions.on_close.append(self._session_closed)

    # lifecycle -------------------------------------------------------------------------------
    def start_service(self, sip: SipSupervisor) -> None:
        self.sip = sip
        self._own(self._consume(), "broadcast.events")

    async def stop_service(self) -> None:
        for b in list(self._live.values()):
            b.stop.set()
        pending = [b.task for b in self._live.values() if b.task]
        if pending:
            await asyncio.wait(pending, timeout=END_WAIT_S + 2)
        await self._tasks.cancel_all()

    def _own(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name)

    # SIP events ------------------------------------------------------------------------------
    def live_public(self) -> list[dict[str, Any]]:
        """Each live broadcast as `broadcast.state` shows it (state, targets by state): /metrics."""
        return [b.public() for b in self._live.values()]

    def owns(self, call_id: str) -> bool:
        return call_id in self._calls

    def on_sip_event(self, ev: SipEvent) -> None:
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            log.error("broadcast.event_queue_full", call_id=ev.call_id)

    async def _consume(self) -> None:
        """SIP events, everything queued at once (up to EVENT_BATCH): one call's events in order,
        different calls' concurrently. A burst of answers (a fan-out) is then one store commit
        (the store's group commit) rather than one commit awaited after the other per target."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < EVENT_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            per_call: dict[str, list[SipEvent]] = {}
            for ev in batch:
                per_call.setdefault(ev.call_id, []).append(ev)
            await asyncio.gather(*(self._on_call_events(evs) for evs in per_call.values()))

    async def _on_call_events(self, events: list[SipEvent]) -> None:
        for ev in events:
            try:
                await self._on_sip_event(ev)
            except Exception:
                log.exception("broadcast.event_failed", call_id=ev.call_id)

    async def _on_sip_event(self, ev: SipEvent) -> None:
        b = self._live.get(self._calls.get(ev.call_id, ""))
        t = b.by_call(ev.call_id) if b else None
        if b is None or t is None or ev.kind != "state":
            return
        if ev.state in ("early", "connecting") and t.state is TargetState.RINGING:
            t.sip_code = ev.sip_code or t.sip_code
            return
        if ev.state == "confirmed" and t.state is TargetState.RINGING:
            t.sip_code, t.connected_at = ev.sip_code, time.monotonic()
            # The worker's conference bridge feeds it the broadcast's stream (see _pump): the
            # worker attached it on answer (dial's `stream`), unless it could not.
            attached = b.broadcast_id in (ev.extra.get("streams") or ())
            if self.sip is not None and not attached and b.state is not BroadcastState.ENDING:
                with contextlib.suppress(SipError):  # a worker gone or stalled: SipUnavailable
                    await self.sip.attach_stream(b.broadcast_id, ev.call_id)
            await self._target(b, t, TargetInput.ANSWERED)
            if BROADCAST_MACHINE.allows(b.state, BroadcastInput.CONNECTED):
                await self._set_state(b, BROADCAST_MACHINE.next(b.state, BroadcastInput.CONNECTED))
            if b.state is BroadcastState.ENDING:  # a late answer: not wanted any more
                await self._hangup(t.call_id)
            return
        if ev.state != "disconnected":
            return
        self._calls.pop(ev.call_id, None)
        t.call_id = None
        t.sip_code, t.cause = ev.sip_code or t.sip_code, ev.cause
        if t.state is TargetState.CONNECTED:
            await self._target(b, t, TargetInput.DISCONNECTED)
        elif t.state is TargetState.RINGING:
            # Our own CANCEL after answer_timeout_s comes back as 487: the cause is what counts.
            code = None if ev.cause == "no-answer" else ev.sip_code
            inp = self.retry.input_for(t.attempts, code, ev.cause)
            if b.stop.is_set():
                inp = TargetInput.STOP
            await self._target(b, t, inp)
            if t.state is TargetState.RETRYING:
                self._own(self._redial_later(b, t, self.retry.delay_s), "broadcast.retry")
        await self._check_all_final(b)

    # commands --------------------------------------------------------------------------------
    async def start(self, *, principal: str, targets: list[str], source: dict[str, Any], priority: str,
                    session_id: str | None, max_duration_s: float | None, repeat: int,
                    repeat_gap_s: float, chime: bool | None) -> dict:
        if priority not in self.config.priorities:
            raise InvalidParams(f"unknown priority {priority!r}", reason="invalid-params",
                                details={"priority": priority, "known": list(self.config.priorities)})
        resolved = resolve_targets(targets, self._directory, self.config)
        src, live = await make_source(source, repeat, repeat_gap_s,
                                      self.config.chime if chime is None else chime,
                                      media_dir=self._media, tts_engine=self.config.tts_engine)
        if not session_id:
            session_id = (await self._sessions.create(title="Broadcast", created_by=principal,
                                                      origin="broadcast"))["session_id"]
        async with self._sessions.hold_open(session_id):  # a racing session.close waits for it
            b = Broadcast(broadcast_id=uuid.uuid4().hex, session_id=session_id, priority=priority,
                          created_by=principal, source_desc=describe(source), source=src,
                          max_duration_s=max_duration_s, targets=resolved, live=live)
            # Started fully or not at all: from here on the broadcast's own task (owned by this
            # service) stores it, claims its targets and plays; the caller going away cancels
            # only this wait for the start.
            b.begun = asyncio.get_running_loop().create_future()
            self._live[b.broadcast_id] = b
            b.task = self._own(self._run(b), f"broadcast-{b.broadcast_id}")
            b.task.add_done_callback(lambda _: _unstarted(b))
            return await asyncio.shield(b.begun)

    async def _begin(self, b: Broadcast) -> None:
        """Store and announce the broadcast, claim its targets; `b.begun` gets its public view."""
        await self._save(b)
        await self._publish_state(b)
        async with self._lock:
            claim = self.arbiter.claim(b.broadcast_id, b.priority, list(b.targets))
            for key, holder in claim.refused:
                t = b.targets[key]
                t.holder = holder
                await self._target(b, t, TargetInput.REFUSED)
            for key, loser_id in claim.preempted:
                await self._preempted(loser_id, key, by=b.broadcast_id)
        await self._check_all_final(b)  # every target held by others: nothing to start
        log.info("broadcast.started", broadcast_id=b.broadcast_id, targets=len(b.targets),
                 granted=len(claim.acquired), refused=len(claim.refused), priority=b.priority)
        assert b.begun is not None
        b.begun.set_result(b.public())

    async def stop(self, broadcast_id: str) -> dict:
        b = self._live.get(broadcast_id)
        if b is None:
            row = await self._store.get_broadcast(broadcast_id)
            if row is None:
                raise NotFound("no such broadcast", reason="no-such-broadcast",
                               details={"broadcast_id": broadcast_id})
            raise Conflict("the broadcast has ended", reason="invalid-state",
                           details={"broadcast_id": broadcast_id, "state": row["state"]})
        b.end_reason = b.end_reason or "stopped"
        b.stop.set()
        return b.public()

    async def get(self, broadcast_id: str) -> dict:
        b = self._live.get(broadcast_id)
        if b is not None:
            return {**b.public(), "target_states": [t.public() for t in b.targets.values()]}
        row = await self._store.get_broadcast(broadcast_id)
        if row is None:
            raise NotFound("no such broadcast", reason="no-such-broadcast",
                           details={"broadcast_id": broadcast_id})
        extra = row.pop("extra", {}) or {}
        return {**row, **extra}

    def live_source(self, broadcast_id: str) -> LiveSource:
        b = self._live.get(broadcast_id)
        if b is None:
            raise NotFound("no such live broadcast", reason="no-such-broadcast",
                           details={"broadcast_id": broadcast_id})
        if b.live is None:
            raise Conflict("this broadcast's source is not live", reason="not-live",
                           details={"broadcast_id": broadcast_id})
        return b.live

    async def _session_closed(self, session_id: str) -> None:
        for b in [b for b in self._live.values() if b.session_id == session_id]:
            b.end_reason = b.end_reason or "session-closed"
            b.stop.set()

    # one broadcast's life --------------------------------------------------------------------
    async def _run(self, b: Broadcast) -> None:
        rec = Recorder(self._recordings / f"{b.broadcast_id}.wav")
        try:
            await self._begin(b)
            pending = [t for t in b.targets.values() if t.state is TargetState.PENDING]
            for t in pending:  # in parallel; the shared pacer spaces the INVITEs
                self._own(self._engage_logged(b, t), "broadcast.engage")
            sip_targets = sum(1 for t in pending if t.zone is None)
            await self._settle(b, SETTLE_S + sip_targets / self.config.invite_pace_per_s)
            await self._pump(b, rec)
            if b.end_reason in ("completed", "max-duration") and not b.stop.is_set():
                await asyncio.sleep(TAIL_S)
        except Exception:
            log.exception("broadcast.failed", broadcast_id=b.broadcast_id)
            b.end_reason = b.end_reason or "internal-error"
        finally:
            recording = await rec.close()
            b.recording = str(recording.path)
            await self._wind_down(b)

    async def _engage(self, b: Broadcast, t: Target) -> None:
        """Start sending to a target this broadcast holds: dial it, or open its zone."""
        if b.stop.is_set():
            return
        if t.zone is not None:
            t.attempts += 1
            await self._target(b, t, TargetInput.DIAL)
            try:
                t.sender = MulticastSender(t.zone)
            except (OSError, ValueError) as err:  # e.g. the zone's interface is not on this host
                t.cause = "zone-unavailable"
                log.warning("broadcast.zone_unavailable", zone=t.zone.name, error=str(err))
                await self._target(b, t, TargetInput.FAIL_FINAL)
                await self._check_all_final(b)
                return
            t.connected_at = time.monotonic()
            await self._target(b, t, TargetInput.ANSWERED)
            if BROADCAST_MACHINE.allows(b.state, BroadcastInput.CONNECTED):
                await self._set_state(b, BROADCAST_MACHINE.next(b.state, BroadcastInput.CONNECTED))
            return
        await self._pacer.wait()
        if b.stop.is_set() or self.arbiter.holder(t.key) != b.broadcast_id:
            return
        t.attempts += 1
        t.call_id = uuid.uuid4().hex
        self._calls[t.call_id] = b.broadcast_id
        await self._target(b, t, TargetInput.DIAL)
        headers = render_headers(self.config.profile(t.profile), t.uri) if t.profile else {}
        try:
            assert self.sip is not None
            await self.sip.dial(t.call_id, t.uri, display_name="Broadcast", headers=headers,
                                timeout=self.config.answer_timeout_s,
                                media_dir=self.config.paging_direction, stream=b.broadcast_id)
        except SipError as err:
            self._calls.pop(t.call_id, None)
            t.call_id, t.cause = None, getattr(err, "reason", "sip-error")
            await self._target(b, t, self.retry.input_for(t.attempts, None, t.cause))
            if t.state is TargetState.RETRYING:
                self._own(self._redial_later(b, t, self.retry.delay_s), "broadcast.retry")
            await self._check_all_final(b)

    async def _redial_later(self, b: Broadcast, t: Target, delay: float) -> None:
        await asyncio.sleep(delay)
        if t.state is TargetState.RETRYING and not b.stop.is_set():
            await self._engage_logged(b, t)

    async def _settle(self, b: Broadcast, wait_s: float) -> None:
        """A recorded message starts once every target answered or failed (or `wait_s` passed),
        so speakers start together; live audio starts at once."""
        if b.live is not None:
            return
        deadline = time.monotonic() + wait_s
        while not b.stop.is_set() and time.monotonic() < deadline:
            if not any(t.state in (TargetState.PENDING, TargetState.RINGING, TargetState.RETRYING)
                       for t in b.targets.values()):
                return
            b.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await b.changed.wait()

    async def _pump(self, b: Broadcast, rec: Recorder) -> None:
        limit = int(b.max_duration_s / FRAME_S) if b.max_duration_s else None
        frames = b.source.frames()
        zones = [t for t in b.targets.values() if t.zone is not None]  # SIP targets: via the stream
        b.started_audio_at = time.monotonic()
        try:
            async for frame in pace(frames):
                if b.stop.is_set():
                    return
                if b.state is BroadcastState.ENDED:
                    return
                rec.write(frame)
                if self.sip is not None:  # once per frame: each worker fans it out to its calls
                    self.sip.send_stream(b.broadcast_id, frame)
                for t in zones:
                    if t.state is TargetState.CONNECTED and t.sender is not None:
                        try:
                            t.sender.send_frame(frame)
                        except OSError as err:  # this zone only: the rest plays on
                            log.warning("broadcast.zone_send_failed", zone=t.name, error=str(err))
                            t.cause = "send-error"
                            await self._drop(b, t, TargetInput.DISCONNECTED)
                b.frames_sent += 1
                if limit is not None and b.frames_sent >= limit:
                    b.end_reason = b.end_reason or "max-duration"
                    return
            b.end_reason = b.end_reason or "completed"
        finally:
            with contextlib.suppress(Exception):
                await frames.aclose()

    async def _wind_down(self, b: Broadcast) -> None:
        inp = {"max-duration": BroadcastInput.MAX_DURATION, "completed": BroadcastInput.REPEATS_DONE}.get(
            b.end_reason or "", BroadcastInput.STOP)
        b.stop.set()
        if b.live is not None:
            b.live.close()
        if BROADCAST_MACHINE.allows(b.state, inp):
            await self._set_state(b, BROADCAST_MACHINE.next(b.state, inp))
        async with self._lock:  # states and claims change together; the BYEs go out after
            calls = [t.call_id for t in b.targets.values() if t.call_id]
            for t in b.targets.values():
                await self._drop(b, t, TargetInput.STOP, hangup=False)
            handed = self.arbiter.release(b.broadcast_id)
        # Nothing past this point may escape: the broadcast must end and leave the live set even
        # when its calls' worker is gone or stalled (the SIP side answers SipError in time then).
        for call_id, res in zip(calls, await asyncio.gather(*(self._hangup(c) for c in calls),
                                                            return_exceptions=True)):
            if isinstance(res, Exception):
                log.error("broadcast.hangup_failed", broadcast_id=b.broadcast_id, call_id=call_id,
                          error=repr(res))
        if self.sip is not None:
            try:
                await self.sip.close_stream(b.broadcast_id)
            except SipError:
                pass
            except Exception as err:  # our bug: log it, the wind-down goes on
                log.error("broadcast.close_stream_failed", broadcast_id=b.broadcast_id, error=repr(err))
        deadline = time.monotonic() + END_WAIT_S
        while any(t.call_id for t in b.targets.values()) and time.monotonic() < deadline:
            b.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await b.changed.wait()
        for t in b.targets.values():
            if t.call_id:
                self._calls.pop(t.call_id, None)
                t.call_id = None
        final = BroadcastInput.ALL_ENDED if any(
            t.connected_at for t in b.targets.values()) else BroadcastInput.ALL_FAILED
        if BROADCAST_MACHINE.allows(b.state, final):
            b.state = BROADCAST_MACHINE.next(b.state, final)
        b.state = BroadcastState.ENDED
        b.end_reason = b.end_reason or ("all-failed" if final is BroadcastInput.ALL_FAILED else "completed")
        await self._save(b, ended=True)
        await self._publish_state(b)
        self._live.pop(b.broadcast_id, None)
        b.done.set()
        log.info("broadcast.ended", broadcast_id=b.broadcast_id, reason=b.end_reason,
                 recording=b.recording, frames=b.frames_sent)
        for key, next_id in handed:  # targets handed back to broadcasts they were taken from
            nxt = self._live.get(next_id or "")
            if nxt is not None and key in nxt.targets:
                await self._resume(nxt, nxt.targets[key])

    async def _drop(self, b: Broadcast, t: Target, inp: TargetInput, *, hangup: bool = True) -> None:
        """Stop sending to a target: feed `inp` first (so the BYE's echo finds the target already
        pre-empted or stopped), then close its zone or hang up its call."""
        call_id, sender = t.call_id, t.sender
        if TARGET_MACHINE.allows(t.state, inp):
            await self._target(b, t, inp)
        if sender is not None:
            sender.close()
            t.sender = None
        if call_id is not None and hangup:
            await self._hangup(call_id)

    async def _hangup(self, call_id: str | None) -> None:
        if call_id is None or self.sip is None:
            return
        with contextlib.suppress(SipError):
            await self.sip.hangup(call_id)

    async def _preempted(self, loser_id: str, key: str, *, by: str) -> None:
        loser = self._live.get(loser_id)
        if loser is None or key not in loser.targets:
            return
        t = loser.targets[key]
        t.holder = by
        await self._drop(loser, t, TargetInput.PREEMPT)
        if self.config.preempted_policy == "end":
            await self._target(loser, t, TargetInput.STOP)
        await self._check_all_final(loser)

    async def _resume(self, b: Broadcast, t: Target) -> None:
        if not TARGET_MACHINE.allows(t.state, TargetInput.RESUME) or b.stop.is_set():
            return
        t.holder = None
        await self._target(b, t, TargetInput.RESUME)
        self._own(self._engage_logged(b, t), "broadcast.resume")

    async def _engage_logged(self, b: Broadcast, t: Target) -> None:
        try:
            await self._engage(b, t)
        except Exception:
            log.exception("broadcast.engage_failed", broadcast_id=b.broadcast_id, target=t.name)

    async def _check_all_final(self, b: Broadcast) -> None:
        """Every target failed, busy or ended: the broadcast has nobody left to talk to."""
        if all(TARGET_MACHINE.is_final(t.state) for t in b.targets.values()):
            if not any(t.connected_at for t in b.targets.values()):
                b.end_reason = b.end_reason or "all-failed"
            else:
                b.end_reason = b.end_reason or "all-ended"
            b.stop.set()
        b.changed.set()

    # records and events ------------------------------------------------------------------------
    async def _target(self, b: Broadcast, t: Target, inp: TargetInput) -> None:
        t.state = TARGET_MACHINE.next(t.state, inp)
        b.changed.set()
        await self._bus.publish("broadcast.target", {"broadcast_id": b.broadcast_id, **t.public()},
                                session_id=b.session_id)

    async def _set_state(self, b: Broadcast, state: BroadcastState) -> None:
        if state is b.state:
            return
        b.state = state
        await self._save(b)
        await self._publish_state(b)

    async def _publish_state(self, b: Broadcast) -> None:
        await self._bus.publish("broadcast.state", b.public(), session_id=b.session_id)

    async def _save(self, b: Broadcast, ended: bool = False) -> None:
        row = {"broadcast_id": b.broadcast_id, "session_id": b.session_id, "state": b.state.value,
               "priority": b.priority, "created_at": b.created_at, "created_by": b.created_by,
               "end_reason": b.end_reason, "recording": b.recording,
               "extra": {"source": b.source_desc, "targets": [t.public() for t in b.targets.values()],
                         "frames_sent": b.frames_sent}}
        if ended:
            row["ended_at"] = now_iso()
        await self._store.put_broadcast(row)


def _unstarted(b: Broadcast) -> None:
    """Its task ended before the broadcast was started (store down, stopped at once)."""
    if b.begun is not None and not b.begun.done():
        b.begun.set_exception(Unavailable("the broadcast could not start", reason="unavailable",
                                          details={"broadcast_id": b.broadcast_id}))
        b.begun.exception()  # retrieved here too: its caller may be gone
