"""The worker process's threads and its main loop: the one module where they meet.

- main thread: the only one calling pjsua2 (besides the media clock callbacks below). It runs
  `Worker.run`, looping on ``ep.libHandleEvents(10)`` and, between polls, draining the bounded
  command queue (`Worker.cmd_*`, commands.py and streams.py); pjsua2 callbacks (pjcalls.py) run
  here too, and call the call lifecycle (calls.py).
- stdin reader (`reader_loop`): decodes IPC messages; control commands go to the command queue,
  audio frames go straight into the per-call playout deque (`Worker.push_audio`), stream frames
  into the stream's (`Worker.push_stream`). It never calls pjsua2.
- stdout writer (writer.py): the single writer of stdout; everything outgoing goes through
  its queue.
- pjmedia clock thread (created by pjsua for the null sound device): calls the
  ``AudioMediaPort`` frame callbacks (pjcalls.py). They only touch Python deques and the
  writer queue.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

import pjsua2 as pj

from gateway.memwatch import MemWatch, watch_from_env

from .. import ipc
from ..admission import Refusal, RefusalBudget
from ..lifeline import die_with_parent
from .calls import CallLifecycle
from .commands import CallCommands
from .conference import ConferenceMixer
from .endpoint import EndpointSetup
from .io_budget import IoBudget, usable_keys
from .media_trace import MediaTrace
from .pjcalls import CallPort, RefusedCall, StreamPort, WAccount, WCall, WEndpoint, use_fast_vector_reader
from .probe import PROBE_LIMIT, build_limits, probe_max_calls
from .slot_waits import SlotWaits
from .streams import StreamBridge
from .trunks import ConferenceTrunks
from .writer import Writer

COMMAND_QUEUE = 1000

__all__ = ["Worker", "main", "reader_loop"]


class Worker(EndpointSetup, CallCommands, CallLifecycle, StreamBridge, ConferenceMixer, ConferenceTrunks, MediaTrace):
    """One pjsua2 Endpoint and its calls. Its methods run on the main thread, except those marked
    for the stdin reader thread (`push_audio`, `push_stream`)."""

    def __init__(self, cfg: dict[str, Any], writer: Writer) -> None:
        self.cfg = cfg
        self.writer = writer
        self.commands: queue.Queue[dict[str, Any] | None] = queue.Queue(COMMAND_QUEUE)
        self.calls: dict[str, WCall] = {}
        self.ports: dict[str, CallPort] = {}  # read by the stdin reader (audio); dict ops are atomic
        # stream id -> port fanned out to the calls attached to it (cmd_stream_attach); read by the
        # stdin reader too. A port lives while a call is attached to it (or until stream_close).
        self.streams: dict[str, StreamPort] = {}
        self.conferences: dict[str, dict[str, bool]] = {}  # conference.py: id -> {call id: muted}
        self.conf_recorders: dict[str, Any] = {}  # conference.py: id -> AudioMediaRecorder
        self.conf_record_paths: dict[str, str] = {}
        self.conf_voice: dict[str, list[float]] = {}
        self.conf_voice_at = 0.0
        self.conf_consoles: dict[str, CallPort] = {}  # conference.py: console members' ports
        self.conf_of: dict[str, str] = {}  # console port id -> conference id
        self.conf_trunks: dict[str, str] = {}  # trunks.py: trunk call id -> conference id
        self.trunk_tokens: dict[str, str] = {}  # trunks.py: token -> conference id
        # Ended calls and dropped ports, released on the main loop outside any callback
        # (`_release_graveyard`): ports explicitly, before their last reference goes.
        self.graveyard: list[Any] = []
        self.inbound_refused: dict[str, int] = {}  # inbound calls refused, by reason phrase
        self.refusal_budget = RefusalBudget()
        self.held_refusals: collections.deque[tuple[WCall, Refusal]] = collections.deque()
        self.slot_waits = SlotWaits()  # dials waiting for a pjsua call slot (commands.py)
        self.identities: dict[tuple[str | None, str | None], WAccount] = {}
        self.running = True
        self.stats_at = 0.0  # monotonic time of the next stats message (run)
        # DISPATCH_GATEWAY_TRACEMALLOC=<s>: a memory report on stderr (the worker's log) every <s> s
        self.memwatch: tuple[MemWatch, float] | None = watch_from_env({"worker": self})
        self.memwatch_at = 0.0
        if self.memwatch is not None:
            self.memwatch[0].start()
        self.trace_at = 0.0  # media_trace.py: of the next media_trace message (when on)
        self.ep = WEndpoint()
        self.ep.worker = self
        self.acc: WAccount | None = None
        # New calls against the I/O queue keys (io_budget.py, calls.py), INVITEs refused for them.
        self.refusal_acc: WAccount | None = None
        # the build's I/O queue (64 keys in the wheel, 4,096 in the source build), within RLIMIT_NOFILE
        self.budget = IoBudget(total=usable_keys(int(build_limits()["ioqueue_keys"])))
        self.refusing: int | None = None
        self.refused: dict[int, RefusedCall] = {}
        self.to_refuse: list[tuple[WCall | RefusedCall, Refusal]] = []

    # ---- output

    def emit(self, msg: dict[str, Any]) -> None:
        if self.conf_trunks and self.is_trunk(msg):
            trunk = self.trunk_event(msg)  # trunks.py: up/down of a trunk this worker dialled
            if trunk is None:
                return
            msg = trunk
        self.writer.control(msg)

    def emit_state(self, call: WCall, state: str, code: int, reason: str, cause: str | None) -> None:
        self.emit(
            {"type": "event", "call_id": call.call_id, "kind": "state", "state": state,
             "sip_code": code or None, "reason": reason or None, "cause": cause,
             "remote_uri": call.remote_uri, "local_uri": call.local_uri,
             "extra": {"direction": "outbound" if call.outbound else "inbound",
                       # answered: the streams attached to it (the dial's, see streams.py)
                       **({"streams": sorted(call.streams)} if state == "confirmed" and call.streams else {})}}
        )

    # ---- the main loop

    def run(self) -> None:
        self.emit({"type": "ready", "index": self.cfg.get("index", 0),
                   "address": [self.cfg["host"], int(self.cfg["port"])], "pid": os.getpid()})
        self.stats_at = time.monotonic() + 5
        while self.running:
            self.poll_once()
        self.shutdown()

    def poll_once(self) -> None:
        """One poll and the work after it. What they emit (a burst of answers: hundreds of events)
        leaves in one write when it ends (Writer.hold), not one writer wake-up per event."""
        with self.writer.hold():
            self.ep.libHandleEvents(10)
            self._after_poll()

    def _after_poll(self) -> None:
        self.settle_admission()
        if self.to_refuse:
            self.answer_refusals()
        if self.slot_waits:
            self.retry_slot_waits()  # before new commands: first come, first served
        self._drain_commands()
        self._check_deadlines()
        if self.held_refusals:
            self._answer_held_refusals()
        if self.graveyard:
            self._release_graveyard()
        if self.conferences:
            self.poll_voice(time.monotonic())  # conference.py: talking/silent
        self.trace_media(time.monotonic())  # media_trace.py: off unless sip.media_trace_ms
        if time.monotonic() > self.stats_at:
            self.stats_at = time.monotonic() + 5
            self._emit_stats()
        if self.memwatch is not None and time.monotonic() > self.memwatch_at:
            self._memwatch_report()

    def _emit_stats(self) -> None:
        self.emit({"type": "stats", "calls": len(self.calls), "audio_dropped_out": self.writer.audio_dropped,
                   "ipc": {"writes": self.writer.writes, "control": self.writer.control_sent},
                   "inbound_refused": self.inbound_refused,
                   "ports": {cid: {"in": p.frames_in, "out": p.frames_out, "dropped": p.dropped}
                             for cid, p in self.ports.items()},
                   "streams": {sid: {"calls": len(p.calls), "out": p.frames_out, "dropped": p.dropped}
                               for sid, p in self.streams.items()}})

    def _memwatch_report(self) -> None:
        assert self.memwatch is not None
        watch, every = self.memwatch
        report = {"memwatch": watch.report(), "pid": os.getpid(), "at": time.time()}
        print(json.dumps(report, default=str), file=sys.stderr, flush=True)
        self.memwatch_at = time.monotonic() + every

    def shutdown(self) -> None:
        alive = -1
        call = None
        try:
            self.drop_slot_waits("sip-unavailable", "the worker is shutting down")
            for call in list(self.calls.values()):
                if call.local_end is None:
                    call.local_end = "shutdown"
                self.stop_media(call)
            self.ep.hangupAllCalls()
            end = time.monotonic() + 3
            while self.calls and time.monotonic() < end:
                self.ep.libHandleEvents(20)
            self._emit_stats()
            for port in [*self.ports.values(), *self.streams.values()]:
                port.release()  # the clock still runs until libDestroy
            self._release_graveyard()
            self.held_refusals.clear()
            self.calls.clear()
            self.refused.clear()
            self.to_refuse.clear()
            self.ports.clear()
            self.streams.clear()
            self.conf_recorders.clear()  # recorders destroyed (their WAVs closed) before libDestroy
            self.identities.clear()
            self.acc = self.refusal_acc = None
            del call
            # No pjsua2 Call may outlive libDestroy: its destructor would act on a destroyed
            # library (a build with assertions aborts in pjsua_call_set_user_data). Cycles too.
            gc.collect()
            alive = sum(1 for o in gc.get_objects() if isinstance(o, pj.Call))
            self.ep.libDestroy()
        finally:
            self.emit({"type": "bye", "calls_alive": alive})
            self.writer.close()
            os._exit(0)

    # ---- commands

    def _drain_commands(self) -> None:
        for _ in range(100):
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return
            if cmd is None:
                self.running = False
                return
            self._handle(cmd)


    # ---- audio from the gateway (stdin reader thread)

    def push_audio(self, call_id: str, pcm: bytes) -> None:  # stdin reader thread
        port = self.ports.get(call_id)
        if port is not None:
            port.push(pcm)  # refused once the port is closed (hangup or DISCONNECTED)


    def push_stream(self, stream_id: str, pcm: bytes) -> None:  # stdin reader thread
        port = self.streams.get(stream_id)
        if port is not None:
            port.push(pcm)


def reader_loop(worker: Worker, stream: Any) -> None:
    """stdin reader thread: never calls pjsua2."""
    try:
        while True:
            msg = ipc.read_message(stream)
            if msg is None:
                break
            if isinstance(msg, ipc.Audio):
                worker.push_audio(msg.call_id, msg.pcm)
            elif isinstance(msg, ipc.Stream):
                worker.push_stream(msg.stream_id, msg.pcm)
            else:
                worker.commands.put(msg.data)
    except Exception as e:  # noqa: BLE001
        print(f"worker stdin reader: {e!r}", file=sys.stderr, flush=True)
    worker.commands.put(None)  # EOF or broken stream: shut down


def read_config(stream: Any) -> dict[str, Any]:
    """The worker config: the first message on stdin, a control message {"config": {...}}."""
    msg = ipc.read_message(stream)
    if not isinstance(msg, ipc.Control) or not isinstance(msg.data.get("config"), dict):
        print("worker: no config message on stdin", file=sys.stderr, flush=True)
        sys.exit(2)
    return msg.data["config"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sip.worker",
                                 description="serve: the config is the first IPC message on stdin")
    ap.add_argument("--probe", action="store_true", help="print the per-process call limit and exit")
    ap.add_argument("--probe-limit", type=int, default=PROBE_LIMIT, help="calls the probe tries at most")
    args = ap.parse_args(argv)
    # The config (it may hold the registrar password) comes through the stdin pipe, never argv:
    # a command line is readable by every user (ps, /proc/<pid>/cmdline).
    cfg = {} if args.probe else read_config(sys.stdin.buffer)
    # The gateway stops us over stdin (BYE every call first). A signal to its whole process group
    # (systemd's default, `timeout`, Ctrl-C in a terminal) must not end us before that; and when
    # the gateway dies, even by kill -9, we die with it (no one may act on its calls any more).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL, cfg.get("parent_pid"))
    # pjlib logs to fd 1 before logConfig applies: move the real stdout to a private fd and point
    # fd 1 at stderr, so nothing but our own writer reaches the parent through stdout.
    ipc_fd = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(ipc_fd, "wb", buffering=0)
    sys.stdout = sys.stderr
    if args.probe:
        def report(n: int) -> None:
            out.write((json.dumps({"ok_calls": n}) + "\n").encode())

        n = probe_max_calls(report, max(1, args.probe_limit))
        out.write((json.dumps({"max_calls": n}) + "\n").encode())
        os._exit(0)  # no cleanup: the probe's calls are still retransmitting
    use_fast_vector_reader()
    inp = sys.stdin.buffer
    writer = Writer(out)
    worker = Worker(cfg, writer)
    try:
        worker.start()
    except pj.Error as e:
        writer.control({"type": "fatal", "reason": "start-failed", "message": f"{e.title}: {e.reason}"})
        writer.close()
        os._exit(2)
    threading.Thread(target=reader_loop, args=(worker, inp), name="ipc-reader", daemon=True).start()
    worker.run()

