"""Cheap WebRTC peers for the video benchmark (benchmarks/video.py `--peers aiortc`): no encoder,
no decoder, so 20 publishers and 20-40 views fit on 2 shared cores next to Janus (80 views
starve the peers on a loaded box: docs/benchmarks.md).

- The clip: ffmpeg encodes once a 640x480 VP8 clip with its frame number drawn into every frame
  (so every encoded frame differs) and a keyframe each second; its packets are read into memory.
- A publisher is a terminal (its own control connection and token) that, when `video.request`
  asks, publishes the clip's packets over aiortc, paced at the clip's rate and looped, never
  re-encoded (aiortc packs pre-encoded packets as they are). It logs when it hands each frame
  to aiortc: the frame's send time. A PLI from Janus cannot be honoured: a late viewer waits for
  the clip's next keyframe (at most a second).
- A view is one RTCPeerConnection of a console (a process of its own: `Console`, `console_main`),
  answering Janus's offer (from `video.watch`). aiortc's VP8 decoder is replaced, in the console
  processes only, by one that hashes the frame it is
  handed instead of decoding it; the hash names the clip frame, the frame's last packet's arrival
  (its RTP marker) gives the receive time. Delay = receive - send of that frame by that publisher:
  capture, encode, decode and display are not in it (they are the terminal's and the console's,
  not the gateway's); Janus, the veth and both aiortc stacks are.
"""

from __future__ import annotations

import asyncio
import faulthandler
import hashlib
import logging
import multiprocessing
import signal
import subprocess
import sys
import time
from collections import deque
from fractions import Fraction
from multiprocessing import shared_memory
from pathlib import Path

import av
import structlog
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import rtcrtpreceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.client import GatewayClient

NO_ICE_SERVERS = RTCConfiguration(iceServers=[])  # aiortc's default is a public STUN server


def make_clip(path: Path, fps: int, seconds: float, bitrate: str = "800k") -> list[bytes]:
    """Encode the clip once (ffmpeg, libvpx realtime) and return its VP8 frames in order."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=640x480:rate={fps}:duration={seconds}",
         "-vf", "drawtext=text='%{frame_num}':fontsize=64:fontcolor=white:box=1:boxcolor=black:x=20:y=20",
         "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", bitrate,
         "-g", str(fps), "-an", str(path)], check=True, timeout=300)
    with av.open(str(path)) as container:
        frames = [bytes(p) for p in container.demux(video=0) if p.size]
    digests = {digest(f) for f in frames}
    if len(digests) != len(frames):
        raise RuntimeError(f"{path}: {len(frames) - len(digests)} encoded frames are not unique")
    return frames


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


class ClipTrack(MediaStreamTrack):
    """The clip's pre-encoded frames as av.Packets, at `fps`, looped; logs each frame's send time."""

    kind = "video"

    def __init__(self, frames: list[bytes], fps: int, sent: memoryview) -> None:
        super().__init__()
        self.frames, self.fps = frames, fps
        self.sent = sent  # clip frame index -> monotonic time handed to aiortc (shared memory)
        self.count = 0
        self._t0: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self.count / self.fps
        if due > now:
            await asyncio.sleep(due - now)  # the frame clock: pacing, not waiting for an event
        i = self.count % len(self.frames)
        packet = av.Packet(self.frames[i])
        packet.pts, packet.time_base = self.count, Fraction(1, self.fps)
        self.sent[i] = time.monotonic()
        self.count += 1
        return packet


class _Stamp:
    """What the stand-in decoder hands the track instead of a picture."""

    __slots__ = ("timestamp", "digest")

    def __init__(self, timestamp: int, digest: bytes) -> None:
        self.timestamp, self.digest = timestamp, digest


class _HashingDecoder:
    def decode(self, encoded_frame) -> list[_Stamp]:
        return [_Stamp(encoded_frame.timestamp, digest(encoded_frame.data))]


_real_get_decoder = rtcrtpreceiver.get_decoder
_real_handle_rtp = rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet


def _get_decoder(codec):
    return _HashingDecoder() if codec.name == "VP8" else _real_get_decoder(codec)


async def _handle_rtp_packet(self, packet, arrival_time_ms: int) -> None:
    if packet.marker:  # a frame's last packet: its arrival is the frame's receive time
        marks = self.__dict__.setdefault("bench_marks", {})
        marks[packet.timestamp] = time.monotonic()
        if len(marks) > 256:
            marks.pop(next(iter(marks)))
    await _real_handle_rtp(self, packet, arrival_time_ms)


def quiet_logs() -> None:
    """Warnings only from our clients, on stderr (stdout is the benchmark's JSON)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def install_receive_hooks() -> None:
    """Views in this process hash frames instead of decoding them (see the module's doc)."""
    rtcrtpreceiver.get_decoder = _get_decoder
    rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet = _handle_rtp_packet


class Publisher:
    """A terminal that publishes the clip when the gateway asks."""

    def __init__(self, url: str, token: str, frames: list[bytes], fps: int, sent: memoryview) -> None:
        self.url, self.token = url, token
        self.track = ClipTrack(frames, fps, sent)
        self.pc = RTCPeerConnection(NO_ICE_SERVERS)
        self.client: GatewayClient | None = None
        self.published = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.client = await GatewayClient.connect(self.url, self.token)
        self.task = asyncio.get_running_loop().create_task(self._serve(), name=f"publisher {self.token}")

    async def _serve(self) -> None:
        assert self.client is not None
        async for ev in self.client.events():
            if ev["type"] == "video.request":
                await self._publish(ev["data"]["stream_id"])
                return

    async def _publish(self, stream_id: str) -> None:
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createOffer())  # aiortc gathers before returning
        res = await self.client.call("video.publish", stream_id=stream_id, sdp=self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(res["sdp"], "answer"))
        self.published.set()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.pc.close()
        if self.client is not None:
            await self.client.close()


class View:
    """One console's view of one stream: counts frames, measures each frame's delay."""

    def __init__(self, sent: memoryview, index: dict[bytes, int]) -> None:
        self.sent, self.index = sent, index  # the publisher's send log; digest -> clip frame index
        self.pc = RTCPeerConnection(NO_ICE_SERVERS)
        self.frames = 0
        self.delays: deque[float] = deque(maxlen=100_000)  # ms
        self.first = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track) -> None:
        if track.kind == "video":
            receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
            self.task = asyncio.get_running_loop().create_task(self._consume(track, receiver), name="view")

    async def _consume(self, track, receiver) -> None:
        while True:
            try:
                stamp = await track.recv()
            except MediaStreamError:
                return
            self.frames += 1
            self.first.set()
            got = receiver.__dict__.get("bench_marks", {}).pop(stamp.timestamp, None)
            i = self.index.get(stamp.digest)
            at = self.sent[i] if i is not None else None
            if got is not None and at and 0 <= got - at < 5.0:
                self.delays.append(1000 * (got - at))

    async def open(self, console: GatewayClient, stream_id: str) -> None:
        res = await console.call("video.watch", stream_id=stream_id)
        await self.pc.setRemoteDescription(RTCSessionDescription(res["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await console.call("video.answer", watch_id=res["watch_id"], sdp=self.pc.localDescription.sdp)

    async def close(self) -> None:
        await self.pc.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class SendLog:
    """Every publisher's send time of each clip frame, in shared memory: the consoles, in their
    own processes, read it (CLOCK_MONOTONIC is one clock for every process of the machine)."""

    def __init__(self, publishers: int, frames: int, name: str | None = None) -> None:
        self.publishers, self.frames = publishers, frames
        self.shm = shared_memory.SharedMemory(name=name, create=name is None, size=8 * publishers * frames)
        self.times = self.shm.buf.cast("d")

    def of(self, publisher: int) -> memoryview:
        return self.times[publisher * self.frames:(publisher + 1) * self.frames]

    def close(self, unlink: bool = False) -> None:
        try:
            self.times.release()
            self.shm.close()
        except BufferError:  # a publisher's or view's slice still alive: the mapping goes at exit
            pass
        if unlink:
            self.shm.unlink()


def console_main(conn, url: str, token: str, digests: list[bytes], log_name: str, publishers: int) -> None:
    """A console in a process of its own (so the views do not share one event loop): commands
    from the benchmark over `conn`: ("watch", [(stream_id, publisher index), ...]) -> "ok" once
    every view has a frame; "sample" -> ([frames per view], [delays ms]), delays cleared; "stop"."""
    quiet_logs()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where is it stuck
    install_receive_hooks()
    log = SendLog(publishers, len(digests), name=log_name)
    index = {d: i for i, d in enumerate(digests)}

    async def serve() -> None:
        console = await GatewayClient.connect(url, token)
        views: list[View] = []
        try:
            while True:
                cmd, arg = await asyncio.to_thread(conn.recv)
                if cmd == "watch":
                    try:
                        async with asyncio.timeout(120):  # a view's first frame: the clip's next keyframe
                            for sid, pub in arg:
                                view = View(log.of(pub), index)
                                views.append(view)
                                await view.open(console, sid)
                            await asyncio.gather(*(v.first.wait() for v in views))
                    except Exception as exc:  # told to the benchmark, which stops
                        waiting = sum(not v.first.is_set() for v in views)
                        conn.send(f"failed: {exc!r} ({waiting} of {len(views)} views without a frame)")
                        return
                    conn.send("ok")
                elif cmd == "sample":
                    delays = [d for v in views for d in v.delays]
                    for v in views:
                        v.delays.clear()
                    conn.send(([v.frames for v in views], delays))
                else:
                    return
        finally:
            for v in views:
                await v.close()
            await console.close()

    try:
        asyncio.run(serve())
    finally:
        log.close()
        conn.close()


class Console:
    """The benchmark's handle on a console process."""

    def __init__(self, url: str, token: str, digests: list[bytes], log: SendLog) -> None:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, in this thread's namespace
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=console_main, name="bench-console", daemon=True,
                                args=(child, url, token, digests, log.shm.name, log.publishers))
        self.proc.start()
        child.close()

    async def ask(self, cmd: str, arg=None, timeout: float = 180):
        self.conn.send((cmd, arg))
        async with asyncio.timeout(timeout):
            return await asyncio.to_thread(self.conn.recv)

    async def stop(self) -> None:
        try:
            self.conn.send(("stop", None))
        except OSError:
            pass
        await asyncio.to_thread(self.proc.join, 30)
        if self.proc.is_alive():
            self.proc.kill()  # our own child, by its pid
            await asyncio.to_thread(self.proc.join, 10)
