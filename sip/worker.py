"""SIP worker process: one pjsua2 Endpoint, driven over stdin/stdout (framed by sip/ipc.py).

THE ONLY module of the project that touches pjsua2 threads. Threads in this process:

- main thread: the only one calling pjsua2 (besides the media clock callbacks below). It loops on
  ``ep.libHandleEvents(10)`` and, between polls, drains the bounded command queue.
- stdin reader: decodes IPC messages; control commands go to the command queue, audio frames go
  straight into the per-call playout deque. It never calls pjsua2.
- stdout writer: the single writer of stdout; everything outgoing goes through its queue.
- pjmedia clock thread (created by pjsua for the null sound device): calls the
  ``AudioMediaPort`` frame callbacks. They only touch Python deques and the writer queue.

Usage::

    python -m sip.worker --config-json '{...}'    # serve (see sip.config.worker_config)
    python -m sip.worker --probe                  # print {"ok_calls": n} per call, then exit

Why the probe: the pjsua2-python wheel is compiled with a fixed PJSUA_MAX_CALLS; libInit accepts
any larger ``maxCalls``, and the call past the compiled limit then either fails with PJ_ETOOMANY or
(measured with 2.15.1: maxCalls > compiled limit) trips a pjsua assertion that aborts the process.
So the probe runs in its own throw-away process with maxCalls=64, makes outgoing calls towards a
local UDP socket that never answers, and prints ``{"ok_calls": n}`` after each call that succeeded.
The parent takes the last n it read, whether the probe ended cleanly or aborted. Workers are then
started with maxCalls = that n, and refuse a dial themselves at that count (``no-capacity``), so a
worker never reaches the aborting path.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import queue
import socket
import sys
import threading
import time
import uuid
from typing import Any

from . import ipc

import pjsua2 as pj  # noqa: E402  (only this module imports pjsua2)

FRAME_MS = 20
CLOCK_RATE = 16000
FRAME_BYTES = CLOCK_RATE * FRAME_MS // 1000 * 2  # 640
PJ_ETOOMANY = 70010
# PJSIP_EINVALIDURI, PJSIP_EINVALIDSCHEME, PJSIP_EINVALIDREQURI, PJSIP_ENOROUTESET (tel: URI)
INVALID_URI_STATUS = {171039, 171040, 171042, 171005}
COMMAND_QUEUE = 1000
WRITER_QUEUE = 2000


# --------------------------------------------------------------------------------------------
# Output: one writer thread owns stdout.


class Writer:
    """Single writer of stdout. Control messages block when the queue is full (never dropped);
    audio frames are dropped (counted) instead, so a slow gateway never stalls the media clock."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._q: queue.Queue[bytes | None] = queue.Queue(WRITER_QUEUE)
        self.audio_dropped = 0
        self._thread = threading.Thread(target=self._run, name="ipc-writer", daemon=True)
        self._thread.start()

    def control(self, data: dict[str, Any]) -> None:
        self._q.put(ipc.encode_control(data))

    def audio(self, call_id: str, pcm: bytes) -> None:
        try:
            self._q.put_nowait(ipc.encode_audio(call_id, pcm))
        except queue.Full:
            self.audio_dropped += 1

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        out = self._stream
        while True:
            item = self._q.get()
            if item is None:
                break
            chunks = [item]
            # Batch what is already queued into one write.
            while len(chunks) < 64:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                chunks.append(nxt)
            try:
                out.write(b"".join(chunks))
                out.flush()
            except (BrokenPipeError, ValueError, OSError):
                os._exit(3)  # the gateway is gone


# --------------------------------------------------------------------------------------------
# Fast ByteVector -> bytes. SWIG copies a std::vector<unsigned char> element by element
# (hundreds of µs per 640-byte frame here); reading the vector's [begin, end) pointers with ctypes
# takes about 1 µs. Checked against the slow path at start-up; the slow path is kept otherwise.


def _vector_bytes_fast(v: Any) -> bytes:
    p = int(v.this)
    begin = ctypes.c_void_p.from_address(p).value
    end = ctypes.c_void_p.from_address(p + ctypes.sizeof(ctypes.c_void_p)).value
    if not begin or not end or end <= begin:
        return b""
    return ctypes.string_at(begin, end - begin)


def _vector_bytes_slow(v: Any) -> bytes:
    return bytes(v)


def _pick_vector_reader() -> Any:
    try:
        sample = bytes(range(256)) * 2 + bytes(128)
        if _vector_bytes_fast(pj.ByteVector(sample)) == sample and _vector_bytes_fast(pj.ByteVector()) == b"":
            return _vector_bytes_fast
    except Exception:
        pass
    return _vector_bytes_slow


vector_bytes = _vector_bytes_slow


# --------------------------------------------------------------------------------------------
# Audio port: one per call, bridged both ways with the call's audio media.


class CallPort(pj.AudioMediaPort):
    def __init__(self, call_id: str, writer: Writer, queue_frames: int) -> None:
        super().__init__()
        self.call_id = call_id
        self.writer = writer
        self.playout: collections.deque[bytes] = collections.deque(maxlen=queue_frames)
        self.dropped = 0  # frames from the gateway dropped because the playout queue was full
        self.listening = True  # frames from the call are forwarded to the gateway
        self.frames_in = 0
        self.frames_out = 0

    def push(self, pcm: bytes) -> None:  # stdin reader thread
        q = self.playout
        if len(q) == q.maxlen:
            self.dropped += 1
        q.append(pcm)

    def onFrameRequested(self, frame: Any) -> None:  # media clock thread: audio towards the call
        try:
            pcm = self.playout.popleft()
        except IndexError:
            return
        if len(pcm) != FRAME_BYTES:
            pcm = (pcm + bytes(FRAME_BYTES))[:FRAME_BYTES]
        frame.buf = pj.ByteVector(pcm)
        frame.size = FRAME_BYTES
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        self.frames_out += 1

    def onFrameReceived(self, frame: Any) -> None:  # media clock thread: audio from the call
        if not self.listening or frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        pcm = vector_bytes(frame.buf)
        if pcm:
            self.frames_in += 1
            self.writer.audio(self.call_id, pcm)


# --------------------------------------------------------------------------------------------
# Calls


def normalize_cause(
    *, code: int, confirmed: bool, local_end: str | None, outbound: bool, got_response: bool
) -> str:
    """Map how a call ended to a stable cause string (pure; unit-tested)."""
    if confirmed:
        return "local-hangup" if local_end else "remote-hangup"
    if local_end == "timeout":
        return "no-answer"
    if local_end == "reject":
        return "rejected"
    if local_end:
        return "cancelled"
    if code in (486, 600):
        return "busy"
    if code == 487:
        return "cancelled"
    if code in (408, 480):
        return "no-answer" if got_response else "unreachable"
    if code in (503, 502, 504) and not got_response:
        return "unreachable"
    if not outbound and code in (0, 487):
        return "cancelled"
    if code >= 400:
        return "rejected"
    return "unknown"


MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local-hold",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote-hold",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}


class WCall(pj.Call):
    def __init__(self, worker: Worker, acc: Any, call_id: str, outbound: bool, pj_call_id: int = -1) -> None:
        if pj_call_id >= 0:
            super().__init__(acc, pj_call_id)
        else:
            super().__init__(acc)
        self.worker = worker
        self.call_id = call_id
        self.outbound = outbound
        self.confirmed = False
        self.got_response = False
        self.local_end: str | None = None
        self.deadline: float | None = None
        self.port: CallPort | None = None
        self.done = False
        self.remote_uri: str | None = None
        self.local_uri: str | None = None

    # All callbacks below run on the main thread (mainThreadOnly, threadCnt=0).

    def onCallState(self, prm: Any) -> None:
        try:
            ci = self.getInfo()
        except pj.Error:
            return
        self.remote_uri = ci.remoteUri or self.remote_uri
        self.local_uri = ci.localUri or self.local_uri
        st = ci.state
        code = int(ci.lastStatusCode or 0)
        if self.outbound and 100 < code < 200:
            self.got_response = True
        if st == pj.PJSIP_INV_STATE_CALLING:
            state = "calling"
        elif st == pj.PJSIP_INV_STATE_INCOMING:
            return  # announced as "incoming"
        elif st == pj.PJSIP_INV_STATE_EARLY:
            state = "early"
            self.got_response = True
        elif st == pj.PJSIP_INV_STATE_CONNECTING:
            state = "connecting"
        elif st == pj.PJSIP_INV_STATE_CONFIRMED:
            state = "confirmed"
            self.confirmed = True
            self.deadline = None
        elif st == pj.PJSIP_INV_STATE_DISCONNECTED:
            state = "disconnected"
        else:
            return
        cause = None
        if state == "disconnected":
            cause = normalize_cause(
                code=code,
                confirmed=self.confirmed,
                local_end=self.local_end,
                outbound=self.outbound,
                got_response=self.got_response,
            )
        self.worker.emit_state(self, state, code, ci.lastReason, cause)
        if state == "disconnected":
            self.worker.call_ended(self)

    def onCallMediaState(self, prm: Any) -> None:
        try:
            ci = self.getInfo()
        except pj.Error:
            return
        for i, mi in enumerate(ci.media):
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                try:
                    am = self.getAudioMedia(i)
                except pj.Error:
                    continue
                port = self.worker.ensure_port(self)
                am.startTransmit(port)
                port.startTransmit(am)
            self.worker.emit(
                {"type": "event", "call_id": self.call_id, "kind": "media", "state": None,
                 "extra": {"status": MEDIA_STATUS.get(int(mi.status), str(mi.status))}}
            )

    def onDtmfDigit(self, prm: Any) -> None:
        self.worker.emit(
            {"type": "event", "call_id": self.call_id, "kind": "dtmf", "state": None,
             "extra": {"digit": prm.digit}}
        )

    def onCallTransferRequest(self, prm: Any) -> None:
        # A REFER from the far end: we do not let pjsua dial on its own (that call would have no
        # owner). Decline and tell the gateway, which may dial the target itself.
        prm.statusCode = 603
        self.worker.emit(
            {"type": "event", "call_id": self.call_id, "kind": "transfer", "state": None,
             "extra": {"direction": "incoming", "target": prm.dstUri}}
        )

    def onCallTransferStatus(self, prm: Any) -> None:
        self.worker.emit(
            {"type": "event", "call_id": self.call_id, "kind": "transfer", "state": None,
             "sip_code": int(prm.statusCode), "reason": prm.reason,
             "extra": {"direction": "outgoing", "final": bool(prm.finalNotify)}}
        )
        prm.cont = True


class WAccount(pj.Account):
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def onIncomingCall(self, prm: Any) -> None:
        self.worker.incoming(self, prm.callId)

    def onRegState(self, prm: Any) -> None:
        try:
            info = self.getInfo()
            active, expires = bool(info.regIsActive), int(info.regExpiresSec)
        except pj.Error:
            active, expires = False, 0
        self.worker.emit(
            {"type": "registration", "code": int(prm.code), "reason": prm.reason,
             "active": active, "expires": expires}
        )


# --------------------------------------------------------------------------------------------


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
        self.graveyard: list[Any] = []  # Call/port objects to release outside their callbacks
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
                self.graveyard.clear()
            if time.monotonic() > stats_at:
                stats_at = time.monotonic() + 5
                self._emit_stats()
        self.shutdown()

    def _emit_stats(self) -> None:
        self.emit({"type": "stats", "calls": len(self.calls), "audio_dropped_out": self.writer.audio_dropped,
                   "ports": {cid: {"in": p.frames_in, "out": p.frames_out, "dropped": p.dropped}
                             for cid, p in self.ports.items()}})

    def shutdown(self) -> None:
        try:
            for call in list(self.calls.values()):
                if call.local_end is None:
                    call.local_end = "shutdown"
            self.ep.hangupAllCalls()
            end = time.monotonic() + 3
            while self.calls and time.monotonic() < end:
                self.ep.libHandleEvents(20)
            self._emit_stats()
            self.graveyard.clear()
            self.calls.clear()
            self.ports.clear()
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
        acc = self._account_for(cmd.get("from_uri"), cmd.get("display_name"))
        call = WCall(self, acc, call_id, outbound=True)
        prm = pj.CallOpParam(True)
        for name, value in (cmd.get("headers") or {}).items():
            h = pj.SipHeader()
            h.hName, h.hValue = str(name), str(value)
            prm.txOption.headers.append(h)
        self.calls[call_id] = call
        try:
            call.makeCall(cmd["uri"], prm)
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
        prm = pj.CallOpParam(True)
        prm.statusCode = int(cmd.get("code", 486))
        call.hangup(prm)

    def cmd_hangup(self, cmd: dict[str, Any]) -> None:
        call = self._call(cmd)
        self._hangup(call, "hangup")

    def _hangup(self, call: WCall, why: str) -> None:
        if call.local_end is None:
            call.local_end = why
        prm = pj.CallOpParam(True)
        if not call.outbound and not call.confirmed:
            prm.statusCode = 603 if why != "timeout" else 480
        call.hangup(prm)

    def cmd_hold(self, cmd: dict[str, Any]) -> None:
        self._call(cmd).setHold(pj.CallOpParam(True))

    def cmd_unhold(self, cmd: dict[str, Any]) -> None:
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self._call(cmd).reinvite(prm)

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

    def call_ended(self, call: WCall) -> None:
        call.done = True
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
            else:
                worker.commands.put(msg.data)
    except Exception as e:  # noqa: BLE001
        print(f"worker stdin reader: {e!r}", file=sys.stderr, flush=True)
    worker.commands.put(None)  # EOF or broken stream: shut down


def probe_max_calls(report: Any, limit: int = 64) -> int:
    """How many concurrent calls this pjsua2 build allows in one process (see module doc)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink_port = sink.getsockname()[1]
    ep = pj.Endpoint()
    ep.libCreate()
    ec = pj.EpConfig()
    ec.uaConfig.threadCnt = 0
    ec.uaConfig.mainThreadOnly = True
    ec.uaConfig.maxCalls = limit
    ec.logConfig.level = 0
    ec.logConfig.consoleLevel = 0
    ep.libInit(ec)
    ep.audDevManager().setNullDev()
    tc = pj.TransportConfig()
    tc.port = 0
    tc.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()
    ac = pj.AccountConfig()
    ac.idUri = "sip:probe@127.0.0.1"
    mt = pj.TransportConfig()
    mt.boundAddress = "127.0.0.1"
    ac.mediaConfig.transportConfig = mt
    acc = pj.Account()
    acc.create(ac, True)
    calls = []
    count = 0
    for _ in range(limit):
        c = pj.Call(acc)
        try:
            c.makeCall(f"sip:probe@127.0.0.1:{sink_port}", pj.CallOpParam(True))
        except pj.Error as e:
            if e.status != PJ_ETOOMANY:
                print(f"probe: unexpected error {e.status} {e.reason}", file=sys.stderr)
            break
        calls.append(c)
        count += 1
        report(count)
    return count


def main(argv: list[str] | None = None) -> None:
    global vector_bytes
    ap = argparse.ArgumentParser(prog="python -m sip.worker")
    ap.add_argument("--config-json", help="worker config as a JSON object")
    ap.add_argument("--probe", action="store_true", help="print the per-process call limit and exit")
    args = ap.parse_args(argv)
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
    cfg = json.loads(args.config_json or "{}")
    vector_bytes = _pick_vector_reader()
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
