"""Unit tests of the gateway<->worker framing (no processes)."""

from __future__ import annotations

import io
import json

import pytest

from sip import ipc


def test_control_round_trip() -> None:
    data = ipc.encode_control({"cmd": "dial", "id": 7, "uri": "sip:a@b"})
    assert ipc.Decoder().feed(data) == [ipc.Control({"cmd": "dial", "id": 7, "uri": "sip:a@b"})]


def test_audio_round_trip() -> None:
    pcm = bytes(range(256)) * 2 + bytes(128)
    msgs = ipc.Decoder().feed(ipc.encode_audio("abc123", pcm))
    assert msgs == [ipc.Audio("abc123", pcm)]


def test_byte_by_byte_and_batched() -> None:
    stream = (
        ipc.encode_control({"a": 1}) + ipc.encode_audio("c", b"\x01\x02") + ipc.encode_control({"b": [2]})
    )
    dec = ipc.Decoder()
    out: list[ipc.Message] = []
    for i in range(len(stream)):
        out += dec.feed(stream[i : i + 1])
    assert out == [ipc.Control({"a": 1}), ipc.Audio("c", b"\x01\x02"), ipc.Control({"b": [2]})]
    assert dec.buffered == 0
    assert ipc.Decoder().feed(stream) == out


def test_empty_audio_payload_allowed() -> None:
    assert ipc.Decoder().feed(ipc.encode_audio("x", b"")) == [ipc.Audio("x", b"")]


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x00\x00\x00\x01",  # zero length
        b"\xff\xff\xff\xff\x01",  # over the limit
        b"\x00\x00\x00\x03\x09ab",  # unknown type
        b"\x00\x00\x00\x04\x01[1]",  # JSON but not an object
        b"\x00\x00\x00\x04\x01{no",  # not JSON
        b"\x00\x00\x00\x03\x02\x05a",  # call id longer than payload
        b"\x00\x00\x00\x02\x02\x00",  # empty call id
    ],
)
def test_bad_frames_raise(raw: bytes) -> None:
    with pytest.raises(ipc.IpcProtocolError):
        ipc.Decoder().feed(raw)


def test_encode_rejects_bad_call_id() -> None:
    with pytest.raises(ipc.IpcProtocolError):
        ipc.encode_audio("", b"")
    with pytest.raises(ipc.IpcProtocolError):
        ipc.encode_audio("x" * 256, b"")


def test_blocking_reader() -> None:
    stream = io.BytesIO(ipc.encode_control({"a": 1}) + ipc.encode_audio("c", b"zz"))
    assert ipc.read_message(stream) == ipc.Control({"a": 1})
    assert ipc.read_message(stream) == ipc.Audio("c", b"zz")
    assert ipc.read_message(stream) is None
    with pytest.raises(ipc.IpcProtocolError):
        ipc.read_message(io.BytesIO(ipc.encode_control({"a": 1})[:-1]))


def test_stream_round_trip_and_interleaving() -> None:
    sid = "ab" * 16  # a broadcast id: uuid4 hex
    pcm = bytes(range(256)) * 2 + bytes(128)
    data = ipc.encode_stream(sid, pcm) + ipc.encode_audio(sid, b"zz") + ipc.encode_control({"a": 1})
    msgs = ipc.Decoder().feed(data)
    assert msgs == [ipc.Stream(sid, pcm), ipc.Audio(sid, b"zz"), ipc.Control({"a": 1})]
    assert ipc.Stream(sid, pcm) != ipc.Audio(sid, pcm)  # same payload, different kinds
    assert ipc.read_message(io.BytesIO(ipc.encode_stream("s", b"xy"))) == ipc.Stream("s", b"xy")


def test_stream_bad_ids() -> None:
    for bad in ("", "x" * 256, "é"):
        with pytest.raises(ipc.IpcProtocolError):
            ipc.encode_stream(bad, b"")
    with pytest.raises(ipc.IpcProtocolError):
        ipc.Decoder().feed(b"\x00\x00\x00\x03\x03\x05a")  # stream id longer than payload


def test_control_text_from_non_utf8_sip_bytes_is_normalised() -> None:
    # What a worker writes when pjsua2 (SWIG, surrogateescape) saw bytes E9 FF in a From header.
    raw = b'"Caf\xe9\xff" <sip:a@h>'.decode("utf-8", "surrogateescape")
    frame = ipc.encode_control({"type": "event", "remote_uri": raw, "extra": {raw: [raw]}})
    (msg,) = ipc.Decoder().feed(frame)
    assert msg.data["remote_uri"] == '"Caf\ufffd\ufffd" <sip:a@h>'
    assert msg.data["extra"] == {'"Caf\ufffd\ufffd" <sip:a@h>': ['"Caf\ufffd\ufffd" <sip:a@h>']}
    json.dumps(msg.data, ensure_ascii=False).encode("utf-8")  # storable and sendable now
