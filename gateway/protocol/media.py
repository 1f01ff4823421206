"""Binary media frames of the control channel (sans-I/O).

Every binary WebSocket frame is a 12-byte header followed by PCM16LE mono samples:

    offset  size  field
    0       1     version = 1
    1       1     kind: 1 = audio
    2       2     channel (uint16 BE): the id returned by media.open
    4       4     sequence (uint32 BE), +1 per frame, wraps
    8       4     timestamp in samples (uint32 BE), wraps

`unpack()` raises `MediaFrameError` (a GatewayError, reason `bad-media-frame`) with a precise
`why` for short, unknown-version, unknown-kind or odd-length frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.errors import InvalidRequest

VERSION = 1
KIND_AUDIO = 1
KINDS = frozenset({KIND_AUDIO})
HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size  # 12
MAX_U32 = 0xFFFFFFFF


class MediaFrameError(InvalidRequest):
    reason = "bad-media-frame"

    def __init__(self, why: str, **details: object) -> None:
        super().__init__(f"bad media frame: {why}", details={"why": why, **details})
        self.why = why


@dataclass(frozen=True)
class MediaFrame:
    channel: int
    seq: int
    timestamp: int
    payload: bytes
    kind: int = KIND_AUDIO

    @property
    def samples(self) -> int:
        return len(self.payload) // 2


def pack(channel: int, seq: int, timestamp: int, payload: bytes, kind: int = KIND_AUDIO) -> bytes:
    """Header + payload. seq and timestamp wrap modulo 2**32; channel must fit 16 bits."""
    if not 0 <= channel <= 0xFFFF:
        raise ValueError(f"channel {channel} out of range 0..65535")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind}")
    if len(payload) % 2:
        raise ValueError("PCM16 payload must have an even length")
    return HEADER.pack(VERSION, kind, channel, seq & MAX_U32, timestamp & MAX_U32) + bytes(payload)


def unpack(data: bytes | bytearray | memoryview) -> MediaFrame:
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise MediaFrameError("short", size=len(data), need=HEADER_SIZE)
    version, kind, channel, seq, ts = HEADER.unpack_from(data)
    if version != VERSION:
        raise MediaFrameError("unknown-version", version=version)
    if kind not in KINDS:
        raise MediaFrameError("unknown-kind", kind=kind)
    payload = data[HEADER_SIZE:]
    if len(payload) % 2:
        raise MediaFrameError("odd-payload", size=len(payload))
    return MediaFrame(channel, seq, ts, payload, kind)
