"""A terminal's microphone in a SIP call (video.voice): requested -> calling -> ringing ->
connected -> ended. `ended` is final, from any state (hung up by either side, refused by the
phone, the terminal never sent its offer, the media engine died)."""

from __future__ import annotations

import enum

from gateway.state.table import Machine


class VoiceState(enum.StrEnum):
    REQUESTED = "requested"
    CALLING = "calling"
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


class VoiceInput(enum.StrEnum):
    OFFER = "offer"  # the terminal's offer; the INVITE goes out
    RINGING = "ringing"
    ACCEPTED = "accepted"
    END = "end"


_END = {VoiceInput.END: VoiceState.ENDED}
VOICE_MACHINE: Machine[VoiceState, VoiceInput] = Machine(
    "voice bridge",
    {
        VoiceState.REQUESTED: {VoiceInput.OFFER: VoiceState.CALLING, **_END},
        VoiceState.CALLING: {VoiceInput.RINGING: VoiceState.RINGING,
                             VoiceInput.ACCEPTED: VoiceState.CONNECTED, **_END},
        VoiceState.RINGING: {VoiceInput.RINGING: VoiceState.RINGING,
                             VoiceInput.ACCEPTED: VoiceState.CONNECTED, **_END},
        VoiceState.CONNECTED: {**_END},
        VoiceState.ENDED: {},
    },
    final=frozenset({VoiceState.ENDED}),
)
