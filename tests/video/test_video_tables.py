"""The stream and bridge state tables, and how many ended ones the services keep."""

from __future__ import annotations

import pytest

from gateway.services.video import forget
from gateway.state.table import InvalidTransition
from gateway.state.video import STREAM_MACHINE, StreamInput, StreamState
from gateway.state.voice import VOICE_MACHINE, VoiceInput, VoiceState


def test_a_stream_publishes_once_and_ends_once() -> None:
    s = STREAM_MACHINE.next(StreamState.REQUESTED, StreamInput.OFFER)
    s = STREAM_MACHINE.next(s, StreamInput.MEDIA_UP)
    assert s is StreamState.PUBLISHING and STREAM_MACHINE.allows(s, StreamInput.WATCH)
    assert not STREAM_MACHINE.allows(StreamState.REQUESTED, StreamInput.WATCH)  # nothing to watch yet
    ended = STREAM_MACHINE.next(s, StreamInput.FAIL)
    for again in StreamInput:
        with pytest.raises(InvalidTransition):
            STREAM_MACHINE.next(ended, again)


def test_a_bridge_connects_only_after_the_offer() -> None:
    assert not VOICE_MACHINE.allows(VoiceState.REQUESTED, VoiceInput.ACCEPTED)
    s = VOICE_MACHINE.next(VoiceState.REQUESTED, VoiceInput.OFFER)
    s = VOICE_MACHINE.next(VOICE_MACHINE.next(s, VoiceInput.RINGING), VoiceInput.ACCEPTED)
    assert s is VoiceState.CONNECTED
    assert all(VOICE_MACHINE.allows(st, VoiceInput.END) for st in VoiceState if st is not VoiceState.ENDED)


def test_only_the_oldest_ended_are_forgotten() -> None:
    live = {f"s{i}": ("ended" if i % 2 else "live") for i in range(10)}
    forget(live, lambda v: v == "ended", keep=2)
    assert list(live) == ["s0", "s2", "s4", "s6", "s7", "s8", "s9"]


def test_recording_containers_follow_the_codecs() -> None:
    from video.recording import RecordingError, plan

    exts, final = plan({"a.mjr": {"t": "a", "c": "opus"}, "v.mjr": {"t": "v", "c": "vp8"}})
    assert exts == {"a.mjr": ".opus", "v.mjr": ".webm"} and final == ".webm"
    exts, final = plan({"a.mjr": {"t": "a", "c": "opus"}, "v.mjr": {"t": "v", "c": "h264"}})
    assert exts["v.mjr"] == ".mkv" and final == ".mkv"  # WebM cannot hold H.264
    assert plan({"a.mjr": {"t": "a", "c": "pcmu"}}) == ({"a.mjr": ".wav"}, ".mkv")
    with pytest.raises(RecordingError):
        plan({"x.mjr": {"t": "d", "c": "text"}})
