"""The `video.*` and `voice.*` methods of protocol v1: params models and their table entries.

SDP travels inside the control channel (the terminal's offer in `video.publish`, Janus's offer
in the result of `video.watch`, the console's answer in `video.answer`): an SDP is text that
starts with `v=0`, at most `MAX_SDP` characters; what Janus then refuses is `invalid-sdp` too.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from .methods import COMMAND, READ, TERMINAL, Id, IdempotencyKey, MethodSpec, Params, _spec

MAX_SDP = 65_536


def _sdp(value: str) -> str:
    if not value.startswith("v=0"):
        raise PydanticCustomError("invalid_sdp", "an SDP starts with v=0")
    if "\r\nm=" not in value and "\nm=" not in value:
        raise PydanticCustomError("invalid_sdp", "an SDP without any m= line carries no media")
    return value


Sdp = Annotated[str, Field(min_length=3, max_length=MAX_SDP, description="an SDP offer or answer"),
                AfterValidator(_sdp)]


class VideoPullParams(Params):
    terminal_id: Id
    session_id: Id | None = None
    idempotency_key: IdempotencyKey | None = None


class VideoPublishParams(Params):
    stream_id: Id
    sdp: Sdp


class VideoStreamParams(Params):
    stream_id: Id


class VideoAnswerParams(Params):
    watch_id: Id
    sdp: Sdp


class VideoWatchIdParams(Params):
    watch_id: Id


class VideoListParams(Params):
    session_id: Id | None = None


class VoiceBridgeParams(Params):
    terminal_id: Id
    target: str = Field(min_length=1, max_length=512, description="a directory name or a sip: URI")
    session_id: Id | None = None
    idempotency_key: IdempotencyKey | None = None


class VoicePublishParams(Params):
    bridge_id: Id
    sdp: Sdp


class VoiceBridgeIdParams(Params):
    bridge_id: Id


VIDEO_METHODS: tuple[MethodSpec, ...] = (
    _spec("video.pull", COMMAND, VideoPullParams, True,
          "ask a terminal to publish camera and microphone (recorded)"),
    _spec("video.publish", {TERMINAL}, VideoPublishParams,
          summary="the terminal's SDP offer for a pulled stream; Janus's answer back", runs_to_end=True),
    _spec("video.watch", READ, VideoStreamParams, summary="watch a stream: Janus's SDP offer"),
    _spec("video.answer", READ, VideoAnswerParams, summary="the console's SDP answer to video.watch"),
    _spec("video.unwatch", READ, VideoWatchIdParams, summary="stop watching"),
    _spec("video.stop", COMMAND | {TERMINAL}, VideoStreamParams,
          summary="end a stream (the terminal: its own)", runs_to_end=True),
    _spec("video.get", READ, VideoStreamParams, summary="a stream: state, viewers, recording"),
    _spec("video.list", READ, VideoListParams, summary="the streams (of one session)"),
    _spec("voice.bridge", COMMAND, VoiceBridgeParams, True,
          "bring a terminal's microphone into a SIP call with a phone"),
    _spec("voice.publish", {TERMINAL}, VoicePublishParams,
          summary="the terminal's audio offer for a bridge; the phone's answer back", runs_to_end=True),
    _spec("voice.hangup", COMMAND | {TERMINAL}, VoiceBridgeIdParams,
          summary="end a bridge (the terminal: its own)", runs_to_end=True),
    _spec("voice.get", READ, VoiceBridgeIdParams, summary="a bridge and its state"),
)
