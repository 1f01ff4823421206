"""Worker processes: the handle of one pjsua2 worker and its lifecycle as the supervisor runs it.

Spawn, restart and stop a worker; read its stdout (one reader task per worker, owned by the
supervisor and cancelled on stop); send it commands and match the replies. `WorkerProcesses` is a
part of SipSupervisor (sip/supervisor.py), which provides the state annotated on the class.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from . import ipc
from .config import SipConfig, worker_config
from .errors import InvalidState, NoCapacity, NoSuchCall, SipError, SipUnavailable, TargetError, WorkerError
from .events import SipEvent

log = structlog.get_logger("sip.supervisor")  # the logger name the supervisor's events always had

COMMAND_TIMEOUT = 10.0
START_TIMEOUT = 15.0
# A worker asked to stop hangs up its calls and waits up to 3 s for them to end (sip/worker/process.py):
# past this it is killed, so the gateway's whole stop stays within 5 s.
STOP_TIMEOUT = 3.5
AUDIO_WRITE_LIMIT = 256 * 1024  # bytes buffered towards a worker before send_audio drops frames

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


def log_tail(path: Path | None, lines: int = 5, limit: int = 4096) -> list[str]:
    """The last `lines` non-empty lines of a worker's log (pjsua's, and a failed assertion's),
    for the line that reports its death."""
    if path is None:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            data = f.read()
    except OSError:
        return []
    return [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()][-lines:]


def package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


class Worker:
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
        self.inbound_refused: dict[str, int] = {}  # INVITEs it refused for capacity, by reason
        self.restarts = 0
        # Set while a crashed worker is being restarted: resolves to True once it is up again,
        # False if the supervisor gave up (stopping). Dials with nowhere else to go wait on it.
        self.restarted: asyncio.Future[bool] | None = None
        self.dialing: set[str] = set()  # calls whose dial command has no reply yet
        # Liveness (see _watch): loop time of the last control message from the worker's main
        # loop (replies, events, stats; audio comes from another thread and does not count).
        self.alive_at = 0.0
        self.stalled = False  # killed by us for missing its liveness deadline
        # Its last words on a clean stop: pjsua2 Call objects still alive at libDestroy (must be 0)
        self.calls_alive_at_exit: int | None = None
        self.exit_cause: str | None = None  # why it last went away unasked (kept until it is back)

    @property
    def load(self) -> int:
        return len(self.calls)


class WorkerProcesses:
    """Worker lifecycle, reading and commands (a part of SipSupervisor)."""

    config: SipConfig
    on_event: Callable[[SipEvent], None]
    on_audio: Callable[[str, bytes], None]
    python: str
    calls_per_worker: int
    registration: dict[str, Any] | None
    _workers: dict[int, Worker]
    _call_worker: dict[str, int]
    _ids: itertools.count[int]
    _tasks: set[asyncio.Task[Any]]
    _stopping: bool
    _log_dir: Path | None
    # Told when a worker goes away unasked or is back (gateway/kpi: the "sip" part's outages).
    on_worker_change: Callable[[bool, str], None] | None
    _streams: dict[str, dict[int, set[str]]]
    _trunk_event: Callable[[Worker, dict[str, Any]], None]  # ConferenceOps (sip/conferences.py)
    # from StreamFanout (sip/streams.py): _link, _unlink_call_streams, _unlink_stream_worker

    async def _stop_worker(self, w: Worker) -> None:
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

    async def _spawn(self, index: int) -> Worker:
        """Start worker `index` and wait for its `ready` message."""
        w = self._workers.get(index)
        if w is None:
            w = self._workers[index] = Worker(index)
        cfg = worker_config(self.config, index, self.calls_per_worker)
        cfg["parent_pid"] = os.getpid()  # the worker dies with us (sip/lifeline.py)
        assert self._log_dir is not None
        w.log_path = self._log_dir / f"worker-{index}.log"
        loop = asyncio.get_running_loop()
        w.ready = loop.create_future()
        w.stopping = False
        with open(w.log_path, "ab") as logf:
            w.proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "sip.worker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=logf,
                cwd=package_root(), limit=1 << 20,
            )
        # The config goes through the stdin pipe (first message), not argv: it may hold the
        # registrar password, and a command line is readable by every user.
        self._write(w, ipc.encode_control({"config": cfg}))
        w.reader = self._own(self._read(w, w.proc))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                msg = await w.ready
        except (TimeoutError, SipError) as e:
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
            raise SipUnavailable(f"worker {index} did not start: {e}", reason="sip-unavailable") from None
        w.up = True
        w.stalled = False
        w.alive_at = loop.time()
        self._own(self._watch(w, w.proc))
        log.info("sip.worker.up", worker=index, pid=msg.get("pid"), address=msg.get("address"))
        return w

    async def _restart(self, w: Worker) -> None:
        delay = 0.2
        try:
            while not self._stopping:
                try:
                    await self._spawn(w.index)
                    w.restarts += 1
                    self.worker_restarts[w.index] += 1
                    w.exit_cause = None
                    log.info("sip.worker.restarted", worker=w.index, restarts=w.restarts)
                    self._changed(True, "")
                    return
                except SipError as e:
                    log.warning("sip.worker.restart_failed", worker=w.index, error=str(e), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            fut, w.restarted = w.restarted, None
            if fut is not None and not fut.done():
                fut.set_result(w.up)

    def _changed(self, up: bool, cause: str) -> None:
        if self.on_worker_change is not None:
            try:
                self.on_worker_change(up, cause)
            except Exception:
                log.exception("sip.on_worker_change.failed")

    # ---- liveness

    async def _watch(self, w: Worker, proc: asyncio.subprocess.Process) -> None:
        """Ping `w` every heartbeat_interval_s; kill it once its main loop has been silent for
        heartbeat_deadline_s (a stopped process, pjsua blocked in a lookup). The reader then
        sees it gone and it is handled like a crash: calls end `worker-crashed`, pending commands
        fail `sip-unavailable`, the worker is restarted."""
        interval, deadline = self.config.heartbeat_interval_s, self.config.heartbeat_deadline_s
        loop = asyncio.get_running_loop()
        ping = ipc.encode_control({"cmd": "ping", "id": 0})  # id 0: nobody waits for the reply
        while w.proc is proc and w.up and not w.stopping:
            slept_at = loop.time()
            await asyncio.sleep(interval)
            now = loop.time()
            if now - slept_at > interval + deadline / 2:
                # Our own loop was stuck, not (necessarily) the worker: judge from now on.
                w.alive_at = max(w.alive_at, now - interval)
            if w.proc is not proc or not w.up or w.stopping:
                return
            if now - w.alive_at > deadline:
                self._kill_stalled(w, proc, now - w.alive_at)
                return
            with contextlib.suppress(SipError, ConnectionError):
                self._write(w, ping)

    def _kill_stalled(self, w: Worker, proc: asyncio.subprocess.Process | None, silent: float) -> None:
        if proc is None or w.proc is not proc or proc.returncode is not None or w.stalled:
            return
        w.stalled = True
        log.warning("sip.worker.stalled", worker=w.index, pid=proc.pid, silent_s=round(silent, 2),
                    calls=len(w.calls), killing=True)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # SIGKILL by PID: works on a stopped process too

    # ---- reading a worker

    async def _read(self, w: Worker, proc: asyncio.subprocess.Process) -> None:
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

    def _on_control(self, w: Worker, m: dict[str, Any]) -> None:
        w.alive_at = asyncio.get_running_loop().time()
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
        elif t == "bye":
            w.calls_alive_at_exit = int(m.get("calls_alive", -1))
            if w.calls_alive_at_exit:
                log.warning("sip.worker.calls_outlived_library", worker=w.index, calls=w.calls_alive_at_exit)
        elif t == "media_trace":  # debug, only when sip.media_trace_ms > 0 (sip/worker/media_trace.py)
            log.info("sip.media_trace", worker=w.index, pid=w.proc.pid if w.proc else None, t_ns=m.get("t_ns"),
                     calls=m.get("calls"), playout=m.get("playout"), threads=m.get("threads"))
        elif t == "stats":
            w.audio_dropped = int(m.get("audio_dropped_out", 0))
            refused = m.get("inbound_refused") or {}
            if refused != w.inbound_refused:  # logged once per change, not per refused INVITE
                log.info("sip.worker.inbound_refused", worker=w.index, refused=refused)
                w.inbound_refused = dict(refused)

    def _on_registration(self, w: Worker, m: dict[str, Any]) -> None:
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

    def _on_worker_event(self, w: Worker, m: dict[str, Any]) -> None:
        kind = m.get("kind")
        if kind == "trunk":  # a conference trunk up or down (sip/conferences.py), not a call
            self._trunk_event(w, m)
            return
        call_id = str(m.get("call_id"))
        if kind == "incoming":
            w.calls.add(call_id)
            self._call_worker[call_id] = w.index
        if kind == "state" and m.get("state") == "confirmed" and self._call_worker.get(call_id) == w.index:
            for sid in (m.get("extra") or {}).get("streams") or ():
                self._link(str(sid), w.index, call_id)  # the dial's stream, attached on answer
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

    async def _worker_gone(self, w: Worker, proc: asyncio.subprocess.Process) -> None:
        if w.proc is not proc:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 2)
        # A process that never said ready is handled by whoever is spawning it (start or restart).
        crashed = w.up and not w.stopping
        restart = crashed and not self._stopping  # never during a stop
        w.up = False
        if restart and w.restarted is None:
            w.restarted = asyncio.get_running_loop().create_future()
        why = "stopped answering and was killed" if w.stalled else "exited"
        if crashed:
            w.exit_cause = f"sip worker {w.index} {why} (rc {proc.returncode})"
            self._changed(False, w.exit_cause)
        err = SipUnavailable(f"sip worker {w.index} {why}", reason="sip-unavailable",
                             details={"worker": w.index})
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
        # A conference's console ports (SipSupervisor.conf_console) are in `calls` (they take a
        # slot) and were told above; anything else still placed here goes the same way.
        for port_id in sorted(p for p, idx in self._call_worker.items() if idx == w.index):
            del self._call_worker[port_id]
            self._emit(SipEvent(call_id=port_id, kind="state", state="disconnected",
                                cause="worker-crashed" if crashed else "local-hangup", worker=w.index))
        log_path = w.log_path
        if restart:
            self._own(self._restart(w))
        if crashed:
            # What it last wrote names the failure (an aborting assertion) and what it last read.
            last_log = await asyncio.to_thread(log_tail, log_path)
            log.warning("sip.worker.died", worker=w.index, rc=proc.returncode, restarting=restart,
                        calls_lost=lost, log=str(log_path), last_log=last_log)

    # ---- commands

    def _write(self, w: Worker, data: bytes) -> None:
        if w.proc is None or w.proc.stdin is None or w.proc.stdin.is_closing():
            raise SipUnavailable(f"sip worker {w.index} is not running", reason="sip-unavailable")
        w.proc.stdin.write(data)

    async def _command(self, w: Worker, cmd: dict[str, Any]) -> dict[str, Any]:
        if not w.up:
            raise SipUnavailable(f"sip worker {w.index} is not running", reason="sip-unavailable")
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        w.pending[rid] = fut
        proc = w.proc
        # No drain(): a control message never waits behind audio buffered towards a stopped
        # worker (audio is capped by AUDIO_WRITE_LIMIT); the one deadline below covers it all.
        limit = max(COMMAND_TIMEOUT, self.config.heartbeat_deadline_s + self.config.heartbeat_interval_s)
        try:
            self._write(w, ipc.encode_control({**cmd, "id": rid}))
            async with asyncio.timeout(limit):
                reply = await fut
        except TimeoutError:
            # Unanswered this long: the worker is stalled (the heartbeat normally finds it first).
            self._kill_stalled(w, proc, limit)
            raise SipUnavailable(f"sip worker {w.index} did not answer {cmd.get('cmd')!r} within {limit:g} s",
                                 reason="sip-unavailable", details={"worker": w.index}) from None
        except (ConnectionError, BrokenPipeError):
            raise SipUnavailable(f"sip worker {w.index} is gone", reason="sip-unavailable",
                                 details={"worker": w.index}) from None
        finally:
            w.pending.pop(rid, None)
        if not reply.get("ok"):
            raise _error_from_reply(reply)
        return reply.get("result") or {}

    def _worker_for(self, call_id: str) -> Worker:
        idx = self._call_worker.get(call_id)
        w = self._workers.get(idx) if idx is not None else None
        if w is None:
            raise NoSuchCall(f"no call {call_id}", reason="no-such-call")
        return w
