"""The exception root of the video package.

`VideoError` carries a stable `reason` (the strings protocol v1 sends: `video-unavailable`,
`janus-error`, `janus-timeout`, `invalid-sdp`) so the video service maps it to a
`gateway.errors.GatewayError` without parsing messages. Every failure at the Janus boundary (a
refused connection, a closed socket, an `error` reply, a reply that never came) becomes one of
these in video/janus_client.py.
"""

from __future__ import annotations

from gateway.reason_error import ReasonError


class VideoError(ReasonError):
    """Root of every error raised by the video package."""

    reason: str = "video-error"


class JanusUnavailable(VideoError):
    """No Janus to talk to: not started, its socket closed, or it died mid-request."""

    reason = "video-unavailable"


class JanusTimeout(VideoError):
    """Janus did not answer a request in time."""

    reason = "janus-timeout"


class JanusRequestError(VideoError):
    """Janus (or its plugin) answered with an error: `code` is Janus's numeric code."""

    reason = "janus-error"

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message, details={"janus_code": code} if code is not None else None)
        self.code = code


class JanusProtocolError(VideoError):
    """Janus sent something this client cannot read (not JSON, not an object)."""

    reason = "janus-protocol-error"


class JanusProcessError(VideoError):
    """The Janus process could not be started or did not become ready."""

    reason = "video-unavailable"
