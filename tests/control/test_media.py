import pytest

from gateway.protocol import media


def test_roundtrip():
    pcm = bytes(range(256)) * 2 + b"\x00" * 128  # 640 bytes = 20 ms at 16 kHz
    data = media.pack(513, 2**32 + 5, 320, pcm)
    assert data[:12] == bytes([1, 1, 2, 1, 0, 0, 0, 5, 0, 0, 1, 64])
    frame = media.unpack(data)
    assert (frame.channel, frame.seq, frame.timestamp, frame.payload, frame.samples) == (513, 5, 320, pcm, 320)


def test_header_only_is_valid():
    assert media.unpack(media.pack(0, 0, 0, b"")).payload == b""


@pytest.mark.parametrize("data,why", [
    (b"", "short"),
    (b"\x01\x01\x00", "short"),
    (bytes([2, 1]) + bytes(10), "unknown-version"),
    (bytes([1, 9]) + bytes(10), "unknown-kind"),
    (bytes([1, 1]) + bytes(11), "odd-payload"),
])
def test_bad_frames(data, why):
    with pytest.raises(media.MediaFrameError) as info:
        media.unpack(data)
    assert info.value.why == why
    assert info.value.reason == "bad-media-frame"


@pytest.mark.parametrize("args", [(70000, 0, 0, b""), (-1, 0, 0, b""), (1, 0, 0, b"\x00")])
def test_pack_rejects(args):
    with pytest.raises(ValueError):
        media.pack(*args)
