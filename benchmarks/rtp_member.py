"""A conference member held by the measuring process: a minimal SIP UAS and a PCMU RTP leg (threads).

The mouth-to-ear benchmark (benchmarks.conferences) holds the talker and the listener here, so
the beep's send time and its receive time are read from one clock (CLOCK_REALTIME of this
process): the talker's send time is taken just before `sendto` of the frame the beep starts in,
the listener's receive time is the kernel's receive timestamp of each datagram (SO_TIMESTAMPNS),
so neither waits on this process's scheduling or the GIL.

- `SipUas` answers INVITEs on 127.0.0.1 (a 200 with an SDP answer for PCMU/8000, ptime 20, to
  the offer's c=/m= address, in the direction the offer allows: a paging call's sendonly offer is
  answered recvonly and the leg only listens; the same 200 again for a retransmission; a re-INVITE re-answers),
  ACK starts the RTP leg, BYE (or CANCEL) is answered 200 and stops it. One call at a time; enough
  for the gateway's pjsua2 worker dialling it directly (`sip.proxy none`), not a general UA.
- `RtpLeg` sends a frame every 20 ms on an absolute schedule (`BeepPlan`, mu-law; SCHED_FIFO
  when allowed, and how late each send was is kept) and decodes every PCMU frame it receives into
  an `OnsetDetector`.
- `python -m benchmarks.rtp_member --every N` holds a talker (a beep every N frames) and a
  listener in a process of its own, every thread SCHED_FIFO when allowed: no thread of the
  benchmark's own (its event loop, its /proc sampling) can hold the GIL the talker's clock needs
  while the machine's other work keeps it off a core. It prints {"talker", "listener"} URIs; a
  line "hold N" on stdin makes the talker hold its next N packets back and send them at once (a
  burst, `RtpLeg.hold`); any other line (or EOF) stops it, and it prints what was sent and heard.
- `RtpRelay` forwards datagrams from one port to another `delay_ms` later (SCHED_FIFO when
  allowed), noting when it forwarded each RTP sequence number: the validation path without the
  gateway, where the delay each beep really had is known.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator

from benchmarks.beep_delay import FRAME_SAMPLES, NS, RATE, BeepPlan, OnsetDetector, ulaw_decode, ulaw_encode
from gateway.broadcast.rtp import FRAME_MS, PAYLOAD_TYPES, RtpPacketizer, parse_header

HOST = "127.0.0.1"
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _udp(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, port))
    return s


def _realtime() -> bool:
    """SCHED_FIFO for the calling thread (Linux: pid 0 is this thread), when allowed."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return True
    return False


def _stamped(sock: socket.socket, stop: threading.Event,
             timeout: Callable[[], float] = lambda: 0.2) -> Iterator[tuple[bytes, int] | None]:
    """Datagrams with their kernel receive time (ns, CLOCK_REALTIME), None after each `timeout()`
    s without one, until `stop` is set or the socket is closed."""
    while not stop.is_set():
        try:
            sock.settimeout(timeout())
            data, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(16))
        except TimeoutError:
            yield None
            continue
        except OSError:
            return
        t = next((sec * NS + nsec for level, kind, payload in anc
                  if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS
                  for sec, nsec in [struct.unpack("qq", payload[:16])]), time.time_ns())
        yield data, t


class RtpLeg:
    """One PCMU leg: sends `plan`'s frames to `remote`, detects onsets in what it receives."""

    def __init__(self, plan: BeepPlan | None = None) -> None:
        self.sock = _udp()
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.port = self.sock.getsockname()[1]
        self.plan = plan or BeepPlan(every=1 << 30)  # silence
        self.remote: tuple[str, int] | None = None
        self.detector = OnsetDetector()
        self.sent_onsets: list[int] = []  # ns, CLOCK_REALTIME
        self.onset_seqs: list[int] = []  # the RTP sequence number of each
        self.frames_sent = self.frames_received = 0
        self.send_late_ns: list[int] = []  # each frame sent this late after its schedule
        self.holds: list[tuple[int, int]] = []  # (first frame, frames): held back, then sent at once
        self._hold_next = 0  # `hold`: frames to hold from the next one on (set by another thread)
        self.realtime = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, remote: tuple[str, int] | None) -> None:
        """Receive; and send to `remote` unless None (a listener-only leg)."""
        self.remote = remote
        if self._threads:
            return
        loops = (self._send_loop, self._recv_loop) if remote else (self._recv_loop,)
        self._threads = [threading.Thread(target=f, name=f"rtp-{self.port}-{f.__name__}", daemon=True)
                         for f in loops]
        for t in self._threads:
            t.start()

    def hold(self, frames: int) -> None:
        """Hold the next `frames` packets back and send them together after the last one's time:
        what a talker's network or a stalled receiver does to a stream (any thread)."""
        self._hold_next = frames

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()

    def _send_loop(self) -> None:
        # A phone's packet clock is its sound card's: on a shared machine this thread asks for a
        # real-time slot (it wakes 50 times a second for microseconds)
        self.realtime = _realtime()
        rtp = RtpPacketizer(PAYLOAD_TYPES["PCMU"], RATE)
        t0, period = time.monotonic_ns(), FRAME_MS * 1_000_000
        k = held_until = 0
        held: list[bytes] = []
        while not self._stop.is_set():
            wait = t0 + k * period - time.monotonic_ns()
            if wait > 0:
                self._stop.wait(wait / NS)
                wait = t0 + k * period - time.monotonic_ns()
            self.send_late_ns.append(max(0, -wait))
            if self._hold_next:
                held_until, self._hold_next = k + self._hold_next, 0
                self.holds.append((k, held_until - k))
            packet = rtp.packetize(ulaw_encode(self.plan.frame(k)), FRAME_SAMPLES)
            stamp = time.time_ns()  # a held beep was "spoken" now: the hold is the network's delay
            try:
                if k + 1 < held_until:
                    held.append(packet)
                else:
                    for p in [*held, packet]:
                        self.sock.sendto(p, self.remote)  # type: ignore[arg-type]
                    held.clear()
            except OSError:
                return
            if self.plan.starts_beep(k):
                self.sent_onsets.append(stamp)
                self.onset_seqs.append((rtp.sequence - 1) & 0xFFFF)
            self.frames_sent += 1
            k += 1

    def _recv_loop(self) -> None:
        for got in _stamped(self.sock, self._stop):
            if got is None:
                continue
            try:
                header, payload = parse_header(got[0])
            except ValueError:
                continue
            if header.payload_type != PAYLOAD_TYPES["PCMU"] or header.extension:  # no CN, no DTMF
                continue
            self.frames_received += 1
            self.detector.feed(got[1], ulaw_decode(payload))


class RtpRelay:
    """Datagrams to `port` forwarded to `to` `delay_ms` after they arrived (kernel timestamp)."""

    def __init__(self, delay_ms: float) -> None:
        self.sock = _udp()
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.port = self.sock.getsockname()[1]
        self.delay_ns = int(delay_ms * 1e6)
        self.late_ns: list[int] = []  # each datagram forwarded this late after its due time
        self.forwarded: dict[int, int] = {}  # RTP sequence number -> when it was forwarded (ns)
        self.realtime = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, to: tuple[str, int]) -> None:
        self._thread = threading.Thread(target=self._run, args=(to,), name=f"relay-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.sock.close()

    def _run(self, to: tuple[str, int]) -> None:
        due: list[tuple[int, int, bytes]] = []
        n = 0
        def until_due() -> float:
            return max(1e-5, (due[0][0] - time.time_ns()) / NS) if due else 0.2

        self.realtime = _realtime()
        for got in _stamped(self.sock, self._stop, until_due):
            if got is not None:
                heapq.heappush(due, (got[1] + self.delay_ns, n, got[0]))
                n += 1
            while due and due[0][0] <= time.time_ns():
                when, _, data = heapq.heappop(due)
                now = time.time_ns()
                self.sock.sendto(data, to)
                self.late_ns.append(now - when)
                self.forwarded[int.from_bytes(data[2:4], "big")] = now


def _headers(msg: str) -> tuple[str, list[tuple[str, str]], str]:
    head, _, body = msg.partition("\r\n\r\n")
    lines = head.split("\r\n")
    hs = []
    for ln in lines[1:]:
        name, _, value = ln.partition(":")
        hs.append((name.strip().lower(), value.strip()))
    return lines[0], hs, body


ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length"}


class SipUas:
    """Answers one call at a time on 127.0.0.1 with `leg` as its media."""

    def __init__(self, user: str, leg: RtpLeg) -> None:
        self.user, self.leg = user, leg
        self.sock = _udp()
        self.port = self.sock.getsockname()[1]
        self.tag = os.urandom(4).hex()
        self.answered: dict[str, bytes] = {}  # Call-ID + CSeq -> the 200 sent
        self.sends = True  # the answer lets this side send (not recvonly)
        self.established = threading.Event()
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sip-{user}", daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{HOST}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
        self.leg.stop()

    def _sdp(self, direction: str = "sendrecv") -> str:
        return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
                f"m=audio {self.leg.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na={direction}\r\n")

    def _reply(self, hs: list[tuple[str, str]], body: str = "") -> bytes:
        out = ["SIP/2.0 200 OK"]
        for name, value in hs:
            name = _COMPACT.get(name, name)
            if name in ("via", "from", "call-id", "cseq"):
                out.append(f"{name.title()}: {value}")
            elif name == "to":
                out.append(f"To: {value}" + ("" if ";tag=" in value else f";tag={self.tag}"))
        out.append(f"Contact: <sip:{self.user}@{HOST}:{self.port}>")
        if body:
            out.append("Content-Type: application/sdp")
        out.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(out) + "\r\n\r\n" + body).encode()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            first, hs, body = _headers(data.decode(errors="replace"))
            if first.startswith("SIP/2.0"):
                continue
            method = first.split(" ", 1)[0]
            h = {_COMPACT.get(k, k): v for k, v in hs}
            key = h.get("call-id", "") + "/" + h.get("cseq", "")
            if method == "INVITE":
                if key not in self.answered:
                    c = re.search(r"^c=IN IP4 (\S+)", body, re.M)
                    m = re.search(r"^m=audio (\d+)", body, re.M)
                    if c and m:
                        self.leg.remote = (c.group(1), int(m.group(1)))
                    # a paging call offers sendonly: answer recvonly, and send nothing (`ACK`)
                    offer = re.search(r"^a=(sendonly|recvonly|inactive)", body, re.M)
                    answer = ANSWER_DIRECTION[offer.group(1) if offer else "sendrecv"]
                    self.sends = answer in ("sendrecv", "sendonly")
                    self.answered[key] = self._reply(hs, self._sdp(answer))
                self.sock.sendto(self.answered[key], addr)
            elif method == "ACK":
                if self.leg.remote is not None:
                    self.leg.start(self.leg.remote if self.sends else None)
                    self.established.set()
            else:  # BYE, CANCEL, OPTIONS, UPDATE, INFO: 200 without a body
                self.sock.sendto(self._reply(hs), addr)
                if method in ("BYE", "CANCEL"):
                    self.ended.set()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rtp_member", description=__doc__.split("\n")[0])
    ap.add_argument("--every", type=int, default=50, help="a beep every this many 20 ms frames")
    a = ap.parse_args(argv)
    realtime = _realtime()  # before any thread: they inherit the policy
    talker = SipUas("talker", RtpLeg(BeepPlan(every=a.every)))
    listener = SipUas("listener", RtpLeg())
    print(json.dumps({"talker": talker.uri, "listener": listener.uri, "realtime": realtime}), flush=True)
    for line in sys.stdin:  # "hold N": the talker holds its next N packets back; anything else: stop
        cmd, _, n = line.strip().partition(" ")
        if cmd != "hold":
            break
        talker.leg.hold(int(n))
    for p in (talker, listener):
        p.stop()
    t, h = talker.leg, listener.leg
    print(json.dumps({"sent_onsets": t.sent_onsets, "heard_onsets": h.detector.onsets, "send_late_ns": t.send_late_ns,
                      "talker_realtime": t.realtime, "listener_frames": h.frames_received, "holds": t.holds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
