"""Conferences on the SIP side: which worker's conference bridge mixes which member, and the
trunks that link the bridges of a conference spanning workers (sip/worker/conference.py,
sip/worker/trunks.py). `ConferenceOps` is a part of SipSupervisor (sip/supervisor.py), which
provides the state annotated on the class.

A trunk that drops (its dialling worker reports `down`: the other side hung up, a call failed)
is redialled from the same worker to the same token, with a growing delay, until it is `up`
again, its conference is closed there, or one of its two workers is gone (a restarted worker
holds nothing of the conference any more). Each loss and each recovery is a SipEvent of kind
`trunk` (state `lost` / `restored`) for the conference's owner.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from .config import SipConfig
from .errors import InvalidState, NoCapacity, SipError
from .events import SipEvent
from .worker_process import Worker

log = structlog.get_logger("sip.supervisor")  # the logger name the supervisor's events always had

TRUNK_REDIAL_FIRST_S = 0.5  # the first redial of a dropped trunk, doubled after each failure ...
TRUNK_REDIAL_MAX_S = 8.0  # ... up to this
TRUNK_UP_TIMEOUT_S = 10.0  # a redialled trunk not confirmed by then counts as failed


@dataclass
class TrunkLink:
    """One trunk: worker `dial` calls `uri` (a token worker `accept` answers) as call `key`."""

    conference_id: str
    key: str
    dial: Worker
    accept: Worker
    uri: str
    procs: tuple[Any, Any] = (None, None)  # the two worker processes it was set up between
    up: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set on every up/down
    redialling: asyncio.Task[None] | None = None

    def alive(self) -> bool:
        """Both workers still up, and still the processes the trunk was set up between."""
        return self.dial.up and self.accept.up and (self.dial.proc, self.accept.proc) == self.procs


class ConferenceOps:
    """conf_* commands, console member ports and trunks (a part of SipSupervisor)."""

    config: SipConfig
    calls_per_worker: int
    _workers: dict[int, Worker]
    _call_worker: dict[str, int]
    _trunks: dict[tuple[str, int], list[str]]  # (conference, worker) -> trunk keys in its load
    _links: dict[str, TrunkLink]  # dialling side's trunk key -> its link (until conf_close)
    _own: Callable[..., asyncio.Task[Any]]  # worker_process.py: a task this supervisor owns
    _emit: Callable[[SipEvent], None]
    _command: Any
    _pinned: Any  # supervisor.py: worker `index` if it has room for one more call, else NoCapacity

    async def conf_join(self, call_id: str, conference_id: str, *, muted: bool = False) -> None:
        await self._call_command(call_id, {"cmd": "conf_join", "conference_id": conference_id, "muted": muted})

    async def conf_mute(self, call_id: str, muted: bool) -> None:
        await self._call_command(call_id, {"cmd": "conf_mute", "muted": muted})

    async def conf_leave(self, call_id: str) -> None:
        await self._call_command(call_id, {"cmd": "conf_leave"})

    async def conf_console(self, worker: int | None, conference_id: str, port_id: str, *,
                           muted: bool = False) -> int:
        """A console member: a port in worker `worker`'s conference bridge (the fullest worker
        with room when None), addressed as `port_id` like a call (send_audio, on_audio,
        conf_mute, conf_leave). It takes a call slot there like a call (`no-capacity` when the
        worker is full) until `conf_console_leave` or the worker's end. Returns the worker's index."""
        if port_id in self._call_worker:
            raise InvalidState(f"{port_id} exists", reason="invalid-state")
        w = await self._pick_worker() if worker is None else self._pinned(worker)
        w.calls.add(port_id)  # counts in the worker's load from now on
        self._call_worker[port_id] = w.index
        try:
            await self._command(w, {"cmd": "conf_console", "call_id": port_id, "conference_id": conference_id,
                                    "muted": muted})
        except BaseException:
            self._forget(w, port_id)
            raise
        return w.index

    async def conf_console_leave(self, port_id: str) -> None:
        """The console member's port leaves the bridge and is gone."""
        w = self._workers.get(self._call_worker.get(port_id, -1))
        if w is None:
            return
        try:
            await self._call_command(port_id, {"cmd": "conf_leave"})
        finally:
            self._forget(w, port_id)

    async def conf_record(self, worker: int, conference_id: str, path: str) -> None:
        """Worker `worker` writes the conference's mix to the WAV `path` (until conf_close)."""
        await self._command(self._worker_at(worker), {"cmd": "conf_record", "conference_id": conference_id,
                                                      "path": path})

    async def conf_stats(self, worker: int, conference_id: str) -> dict[str, int | None]:
        """RTP packets each member call of the conference has received on worker `worker`."""
        reply = await self._command(self._worker_at(worker), {"cmd": "conf_stats", "conference_id": conference_id})
        return dict(reply.get("rx_packets") or {})

    async def conf_close(self, worker: int, conference_id: str) -> None:
        """The conference is over on worker `worker`: its recording is complete on return, its
        trunks are hung up (and no longer count in the worker's load)."""
        for key in self._trunks.get((conference_id, worker), []):  # not redialled from now on
            link = self._links.pop(key, None)
            if link is not None and link.redialling is not None:
                link.redialling.cancel()
        try:
            await self._command(self._worker_at(worker), {"cmd": "conf_close", "conference_id": conference_id})
        finally:
            w = self._workers.get(worker)
            for key in self._trunks.pop((conference_id, worker), []):
                if w is not None:
                    w.calls.discard(key)

    def free_slots(self, worker: int) -> int:
        w = self._workers.get(worker)
        return self.calls_per_worker - w.load if w is not None and w.up else 0

    def has_room(self, workers: list[int]) -> bool:
        """A call slot is free on one of `workers`; with none named, on a worker that is up or
        may still be started (a member that arrives as an inbound call, which the front brings
        to a worker of its conference: a terminal's voice bridge)."""
        if workers:
            return any(self.free_slots(i) > 0 for i in workers)
        return (len(self._workers) < self.config.max_workers
                or any(self.free_slots(i) > 0 for i in self._workers))

    async def conf_trunk(self, conference_id: str, to_worker: int, *, exclude: set[int]) -> int:
        """Extend conference `conference_id` from worker `to_worker` to another worker (not in
        `exclude`): that worker dials a trunk to `to_worker`, which answers it into its mix
        (sip/worker/conference.py). The trunk takes a call slot on both. Returns the new worker."""
        home = self._worker_at(to_worker)
        if self.free_slots(to_worker) < 1:
            raise NoCapacity("no slot left for a conference trunk", reason="no-capacity",
                             details={"worker": to_worker})
        token = secrets.token_hex(16)
        w = await self._pick_worker(exclude=exclude | {to_worker})
        keys = [(home, f"trunk-{token[:12]}-in"), (w, f"trunk-{token[:12]}")]
        for worker, key in keys:  # counted in both workers' load from now on
            worker.calls.add(key)
            self._trunks.setdefault((conference_id, worker.index), []).append(key)
        host, port = self.config.worker_address(to_worker)
        try:
            await self._command(home, {"cmd": "conf_trunk_accept", "conference_id": conference_id, "token": token})
            await self._command(w, {"cmd": "conf_trunk_dial", "conference_id": conference_id,
                                    "call_id": keys[1][1], "uri": f"sip:conftrunk-{token}@{host}:{port}"})
        except SipError:
            for worker, key in keys:
                worker.calls.discard(key)
                self._trunks.get((conference_id, worker.index), []).remove(key)
            raise
        uri = f"sip:conftrunk-{token}@{host}:{port}"
        self._links[keys[1][1]] = TrunkLink(conference_id, keys[1][1], w, home, uri, procs=(w.proc, home.proc))
        log.info("sip.conference.trunk", conference_id=conference_id, worker=w.index, to_worker=to_worker)
        return w.index

    async def drop_trunks(self, worker: int, conference_id: str) -> int:
        """Hang up the conference's trunks on worker `worker` (tests; resetting a bad link): they
        are redialled like any trunk that dropped. Returns how many were up there."""
        reply = await self._command(self._worker_at(worker), {"cmd": "conf_trunk_hangup",
                                                              "conference_id": conference_id})
        return int(reply.get("dropped", 0))

    def _trunk_event(self, w: Worker, m: dict[str, Any]) -> None:
        """A trunk this worker dialled is `up` or `down` (sip/worker/trunks.py)."""
        link = self._links.get(str(m.get("call_id")))
        if link is None or link.dial is not w:
            return  # closed meanwhile, or a trunk the supervisor no longer tracks
        link.up = up = m.get("state") == "up"
        link.changed.set()
        redialling = link.redialling is not None and not link.redialling.done()
        if up:
            if redialling:
                log.info("sip.conference.trunk_restored", conference_id=link.conference_id, key=link.key)
                self._trunk_state(link, "restored", m)
            return
        if redialling:
            return  # an attempt failed: the redial goes on
        log.warning("sip.conference.trunk_lost", conference_id=link.conference_id, key=link.key,
                    worker=w.index, to_worker=link.accept.index, cause=m.get("cause"), sip_code=m.get("sip_code"))
        self._trunk_state(link, "lost", m)
        link.redialling = self._own(self._redial(link))

    def _trunk_state(self, link: TrunkLink, state: str, m: dict[str, Any]) -> None:
        self._emit(SipEvent(call_id=link.key, kind="trunk", state=state, sip_code=m.get("sip_code"),
                            cause=m.get("cause"), worker=link.dial.index,
                            extra={"conference_id": link.conference_id,
                                   "workers": [link.accept.index, link.dial.index]}))

    async def _redial(self, link: TrunkLink) -> None:
        """Redial a dropped trunk until it is up, its conference closed or a worker of it gone."""
        delay = TRUNK_REDIAL_FIRST_S
        attempt = 0
        try:
            while self._links.get(link.key) is link and not link.up:
                await asyncio.sleep(delay)
                delay = min(delay * 2, TRUNK_REDIAL_MAX_S)
                if self._links.get(link.key) is not link:
                    return
                if not link.alive():
                    log.warning("sip.conference.trunk_abandoned", conference_id=link.conference_id, key=link.key,
                                why="a worker of the trunk is gone")
                    return
                attempt += 1
                link.changed.clear()
                try:
                    await self._command(link.dial, {"cmd": "conf_trunk_dial", "conference_id": link.conference_id,
                                                    "call_id": link.key, "uri": link.uri})
                except SipError as e:
                    log.warning("sip.conference.trunk_redial_failed", conference_id=link.conference_id,
                                key=link.key, attempt=attempt, error=str(e), retry_in=delay)
                    continue
                try:  # its outcome: `up`, or `down` again (then the next attempt)
                    async with asyncio.timeout(TRUNK_UP_TIMEOUT_S):
                        await link.changed.wait()
                except TimeoutError:
                    log.warning("sip.conference.trunk_redial_unanswered", conference_id=link.conference_id,
                                key=link.key, attempt=attempt)
        finally:
            if link.redialling is asyncio.current_task():
                link.redialling = None

