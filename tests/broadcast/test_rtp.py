"""The sans-I/O RTP core: headers, wraps, codecs. No sockets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gateway.broadcast.rtp import (
    FRAME_BYTES,
    HEADER_SIZE,
    G722Encoder,
    PcmaEncoder,
    PcmuEncoder,
    RtpPacketizer,
    RtpStream,
    encoder_for,
    parse_header,
)
from tests.audio import dominant_frequency, frames, pcm_to_array, rms, tone

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def test_header_fields() -> None:
    p = RtpPacketizer(payload_type=8, clock_rate=8000, ssrc=0xDEADBEEF, sequence=1000,
                      timestamp=123456)
    packet = p.packetize(b"\x55" * 160, 160)
    assert len(packet) == HEADER_SIZE + 160
    assert packet[0] == 0x80  # V=2, P=0, X=0, CC=0
    h, payload = parse_header(packet)
    assert (h.version, h.padding, h.extension, h.csrc_count) == (2, False, False, 0)
    assert (h.marker, h.payload_type) == (True, 8)
    assert (h.sequence, h.timestamp, h.ssrc) == (1000, 123456, 0xDEADBEEF)
    assert payload == b"\x55" * 160

    h2, _ = parse_header(p.packetize(b"\x55" * 160, 160))
    assert (h2.marker, h2.sequence, h2.timestamp, h2.ssrc) == (False, 1001, 123616, 0xDEADBEEF)
    assert (p.packets_sent, p.octets_sent) == (2, 320)


def test_marker_on_first_packet_of_each_talkspurt() -> None:
    p = RtpPacketizer(0, 8000)
    markers = [parse_header(p.packetize(b"", 160))[0].marker for _ in range(3)]
    p.skip(800)  # 100 ms not sent
    p.new_talkspurt()
    markers += [parse_header(p.packetize(b"", 160))[0].marker for _ in range(2)]
    assert markers == [True, False, False, True, False]


def test_talkspurt_after_silence_keeps_timestamp_moving() -> None:
    p = RtpPacketizer(0, 8000, sequence=5, timestamp=0)
    p.packetize(b"", 160)
    p.skip(1600)
    p.new_talkspurt()
    h, _ = parse_header(p.packetize(b"", 160))
    assert (h.sequence, h.timestamp) == (6, 1760)  # sequence has no gap, timestamp does


def test_random_initial_values() -> None:
    a, b = RtpPacketizer(0, 8000), RtpPacketizer(0, 8000)
    assert (a.ssrc, a.sequence, a.timestamp) != (b.ssrc, b.sequence, b.timestamp)
    for p in (a, b):
        assert 0 <= p.ssrc < 2**32 and 0 <= p.sequence < 2**16 and 0 <= p.timestamp < 2**32


def test_sequence_and_timestamp_wrap() -> None:
    p = RtpPacketizer(0, 8000, ssrc=1, sequence=0xFFFE, timestamp=0xFFFFFFFF - 200)
    heads = [parse_header(p.packetize(b"", 160))[0] for _ in range(3)]
    assert [h.sequence for h in heads] == [0xFFFE, 0xFFFF, 0]
    assert [h.timestamp for h in heads] == [0xFFFFFFFF - 200, 0xFFFFFFFF - 40, 119]


def test_packetizer_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        RtpPacketizer(128, 8000)
    with pytest.raises(ValueError):
        RtpPacketizer(0, 0)
    with pytest.raises(ValueError):
        RtpPacketizer(0, 8000).packetize(b"", -1)


@pytest.mark.parametrize(("codec", "pt"), [("PCMU", 0), ("PCMA", 8), ("G722", 9)])
def test_stream_payload_size_pt_and_clock(codec: str, pt: int) -> None:
    """160 payload bytes per 20 ms for all three; timestamp +160 (G.722 too: RFC 3551)."""
    stream = RtpStream(codec, sequence=0, timestamp=0)
    heads = []
    for frame in frames(tone(440, 0.1)):
        assert len(frame) == FRAME_BYTES
        packet = stream.packet(frame)
        assert len(packet) == HEADER_SIZE + 160
        heads.append(parse_header(packet)[0])
    assert {h.payload_type for h in heads} == {pt}
    assert [h.timestamp for h in heads] == [0, 160, 320, 480, 640]
    assert [h.sequence for h in heads] == [0, 1, 2, 3, 4]
    assert [h.marker for h in heads] == [True, False, False, False, False]
    assert stream.encoder.clock_rate == 8000


def test_encoder_for_names() -> None:
    assert isinstance(encoder_for("pcmu"), PcmuEncoder)
    assert isinstance(encoder_for("PCMA"), PcmaEncoder)
    assert isinstance(encoder_for("G722"), G722Encoder)
    with pytest.raises(ValueError, match="unknown codec"):
        encoder_for("opus")


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722"])
def test_encoder_rejects_partial_samples(codec: str) -> None:
    with pytest.raises(ValueError):
        encoder_for(codec).encode(b"\0" * 642)


@pytest.mark.parametrize(
    ("encoder", "decode"),
    [(PcmuEncoder, audioop.ulaw2lin), (PcmaEncoder, audioop.alaw2lin)],
)
def test_g711_round_trip_keeps_the_tone(encoder, decode) -> None:
    enc = encoder()
    payloads = [enc.encode(frame)[0] for frame in frames(tone(1000, 1.0))]
    decoded = pcm_to_array(decode(b"".join(payloads), 2))
    assert len(decoded) == 8000
    assert abs(dominant_frequency(decoded, 8000) - 1000) <= 20
    assert rms(decoded[800:]) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_g711_resampler_state_is_kept_across_frames() -> None:
    """Frame by frame encodes exactly what one call on the whole signal would."""
    pcm = tone(1000, 0.2)
    whole, _ = PcmuEncoder().encode(pcm)
    enc = PcmuEncoder()
    assert b"".join(enc.encode(frame)[0] for frame in frames(pcm)) == whole


def test_g722_round_trip_keeps_the_tone() -> None:
    import G722

    enc, dec = G722Encoder(), G722.G722(16000, 64000)
    chunks = []
    for frame in frames(tone(1000, 1.0)):
        payload, ticks = enc.encode(frame)
        assert (len(payload), ticks) == (160, 160)
        chunks.append(np.asarray(dec.decode(payload), dtype=np.float64))
    decoded = np.concatenate(chunks) / 32768.0
    assert len(decoded) == 16000
    assert abs(dominant_frequency(decoded, 16000) - 1000) <= 20
    assert rms(decoded[1600:]) == pytest.approx(0.5 / np.sqrt(2), rel=0.15)
