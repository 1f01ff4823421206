"""Live video from the field: `video.pull`, `video.publish`, `video.watch`, `video.answer`,
`video.unwatch`, `video.stop`, `video.get`, with Janus as the media engine.

A pull picks the least loaded Janus (video/pool.py), opens a Janus session there, creates a
VideoRoom room for the stream (one publisher, recorded at ingest into the stream's own
directory) and asks the terminal, on its control connection, to publish (`video.request`).
The terminal's SDP offer comes back through `video.publish` and Janus's answer goes back in its
result; consoles get Janus's offer from `video.watch` and send their answer with `video.answer`.
Neither ever sees Janus's API or its secret. Every change is a stored `video.state` event
(requested, publishing, watching with the count, stopped, failed with a reason); when a
stream ends its recording is post-processed into one WebM file (video/recording.py) and a
`video.recording` event carries its path, duration and SHA-256.

The work belongs to the service: a console that goes away loses its views (never the stream),
a stream outlives the dispatcher who pulled it. Janus dying fails every stream it carried
(`failed`, reason `janus-crashed`); its supervisor restarts it and the next pull works.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from gateway.errors import Conflict, GatewayError, InvalidParams, NotFound, Unavailable
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.state.video import STREAM_MACHINE, StreamInput, StreamState
from gateway.tasks import OwnedTasks
from gateway.timeutil import now_iso
from video.config import VideoConfig
from video.errors import JanusRequestError, VideoError
from video.janus_client import JanusHandle, JanusSession
from video.janus_process import JanusInstance
from video.janus_protocol import HandleEvent
from video.pool import JanusPool
from video.recording import postprocess

if TYPE_CHECKING:  # pragma: no cover
    from gateway.protocol import RequestContext
    from gateway.connection import Connection

log = structlog.get_logger("gateway.video")

VIDEOROOM = "janus.plugin.videoroom"
JSEP_ERRORS = frozenset({464, 465})  # Janus: unknown JSEP type, invalid SDP
KEEP_ENDED = 1000  # ended streams still answered by video.get / video.list (the events keep all)


class TerminalLink(Protocol):
    """What the video service needs from the terminals (gateway/services/terminals.py)."""

    def require(self, terminal_id: str) -> None: ...
    def acting_for(self, ctx: RequestContext, named: str | None) -> str: ...
    def online(self, terminal_id: str) -> bool: ...
    def terminal_of(self, conn: Connection) -> str | None: ...
    def connections(self, terminal_id: str) -> list[Connection]: ...


@dataclass
class Watcher:
    id: str
    conn: Connection
    handle: JanusHandle
    answered: bool = False


@dataclass
class Stream:
    id: str
    terminal_id: str
    session_id: str
    instance: JanusInstance
    janus: JanusSession
    room: int
    rec_dir: Path
    requested_by: str
    state: StreamState = StreamState.REQUESTED
    publisher: JanusHandle | None = None
    offered: bool = False
    publishing_since: float | None = None
    watchers: dict[str, Watcher] = field(default_factory=dict)
    reason: str | None = None
    recording: dict[str, Any] | None = None
    deadline: asyncio.Task[None] | None = None  # publish_timeout_s while requested
    request_seq: int = 0  # the seq of `video.state requested`, carried by `video.request`

    @property
    def watching(self) -> int:
        return sum(1 for w in self.watchers.values() if w.answered)

    def public(self) -> dict[str, Any]:
        return {"stream_id": self.id, "terminal_id": self.terminal_id, "session_id": self.session_id,
                "state": self.state.value, "watching": self.watching, "instance": self.instance.name,
                "reason": self.reason, "recording": self.recording}


def map_video_error(e: VideoError, *, sdp: bool = False) -> GatewayError:
    """A video-package failure as the control channel's typed error."""
    if sdp and isinstance(e, JanusRequestError) and e.code in JSEP_ERRORS:
        return InvalidParams(f"SDP refused: {e.message}", reason="invalid-sdp",
                             details={"why": e.message})
    return Unavailable(e.message, reason=e.reason, details=e.details)


class VideoService:
    def __init__(self, bus: EventBus, sessions: SessionService, config: VideoConfig, *,
                 data_dir: str | Path, terminals: TerminalLink | None = None) -> None:
        self.config = config
        self._bus = bus
        self._sessions = sessions
        self.terminals = terminals
        data = Path(data_dir)
        rec = Path(config.recordings_dir)
        self.recordings_dir = rec if rec.is_absolute() else data / rec
        self.pool = JanusPool(config, run_dir=data / "run", on_down=self._janus_down)
        self.streams: dict[str, Stream] = {}
        self._watch_index: dict[str, Stream] = {}
        self._tasks = OwnedTasks()
        self.on_janus_down: list[Callable[[JanusInstance], None]] = []  # voice bridges end too
        sessions.on_close.append(self.close_session)
        self._pull_lock = asyncio.Lock()  # pulls one at a time: two for one terminal give one stream

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self.config.enabled:
            self.recordings_dir.mkdir(parents=True, exist_ok=True)
            await self.pool.start()

    async def stop(self) -> None:
        """End every live stream (recordings post-processed), then stop Janus: last."""
        for stream in list(self.streams.values()):
            if not STREAM_MACHINE.is_final(stream.state):
                await self._end(stream, StreamInput.STOP, "shutting-down")
        await self._tasks.wait(self.config.postprocess_timeout_s)
        await self._tasks.cancel_all()
        await self.pool.stop()

    async def ready(self) -> bool:
        """/readyz: a stream can be placed (some Janus instance is up)."""
        return await self.readiness() is None

    async def readiness(self) -> str | None:
        """None while a stream can be placed; else why not (for /readyz)."""
        if any(i.up.is_set() for i in self.pool.instances):
            return None
        return f"no Janus instance is up (0 of {len(self.pool.instances)})"

    # -- methods -----------------------------------------------------------------------------
    async def pull(self, *, principal: str, terminal_id: str, session_id: str | None) -> dict:
        async with self._pull_lock:
            return await self._pull(principal, terminal_id, session_id)

    async def _pull(self, principal: str, terminal_id: str, session_id: str | None) -> dict:
        link = self.reachable_terminal(terminal_id)
        live = self._live_for(terminal_id)
        if live is not None:  # one stream per terminal: a second pull gets the live one
            return live.public()
        session_id = await self.incident(session_id, f"Video from {terminal_id}", principal, "video")
        stream_id = "vid-" + secrets.token_hex(8)
        instance, janus = await self.open_janus()
        rec_dir = self.recordings_dir / stream_id
        rec_dir.mkdir(parents=True, exist_ok=True)
        stream = Stream(stream_id, terminal_id, session_id, instance, janus,
                        room=secrets.randbelow(2**52) + 1, rec_dir=rec_dir, requested_by=principal)
        try:
            admin = await janus.attach(VIDEOROOM)
            await admin.message({"request": "create", "admin_key": instance.settings.api_secret,
                                 "room": stream.room, "publishers": 1, "record": True,
                                 "lock_record": True, "rec_dir": str(rec_dir),
                                 "audiocodec": "opus", "videocodec": "vp8,h264"},
                                timeout=self.config.request_timeout_s)
        except VideoError as e:
            await janus.destroy()
            shutil.rmtree(rec_dir, ignore_errors=True)
            raise map_video_error(e) from None
        self.streams[stream_id] = stream
        stream.request_seq = (await self._state(stream)).seq
        sent = sum(1 for conn in link.connections(terminal_id) if self._ask(stream, conn))
        if not sent:
            await self._end(stream, StreamInput.FAIL, "terminal-offline")
        else:
            stream.deadline = self._tasks.spawn(self._publish_deadline(stream), f"video-deadline {stream_id}")
        log.info("video.pulled", stream_id=stream_id, terminal_id=terminal_id,
                 instance=instance.name, sent=sent)
        return stream.public()

    def terminal_of(self, ctx: RequestContext) -> str | None:
        """The terminal a request comes from (a terminal may act only for itself); None for an
        admin, who may act on any stream."""
        return self.link().acting_for(ctx, None) if ctx.role == "terminal" else None

    async def publish(self, *, terminal_id: str | None, stream_id: str, sdp: str) -> dict:
        stream = self._stream(stream_id)
        if terminal_id is not None and stream.terminal_id != terminal_id:
            raise NotFound(f"no stream {stream_id!r} for this terminal", reason="no-such-stream",
                           details={"stream_id": stream_id})
        STREAM_MACHINE.next(stream.state, StreamInput.OFFER)
        if stream.offered:
            raise Conflict("this stream already has the terminal's offer", reason="invalid-state",
                           details={"stream_id": stream_id})
        stream.offered = True
        try:
            handle = await stream.janus.attach(VIDEOROOM)
            handle.on_event = lambda ev: self._on_publisher(stream, ev)
            stream.publisher = handle
            reply = await handle.message(
                {"request": "joinandconfigure", "room": stream.room, "ptype": "publisher",
                 "id": self._feed(stream), "display": stream.terminal_id, "audio": True,
                 "video": True, "record": True},
                jsep={"type": "offer", "sdp": sdp}, timeout=self.config.request_timeout_s)
        except VideoError as e:
            stream.offered = False
            if stream.publisher is not None:
                stream.publisher.on_event = None
                await stream.publisher.detach()
                stream.publisher = None
            raise map_video_error(e, sdp=True) from None
        if reply.jsep is None or reply.jsep.get("type") != "answer":
            raise Unavailable("Janus gave no SDP answer", reason="janus-error")
        return {"stream_id": stream_id, "sdp": reply.jsep["sdp"]}

    async def watch(self, conn: Connection, stream_id: str) -> dict:
        stream = self._stream(stream_id)
        _require_publishing(stream)
        try:
            handle = await stream.janus.attach(VIDEOROOM)
        except VideoError as e:
            raise map_video_error(e) from None
        try:
            reply = await handle.message(
                {"request": "join", "room": stream.room, "ptype": "subscriber",
                 "streams": [{"feed": self._feed(stream)}]}, timeout=self.config.request_timeout_s)
        except VideoError as e:
            await handle.detach()
            raise map_video_error(e) from None
        if reply.jsep is None or reply.jsep.get("type") != "offer" or \
                stream.state is not StreamState.PUBLISHING:  # it may have ended meanwhile
            await handle.detach()
            _require_publishing(stream)
            raise Unavailable("Janus gave no SDP offer", reason="janus-error")
        watcher = Watcher("watch-" + secrets.token_hex(8), conn, handle)
        handle.on_event = lambda ev: self._on_viewer(stream, watcher, ev)
        stream.watchers[watcher.id] = watcher
        self._watch_index[watcher.id] = stream
        conn.on_close(lambda _c: self._viewer_gone(stream, watcher))
        return {"watch_id": watcher.id, "stream_id": stream_id, "sdp": reply.jsep["sdp"],
                "ice_servers": self.config.rtc_ice_servers()}

    async def answer(self, conn: Connection, watch_id: str, sdp: str) -> dict:
        stream, watcher = self._watcher(conn, watch_id)
        if watcher.answered:
            raise Conflict("this view is already answered", reason="invalid-state",
                           details={"watch_id": watch_id})
        try:
            await watcher.handle.message({"request": "start", "room": stream.room},
                                         jsep={"type": "answer", "sdp": sdp},
                                         timeout=self.config.request_timeout_s)
        except VideoError as e:
            raise map_video_error(e, sdp=True) from None
        watcher.answered = True
        await self._state(stream, state="watching")
        return {"watch_id": watch_id, "stream_id": stream.id, "watching": stream.watching}

    async def unwatch(self, conn: Connection, watch_id: str) -> dict:
        stream, watcher = self._watcher(conn, watch_id)
        await self._drop_viewer(stream, watcher)
        return {"watch_id": watch_id, "stream_id": stream.id, "watching": stream.watching}

    async def stop_stream(self, stream_id: str, *, terminal_id: str | None = None) -> dict:
        stream = self._stream(stream_id)
        if terminal_id is not None and stream.terminal_id != terminal_id:
            raise NotFound(f"no stream {stream_id!r} for this terminal", reason="no-such-stream",
                           details={"stream_id": stream_id})
        STREAM_MACHINE.next(stream.state, StreamInput.STOP)
        await self._end(stream, StreamInput.STOP, "stopped-by-terminal" if terminal_id else "stopped")
        return stream.public()

    def get(self, stream_id: str) -> dict:
        return self._stream(stream_id).public()

    async def close_session(self, session_id: str) -> None:
        """session.close: the incident's live streams stop (`session-closed`)."""
        for stream in list(self.streams.values()):
            if stream.session_id == session_id and not STREAM_MACHINE.is_final(stream.state):
                await self._end(stream, StreamInput.STOP, "session-closed")

    def list(self, session_id: str | None = None) -> list[dict]:
        return [s.public() for s in self.streams.values()
                if session_id is None or s.session_id == session_id]

    def on_connected(self, conn: Connection) -> None:
        """A terminal (re)connected: ask it again for a stream it has not published yet (after
        the hello reply, which the server queues as soon as this returns)."""
        tid = self.terminals.terminal_of(conn) if self.terminals is not None else None
        for stream in self.streams.values():
            if stream.terminal_id == tid and stream.state is StreamState.REQUESTED and not stream.offered:
                asyncio.get_running_loop().call_soon(self._ask, stream, conn)

    def _ask(self, stream: Stream, conn: Connection) -> bool:
        """Send the terminal's connection the `video.request` event (not stored)."""
        return conn.send_event({
            "seq": stream.request_seq, "type": "video.request", "time": now_iso(),
            "session_id": stream.session_id,
            "data": {"stream_id": stream.id, "terminal_id": stream.terminal_id, "audio": True,
                     "video": True, "ice_servers": self.config.rtc_ice_servers()}})

    def tell_terminal(self, terminal_id: str, event: Any) -> None:
        """Push a stored event (the end of its stream or bridge) to the terminal's own
        connections: a terminal cannot subscribe, and its page should not wait for the media
        connection to time out to learn that dispatch ended it."""
        if self.terminals is not None:
            for conn in self.terminals.connections(terminal_id):
                conn.send_event(event.to_params())

    # -- Janus notices -------------------------------------------------------------------------
    def _on_publisher(self, stream: Stream, ev: HandleEvent) -> None:
        if STREAM_MACHINE.is_final(stream.state):
            return
        if ev.kind == "webrtcup" and stream.state is StreamState.REQUESTED:
            self._tasks.spawn(self._media_up(stream), f"video-up {stream.id}")
        elif ev.kind == "gone":  # our socket to Janus is gone with it
            self._tasks.spawn(self._end(stream, StreamInput.FAIL, "janus-crashed"), f"video-fail {stream.id}")
        elif ev.kind in ("hangup", "detached"):
            self._tasks.spawn(self._end(stream, StreamInput.STOP, "publisher-hangup"), f"video-end {stream.id}")

    def _on_viewer(self, stream: Stream, watcher: Watcher, ev: HandleEvent) -> None:
        if ev.kind in ("hangup", "detached") and watcher.id in stream.watchers:
            self._tasks.spawn(self._drop_viewer(stream, watcher), f"video-unwatch {watcher.id}")

    def _viewer_gone(self, stream: Stream, watcher: Watcher) -> None:
        if watcher.id in stream.watchers:
            self._tasks.spawn(self._drop_viewer(stream, watcher), f"video-unwatch {watcher.id}")

    def _janus_down(self, instance: JanusInstance, reason: str) -> None:
        for listener in self.on_janus_down:
            listener(instance)
        for stream in list(self.streams.values()):
            if stream.instance is instance and not STREAM_MACHINE.is_final(stream.state):
                self._tasks.spawn(self._end(stream, StreamInput.FAIL, "janus-crashed"),
                                f"video-fail {stream.id}")

    async def _media_up(self, stream: Stream) -> None:
        if stream.state is not StreamState.REQUESTED:
            return
        stream.state = STREAM_MACHINE.next(stream.state, StreamInput.MEDIA_UP)
        stream.publishing_since = time.monotonic()
        self._cancel_deadline(stream)
        await self._state(stream)

    async def _publish_deadline(self, stream: Stream) -> None:
        await asyncio.sleep(self.config.publish_timeout_s)
        if stream.state is StreamState.REQUESTED:
            await self._end(stream, StreamInput.FAIL, "publish-timeout")

    async def _drop_viewer(self, stream: Stream, watcher: Watcher) -> None:
        if stream.watchers.pop(watcher.id, None) is None:
            return
        self._watch_index.pop(watcher.id, None)
        watcher.handle.on_event = None
        await watcher.handle.detach()
        if watcher.answered and stream.state is StreamState.PUBLISHING:
            await self._state(stream, state="watching")

    async def _end(self, stream: Stream, how: StreamInput, reason: str) -> None:
        """stopped or failed: tear the room down (Janus closes the recording), say so, then
        post-process the recording in a task the service owns."""
        if STREAM_MACHINE.is_final(stream.state):
            return
        stream.state = STREAM_MACHINE.next(stream.state, how)
        stream.reason = reason
        self._cancel_deadline(stream)
        duration = time.monotonic() - stream.publishing_since if stream.publishing_since else 0.0
        for watcher in list(stream.watchers.values()):
            stream.watchers.pop(watcher.id, None)
            self._watch_index.pop(watcher.id, None)
            watcher.handle.on_event = None
        if stream.publisher is not None:
            stream.publisher.on_event = None
        if stream.janus.alive:
            try:
                admin = await stream.janus.attach(VIDEOROOM)
                await admin.message({"request": "destroy", "room": stream.room,
                                     "admin_key": stream.instance.settings.api_secret}, timeout=5)
            except VideoError as e:
                log.info("video.room_destroy_failed", stream_id=stream.id, error=str(e))
        await stream.janus.destroy()
        self.tell_terminal(stream.terminal_id, await self._state(stream, duration_s=round(duration, 3)))
        log.info("video.ended", stream_id=stream.id, state=stream.state.value, reason=reason)
        self._tasks.spawn(self._finish_recording(stream), f"video-recording {stream.id}")

    async def _finish_recording(self, stream: Stream) -> None:
        data: dict[str, Any] = {"stream_id": stream.id, "terminal_id": stream.terminal_id}
        if stream.publishing_since is None and not any(stream.rec_dir.glob("*.mjr")):
            shutil.rmtree(stream.rec_dir, ignore_errors=True)  # never published: nothing to keep
            return
        try:
            rec = await postprocess(stream.rec_dir, self.recordings_dir / stream.id,
                                    pp_rec_bin=self.config.pp_rec_bin,
                                    ffmpeg_bin=self.config.ffmpeg_bin,
                                    timeout=self.config.postprocess_timeout_s)
        except VideoError as e:
            data.update(state="failed", reason=e.message[:300])
            log.warning("video.recording_failed", stream_id=stream.id, error=e.message[:300])
        else:
            data.update(state="ready", **rec.data())
            stream.recording = rec.data()
            shutil.rmtree(stream.rec_dir, ignore_errors=True)  # the .mjr and parts: now in one file
        await self._bus.publish("video.recording", data, session_id=stream.session_id)
        forget(self.streams, lambda s: STREAM_MACHINE.is_final(s.state))


    # -- helpers -------------------------------------------------------------------------------
    async def _state(self, stream: Stream, *, state: str | None = None, **extra: Any):
        data = {"stream_id": stream.id, "terminal_id": stream.terminal_id,
                "state": state or stream.state.value, "watching": stream.watching,
                "instance": stream.instance.name, **extra}
        if stream.reason is not None:
            data["reason"] = stream.reason
        return await self._bus.publish("video.state", data, session_id=stream.session_id)

    def reachable_terminal(self, terminal_id: str) -> TerminalLink:
        """Video is on, the terminal exists and is online (else the precise error)."""
        self.require_enabled()
        link = self.link()
        link.require(terminal_id)
        if not link.online(terminal_id):
            raise Conflict(f"terminal {terminal_id!r} is offline", reason="terminal-offline",
                           details={"terminal_id": terminal_id})
        return link

    async def incident(self, session_id: str | None, title: str, principal: str, origin: str) -> str:
        """The open session to record the work in: the one named, or a new one."""
        if not session_id:
            return (await self._sessions.create(title=title, created_by=principal,
                                                origin=origin))["session_id"]
        await self._sessions.require_open(session_id)
        return session_id

    async def open_janus(self) -> tuple[JanusInstance, JanusSession]:
        """A Janus session on the least loaded instance that is up."""
        try:
            instance = self.pool.pick(self.load)
            assert instance.client is not None
            return instance, await instance.client.create_session(keepalive_s=self.config.keepalive_s)
        except VideoError as e:
            raise map_video_error(e) from None

    def _live_for(self, terminal_id: str) -> Stream | None:
        return next((s for s in self.streams.values() if s.terminal_id == terminal_id
                     and not STREAM_MACHINE.is_final(s.state)), None)

    @staticmethod
    def _cancel_deadline(stream: Stream) -> None:
        if stream.deadline is not None and stream.deadline is not asyncio.current_task():
            stream.deadline.cancel()
        stream.deadline = None

    def load(self, instance: JanusInstance) -> int:
        return sum(1 + len(s.watchers) for s in self.streams.values()
                   if s.instance is instance and not STREAM_MACHINE.is_final(s.state))

    @staticmethod
    def _feed(stream: Stream) -> int:
        return stream.room  # the one publisher of a stream's room joins with the room's number

    def _stream(self, stream_id: str) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise NotFound(f"no stream {stream_id!r}", reason="no-such-stream",
                           details={"stream_id": stream_id})
        return stream

    def _watcher(self, conn: Connection, watch_id: str) -> tuple[Stream, Watcher]:
        stream = self._watch_index.get(watch_id)
        watcher = stream.watchers.get(watch_id) if stream else None
        if stream is None or watcher is None or watcher.conn is not conn:
            raise NotFound(f"no view {watch_id!r} on this connection", reason="no-such-view",
                           details={"watch_id": watch_id})
        return stream, watcher

    def require_enabled(self) -> None:
        if not self.config.enabled:
            raise Unavailable("video is not enabled on this gateway ([video] enabled)",
                              reason="video-disabled")

    def link(self) -> TerminalLink:
        if self.terminals is None:
            raise Unavailable("no terminals on this gateway", reason="video-disabled")
        return self.terminals


def forget(live: dict[str, Any], ended: Callable[[Any], bool], keep: int = KEEP_ENDED) -> None:
    """Drop the oldest ended entries beyond `keep` (dicts keep insertion order)."""
    done = [k for k, v in live.items() if ended(v)]
    for k in done[:max(0, len(done) - keep)]:
        del live[k]


def _require_publishing(stream: Stream) -> None:
    if stream.state is not StreamState.PUBLISHING:
        raise Conflict(f"stream {stream.id} is {stream.state.value}", reason="invalid-state",
                       details={"stream_id": stream.id, "state": stream.state.value})
