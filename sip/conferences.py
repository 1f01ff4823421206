"""Conferences on the SIP side: which worker's conference bridge mixes which member, and the
trunks that link the bridges of a conference spanning workers (sip/worker/conference.py,
sip/worker/trunks.py). `ConferenceOps` is a part of SipSupervisor (sip/supervisor.py), which
provides the state annotated on the class.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog

from .config import SipConfig
from .errors import InvalidState, NoCapacity, SipError
from .worker_process import Worker

log = structlog.get_logger("sip.supervisor")  # the logger name the supervisor's events always had


class ConferenceOps:
    """conf_* commands, console member ports and trunks (a part of SipSupervisor)."""

    config: SipConfig
    calls_per_worker: int
    _workers: dict[int, Worker]
    _call_worker: dict[str, int]
    _trunks: dict[tuple[str, int], list[str]]  # (conference, worker) -> trunk keys in its load
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
        log.info("sip.conference.trunk", conference_id=conference_id, worker=w.index, to_worker=to_worker)
        return w.index

