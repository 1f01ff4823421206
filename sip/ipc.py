"""Sans-I/O framing between the gateway and a SIP worker (over the worker's stdin/stdout).

Every message is ``length (uint32 BE) | type (1 byte) | payload`` where ``length`` counts the type
byte and the payload.

- ``TYPE_CONTROL`` (0x01): payload is one UTF-8 JSON object (commands, replies, events); its
  strings are normalised on decoding (lone surrogates from SIP bytes that are not UTF-8 become
  the bytes' text with U+FFFD).
- ``TYPE_AUDIO`` (0x02): payload is ``id_len (1 byte) | call id (ASCII) | PCM16LE mono``.
- ``TYPE_STREAM`` (0x03): same payload with a stream id instead of a call id: one frame of a
  stream the worker fans out to every call attached to it (gateway -> worker only).

No I/O here: `encode_*` return bytes, `Decoder.feed()` takes bytes and returns parsed messages.
A malformed stream raises `IpcProtocolError` (the peer is our own process, so a bad frame is a bug
and the link is torn down rather than resynchronised).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from gateway.text import clean
from typing import Any

from .errors import SipError

TYPE_CONTROL = 0x01
TYPE_AUDIO = 0x02
TYPE_STREAM = 0x03
HEADER = struct.Struct(">IB")
MAX_MESSAGE = 1 << 20  # 1 MiB: far above any control message or audio frame


class IpcProtocolError(SipError):
    reason = "ipc-protocol-error"


@dataclass(frozen=True, slots=True)
class Control:
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Audio:
    call_id: str
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Stream:
    stream_id: str
    pcm: bytes


Message = Control | Audio | Stream


def encode_control(data: dict[str, Any]) -> bytes:
    body = json.dumps(data, separators=(",", ":")).encode()
    if len(body) + 1 > MAX_MESSAGE:
        raise IpcProtocolError("control message too large")
    return HEADER.pack(len(body) + 1, TYPE_CONTROL) + body


def encode_audio(call_id: str, pcm: bytes) -> bytes:
    return _encode_frame(TYPE_AUDIO, call_id, pcm)


def encode_stream(stream_id: str, pcm: bytes) -> bytes:
    return _encode_frame(TYPE_STREAM, stream_id, pcm)


def _encode_frame(kind: int, ident: str, pcm: bytes) -> bytes:
    try:
        cid = ident.encode("ascii")
    except UnicodeEncodeError:
        raise IpcProtocolError("id must be ASCII") from None
    if not 0 < len(cid) < 256:
        raise IpcProtocolError("id must be 1..255 ASCII bytes")
    n = 2 + len(cid) + len(pcm)
    if n > MAX_MESSAGE:
        raise IpcProtocolError("audio message too large")
    return HEADER.pack(n, kind) + bytes((len(cid),)) + cid + pcm


def decode_payload(kind: int, payload: bytes) -> Message:
    if kind == TYPE_CONTROL:
        try:
            data = json.loads(payload)
        except ValueError as e:
            raise IpcProtocolError(f"bad JSON: {e}") from None
        if not isinstance(data, dict):
            raise IpcProtocolError("control message is not an object")
        if b"\\ud" in payload or b"\\uD" in payload:
            # SIP bytes that are not UTF-8 reach Python (SWIG) as lone surrogates: back to the
            # bytes, decoded with U+FFFD, before any of it can be logged, stored or sent.
            data = clean(data)
        return Control(data)
    if kind == TYPE_AUDIO or kind == TYPE_STREAM:
        if not payload:
            raise IpcProtocolError("empty audio message")
        n = payload[0]
        if n == 0 or len(payload) < 1 + n:
            raise IpcProtocolError("bad call id length")
        try:
            cid = payload[1 : 1 + n].decode("ascii")
        except UnicodeDecodeError:
            raise IpcProtocolError("call id is not ASCII") from None
        pcm = bytes(payload[1 + n :])
        return Audio(cid, pcm) if kind == TYPE_AUDIO else Stream(cid, pcm)
    raise IpcProtocolError(f"unknown message type {kind:#x}")


class Decoder:
    """Incremental decoder: `feed(data)` returns every complete message in order."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_message

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER.size:
            length, kind = HEADER.unpack_from(buf, pos)
            if length < 1 or length > self._max:
                raise IpcProtocolError(f"bad message length {length}")
            end = pos + 4 + length
            if len(buf) < end:
                break
            out.append(decode_payload(kind, bytes(buf[pos + HEADER.size : end])))
            pos = end
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


def read_message(stream: Any) -> Message | None:
    """Blocking read of one message from a binary file object; None at EOF. For the worker."""
    head = _read_exact(stream, HEADER.size)
    if head is None:
        return None
    length, kind = HEADER.unpack(head)
    if length < 1 or length > MAX_MESSAGE:
        raise IpcProtocolError(f"bad message length {length}")
    payload = _read_exact(stream, length - 1)
    if payload is None:
        raise IpcProtocolError("EOF inside a message")
    return decode_payload(kind, payload)


def _read_exact(stream: Any, n: int) -> bytes | None:
    if n == 0:
        return b""
    chunks = []
    got = 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            if got == 0:
                return None
            raise IpcProtocolError("EOF inside a message")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
