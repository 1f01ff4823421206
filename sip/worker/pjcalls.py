"""pjsua2 objects of a worker: the per-call audio port, the Call and Account subclasses.

Threads (see sip/worker/process.py for the whole picture):
- `WCall` / `WAccount` callbacks run on the worker's main thread (threadCnt=0, mainThreadOnly),
  the only thread that calls pjsua2; they call back into the `Worker` on that same thread.
- `CallPort`/`StreamPort` `onFrameRequested` / `onFrameReceived` run on the pjmedia clock thread
  and touch only Python deques and the writer queue; `push` runs on the stdin reader thread.
Imported only inside the worker process (it imports pjsua2).
"""

from __future__ import annotations

import collections
import ctypes
import threading
import time
from typing import TYPE_CHECKING, Any

import pjsua2 as pj

from .causes import normalize_cause
from .log_budget import NOTICE_BYTES, LogBudget
from .writer import Writer

if TYPE_CHECKING:
    from .process import Worker

FRAME_MS = 20
CLOCK_RATE = 16000
FRAME_BYTES = CLOCK_RATE * FRAME_MS // 1000 * 2  # 640
PJ_ETOOMANY = 70010
# PJSIP_EINVALIDURI, PJSIP_EINVALIDSCHEME, PJSIP_EINVALIDREQURI, PJSIP_ENOROUTESET (tel: URI)
INVALID_URI_STATUS = {171039, 171040, 171042, 171005}


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


def use_fast_vector_reader() -> None:
    """Switch `CallPort` to the ctypes reader if it reads a ByteVector right (main thread, at
    start, before any call)."""
    global vector_bytes
    vector_bytes = _pick_vector_reader()


# --------------------------------------------------------------------------------------------
# Audio ports: one per call, bridged both ways with the call's audio media; one per stream
# (SipSupervisor.attach_stream), transmitting to every call attached to it.


class PlayoutPort(pj.AudioMediaPort):
    """A port that plays queued 20 ms frames into whatever it is bridged to (drop-oldest queue).

    Lifetime (docs/design.md, "Audio port teardown"): created and registered with the conference
    bridge on the main thread; `close()` stops its audio; `release()` (main thread, outside any
    pjsua2 callback) deletes the native port while this Python object is still referenced. Only
    then may the last reference go. Never let SWIG delete the native port from this object's
    deallocation: the wrapper releases the GIL around the C++ destructor, and a frame callback the
    clock thread had pending for this port then runs on an object whose refcount is already zero,
    which deallocates it a second time (heap corruption, a SIGSEGV later anywhere).
    """

    closed = True  # class defaults: what a port that is not (or no longer) set up answers
    listening = False

    def __init__(self, queue_frames: int) -> None:
        super().__init__()
        self.playout: collections.deque[bytes] = collections.deque(maxlen=queue_frames)
        self.dropped = 0  # frames from the gateway dropped because the playout queue was full
        self.frames_out = 0
        self.closed = False  # no frame in or out any more

    def close(self) -> None:  # main thread
        """Stop feeding: queued frames are dropped, later ones refused."""
        self.closed = True
        self.playout.clear()

    def release(self) -> None:  # main thread, outside pjsua2 callbacks; once closed and unbridged
        """Delete the native port now (removing it from the conference bridge) while this object
        is alive, so that no frame callback can reach it once its refcount drops to zero. The
        object must not be used with pjsua2 afterwards. Safe to call more than once."""
        self.close()
        if self.thisown:  # False once released (the wrapper disowns before deleting)
            pj.AudioMediaPort.__swig_destroy__(self)

    def push(self, pcm: bytes) -> None:  # stdin reader thread
        if self.closed:
            return
        q = self.playout
        if len(q) == q.maxlen:
            self.dropped += 1
        q.append(pcm)

    def onFrameRequested(self, frame: Any) -> None:  # media clock thread: audio towards the calls
        if self.closed:
            return
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


class StreamPort(PlayoutPort):
    """One audio stream (e.g. a broadcast) fanned out by the conference bridge: the bridge asks
    it for one frame per tick and mixes that frame into every call it transmits to. `calls`
    (main thread only) holds the ids of the calls attached to it."""

    def __init__(self, stream_id: str, queue_frames: int) -> None:
        super().__init__(queue_frames)
        self.stream_id = stream_id
        self.calls: set[str] = set()


class CallPort(PlayoutPort):
    def __init__(self, call_id: str, writer: Writer, queue_frames: int) -> None:
        super().__init__(queue_frames)
        self.call_id = call_id
        self.writer = writer
        # Frames from the call go to the gateway only once it asks (SipSupervisor.listen): most
        # calls (paging, calls nobody has opened media on) would cost a copy per 20 ms for nothing.
        self.listening = False
        self.frames_in = 0

    def close(self) -> None:  # main thread, before hangup or at DISCONNECTED
        """Stop feeding and reading the call: queued frames are dropped, later ones refused."""
        super().close()
        self.listening = False

    def onFrameReceived(self, frame: Any) -> None:  # media clock thread: audio from the call
        if self.closed or not self.listening or frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        pcm = vector_bytes(frame.buf)
        if pcm:
            self.frames_in += 1
            self.writer.audio(self.call_id, pcm)


# --------------------------------------------------------------------------------------------
# Calls and accounts


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
        self.media_dir: str | None = None  # dial's media_dir ("sendonly" ...), None: sendrecv
        self.held = False  # put on hold by the gateway (cmd_hold)
        self.audio_media: Any = None  # the call's AudioMedia bridged with `port` (None: not bridged)
        self.audio_index = -1  # its media index (getStreamStat)
        self.streams: set[str] = set()  # StreamPorts (Worker.streams) attached to this call
        self.stream_on_answer: str | None = None  # dial's `stream`: attached once answered (streams.py)
        # A port of its own (audio to and from the gateway) bridged when its media comes up. Not
        # for a call dialled with a stream: 500 paging calls' ports cost the media clock thread
        # 25,000 Python callbacks a second for nothing (docs/benchmarks.md).
        self.port_on_media = True
        self.conference: str | None = None  # the conference it is mixed in (conference.py)
        self.done = False
        self.remote_uri: str | None = None
        self.local_uri: str | None = None
        self.source: str | None = None  # inbound: the host it came from (sip/admission.py)
        self.refused = False  # inbound, refused for capacity: the gateway never hears of it

    # All callbacks below run on the main thread (mainThreadOnly, threadCnt=0).

    def onCallState(self, prm: Any) -> None:
        try:
            ci = self.getInfo()
        except pj.Error:
            return
        self.remote_uri = ci.remoteUri or self.remote_uri
        self.local_uri = ci.localUri or self.local_uri
        st = ci.state
        if self.refused:
            if st == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.worker.call_ended(self)
            return
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
            if self.stream_on_answer is not None:
                self.worker.answered(self)
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
        if self.done or self.local_end is not None:
            return  # ending (hangup sent or DISCONNECTED): never (re)connect its media
        try:
            ci = self.getInfo()
        except pj.Error:
            return
        for i, mi in enumerate(ci.media):
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = MEDIA_STATUS.get(int(mi.status), str(mi.status))
            if self.media_dir == "sendonly" and status == "local-hold" and not self.held:
                # pjsua calls a stream that only sends "local hold": for a call dialed sendonly
                # (paging) that is the negotiated, active state.
                status = "active"
            if status in ("active", "remote-hold"):
                try:
                    am = self.getAudioMedia(i)
                except pj.Error:
                    continue
                # A trunk is only mixed, in C; a call whose audio is a stream (dial's `stream`)
                # has no port of its own unless the gateway listens to it (cmd_listen).
                if self.call_id not in self.worker.conf_trunks and (self.port_on_media or self.port):
                    self.worker.bridge_port(self, am)
                self.audio_media, self.audio_index = am, i
                self.worker.connect_streams(self, am)
                self.worker.connect_conference(self)
            self.worker.emit(
                {"type": "event", "call_id": self.call_id, "kind": "media", "state": None,
                 "extra": {"status": status}}
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


class WLogWriter(pj.LogWriter):
    """pjsua's log to this process's stderr (the worker log), within `LogBudget` (log_budget.py):
    hostile traffic would otherwise grow it by a line per datagram. Called from whichever thread
    logs (main, media clock); it only writes."""

    def __init__(self, out: Any) -> None:
        super().__init__()
        self.out = out
        self.budget = LogBudget()
        self.lock = threading.Lock()

    def write(self, entry: Any) -> None:
        try:
            text = str(entry.msg)
            data = (text if text.endswith("\n") else text + "\n").encode("utf-8", "surrogateescape")
            with self.lock:
                ok, dropped = self.budget.take(len(data), time.monotonic())
                if dropped:
                    self.out.write(f"worker: {dropped} pjsua log lines dropped (over "
                                   f"{self.budget.rate:.0f} bytes/s)\n".encode()[:NOTICE_BYTES])
                if ok:
                    self.out.write(data)
                    self.out.flush()
        except Exception:  # noqa: BLE001 -- a log line is never worth the process
            pass


class WEndpoint(pj.Endpoint):
    """The process's one Endpoint; `onSelectAccount` is where a new INVITE is admitted or not
    (calls.py, `Worker.select_account`), before pjsua creates any socket for it."""

    def __init__(self) -> None:
        super().__init__()
        self.worker: Worker | None = None

    def onSelectAccount(self, prm: Any) -> None:
        if self.worker is not None:
            self.worker.select_account(prm)


class RefusedCall(pj.Call):
    """An INVITE refused before it had sockets (io_budget.py): answered with `code` on the refusal account,
    whose media is a loopback transport; never announced to the gateway."""

    def __init__(self, worker: Worker, acc: Any, pj_call_id: int, code: int) -> None:
        super().__init__(acc, pj_call_id)
        self.worker = worker
        self.code = code

    def onCallState(self, prm: Any) -> None:
        try:
            ended = self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED
        except pj.Error:
            ended = True
        if ended:
            self.worker.refused_ended(self)


class WAccount(pj.Account):
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def onIncomingCall(self, prm: Any) -> None:
        self.worker.incoming(self, prm.callId, prm.rdata.srcAddress)

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


__all__ = ["CallPort", "PlayoutPort", "RefusedCall", "StreamPort", "WAccount", "WCall", "WEndpoint", "WLogWriter", "normalize_cause", "use_fast_vector_reader"]
