"""An asyncio client of the Janus WebSocket API: sessions, handles, transactions, keepalives.

    client = await JanusClient.connect("ws://127.0.0.1:8188", api_secret)
    session = await client.create_session()        # keepalive task started, owned by the session
    handle = await session.attach("janus.plugin.videoroom")
    reply = await handle.message({"request": "join", ...}, jsep=offer)   # waits past the `ack`
    event = await handle.next_event(timeout=5)     # webrtcup, media, hangup, plugin events
    await session.destroy(); await client.close()

Transactions are matched by the sans-I/O core (video/janus_protocol.py). Each handle has a
bounded event queue: when it is full the oldest notice is dropped and counted (a slow reader
never blocks the reader task). Every failure is a `video.errors.VideoError`: a refused or lost
socket is `JanusUnavailable` (every pending request fails with it, every handle's `next_event`
raises it), no answer in time is `JanusTimeout`, an `error` reply is `JanusRequestError`.
`client.closed` is set when the socket is gone, so an owner can react (video/janus_process.py).
A handle with an `on_event` callback gets every notice through it, and one last pseudo-notice
`{"janus": "gone"}` when the handle is gone (detached, its session timed out, the socket lost);
an exception in the callback is logged, never raised into the reader.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from video.errors import (
    JanusProtocolError,
    JanusRequestError,
    JanusTimeout,
    JanusUnavailable,
    VideoError,
)
from video.janus_protocol import (
    Acked,
    Failed,
    HandleEvent,
    JanusProtocol,
    Reply,
    SessionGone,
    Unmatched,
)

log = structlog.get_logger("video.janus_client")

SUBPROTOCOL = "janus-protocol"
DEFAULT_TIMEOUT_S = 10.0
HANDLE_QUEUE = 64


class JanusClient:
    """One WebSocket connection to one Janus, shared by its sessions."""

    def __init__(self, ws: ClientConnection, api_secret: str | None, url: str) -> None:
        self.url = url
        self._ws = ws
        self._proto = JanusProtocol(api_secret=api_secret)
        self._waiters: dict[str, asyncio.Future[Reply]] = {}
        self._handles: dict[int, JanusHandle] = {}
        self._sessions: dict[int, JanusSession] = {}
        self.closed = asyncio.Event()
        self.log = log.bind(janus=url)
        self._reader = asyncio.create_task(self._read(), name=f"janus-reader {url}")

    @classmethod
    async def connect(cls, url: str, api_secret: str | None = None,
                      timeout: float = DEFAULT_TIMEOUT_S) -> JanusClient:
        try:
            ws = await asyncio.wait_for(
                ws_connect(url, subprotocols=[SUBPROTOCOL], max_size=4 * 1024 * 1024,
                           open_timeout=timeout, ping_interval=None, proxy=None),
                timeout)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as e:
            raise JanusUnavailable(f"cannot connect to Janus at {url}: {e!r}") from None
        return cls(ws, api_secret, url)

    # -- requests ------------------------------------------------------------------------------
    async def request(self, janus: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                      **fields: Any) -> Reply:
        """Send one request and wait for the answer that ends it (past an `ack`)."""
        if self.closed.is_set():
            raise JanusUnavailable(f"Janus connection {self.url} is closed")
        tid, msg = self._proto.request(janus, **fields)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiters[tid] = fut
        try:
            await self._ws.send(json.dumps(msg))
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise JanusTimeout(f"Janus did not answer {janus} in {timeout:g} s") from None
        except ConnectionClosed:
            raise JanusUnavailable(f"Janus connection {self.url} closed") from None
        finally:
            self._waiters.pop(tid, None)
            self._proto.forget(tid)

    async def info(self, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        return (await self.request("info", timeout=timeout)).message

    async def create_session(self, keepalive_s: float = 20.0) -> JanusSession:
        reply = await self.request("create")
        sid = _id_of(reply)
        session = JanusSession(self, sid, keepalive_s)
        self._sessions[sid] = session
        return session

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            session.stop_keepalive()
        await self._ws.close()
        try:
            await asyncio.wait_for(self._reader, 5)
        except TimeoutError:
            self._reader.cancel()
        except Exception:  # noqa: BLE001 - the reader's own failure was already logged
            pass

    # -- the reader ----------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                try:
                    self._dispatch(json.loads(raw))
                except (ValueError, JanusProtocolError) as e:
                    self.log.warning("janus.bad_message", error=str(e)[:200])
        except ConnectionClosed:
            pass
        finally:
            self._shutdown()

    def _dispatch(self, message: Any) -> None:
        out = self._proto.receive(message)
        match out:
            case Reply():
                fut = self._waiters.get(out.transaction)
                if fut is not None and not fut.done():
                    fut.set_result(out)
            case Failed():
                fut = self._waiters.get(out.transaction)
                if fut is not None and not fut.done():
                    fut.set_exception(JanusRequestError(out.reason, code=out.code))
            case Acked():
                pass
            case HandleEvent():
                handle = self._handles.get(out.handle_id)
                if handle is not None:
                    handle._deliver(out)
            case SessionGone():
                session = self._sessions.pop(out.session_id, None)
                self.log.warning("janus.session_timeout", session_id=out.session_id)
                if session is not None:
                    session._gone()
            case Unmatched():
                self.log.debug("janus.unmatched", janus=out.message.get("janus"))

    def _shutdown(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self._proto.fail_all()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(JanusUnavailable(f"Janus connection {self.url} lost"))
        for session in list(self._sessions.values()):
            session._gone()
        self._sessions.clear()
        self.log.info("janus.connection_closed")


class JanusSession:
    """A Janus session: its handles, kept alive by a task it owns."""

    def __init__(self, client: JanusClient, session_id: int, keepalive_s: float) -> None:
        self.client = client
        self.id = session_id
        self.handles: dict[int, JanusHandle] = {}
        self.alive = True
        self.ended = asyncio.Event()  # set when Janus timed it out, it was destroyed or the socket went
        self._keepalive = asyncio.create_task(self._keep_alive(keepalive_s),
                                              name=f"janus-keepalive {session_id}")

    async def attach(self, plugin: str) -> JanusHandle:
        reply = await self.client.request("attach", session_id=self.id, plugin=plugin)
        handle = JanusHandle(self, _id_of(reply), plugin)
        self.handles[handle.id] = handle
        self.client._handles[handle.id] = handle
        return handle

    async def destroy(self) -> None:
        self.stop_keepalive()
        if self.alive and not self.client.closed.is_set():
            try:
                await self.client.request("destroy", session_id=self.id, timeout=5)
            except VideoError as e:
                self.client.log.info("janus.destroy_failed", session_id=self.id, error=str(e))
        self._gone()
        self.client._sessions.pop(self.id, None)

    def stop_keepalive(self) -> None:
        if not self._keepalive.done():
            self._keepalive.cancel()

    async def _keep_alive(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.client.request("keepalive", session_id=self.id, timeout=every_s)
            except VideoError as e:
                self.client.log.warning("janus.keepalive_failed", session_id=self.id, error=str(e))
                if self.client.closed.is_set():
                    return

    def _gone(self) -> None:
        self.alive = False
        self.ended.set()
        self.stop_keepalive()
        for handle in self.handles.values():
            handle._close()
            self.client._handles.pop(handle.id, None)
        self.handles.clear()


class JanusHandle:
    """A handle on one plugin: requests in, unsolicited notices out through a bounded queue."""

    def __init__(self, session: JanusSession, handle_id: int, plugin: str) -> None:
        self.session = session
        self.id = handle_id
        self.plugin = plugin
        self.dropped = 0
        self.on_event: Callable[[HandleEvent], None] | None = None
        self._events: collections.deque[HandleEvent] = collections.deque(maxlen=HANDLE_QUEUE)
        self._wake = asyncio.Event()
        self._closed = False

    async def message(self, body: dict[str, Any], jsep: dict[str, Any] | None = None,
                      timeout: float = DEFAULT_TIMEOUT_S) -> Reply:
        self._check_open()
        return await self.session.client.request(
            "message", session_id=self.session.id, handle_id=self.id, body=body, jsep=jsep,
            timeout=timeout)

    async def detach(self) -> None:
        if self._closed:
            return
        try:
            await self.session.client.request(
                "detach", session_id=self.session.id, handle_id=self.id, timeout=5)
        except VideoError as e:
            self.session.client.log.info("janus.detach_failed", handle_id=self.id, error=str(e))
        self._close()
        self.session.handles.pop(self.id, None)
        self.session.client._handles.pop(self.id, None)

    async def next_event(self, timeout: float = DEFAULT_TIMEOUT_S) -> HandleEvent:
        """The next notice for this handle; JanusUnavailable once the handle is gone."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._events:
            self._check_open()
            self._wake.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise JanusTimeout(f"no event on handle {self.id} in {timeout:g} s")
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                raise JanusTimeout(f"no event on handle {self.id} in {timeout:g} s") from None
        return self._events.popleft()

    def _deliver(self, event: HandleEvent) -> None:
        if self.on_event is not None:
            self._notify(event)
            return
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)
        self._wake.set()

    def _check_open(self) -> None:
        if self._closed:
            raise JanusUnavailable(f"Janus handle {self.id} is gone")

    def _close(self) -> None:
        self._closed = True
        self._wake.set()
        if self.on_event is not None:
            self._notify(HandleEvent(self.id, {"janus": "gone", "sender": self.id}))

    def _notify(self, event: HandleEvent) -> None:
        assert self.on_event is not None
        try:
            self.on_event(event)
        except Exception:  # the owner's bug must not take the connection (and Janus) down
            self.session.client.log.exception("janus.on_event_crashed", handle_id=self.id,
                                              janus=event.kind)


def _id_of(reply: Reply) -> int:
    data = reply.message.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("id"), int):
        raise JanusProtocolError(f"Janus reply without an id: {str(reply.message)[:200]}")
    return data["id"]
