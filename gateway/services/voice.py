"""A terminal's microphone in a SIP call: `voice.bridge`, `voice.publish`, `voice.hangup`,
`voice.get`, through Janus's SIP plugin.

A dispatcher bridges a terminal to a phone (`target`: a directory name or a sip: URI). The
terminal is asked on its control connection (`voice.request`), sends an audio offer
(`voice.publish`); the gateway hands it to Janus's SIP plugin, which places the call (INVITE from
`video.sip_ip`, plain RTP to the phone, no transcoding: the terminal's offer carries Opus, G.722,
PCMU and PCMA and the phone picks) and answers the terminal with the phone's side once it
answers. Every change is a stored `voice.state` event. Why Janus and not a SIP worker: the
terminal speaks WebRTC (ICE, DTLS-SRTP), which Janus already terminates for video; a pjsua2
worker would need a second WebRTC stack or an RTP forwarder plus a fixed-remote call, and still
hold only 4 calls per process. The media stays out of the gateway's Python process either way.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from gateway.directory import Directory
from gateway.errors import NotFound, TargetError
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.services.video import VideoService, forget, map_video_error
from gateway.state.voice import VOICE_MACHINE, VoiceInput, VoiceState
from gateway.tasks import OwnedTasks
from gateway.timeutil import now_iso
from video.errors import VideoError
from video.janus_client import JanusHandle, JanusSession
from video.janus_process import JanusInstance
from video.janus_protocol import HandleEvent

if TYPE_CHECKING:  # pragma: no cover
    from gateway.connection import Connection

log = structlog.get_logger("gateway.voice")

SIP_PLUGIN = "janus.plugin.sip"


@dataclass
class Bridge:
    id: str
    terminal_id: str
    session_id: str
    target: str
    uri: str
    instance: JanusInstance
    janus: JanusSession
    request_seq: int = 0
    state: VoiceState = VoiceState.REQUESTED
    handle: JanusHandle | None = None
    answered: asyncio.Future[dict[str, Any]] | None = None
    reason: str | None = None
    sip_code: int | None = None

    def public(self) -> dict[str, Any]:
        return {"bridge_id": self.id, "terminal_id": self.terminal_id, "session_id": self.session_id,
                "target": self.target, "uri": self.uri, "state": self.state.value,
                "reason": self.reason, "sip_code": self.sip_code}


class VoiceService:
    def __init__(self, bus: EventBus, sessions: SessionService, directory: Directory,
                 video: VideoService, *, dial_timeout_s: float) -> None:
        self._bus = bus
        self._sessions = sessions
        self._directory = directory
        self._video = video
        self.dial_timeout_s = dial_timeout_s
        self.bridges: dict[str, Bridge] = {}
        self._tasks = OwnedTasks()
        video.on_janus_down.append(self._janus_down)
        sessions.on_close.append(self.close_session)

    async def stop(self) -> None:
        for bridge in list(self.bridges.values()):
            await self._end(bridge, "shutting-down")
        await self._tasks.cancel_all()

    # -- methods -------------------------------------------------------------------------------
    async def bridge(self, *, principal: str, terminal_id: str, target: str,
                     session_id: str | None) -> dict:
        video = self._video
        uri = self._sip_uri(target)
        link = video.reachable_terminal(terminal_id)
        session_id = await video.incident(session_id, f"{terminal_id} to {target}", principal, "voice")
        instance, janus = await video.open_janus()
        bridge = Bridge("voice-" + secrets.token_hex(8), terminal_id, session_id, target, uri,
                        instance, janus)
        self.bridges[bridge.id] = bridge
        bridge.request_seq = (await self._state(bridge)).seq
        if not sum(1 for conn in link.connections(terminal_id) if self._ask(bridge, conn)):
            await self._end(bridge, "terminal-offline")
        else:
            self._tasks.spawn(self._offer_deadline(bridge), f"voice-deadline {bridge.id}")
        return bridge.public()

    async def publish(self, *, terminal_id: str | None, bridge_id: str, sdp: str) -> dict:
        bridge = self._bridge(bridge_id, terminal_id)
        state = VOICE_MACHINE.next(bridge.state, VoiceInput.OFFER)
        bridge.state = state
        await self._state(bridge)
        bridge.answered = asyncio.get_running_loop().create_future()
        video = self._video
        try:
            handle = bridge.handle = await bridge.janus.attach(SIP_PLUGIN)
            handle.on_event = lambda ev: self._on_sip(bridge, ev)
            timeout = video.config.request_timeout_s
            await handle.message({"request": "register", "type": "guest",
                                  "username": f"sip:{bridge.terminal_id}@{video.config.sip_ip}",
                                  "display_name": bridge.terminal_id}, timeout=timeout)
            await handle.message({"request": "call", "uri": bridge.uri, "autoaccept_reinvites": False},
                                 jsep={"type": "offer", "sdp": sdp}, timeout=timeout)
            jsep = await asyncio.wait_for(asyncio.shield(bridge.answered), self.dial_timeout_s)
        except VideoError as e:
            await self._end(bridge, "janus-error")
            raise map_video_error(e, sdp=True) from None
        except TimeoutError:
            await self._end(bridge, "no-answer")
            raise TargetError(f"{bridge.uri} did not answer in {self.dial_timeout_s:g} s",
                              reason="target-unreachable", details={"uri": bridge.uri}) from None
        except _Refused as e:
            raise TargetError(f"{bridge.uri} refused the call ({e.code} {e.why})",
                              reason="target-unreachable",
                              details={"uri": bridge.uri, "sip_code": e.code}) from None
        return {"bridge_id": bridge.id, "sdp": jsep["sdp"]}

    async def hangup(self, bridge_id: str, *, terminal_id: str | None = None) -> dict:
        bridge = self._bridge(bridge_id, terminal_id)
        VOICE_MACHINE.next(bridge.state, VoiceInput.END)
        await self._end(bridge, "hangup-by-terminal" if terminal_id else "hangup")
        return bridge.public()

    def get(self, bridge_id: str) -> dict:
        return self._bridge(bridge_id, None).public()

    async def close_session(self, session_id: str) -> None:
        """session.close: the incident's bridges end (`session-closed`, a BYE if connected)."""
        for bridge in list(self.bridges.values()):
            if bridge.session_id == session_id:
                await self._end(bridge, "session-closed")

    def on_connected(self, conn: Connection) -> None:
        """A terminal (re)connected: ask it again for a bridge still waiting for its offer."""
        link = self._video.terminals
        tid = link.terminal_of(conn) if link is not None else None
        for bridge in self.bridges.values():
            if bridge.terminal_id == tid and bridge.state is VoiceState.REQUESTED:
                asyncio.get_running_loop().call_soon(self._ask, bridge, conn)

    # -- Janus notices -------------------------------------------------------------------------
    def _on_sip(self, bridge: Bridge, ev: HandleEvent) -> None:
        if VOICE_MACHINE.is_final(bridge.state):
            return
        result = ((ev.message.get("plugindata") or {}).get("data") or {}).get("result") or {}
        what = result.get("event") if ev.kind == "event" else ev.kind
        if what in ("ringing", "proceeding", "progress") and bridge.state is not VoiceState.RINGING:
            bridge.state = VOICE_MACHINE.next(bridge.state, VoiceInput.RINGING)
            self._tasks.spawn(self._state(bridge), f"voice-state {bridge.id}")
        elif what == "accepted":
            bridge.state = VOICE_MACHINE.next(bridge.state, VoiceInput.ACCEPTED)
            jsep = ev.message.get("jsep")
            if bridge.answered is not None and not bridge.answered.done():
                bridge.answered.set_result(jsep if isinstance(jsep, dict) else {"sdp": ""})
            self._tasks.spawn(self._state(bridge), f"voice-state {bridge.id}")
        elif what in ("hangup", "gone", "detached"):
            code = result.get("code")
            bridge.sip_code = code if isinstance(code, int) else None
            if ev.kind == "hangup":  # Janus core: the terminal's WebRTC side went away
                reason = "hangup-by-terminal"
            elif what == "hangup":  # the SIP plugin: the phone hung up or refused
                reason = "hangup-by-phone" if bridge.state is VoiceState.CONNECTED else "refused"
            else:
                reason = {"gone": "janus-crashed"}.get(what, "janus-hangup")
            if bridge.answered is not None and not bridge.answered.done():
                bridge.answered.set_exception(_Refused(bridge.sip_code, str(result.get("reason", what))))
            self._tasks.spawn(self._end(bridge, reason), f"voice-end {bridge.id}")

    def _janus_down(self, instance: JanusInstance) -> None:
        for bridge in list(self.bridges.values()):
            if bridge.instance is instance and not VOICE_MACHINE.is_final(bridge.state):
                self._tasks.spawn(self._end(bridge, "janus-crashed"), f"voice-end {bridge.id}")

    async def _offer_deadline(self, bridge: Bridge) -> None:
        await asyncio.sleep(self._video.config.publish_timeout_s)
        if bridge.state is VoiceState.REQUESTED:
            await self._end(bridge, "publish-timeout")

    async def _end(self, bridge: Bridge, reason: str) -> None:
        if VOICE_MACHINE.is_final(bridge.state):
            return
        bridge.state = VOICE_MACHINE.next(bridge.state, VoiceInput.END)
        bridge.reason = reason
        if bridge.answered is not None and not bridge.answered.done():
            bridge.answered.set_exception(_Refused(bridge.sip_code, reason))
            bridge.answered.exception()  # retrieved: nobody may be waiting any more
        handle, bridge.handle = bridge.handle, None
        if handle is not None:
            handle.on_event = None
            if bridge.janus.alive and reason in ("hangup", "hangup-by-terminal", "session-closed",
                                                 "shutting-down"):
                try:  # a BYE to the phone before the session goes
                    await handle.message({"request": "hangup"}, timeout=5)
                except VideoError as e:
                    log.info("voice.hangup_failed", bridge_id=bridge.id, error=str(e))
        await bridge.janus.destroy()
        self._video.tell_terminal(bridge.terminal_id, await self._state(bridge))
        log.info("voice.ended", bridge_id=bridge.id, reason=reason, sip_code=bridge.sip_code)
        forget(self.bridges, lambda b: VOICE_MACHINE.is_final(b.state))

    # -- helpers -------------------------------------------------------------------------------
    def _ask(self, bridge: Bridge, conn: Connection) -> bool:
        return conn.send_event({
            "seq": bridge.request_seq, "type": "voice.request", "time": now_iso(),
            "session_id": bridge.session_id,
            "data": {"bridge_id": bridge.id, "terminal_id": bridge.terminal_id, "target": bridge.target,
                     "audio": True, "video": False,
                     "ice_servers": self._video.config.rtc_ice_servers()}})

    async def _state(self, bridge: Bridge):
        data = {k: v for k, v in bridge.public().items() if k != "session_id"}
        return await self._bus.publish("voice.state", data, session_id=bridge.session_id)

    def _sip_uri(self, target: str) -> str:
        eps = self._directory.resolve(target)
        if len(eps) != 1 or not (eps[0].uri or "").startswith(("sip:", "sips:")):
            raise TargetError(f"{target!r} is not one SIP phone", reason="not-dialable",
                              details={"target": target})
        return eps[0].uri  # type: ignore[return-value]

    def _bridge(self, bridge_id: str, terminal_id: str | None) -> Bridge:
        bridge = self.bridges.get(bridge_id)
        if bridge is None or (terminal_id is not None and bridge.terminal_id != terminal_id):
            raise NotFound(f"no bridge {bridge_id!r}", reason="no-such-bridge",
                           details={"bridge_id": bridge_id})
        return bridge


class _Refused(Exception):
    def __init__(self, code: int | None, why: str) -> None:
        super().__init__(why)
        self.code, self.why = code, why

