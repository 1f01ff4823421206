"""asyncio side of SIP: spawn pjsua2 worker processes, spread calls, restart crashed workers.

Nothing here touches pjsua2: workers are separate processes (sip/worker.py) spoken to over their
stdin/stdout with sip/ipc.py framing. Each worker has one reader task, owned by the supervisor and
cancelled on stop. Worker stderr (pjsua logs) goes to a log file per worker, so no pipe fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from . import ipc
from .config import SipConfig, worker_config
from .errors import InvalidState, NoCapacity, NoSuchCall, SipError, SipUnavailable, TargetError, WorkerError

log = structlog.get_logger(__name__)

COMMAND_TIMEOUT = 10.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
PROBE_TIMEOUT = 15.0
MEDIA_DIRS = ("sendonly", "recvonly", "sendrecv")  # dial(media_dir=...): our side's direction
UNAVAILABLE_GRACE = 1.0  # after a dial's sip-unavailable: time for the reader to see a dead worker
AUDIO_WRITE_LIMIT = 256 * 1024  # bytes buffered towards a worker before send_audio drops frames


@dataclass(frozen=True)
class SipEvent:
    call_id: str
    kind: str  # "incoming" | "state" | "dtmf" | "transfer" | "media" (extra["status"]: active,
    #            local-hold, remote-hold, none, error: sent when a call's audio (re)negotiates)
    #            | "registration" (call_id "", sip_code/reason of the REGISTER outcome, extra:
    #            registrar, expires, active; sent when the outcome changes)
    state: str | None  # "calling" | "early" | "connecting" | "confirmed" | "disconnected"
    sip_code: int | None = None
    reason: str | None = None
    cause: str | None = None
    remote_uri: str | None = None
    local_uri: str | None = None
    worker: int | None = None
    extra: dict = field(default_factory=dict)


_REASONS: dict[str, type[SipError]] = {
    "no-capacity": NoCapacity,
    "no-such-call": NoSuchCall,
    "invalid-state": InvalidState,
    "sip-unavailable": SipUnavailable,
    "invalid-uri": TargetError,
    "target-unreachable": TargetError,
}


def _error_from_reply(reply: dict[str, Any]) -> SipError:
    reason = str(reply.get("reason") or "worker-error")
    cls = _REASONS.get(reason, WorkerError)
    return cls(str(reply.get("message") or reason), reason=reason,
               details={k: v for k, v in reply.items() if k in ("status",)})


async def probe_calls_per_worker(python: str = sys.executable) -> int:
    """Run `python -m sip.worker --probe` and return the last call count it reported.

    The probe process may end cleanly or abort on a pjsua assertion past the compiled limit;
    either way the count printed before that is the number of calls one process can hold.
    """
    proc = await asyncio.create_subprocess_exec(
        python, "-m", "sip.worker", "--probe",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, cwd=_package_root(),
    )
    best = 0
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            assert proc.stdout is not None
            async for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "ok_calls" in msg:
                    best = max(best, int(msg["ok_calls"]))
                if "max_calls" in msg:
                    best = int(msg["max_calls"])
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if best < 1:
        raise SipUnavailable("pjsua2 probe could not place a single call", reason="sip-unavailable")
    return best


def _check_stream_id(stream_id: str) -> None:
    if not isinstance(stream_id, str) or not 0 < len(stream_id) < 256 or not stream_id.isascii():
        raise ValueError(f"stream_id must be 1..255 ASCII characters, got {stream_id!r}")


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


class _Worker:
    """One worker process as the supervisor sees it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[dict[str, Any]] | None = None
        self.calls: set[str] = set()
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.log_path: Path | None = None
        self.up = False
        self.stopping = False
        self.audio_dropped = 0
        self.restarts = 0
        # Set while a crashed worker is being restarted: resolves to True once it is up again,
        # False if the supervisor gave up (stopping). Dials with nowhere else to go wait on it.
        self.restarted: asyncio.Future[bool] | None = None
        self.dialing: set[str] = set()  # calls whose dial command has no reply yet

    @property
    def load(self) -> int:
        return len(self.calls)


class SipSupervisor:
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
        self._workers: dict[int, _Worker] = {}
        self._call_worker: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._stopping = False
        self._log_dir: Path | None = None
        # Workers being started (warm-up or on demand), and how many dials wait for each: dials
        # join a starting worker while it has room for them, so a burst starts workers in parallel
        # and never more than needed.
        self._starting: dict[int, asyncio.Task[_Worker]] = {}
        self._joined: dict[int, int] = {}
        # Streams (attach_stream): stream id -> worker index -> ids of the calls attached there.
        # send_stream writes a frame once to each worker in it; a worker leaves it with its last
        # call (detach, call ended, worker gone).
        self._streams: dict[str, dict[int, set[str]]] = {}
        self._call_streams: dict[str, set[str]] = {}  # call id -> streams it is attached to
        self.stream_frames_dropped = 0

    # ---- properties

    @property
    def ready(self) -> bool:
        return self._started and not self._stopping and any(w.up for w in self._workers.values())

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

    def stats(self) -> dict[str, Any]:
        return {
            "calls_per_worker": self.calls_per_worker,
            "workers": {i: {"up": w.up, "calls": len(w.calls), "restarts": w.restarts,
                            "audio_dropped": w.audio_dropped} for i, w in self._workers.items()},
        }

    # ---- lifecycle

    async def start(self) -> None:
        if self._started:
            return
        self._log_dir = Path(self.config.log_dir) if self.config.log_dir else Path(
            tempfile.mkdtemp(prefix="sip-workers-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        if self.calls_per_worker <= 0:
            probed = await probe_calls_per_worker(self.python)
            # never more calls than the worker's RTP port range carries
            self.calls_per_worker = min(probed, self.config.max_calls_for_rtp)
            log.info("sip.calls_per_worker.probed", calls_per_worker=self.calls_per_worker, probed=probed)
        self._started = True
        n = min(max(1, self.config.warm_workers), self.config.max_workers)
        tasks = [self._start_worker(i) for i in range(n)]
        await asyncio.gather(*tasks)

    async def stop(self) -> None:
        """BYE every call, stop every worker, cancel every task this supervisor owns."""
        if not self._started or self._stopping:
            return
        self._stopping = True
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

    async def _stop_worker(self, w: _Worker) -> None:
        proc = w.proc
        if proc is None:
            return
        if proc.returncode is None and w.up:
            with contextlib.suppress(Exception):
                self._write(w, ipc.encode_control({"cmd": "shutdown", "id": 0}))
                assert proc.stdin is not None
                proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if w.reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(w.reader, 2)
        w.up = False

    def _own(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def _spawn(self, index: int) -> _Worker:
        """Start worker `index` and wait for its `ready` message."""
        w = self._workers.get(index)
        if w is None:
            w = self._workers[index] = _Worker(index)
        cfg = worker_config(self.config, index, self.calls_per_worker)
        assert self._log_dir is not None
        w.log_path = self._log_dir / f"worker-{index}.log"
        loop = asyncio.get_running_loop()
        w.ready = loop.create_future()
        w.stopping = False
        with open(w.log_path, "ab") as logf:
            w.proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "sip.worker", "--config-json", json.dumps(cfg),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=logf,
                cwd=_package_root(), limit=1 << 20,
            )
        w.reader = self._own(self._read(w, w.proc))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                msg = await w.ready
        except (TimeoutError, SipError) as e:
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
            raise SipUnavailable(f"worker {index} did not start: {e}", reason="sip-unavailable") from None
        w.up = True
        log.info("sip.worker.up", worker=index, pid=msg.get("pid"), address=msg.get("address"))
        return w

    async def _restart(self, w: _Worker) -> None:
        delay = 0.2
        try:
            while not self._stopping:
                try:
                    await self._spawn(w.index)
                    w.restarts += 1
                    log.info("sip.worker.restarted", worker=w.index, restarts=w.restarts)
                    return
                except SipError as e:
                    log.warning("sip.worker.restart_failed", worker=w.index, error=str(e), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            fut, w.restarted = w.restarted, None
            if fut is not None and not fut.done():
                fut.set_result(w.up)

    # ---- reading a worker

    async def _read(self, w: _Worker, proc: asyncio.subprocess.Process) -> None:
        dec = ipc.Decoder()
        assert proc.stdout is not None
        try:
            while True:
                data = await proc.stdout.read(65536)
                if not data:
                    break
                for msg in dec.feed(data):
                    if isinstance(msg, ipc.Audio):
                        try:
                            self.on_audio(msg.call_id, msg.pcm)
                        except Exception:
                            log.exception("sip.on_audio.failed", worker=w.index, call_id=msg.call_id)
                    else:
                        self._on_control(w, msg.data)
        except ipc.IpcProtocolError:
            log.exception("sip.worker.bad_frame", worker=w.index, killing=True)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        finally:
            await self._worker_gone(w, proc)

    def _on_control(self, w: _Worker, m: dict[str, Any]) -> None:
        t = m.get("type")
        if t == "reply":
            fut = w.pending.pop(m.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(m)
        elif t == "event":
            self._on_worker_event(w, m)
        elif t == "ready":
            if w.ready is not None and not w.ready.done():
                w.ready.set_result(m)
        elif t == "fatal":
            if w.ready is not None and not w.ready.done():
                w.ready.set_exception(SipUnavailable(str(m.get("message")), reason="sip-unavailable"))
        elif t == "registration":
            self._on_registration(w, m)
        elif t == "stats":
            w.audio_dropped = int(m.get("audio_dropped_out", 0))

    def _on_registration(self, w: _Worker, m: dict[str, Any]) -> None:
        """A REGISTER outcome: kept in `registration`; a SipEvent when it differs from the last."""
        new = {k: m.get(k) for k in ("code", "reason", "active", "expires")}
        old, self.registration = self.registration, new
        log.info("sip.registration", worker=w.index, **new)
        if old is not None and all(old[k] == new[k] for k in ("code", "reason", "active")):
            return  # a refresh with the same outcome
        reg = self.config.registration
        self._emit(SipEvent(
            call_id="", kind="registration", state=None, sip_code=new["code"], reason=new["reason"],
            worker=w.index, extra={"registrar": reg.registrar if reg else None,
                                   "expires": new["expires"], "active": new["active"]},
        ))

    def _on_worker_event(self, w: _Worker, m: dict[str, Any]) -> None:
        kind = m.get("kind")
        call_id = str(m.get("call_id"))
        if kind == "incoming":
            w.calls.add(call_id)
            self._call_worker[call_id] = w.index
        if kind == "state" and m.get("state") == "disconnected":
            w.calls.discard(call_id)
            self._call_worker.pop(call_id, None)
            self._unlink_call_streams(call_id)  # the worker detached it itself
        self._emit(SipEvent(
            call_id=call_id, kind=str(kind), state=m.get("state"), sip_code=m.get("sip_code"),
            reason=m.get("reason"), cause=m.get("cause"), remote_uri=m.get("remote_uri"),
            local_uri=m.get("local_uri"), worker=w.index, extra=m.get("extra") or {},
        ))

    def _emit(self, ev: SipEvent) -> None:
        try:
            self.on_event(ev)
        except Exception:
            log.exception("sip.on_event.failed", call_id=ev.call_id, kind=ev.kind)

    async def _worker_gone(self, w: _Worker, proc: asyncio.subprocess.Process) -> None:
        if w.proc is not proc:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 2)
        # A process that never said ready is handled by whoever is spawning it (start or restart).
        crashed = w.up and not (w.stopping or self._stopping)
        w.up = False
        if crashed and w.restarted is None:
            w.restarted = asyncio.get_running_loop().create_future()
        err = SipUnavailable(f"sip worker {w.index} exited", reason="sip-unavailable")
        for fut in w.pending.values():
            if not fut.done():
                fut.set_exception(err)
        w.pending.clear()
        if w.ready is not None and not w.ready.done():
            w.ready.set_exception(err)
        lost = len(w.calls)
        for sid in list(self._streams):
            self._unlink_stream_worker(sid, w.index)
        for call_id in sorted(w.calls):
            self._call_worker.pop(call_id, None)
            if call_id in w.dialing:
                continue  # its dial() gets the error (and may retry on another worker)
            if crashed:
                log.warning("sip.call.worker_crashed", worker=w.index, call_id=call_id)
            self._emit(SipEvent(call_id=call_id, kind="state", state="disconnected",
                                cause="worker-crashed" if crashed else "local-hangup",
                                worker=w.index))
        w.calls.clear()
        if crashed:
            log.warning("sip.worker.died", worker=w.index, rc=proc.returncode, restarting=True,
                        calls_lost=lost)
            self._own(self._restart(w))

    # ---- commands

    def _write(self, w: _Worker, data: bytes) -> None:
        if w.proc is None or w.proc.stdin is None or w.proc.stdin.is_closing():
            raise SipUnavailable(f"sip worker {w.index} is not running", reason="sip-unavailable")
        w.proc.stdin.write(data)

    async def _command(self, w: _Worker, cmd: dict[str, Any]) -> dict[str, Any]:
        if not w.up:
            raise SipUnavailable(f"sip worker {w.index} is not running", reason="sip-unavailable")
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        w.pending[rid] = fut
        try:
            self._write(w, ipc.encode_control({**cmd, "id": rid}))
            assert w.proc is not None and w.proc.stdin is not None
            await w.proc.stdin.drain()
            async with asyncio.timeout(COMMAND_TIMEOUT):
                reply = await fut
        except (ConnectionError, BrokenPipeError):
            raise SipUnavailable(f"sip worker {w.index} is gone", reason="sip-unavailable") from None
        finally:
            w.pending.pop(rid, None)
        if not reply.get("ok"):
            raise _error_from_reply(reply)
        return reply.get("result") or {}

    def _forget(self, w: _Worker, call_id: str) -> None:
        w.calls.discard(call_id)
        if self._call_worker.get(call_id) == w.index:
            del self._call_worker[call_id]

    def _room(self, exclude: set[int] | frozenset[int]) -> _Worker | None:
        """Fill-first: the most loaded worker that still has room (ties: lowest index).

        Packing calls keeps idle workers idle (ready for bursts, `warm_workers` of them), starts
        workers only when the busy ones are full, and an empty worker that is broken is not the
        first choice of every dial (least-loaded placement picked it every time)."""
        cap = self.calls_per_worker
        up = [w for w in self._workers.values() if w.up and w.load < cap and w.index not in exclude]
        return max(up, key=lambda w: (w.load, -w.index)) if up else None

    async def _pick_worker(self, exclude: set[int] | frozenset[int] = frozenset()) -> _Worker:
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

    async def _wait_restart(self, w: _Worker) -> None:
        """Wait (at most START_TIMEOUT) for crashed worker `w` to be up again."""
        assert w.restarted is not None
        log.info("sip.dial.waiting_for_restart", worker=w.index)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.shield(w.restarted)
        except TimeoutError:
            raise SipUnavailable(f"sip worker {w.index} is restarting and did not come back in time",
                                 reason="sip-unavailable", details={"worker": w.index}) from None

    def _start_worker(self, index: int) -> asyncio.Task[_Worker]:
        """Claim slot `index` and start its worker in an owned task (joined by waiting dials)."""
        self._workers[index] = _Worker(index)
        task = self._own(self._spawn(index))
        self._starting[index] = task

        def done(t: asyncio.Task[_Worker]) -> None:
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
    ) -> None:
        """Place a call. `timeout` (extension): hang up with cause `no-answer` if not answered
        within that many seconds. `media_dir` (extension): "sendonly" (paging: the offer carries
        a=sendonly, nothing comes back), "recvonly" or "sendrecv"; None is pjsua's default
        (sendrecv)."""
        if media_dir is not None and media_dir not in MEDIA_DIRS:
            raise ValueError(f"media_dir must be one of {', '.join(MEDIA_DIRS)}, got {media_dir!r}")
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
        tried: set[int] = set()
        crashes = 0
        unavailable = 0  # a worker that is up but failed the dial with sip-unavailable
        while True:
            w = await self._pick_worker(exclude=tried)
            w.calls.add(call_id)  # counts in the worker's load from now on
            w.dialing.add(call_id)
            self._call_worker[call_id] = w.index
            reader = w.reader
            try:
                await self._command(w, cmd)
                break
            except NoCapacity:
                # Inbound calls share the worker's slots: that worker is full, try another one.
                tried.add(w.index)
                self._forget(w, call_id)
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
            except BaseException:
                self._forget(w, call_id)
                raise
            finally:
                w.dialing.discard(call_id)
        self._keep_warm()

    def _worker_for(self, call_id: str) -> _Worker:
        idx = self._call_worker.get(call_id)
        w = self._workers.get(idx) if idx is not None else None
        if w is None:
            raise NoSuchCall(f"no call {call_id}", reason="no-such-call")
        return w

    async def _call_command(self, call_id: str, cmd: dict[str, Any]) -> None:
        w = self._worker_for(call_id)
        await self._command(w, {**cmd, "call_id": call_id})

    async def answer(self, call_id: str, code: int = 200) -> None:
        await self._call_command(call_id, {"cmd": "answer", "code": code})

    async def reject(self, call_id: str, code: int = 486) -> None:
        await self._call_command(call_id, {"cmd": "reject", "code": code})

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

    # ---- streams: one audio stream fanned out to many calls inside each worker

    async def attach_stream(self, stream_id: str, call_id: str) -> None:
        """Feed stream `stream_id` (see send_stream) to call `call_id`. In the call's worker, the
        stream's audio port is created on first use and bridged to the call's audio (now, or when
        its media comes up); one port feeds every call of that worker attached to it. Detached
        automatically when the call ends."""
        _check_stream_id(stream_id)
        w = self._worker_for(call_id)
        reader = w.reader
        await self._command(w, {"cmd": "stream_attach", "stream_id": stream_id, "call_id": call_id})
        if self._call_worker.get(call_id) != w.index or w.reader is not reader or not w.up:
            return  # the call ended (or its worker died) while the reply was on its way
        self._streams.setdefault(stream_id, {}).setdefault(w.index, set()).add(call_id)
        self._call_streams.setdefault(call_id, set()).add(stream_id)

    async def detach_stream(self, stream_id: str, call_id: str) -> None:
        """Stop feeding stream `stream_id` to call `call_id` (no-op if it is not attached)."""
        idx = self._call_worker.get(call_id)
        self._unlink(stream_id, call_id)
        w = self._workers.get(idx) if idx is not None else None
        if w is None or not w.up:
            return  # no call (ended: the worker detached it) or no worker
        await self._command(w, {"cmd": "stream_detach", "stream_id": stream_id, "call_id": call_id})

    async def close_stream(self, stream_id: str) -> None:
        """Detach stream `stream_id` from every call and remove its port in every worker."""
        self._streams.pop(stream_id, None)
        for cids in self._call_streams.values():
            cids.discard(stream_id)
        workers = [w for w in self._workers.values() if w.up]
        results = await asyncio.gather(
            *(self._command(w, {"cmd": "stream_close", "stream_id": stream_id}) for w in workers),
            return_exceptions=True)
        for w, r in zip(workers, results):
            # A worker that is gone took its ports with it; after any other failure the worker
            # still removes the port when the last call attached to it ends.
            if isinstance(r, BaseException) and not isinstance(r, SipUnavailable):
                log.warning("sip.stream.close_failed", worker=w.index, stream_id=stream_id, error=repr(r))

    def send_stream(self, stream_id: str, pcm: bytes) -> None:
        """Queue 20 ms of 16 kHz PCM16LE towards every call attached to `stream_id`; non-blocking.
        One message per worker holding such calls, whatever their number. A worker whose pipe is
        backed up (or that is down) misses the frame (counted in stream_frames_dropped)."""
        per_worker = self._streams.get(stream_id)
        if not per_worker:
            return
        msg = None
        for idx in per_worker:
            w = self._workers.get(idx)
            if w is None or not w.up or w.proc is None or w.proc.stdin is None or w.proc.stdin.is_closing():
                self.stream_frames_dropped += 1
                continue
            if w.proc.stdin.transport.get_write_buffer_size() > AUDIO_WRITE_LIMIT:
                w.audio_dropped += 1
                self.stream_frames_dropped += 1
                continue
            if msg is None:
                msg = ipc.encode_stream(stream_id, pcm)
            w.proc.stdin.write(msg)

    def stream_workers(self, stream_id: str) -> dict[int, int]:
        """Worker index -> number of calls attached to `stream_id` there (tests, stats)."""
        return {i: len(c) for i, c in self._streams.get(stream_id, {}).items()}

    def _unlink(self, stream_id: str, call_id: str) -> None:
        sids = self._call_streams.get(call_id)
        if sids is not None:
            sids.discard(stream_id)
            if not sids:
                del self._call_streams[call_id]
        per_worker = self._streams.get(stream_id)
        if per_worker is None:
            return
        for idx in [i for i, cids in per_worker.items() if call_id in cids]:
            per_worker[idx].discard(call_id)
            if not per_worker[idx]:
                del per_worker[idx]
        if not per_worker:
            del self._streams[stream_id]

    def _unlink_call_streams(self, call_id: str) -> None:
        for sid in list(self._call_streams.get(call_id, ())):
            self._unlink(sid, call_id)
        self._call_streams.pop(call_id, None)

    def _unlink_stream_worker(self, stream_id: str, index: int) -> None:
        per_worker = self._streams.get(stream_id)
        if per_worker is None or index not in per_worker:
            return
        for call_id in per_worker.pop(index):
            sids = self._call_streams.get(call_id)
            if sids is not None:
                sids.discard(stream_id)
                if not sids:
                    del self._call_streams[call_id]
        if not per_worker:
            del self._streams[stream_id]

    # ---- test support

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to worker `index` (tests: crash handling)."""
        pid = self.worker_pid(index)
        if pid is None:
            raise SipUnavailable(f"sip worker {index} is not running", reason="sip-unavailable")
        os.kill(pid, sig)
