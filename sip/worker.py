"""SIP worker process: one pjsua2 Endpoint, driven over stdin/stdout (framed by sip/ipc.py).

The worker process is the only place pjsua2 runs; this module owns its threads. Its pieces:
sip/pjcalls.py (Call/Account subclasses, per-call audio port), sip/writer.py (stdout writer),
sip/probe.py (capacity probe), sip/causes.py (pure cause mapping). Threads in this process:

- main thread: the only one calling pjsua2 (besides the media clock callbacks below). It runs
  `Worker.run`, looping on ``ep.libHandleEvents(10)`` and, between polls, draining the bounded
  command queue (`Worker.cmd_*`); pjsua2 callbacks (sip/pjcalls.py) run here too.
- stdin reader (`reader_loop`): decodes IPC messages; control commands go to the command queue,
  audio frames go straight into the per-call playout deque (`Worker.push_audio`), stream frames
  into the stream's (`Worker.push_stream`). It never calls pjsua2.
- stdout writer (sip/writer.py): the single writer of stdout; everything outgoing goes through
  its queue.
- pjmedia clock thread (created by pjsua for the null sound device): calls the
  ``AudioMediaPort`` frame callbacks (sip/pjcalls.py). They only touch Python deques and the
  writer queue.

Usage::

    python -m sip.worker --config-json '{...}'    # serve (see sip.config.worker_config)
    python -m sip.worker --probe                  # print {"ok_calls": n} per call, then exit

Why the probe: the pjsua2-python wheel is compiled with a fixed PJSUA_MAX_CALLS; libInit accepts
any larger ``maxCalls``, and the call past the compiled limit then either fails with PJ_ETOOMANY or
(measured with 2.15.1: maxCalls > compiled limit) trips a pjsua assertion that aborts the process.
So the probe (sip/probe.py) runs in its own throw-away process with maxCalls=64, makes outgoing
calls towards a local UDP socket that never answers, and prints ``{"ok_calls": n}`` after each
call that succeeded. The parent takes the last n it read, whether the probe ended cleanly or
aborted. Workers are then started with maxCalls = that n, and refuse a dial themselves at that
count (``no-capacity``), so a worker never reaches the aborting path.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
import uuid
from typing import Any

import pjsua2 as pj

from . import ipc
from .causes import normalize_cause
from .pjcalls import (
    CLOCK_RATE,
    FRAME_MS,
    INVALID_URI_STATUS,
    PJ_ETOOMANY,
    CallPort,
    PlayoutPort,
    StreamPort,
    WAccount,
    WCall,
    use_fast_vector_reader,
)
from .lifeline import die_with_parent
from .probe import probe_max_calls
from .writer import Writer

COMMAND_QUEUE = 1000
SLOT_WAIT_S = 2.0  # a dial waits this long for pjsua to free the slot of a call we hung up
# dial's media_dir -> pjmedia_dir of our side of the audio stream (CallSetting.mediaDir)
MEDIA_DIRS = {
    "sendonly": pj.PJMEDIA_DIR_ENCODING,
    "recvonly": pj.PJMEDIA_DIR_DECODING,
    "sendrecv": pj.PJMEDIA_DIR_ENCODING_DECODING,
}

__all__ = ["CommandError", "Worker", "main", "normalize_cause", "probe_max_calls", "reader_loop"]


class CommandError(Exception):
    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason


class Worker:
    def __init__(self, cfg: dict[str, Any], writer: Writer) -> None:
        self.cfg = cfg
        self.writer = writer
        self.commands: queue.Queue[dict[str, Any] | None] = queue.Queue(COMMAND_QUEUE)
        self.calls: dict[str, WCall] = {}
        self.ports: dict[str, CallPort] = {}  # read by the stdin reader (audio); dict ops are atomic
        # stream id -> port fanned out to the calls attached to it (cmd_stream_attach); read by the
        # stdin reader too. A port lives while a call is attached to it (or until stream_close).
        self.streams: dict[str, StreamPort] = {}
        # Ended calls and dropped ports, released on the main loop outside any callback
        # (`_release_graveyard`): ports explicitly, before their last reference goes.
        self.graveyard: list[Any] = []
        self.identities: dict[tuple[str | None, str | None], WAccount] = {}
        self.running = True
        self.ep = pj.Endpoint()
        self.acc: WAccount | None = None

    # ---- output

    def emit(self, msg: dict[str, Any]) -> None:
        self.writer.control(msg)

    def emit_state(self, call: WCall, state: str, code: int, reason: str, cause: str | None) -> None:
        self.emit(
            {"type": "event", "call_id": call.call_id, "kind": "state", "state": state,
             "sip_code": code or None, "reason": reason or None, "cause": cause,
             "remote_uri": call.remote_uri, "local_uri": call.local_uri,
             "extra": {"direction": "outbound" if call.outbound else "inbound"}}
        )

    # ---- lifecycle

    def start(self) -> None:
        cfg = self.cfg
        ep = self.ep
        ep.libCreate()
        ec = pj.EpConfig()
        ec.uaConfig.threadCnt = 0
        ec.uaConfig.mainThreadOnly = True
        ec.uaConfig.maxCalls = int(cfg.get("max_calls") or 4)
        ec.uaConfig.userAgent = "dispatch-gateway"
        ec.logConfig.level = int(cfg.get("log_level", 2))
        ec.logConfig.consoleLevel = int(cfg.get("log_level", 2))
        ec.medConfig.clockRate = CLOCK_RATE
        ec.medConfig.sndClockRate = CLOCK_RATE
        ec.medConfig.channelCount = 1
        ec.medConfig.audioFramePtime = FRAME_MS
        ec.medConfig.noVad = True
        ec.medConfig.ecTailLen = 0
        ep.libInit(ec)
        ep.audDevManager().setNullDev()
        tc = pj.TransportConfig()
        tc.port = int(cfg["port"])
        tc.boundAddress = cfg["host"]
        tc.publicAddress = cfg["host"]  # Via/Contact: this worker's own address
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        ep.libStart()
        self._set_codecs(cfg.get("codecs") or ["PCMU", "PCMA", "G722"])
        self.acc = self._make_account(None, None, registration=cfg.get("registration"))

    def _set_codecs(self, wanted: list[str]) -> None:
        wanted_u = [w.upper() for w in wanted]
        for ci in self.ep.codecEnum2():
            name = ci.codecId.split("/")[0].upper()
            prio = 0
            if name in wanted_u:
                prio = 250 - wanted_u.index(name)
            self.ep.codecSetPriority(ci.codecId, prio)

    def _media_transport(self) -> Any:
        t = pj.TransportConfig()
        t.port = int(self.cfg.get("rtp_port", 0))
        t.portRange = int(self.cfg.get("rtp_port_range", 0))
        t.boundAddress = self.cfg["host"]
        t.publicAddress = self.cfg["host"]
        return t

    def _make_account(
        self, from_uri: str | None, display_name: str | None, registration: dict[str, Any] | None = None
    ) -> WAccount:
        cfg = self.cfg
        host = cfg.get("public_host") or cfg["host"]
        port = cfg.get("public_port") or cfg["port"]
        display = display_name if display_name is not None else cfg.get("display_name") or ""
        uri = from_uri or f"sip:{cfg.get('user', 'gateway')}@{host}:{port}"
        if registration:
            reg_host = registration["registrar"].split(":", 1)[1] if ":" in registration["registrar"] else registration["registrar"]
            uri = from_uri or f"sip:{registration['username']}@{reg_host}"
        ac = pj.AccountConfig()
        ac.idUri = f'"{display}" <{uri}>' if display else uri
        ac.mediaConfig.transportConfig = self._media_transport()
        ac.natConfig.sdpNatRewriteUse = 0
        ac.natConfig.viaRewriteUse = 0
        ac.natConfig.contactRewriteUse = 0
        ac.natConfig.sipOutboundUse = 0
        ac.sipConfig.contactForced = f"<sip:{cfg.get('user', 'gateway')}@{cfg['host']}:{cfg['port']}>"
        if registration:
            ac.regConfig.registrarUri = registration["registrar"]
            ac.regConfig.timeoutSec = int(registration.get("expires", 300))
            ac.regConfig.registerOnAdd = True
            ac.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", registration.get("realm", "*"), registration["username"], 0,
                                registration["password"])
            )
        acc = WAccount(self)
        acc.create(ac, from_uri is None and display_name is None)
        return acc

    def _account_for(self, from_uri: str | None, display_name: str | None) -> WAccount:
        assert self.acc is not None
        if from_uri is None and display_name is None:
            return self.acc
        key = (from_uri, display_name)
        acc = self.identities.get(key)
        if acc is None:
            if len(self.identities) >= 5:  # PJSUA_MAX_ACC is 8; keep room for the main account
                raise CommandError("invalid-params", "too many distinct caller identities in this worker")
            acc = self._make_account(from_uri, display_name)
            self.identities[key] = acc
        return acc

    def run(self) -> None:
        self.emit({"type": "ready", "index": self.cfg.get("index", 0),
                   "address": [self.cfg["host"], int(self.cfg["port"])], "pid": os.getpid()})
        stats_at = time.monotonic() + 5
        while self.running:
            self.ep.libHandleEvents(10)
            self._drain_commands()
            self._check_deadlines()
            if self.graveyard:
                self._release_graveyard()
            if time.monotonic() > stats_at:
                stats_at = time.monotonic() + 5
                self._emit_stats()
        self.shutdown()

    def _emit_stats(self) -> None:
        self.emit({"type": "stats", "calls": len(self.calls), "audio_dropped_out": self.writer.audio_dropped,
                   "ports": {cid: {"in": p.frames_in, "out": p.frames_out, "dropped": p.dropped}
                             for cid, p in self.ports.items()},
                   "streams": {sid: {"calls": len(p.calls), "out": p.frames_out, "dropped": p.dropped}
                               for sid, p in self.streams.items()}})

    def shutdown(self) -> None:
        try:
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
            self.calls.clear()
            self.ports.clear()
            self.streams.clear()
            self.identities.clear()
            self.acc = None
            self.ep.libDestroy()
        finally:
            self.emit({"type": "bye"})
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

    def _handle(self, cmd: dict[str, Any]) -> None:
        rid = cmd.get("id")
        try:
            op = cmd.get("cmd")
            fn = getattr(self, f"cmd_{op}", None)
            if fn is None:
                raise CommandError("invalid-params", f"unknown command {op!r}")
            result = fn(cmd) or {}
            self.emit({"type": "reply", "id": rid, "ok": True, "result": result})
        except CommandError as e:
            self.emit({"type": "reply", "id": rid, "ok": False, "reason": e.reason, "message": e.message})
        except pj.Error as e:
            reason = "no-capacity" if e.status == PJ_ETOOMANY else "sip-error"
            self.emit({"type": "reply", "id": rid, "ok": False, "reason": reason,
                       "message": f"{e.title}: {e.reason}", "status": e.status})
        except Exception as e:  # our own bug: keep the worker alive, report generically
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

    def cmd_dial(self, cmd: dict[str, Any]) -> dict[str, Any]:
        call_id = cmd["call_id"]
        if call_id in self.calls:
            raise CommandError("invalid-state", "call id already in use")
        if len(self.calls) >= int(self.cfg.get("max_calls") or 4):
            # Never let pjsua reach its own limit: past it, 2.15.1 may abort the process.
            raise CommandError("no-capacity", "worker is at its call limit")
        media_dir = cmd.get("media_dir")
        if media_dir is not None and media_dir not in MEDIA_DIRS:
            raise CommandError("invalid-params", f"media_dir {media_dir!r} is not one of {sorted(MEDIA_DIRS)}")
        acc = self._account_for(cmd.get("from_uri"), cmd.get("display_name"))
        # Ended calls' Call objects go first: pjsua may give the new call one of their slots, and
        # a Call destroyed after that hangs up whatever call then holds its slot.
        self._release_graveyard()
        call = WCall(self, acc, call_id, outbound=True)
        prm = pj.CallOpParam(True)
        if media_dir is not None:
            dirs = pj.IntVector()
            dirs.append(MEDIA_DIRS[media_dir])  # one audio stream
            prm.opt.mediaDir = dirs
            prm.opt.flag |= pj.PJSUA_CALL_SET_MEDIA_DIR  # and it persists for later offers
            call.media_dir = media_dir
        for name, value in (cmd.get("headers") or {}).items():
            h = pj.SipHeader()
            h.hName, h.hValue = str(name), str(value)
            prm.txOption.headers.append(h)
        self.calls[call_id] = call
        try:
            self._place(call, cmd["uri"], prm)
        except pj.Error as e:
            already_ended = call.done  # pjsua may report DISCONNECTED from inside makeCall
            self.calls.pop(call_id, None)
            call.done = True
            self.graveyard.append(call)
            if e.status in INVALID_URI_STATUS:
                raise CommandError("invalid-uri", f"{e.reason}: {cmd['uri']!r}") from None
            if already_ended:
                raise CommandError("target-unreachable", e.reason) from None
            raise
        if cmd.get("timeout"):
            call.deadline = time.monotonic() + float(cmd["timeout"])
        return {}

    def _place(self, call: WCall, uri: str, prm: Any) -> None:
        """makeCall. pjsua keeps the slot of a call we hung up until its BYE is answered, so right
        after hangups it may have no slot although fewer than max_calls calls are live (cmd_dial
        checked that): then let pjsua run and try again, for up to SLOT_WAIT_S."""
        deadline = time.monotonic() + SLOT_WAIT_S
        while True:
            try:
                call.makeCall(uri, prm)
                return
            except pj.Error as e:
                if e.status != PJ_ETOOMANY or call.done or time.monotonic() >= deadline:
                    raise
            self.ep.libHandleEvents(10)
            self._release_graveyard()  # before pjsua may hand out an ended call's slot

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
        port = self.ensure_port(call)
        port.listening = bool(cmd.get("on", True))

    # ---- streams: one port per stream, fanned out to its calls by the conference bridge

    def cmd_stream_attach(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Feed stream `stream_id` to call `call_id` (the port is created on first use). A call
        whose media is not up yet is connected when it is (`connect_streams`)."""
        call = self._call(cmd)
        if call.local_end is not None:
            raise CommandError("invalid-state", "the call is ending")
        sid = str(cmd.get("stream_id") or "")
        if not sid:
            raise CommandError("invalid-params", "stream_id is required")
        port = self.streams.get(sid)
        if port is None:
            port = StreamPort(sid, int(self.cfg.get("audio_queue_frames", 50)))
            fmt = pj.MediaFormatAudio()
            fmt.init(pj.PJMEDIA_FORMAT_PCM, CLOCK_RATE, 1, FRAME_MS * 1000, 16)
            port.createPort(f"stream-{sid[:16]}", fmt)
            self.streams[sid] = port
        port.calls.add(call.call_id)
        call.streams.add(sid)
        if call.audio_media is not None:
            port.startTransmit(call.audio_media)
        return {"calls": len(port.calls)}

    def cmd_stream_detach(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Stop feeding stream `stream_id` to call `call_id`; a no-op if it is not attached."""
        sid, call_id = str(cmd.get("stream_id") or ""), str(cmd.get("call_id") or "")
        call = self.calls.get(call_id)
        if call is not None:
            call.streams.discard(sid)
        port = self.streams.get(sid)
        if port is None or call_id not in port.calls:
            return {"attached": False}
        port.calls.discard(call_id)
        if call is not None:
            self._unbridge_stream(port, call)
        if not port.calls:
            self._drop_stream(sid)
        return {"attached": True}

    def cmd_stream_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Detach stream `stream_id` from every call and remove its port; a no-op if unknown."""
        sid = str(cmd.get("stream_id") or "")
        port = self.streams.get(sid)
        if port is None:
            return {"closed": False}
        for call_id in list(port.calls):
            call = self.calls.get(call_id)
            if call is not None:
                call.streams.discard(sid)
                self._unbridge_stream(port, call)
        port.calls.clear()
        self._drop_stream(sid)
        return {"closed": True}

    def connect_streams(self, call: WCall, am: Any) -> None:
        """The call's audio is (re)negotiated: its attached streams transmit to its new media."""
        for sid in list(call.streams):
            port = self.streams.get(sid)
            if port is None:
                call.streams.discard(sid)
                continue
            try:
                port.startTransmit(am)
            except pj.Error:
                pass

    def _unbridge_stream(self, port: StreamPort, call: WCall) -> None:
        """Main thread: never touches the media of a call that has ended."""
        am = call.audio_media
        if am is None or call.done:
            return
        try:
            port.stopTransmit(am)
        except pj.Error:
            pass

    def _drop_stream(self, sid: str) -> None:
        port = self.streams.pop(sid, None)
        if port is not None:
            port.close()
            self.graveyard.append(port)  # released on the main loop, outside any callback

    def _leave_streams(self, call: WCall, unbridge: bool) -> None:
        """Detach `call` from all its streams (ports left without calls are removed)."""
        for sid in list(call.streams):
            port = self.streams.get(sid)
            if port is None:
                continue
            port.calls.discard(call.call_id)
            if unbridge:
                self._unbridge_stream(port, call)
            if not port.calls:
                self._drop_stream(sid)
        call.streams.clear()

    def push_stream(self, stream_id: str, pcm: bytes) -> None:  # stdin reader thread
        port = self.streams.get(stream_id)
        if port is not None:
            port.push(pcm)

    # ---- call plumbing (main thread)

    def ensure_port(self, call: WCall) -> CallPort:
        if call.port is None:
            port = CallPort(call.call_id, self.writer, int(self.cfg.get("audio_queue_frames", 50)))
            fmt = pj.MediaFormatAudio()
            fmt.init(pj.PJMEDIA_FORMAT_PCM, CLOCK_RATE, 1, FRAME_MS * 1000, 16)
            port.createPort(f"call-{call.call_id[:16]}", fmt)
            call.port = port
            self.ports[call.call_id] = port
        return call.port

    def incoming(self, acc: WAccount, pj_call_id: int) -> None:
        call_id = uuid.uuid4().hex
        call = WCall(self, acc, call_id, outbound=False, pj_call_id=pj_call_id)
        self.calls[call_id] = call
        try:
            ci = call.getInfo()
            call.remote_uri, call.local_uri = ci.remoteUri, ci.localUri
        except pj.Error:
            pass
        self.emit({"type": "event", "call_id": call_id, "kind": "incoming", "state": "incoming",
                   "remote_uri": call.remote_uri, "local_uri": call.local_uri,
                   "extra": {"direction": "inbound"}})
        prm = pj.CallOpParam(True)
        prm.statusCode = 180
        try:
            call.answer(prm)
        except pj.Error:
            pass

    def stop_media(self, call: WCall) -> None:
        """Main thread, while the call still exists (before hangup): unbridge the call's audio
        port from its stream and drop queued frames. Safe to call more than once."""
        self._leave_streams(call, unbridge=True)
        port = call.port
        if port is None:
            return
        port.close()
        am, call.audio_media = call.audio_media, None
        if am is not None and not call.done:
            for src, dst in ((port, am), (am, port)):
                try:
                    src.stopTransmit(dst)
                except pj.Error:
                    pass

    def _release_graveyard(self) -> None:
        """Main loop, outside any pjsua2 callback: delete the native ports of dropped ports while
        they are still referenced, then let go of them and of ended calls (docs/design.md,
        "Audio port teardown", "Call object teardown")."""
        dead, self.graveyard = self.graveyard, []
        taken = {i for c in self.calls.values() if (i := c.getId()) >= 0}  # slots of live calls
        for obj in dead:
            if isinstance(obj, PlayoutPort):
                obj.release()
            elif isinstance(obj, WCall) and obj.getId() in taken:
                # A new call already took this ended call's slot (both in one libHandleEvents):
                # pjsua2's ~Call would unlink that call from its Call object and hang it up.
                # Keep the small native object instead (rare; logged).
                obj.thisown = False
                print(f"worker: ended call {obj.call_id}: its pjsua slot {obj.getId()} holds a new call; "
                      "its native Call object is kept", file=sys.stderr, flush=True)
        dead.clear()

    def call_ended(self, call: WCall) -> None:
        # DISCONNECTED: the stream is gone or going; only our own port is touched from now on.
        call.done = True
        call.audio_media = None
        self._leave_streams(call, unbridge=False)
        if call.port is not None:
            call.port.close()
        self.calls.pop(call.call_id, None)
        port = self.ports.pop(call.call_id, None)
        # Release outside the callback: the Call object must outlive onCallState.
        self.graveyard.append(call)
        if port is not None:
            self.graveyard.append(port)
        call.port = None

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for call in list(self.calls.values()):
            if call.deadline is not None and now >= call.deadline and not call.confirmed and not call.done:
                call.deadline = None
                try:
                    self._hangup(call, "timeout")
                except pj.Error:
                    pass

    def push_audio(self, call_id: str, pcm: bytes) -> None:  # stdin reader thread
        port = self.ports.get(call_id)
        if port is not None:
            port.push(pcm)  # refused once the port is closed (hangup or DISCONNECTED)


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sip.worker")
    ap.add_argument("--config-json", help="worker config as a JSON object")
    ap.add_argument("--probe", action="store_true", help="print the per-process call limit and exit")
    args = ap.parse_args(argv)
    cfg = json.loads(args.config_json or "{}")
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

        n = probe_max_calls(report)
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


if __name__ == "__main__":
    main()

