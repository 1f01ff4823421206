"""asyncio side of SIP: spawn pjsua2 worker processes, spread calls, restart crashed workers.

Nothing here touches pjsua2: workers are separate processes (sip/worker/) spoken to over their
stdin/stdout with sip/ipc.py framing. Each worker has one reader task, owned by the supervisor and
cancelled on stop. Worker stderr (pjsua logs) goes to a log file per worker, so no pipe fills.

SipSupervisor is put together from its parts: worker processes (sip/worker_process.py), streams
(sip/streams.py); placing calls on workers and the call API are here. The capacity probe runner is
in sip/capacity.py, SipEvent in sip/events.py; both are importable from here as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from . import ipc
from .admission import inbound_shares
from .capacity import probe_calls_per_worker
from .config import SipConfig
from .errors import InvalidState, NoCapacity, NoSuchCall, SipError, SipUnavailable
from .events import SipEvent
from .conferences import ConferenceOps, TrunkLink
from .streams import StreamFanout, check_stream_id
from .worker_process import AUDIO_WRITE_LIMIT, START_TIMEOUT, Worker, WorkerProcesses

__all__ = ["SipEvent", "SipSupervisor", "probe_calls_per_worker"]

log = structlog.get_logger(__name__)

MEDIA_DIRS = ("sendonly", "recvonly", "sendrecv")  # dial(media_dir=...): our side's direction
UNAVAILABLE_GRACE = 1.0  # after a dial's sip-unavailable: time for the reader to see a dead worker


class SipSupervisor(ConferenceOps, StreamFanout, WorkerProcesses):
    def __init__(
        self,
        config: SipConfig,
        on_event: Callable[[SipEvent], None],
        on_audio: Callable[[str, bytes], None],
        *,
        python: str = sys.executable,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self.on_audio = on_audio
        self.python = python
        self.calls_per_worker: int = config.calls_per_worker
        self.registration: dict[str, Any] | None = None  # last REGISTER outcome of worker 0
        self._workers: dict[int, Worker] = {}
        self._call_worker: dict[str, int] = {}
        self._trunks: dict[tuple[str, int], list[str]] = {}  # (conference, worker) -> trunk keys in its load
        self._links: dict[str, TrunkLink] = {}  # a trunk's dialling key -> its link (sip/conferences.py)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._stopping = False  # set by quiesce() or stop(): no (re)start, no dial
        self._stopped = False
        self._log_dir: Path | None = None
        # Workers being started (warm-up or on demand), and how many dials wait for each: dials
        # join a starting worker while it has room for them, so a burst starts workers in parallel
        # and never more than needed.
        self._starting: dict[int, asyncio.Task[Worker]] = {}
        self._joined: dict[int, int] = {}
        # Streams (attach_stream): stream id -> worker index -> ids of the calls attached there.
        # send_stream writes a frame once to each worker in it; a worker leaves it with its last
        # call (detach, call ended, worker gone).
        self._streams: dict[str, dict[int, set[str]]] = {}
        self._call_streams: dict[str, set[str]] = {}  # call id -> streams it is attached to
        self.stream_frames_dropped = 0
        self.worker_restarts: collections.Counter[int] = collections.Counter()  # by index, since start (/metrics)
        self.on_worker_change: Callable[[bool, str], None] | None = None

    # ---- properties

    @property
    def ready(self) -> bool:
        return self.readiness() is None

    def readiness(self) -> str | None:
        """None while a call can be placed; else why not (for /readyz)."""
        if not self._started:
            return "the SIP workers are not started"
        if self._stopping:
            return "shutting down"
        if not any(w.up for w in self._workers.values()):
            restarting = sum(1 for w in self._workers.values() if not w.up)
            return f"no SIP worker is up ({restarting} starting or restarting, sip.max_workers {self.config.max_workers})"
        return None

    @property
    def worker_addresses(self) -> list[tuple[str, int]]:
        """SIP addresses of the workers that are up now (for the Kamailio dispatcher)."""
        return [self.config.worker_address(i) for i, w in sorted(self._workers.items()) if w.up]

    @property
    def all_worker_addresses(self) -> list[tuple[str, int]]:
        """Every address a worker may bind (index 0..max_workers-1)."""
        return [self.config.worker_address(i) for i in range(self.config.max_workers)]

    @property
    def log_dir(self) -> Path | None:
        return self._log_dir

    def worker_of(self, call_id: str) -> int | None:
        return self._call_worker.get(call_id)

    def worker_pid(self, index: int) -> int | None:
        w = self._workers.get(index)
        return w.proc.pid if w and w.proc and w.up else None

    def health(self) -> tuple[bool, str]:
        """(False, why) while a worker that went away unasked is not back; none started yet is
        fine (workers start on demand)."""
        if not self._started or self._stopping:
            return False, "sip stopped"
        for i, w in sorted(self._workers.items()):
            if not w.up and w.exit_cause is not None:
                return False, f"{w.exit_cause}; restarting"
        return True, ""

    def stats(self) -> dict[str, Any]:
        return {
            "calls_per_worker": self.calls_per_worker,
            "workers": {i: {"up": w.up, "calls": len(w.calls), "restarts": w.restarts,
                            "audio_dropped": w.audio_dropped, "inbound_refused": w.inbound_refused}
                        for i, w in self._workers.items()},
        }

    # ---- lifecycle

    async def start(self) -> None:
        if self._started:
            return
        self._log_dir = Path(self.config.log_dir) if self.config.log_dir else Path(
            tempfile.mkdtemp(prefix="sip-workers-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        if self.calls_per_worker <= 0:
            probed = await probe_calls_per_worker(self.python, limit=self.config.max_calls_for_rtp)
            # never more calls than the worker's RTP port range carries
            self.calls_per_worker = min(probed, self.config.max_calls_for_rtp)
            log.info("sip.calls_per_worker.probed", calls_per_worker=self.calls_per_worker, probed=probed)
        self._log_capacity()
        self._started = True
        n = min(max(1, self.config.warm_workers), self.config.max_workers)
        tasks = [self._start_worker(i) for i in range(n)]
        await asyncio.gather(*tasks)

    def _log_capacity(self) -> None:
        cfg = self.config
        shares = inbound_shares(cfg.max_workers, self.calls_per_worker, cfg.dispatch_reserve, spread=cfg.proxied)
        log.info("sip.capacity", slots=cfg.max_workers * self.calls_per_worker, inbound_shares=shares,
                 dispatch_reserve=cfg.dispatch_reserve, max_ringing_per_source=cfg.max_ringing_per_source)
        if not any(shares):
            log.warning("sip.capacity.no_inbound", dispatch_reserve=cfg.dispatch_reserve,
                        why="sip.dispatch_reserve takes every call slot: every inbound call is refused")

    def quiesce(self) -> None:
        """A stop has begun (the gateway got SIGTERM): from now on no worker is started or
        restarted and no call is dialled; calls in progress can still be hung up."""
        self._stopping = True

    async def stop(self) -> None:
        """BYE every call, stop every worker, cancel every task this supervisor owns."""
        if not self._started or self._stopped:
            return
        self._stopped = self._stopping = True
        workers = list(self._workers.values())
        for w in workers:
            w.stopping = True
        await asyncio.gather(*(self._stop_worker(w) for w in workers), return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        # A restart or warm start cut short by the cancellation may have left a process behind.
        for w in list(self._workers.values()):
            if w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
            w.up = False
        self._workers.clear()
        self._call_worker.clear()
        self._streams.clear()
        self._call_streams.clear()

    # ---- placing calls on workers

    def _forget(self, w: Worker, call_id: str) -> None:
        w.calls.discard(call_id)
        if self._call_worker.get(call_id) == w.index:
            del self._call_worker[call_id]

    def _room(self, exclude: set[int] | frozenset[int]) -> Worker | None:
        """Fill-first: the most loaded worker that still has room (ties: lowest index).

        Packing calls keeps idle workers idle (ready for bursts, `warm_workers` of them), starts
        workers only when the busy ones are full, and an empty worker that is broken is not the
        first choice of every dial (least-loaded placement picked it every time)."""
        cap = self.calls_per_worker
        up = [w for w in self._workers.values() if w.up and w.load < cap and w.index not in exclude]
        return max(up, key=lambda w: (w.load, -w.index)) if up else None

    async def _pick_worker(self, exclude: set[int] | frozenset[int] = frozenset()) -> Worker:
        """The fullest worker with room (`_room`); else join or start a worker (up to max_workers)."""
        cap = self.calls_per_worker
        while True:
            w = self._room(exclude)
            if w is not None:
                return w
            if self._stopping:
                raise SipUnavailable("sip is shutting down", reason="shutting-down")
            index = next((i for i in self._starting if i not in exclude and self._joined.get(i, 0) < cap), None)
            if index is None:
                free = [i for i in range(self.config.max_workers) if i not in self._workers]
                if not free:
                    back = next((w for i, w in sorted(self._workers.items())
                                 if w.restarted is not None and i not in exclude), None)
                    if back is not None:
                        await self._wait_restart(back)
                        continue
                    raise NoCapacity("every SIP worker is full", reason="no-capacity",
                                     details={"workers": len(self._workers), "calls_per_worker": cap})
                index = free[0]
                self._start_worker(index)
            task = self._starting[index]
            self._joined[index] = self._joined.get(index, 0) + 1
            try:
                await asyncio.shield(task)
            finally:
                left = self._joined.get(index, 1) - 1
                if left > 0 or index in self._starting:
                    self._joined[index] = left
                else:
                    self._joined.pop(index, None)
            # loop: take the fullest worker with room (usually the one just started)

    async def _wait_restart(self, w: Worker) -> None:
        """Wait (at most START_TIMEOUT) for crashed worker `w` to be up again."""
        assert w.restarted is not None
        log.info("sip.dial.waiting_for_restart", worker=w.index)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.shield(w.restarted)
        except TimeoutError:
            raise SipUnavailable(f"sip worker {w.index} is restarting and did not come back in time",
                                 reason="sip-unavailable", details={"worker": w.index}) from None

    def _start_worker(self, index: int) -> asyncio.Task[Worker]:
        """Claim slot `index` and start its worker in an owned task (joined by waiting dials)."""
        self._workers[index] = Worker(index)
        task = self._own(self._spawn(index))
        self._starting[index] = task

        def done(t: asyncio.Task[Worker]) -> None:
            self._starting.pop(index, None)
            if not self._joined.get(index):
                self._joined.pop(index, None)
            if t.cancelled() or t.exception() is not None:
                w = self._workers.get(index)
                if w is not None and not w.up:
                    del self._workers[index]
                if not t.cancelled():
                    log.warning("sip.worker.start_failed", worker=index, error=str(t.exception()))

        task.add_done_callback(done)
        return task

    def _keep_warm(self) -> None:
        """Keep `warm_workers` idle workers started (or starting), within max_workers."""
        idle = sum(1 for w in self._workers.values() if w.up and w.load == 0)
        idle += sum(1 for i in self._starting if self._joined.get(i, 0) == 0)
        missing = self.config.warm_workers - idle
        free = [i for i in range(self.config.max_workers) if i not in self._workers]
        for i in free[: max(0, missing)]:
            self._start_worker(i)

    async def dial(
        self,
        call_id: str,
        uri: str,
        *,
        from_uri: str | None = None,
        display_name: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        media_dir: str | None = None,
        stream: str | None = None,
        worker: int | None = None,
    ) -> None:
        """Place a call (on worker index `worker` when given: a conference's members share one
        worker's conference bridge; `no-capacity` when it is full, no other worker is tried). `timeout` (extension): hang up with cause `no-answer` if not answered
        within that many seconds. `media_dir` (extension): "sendonly" (paging: the offer carries
        a=sendonly, nothing comes back), "recvonly" or "sendrecv"; None is pjsua's default
        (sendrecv). `stream` (extension): the worker attaches that stream (see attach_stream) to
        the call the moment it is answered, before the `confirmed` event, whose `extra.streams`
        then names it: no round trip per answered call (a broadcast's targets)."""
        if media_dir is not None and media_dir not in MEDIA_DIRS:
            raise ValueError(f"media_dir must be one of {', '.join(MEDIA_DIRS)}, got {media_dir!r}")
        if stream is not None:
            check_stream_id(stream)
        if not self._started or self._stopping:
            raise SipUnavailable("sip is not running", reason="shutting-down" if self._stopping else "sip-unavailable")
        if call_id in self._call_worker:
            raise InvalidState(f"call {call_id} exists", reason="invalid-state")
        cmd: dict[str, Any] = {"cmd": "dial", "call_id": call_id, "uri": uri}
        if from_uri is not None:
            cmd["from_uri"] = from_uri
        if display_name is not None:
            cmd["display_name"] = display_name
        if headers:
            cmd["headers"] = dict(headers)
        if timeout:
            cmd["timeout"] = float(timeout)
        if media_dir is not None:
            cmd["media_dir"] = media_dir
        if stream is not None:
            cmd["stream"] = stream
        tried: set[int] = set()
        crashes = 0
        unavailable = 0  # a worker that is up but failed the dial with sip-unavailable
        while True:
            w = await self._pick_worker(exclude=tried) if worker is None else self._pinned(worker)
            w.calls.add(call_id)  # counts in the worker's load from now on
            w.dialing.add(call_id)
            self._call_worker[call_id] = w.index
            reader = w.reader
            # The command's reply is awaited by a task of ours: if this dial is interrupted
            # after the command was written, the reply still settles the placement.
            reply = self._own(self._command(w, cmd))
            try:
                await asyncio.shield(reply)
                break
            except NoCapacity:
                # Inbound calls share the worker's slots: that worker is full, try another one.
                tried.add(w.index)
                self._forget(w, call_id)
                if worker is not None:
                    raise
            except SipUnavailable:
                self._forget(w, call_id)
                if self._stopping or reader is None:
                    raise
                # Did the worker die under this dial (no reply)? Its reader sees that soon.
                await asyncio.wait({reader}, timeout=UNAVAILABLE_GRACE)
                if w.up and w.reader is reader:
                    # Up but unable to take the call: try one other worker, then give up.
                    if unavailable >= 1:
                        raise
                    unavailable += 1
                    tried.add(w.index)
                    log.warning("sip.dial.worker_unavailable", worker=w.index, call_id=call_id, retrying=True)
                    continue
                # It died: pick again; a worker being restarted is waited for when nothing else
                # has room.
                if crashes >= 2:
                    raise
                crashes += 1
                log.warning("sip.dial.worker_died", worker=w.index, call_id=call_id, retrying=True)
            except SipError:
                # Refused by the worker (invalid-uri, target-unreachable, ...): no such call.
                self._forget(w, call_id)
                raise
            except BaseException:
                # Interrupted after the command was written (cancelled, or our own bug): the
                # worker may have dialled. The placement stays, so a hangup reaches the call and
                # its events (or the worker's exit) end it, until the reply says there is no call.
                log.warning("sip.dial.interrupted", worker=w.index, call_id=call_id)
                reply.add_done_callback(lambda t, w=w: self._dial_settled(w, call_id, t))
                raise
            finally:
                w.dialing.discard(call_id)
        self._keep_warm()

    def _pinned(self, index: int) -> Worker:
        """Worker `index` if it is up and has room for one more call, else `no-capacity`."""
        w = self._workers.get(index)
        if w is None or not w.up or w.load >= self.calls_per_worker:
            raise NoCapacity(f"sip worker {index} is full or not running", reason="no-capacity",
                             details={"worker": index, "calls_per_worker": self.calls_per_worker})
        return w

    def _dial_settled(self, w: Worker, call_id: str, reply: asyncio.Task[Any]) -> None:
        """The reply to an interrupted dial: a refusal (or a worker gone) frees its placement;
        a call the worker placed keeps it, its events end it."""
        if reply.cancelled() or not isinstance(reply.exception(), SipError):
            return
        if call_id in w.calls:
            log.info("sip.dial.refused_after_interrupt", worker=w.index, call_id=call_id,
                     reason=getattr(reply.exception(), "reason", None))
            self._forget(w, call_id)

    # ---- calls

    async def _call_command(self, call_id: str, cmd: dict[str, Any]) -> None:
        w = self._worker_for(call_id)
        try:
            await self._command(w, {**cmd, "call_id": call_id})
        except NoSuchCall:
            # The worker's word is final: its placement goes (a dial still waiting settles its own).
            if call_id not in w.dialing:
                self._forget(w, call_id)
            raise

    async def answer(self, call_id: str, code: int = 200) -> None:
        await self._call_command(call_id, {"cmd": "answer", "code": code})

    async def reject(self, call_id: str, code: int = 486, *, failover: bool = False) -> None:
        """`failover`: not the user's refusal; the front (sip/kamailio_config.py) tries the next worker."""
        await self._call_command(call_id, {"cmd": "reject", "code": code, "failover": failover})

    async def hangup(self, call_id: str) -> None:
        await self._call_command(call_id, {"cmd": "hangup"})

    async def hold(self, call_id: str) -> None:
        await self._call_command(call_id, {"cmd": "hold"})

    async def unhold(self, call_id: str) -> None:
        await self._call_command(call_id, {"cmd": "unhold"})

    async def dtmf(self, call_id: str, digits: str) -> None:
        await self._call_command(call_id, {"cmd": "dtmf", "digits": digits})

    async def transfer(self, call_id: str, uri: str) -> None:
        await self._call_command(call_id, {"cmd": "transfer", "uri": uri})

    async def listen(self, call_id: str, on: bool = True) -> None:
        """Extension: stop/start forwarding a call's audio to on_audio (saves the copies)."""
        await self._call_command(call_id, {"cmd": "listen", "on": on})

    def _worker_at(self, index: int) -> Worker:
        w = self._workers.get(index)
        if w is None:
            raise SipUnavailable(f"sip worker {index} is not running", reason="sip-unavailable")
        return w

    def send_audio(self, call_id: str, pcm: bytes) -> None:
        """Queue 20 ms of 16 kHz PCM16LE towards a call; non-blocking. Dropped (and counted) when
        the worker's pipe is backed up; the worker itself keeps a bounded drop-oldest queue."""
        w = self._worker_for(call_id)
        if not w.up or w.proc is None or w.proc.stdin is None or w.proc.stdin.is_closing():
            raise SipUnavailable(f"sip worker {w.index} is not running", reason="sip-unavailable")
        transport = w.proc.stdin.transport
        if transport.get_write_buffer_size() > AUDIO_WRITE_LIMIT:
            w.audio_dropped += 1
            return
        w.proc.stdin.write(ipc.encode_audio(call_id, pcm))

    # ---- test support

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to worker `index` (tests: crash handling)."""
        pid = self.worker_pid(index)
        if pid is None:
            raise SipUnavailable(f"sip worker {index} is not running", reason="sip-unavailable")
        os.kill(pid, sig)
