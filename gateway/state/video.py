"""A pulled video stream: requested -> publishing -> stopped | failed.

`requested`: the terminal was asked to publish (its offer may already be answered);
`publishing`: Janus has the terminal's media (WebRTC up); viewers come and go while publishing
(the `watching` count, not a state). `stopped` (a dispatcher or the terminal ended it, or the
terminal hung up) and `failed` (Janus died, the terminal never published in time, or went
offline first) are final.
"""

from __future__ import annotations

import enum

from gateway.state.table import Machine


class StreamState(enum.StrEnum):
    REQUESTED = "requested"
    PUBLISHING = "publishing"
    STOPPED = "stopped"
    FAILED = "failed"


class StreamInput(enum.StrEnum):
    OFFER = "offer"  # the terminal's SDP offer, answered by Janus
    MEDIA_UP = "media-up"  # Janus: webrtcup on the publisher
    WATCH = "watch"  # a console joins or leaves
    STOP = "stop"
    FAIL = "fail"


STREAM_MACHINE: Machine[StreamState, StreamInput] = Machine(
    "video stream",
    {
        StreamState.REQUESTED: {
            StreamInput.OFFER: StreamState.REQUESTED,
            StreamInput.MEDIA_UP: StreamState.PUBLISHING,
            StreamInput.STOP: StreamState.STOPPED,
            StreamInput.FAIL: StreamState.FAILED,
        },
        StreamState.PUBLISHING: {
            StreamInput.WATCH: StreamState.PUBLISHING,
            StreamInput.STOP: StreamState.STOPPED,
            StreamInput.FAIL: StreamState.FAILED,
        },
        StreamState.STOPPED: {},
        StreamState.FAILED: {},
    },
    final=frozenset({StreamState.STOPPED, StreamState.FAILED}),
)
