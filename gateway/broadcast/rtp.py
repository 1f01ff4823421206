"""RTP for broadcast zones, sans-I/O: RFC 3550 packets and PCMU/PCMA/G.722 encoders.

Input everywhere is the gateway's audio: 16 kHz mono PCM16LE, 20 ms frames of 640 bytes.
Nothing here touches a socket or a clock; `multicast.py` does the sending.

- `RtpPacketizer` builds RTP packets (V=2, no padding/extension/CSRC), sets the marker bit on the
  first packet of each talk spurt, and wraps sequence number (16 bit) and timestamp (32 bit).
- `PcmuEncoder` / `PcmaEncoder` resample 16 kHz -> 8 kHz (audioop.ratecv, state kept across
  frames) and companded to G.711; payload type 0 / 8, RTP clock 8000.
- `G722Encoder` encodes the 16 kHz audio with the `G722` package (libg722, bit-exact ITU G.722
  at 64 kbit/s); payload type 9 and, per RFC 3551 4.5.2, an RTP clock of 8000 although the codec
  samples at 16 kHz: the timestamp advances 160 per 20 ms, as for G.711.

Every codec yields 160 payload bytes per 20 ms frame.
"""

from __future__ import annotations

import array
import secrets
import struct
import sys
import warnings
from dataclasses import dataclass
from typing import Protocol

with warnings.catch_warnings():  # deprecated in 3.11, removed in 3.13 (then: audioop-lts)
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

INPUT_RATE = 16000
SAMPLE_WIDTH = 2
FRAME_MS = 20
FRAME_BYTES = INPUT_RATE * FRAME_MS // 1000 * SAMPLE_WIDTH  # 640

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
HEADER_SIZE = HEADER.size  # 12

CODECS = ("PCMU", "PCMA", "G722")
# Static payload types and RTP clock rates (RFC 3551 table 4).
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9}
CLOCK_RATES = {"PCMU": 8000, "PCMA": 8000, "G722": 8000}


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fixed RTP header fields of a packet (for tests and diagnostics)."""

    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int


def parse_header(packet: bytes) -> tuple[RtpHeader, bytes]:
    """Split an RTP packet into its fixed header and its payload (CSRCs skipped)."""
    if len(packet) < HEADER_SIZE:
        raise ValueError(f"RTP packet of {len(packet)} bytes is shorter than its header")
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(packet)
    cc = b0 & 0x0F
    header = RtpHeader(
        version=b0 >> 6, padding=bool(b0 & 0x20), extension=bool(b0 & 0x10), csrc_count=cc,
        marker=bool(b1 & 0x80), payload_type=b1 & 0x7F, sequence=seq, timestamp=ts, ssrc=ssrc,
    )
    return header, packet[HEADER_SIZE + 4 * cc :]


def _random_bits(bits: int) -> int:
    return secrets.randbits(bits)


class RtpPacketizer:
    """RTP packets of one stream (one SSRC), RFC 3550 section 5.1.

    `ssrc`, the first sequence number and the first timestamp are random unless given (RFC 3550
    recommends random initial values). The first packet, and the first after `new_talkspurt()`,
    carries the marker bit.
    """

    def __init__(
        self,
        payload_type: int,
        clock_rate: int,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} is not in 0..127")
        if clock_rate <= 0:
            raise ValueError(f"clock rate {clock_rate} must be positive")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ssrc = _random_bits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        self.sequence = _random_bits(16) if sequence is None else sequence & 0xFFFF
        self.timestamp = _random_bits(32) if timestamp is None else timestamp & 0xFFFFFFFF
        self._marker = True
        self.packets_sent = 0
        self.octets_sent = 0

    def new_talkspurt(self) -> None:
        """The next packet starts a talk spurt (marker bit set)."""
        self._marker = True

    def skip(self, samples: int) -> None:
        """Advance the timestamp over `samples` clock ticks sent as nothing (silence suppressed)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF

    def packetize(self, payload: bytes, samples: int) -> bytes:
        """One RTP packet carrying `payload`, which covers `samples` ticks of the RTP clock.

        The packet gets the current sequence number and timestamp; both then advance
        (sequence by 1 mod 2**16, timestamp by `samples` mod 2**32).
        """
        if samples < 0:
            raise ValueError("samples must not be negative")
        b1 = (0x80 if self._marker else 0) | self.payload_type
        header = HEADER.pack(RTP_VERSION << 6, b1, self.sequence, self.timestamp, self.ssrc)
        packet = header + payload
        self._marker = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return packet


class Encoder(Protocol):
    """16 kHz PCM16LE frames in, one RTP payload out."""

    name: str
    payload_type: int
    clock_rate: int  # the RTP clock (what the timestamp counts), not always the sampling rate

    def encode(self, pcm: bytes) -> tuple[bytes, int]:
        """The payload for `pcm` and how many RTP clock ticks it covers."""
        ...


def _check_pcm(pcm: bytes) -> None:
    # Whole pairs of 16 kHz samples, so every frame maps to whole 8 kHz ticks.
    if len(pcm) % (2 * SAMPLE_WIDTH):
        raise ValueError(f"PCM16 frame of {len(pcm)} bytes is not a whole number of 8 kHz ticks")


class _G711Encoder:
    clock_rate = 8000

    def __init__(self) -> None:
        self._ratecv_state: object = None

    def _downsample(self, pcm: bytes) -> bytes:
        _check_pcm(pcm)
        out, self._ratecv_state = audioop.ratecv(
            pcm, SAMPLE_WIDTH, 1, INPUT_RATE, self.clock_rate, self._ratecv_state
        )
        return out

    def encode(self, pcm: bytes) -> tuple[bytes, int]:
        ticks = len(pcm) // (2 * SAMPLE_WIDTH)
        narrow = self._downsample(pcm)
        # For 16 kHz -> 8 kHz ratecv yields exactly one sample per tick; keep the payload exact
        # whatever happens, as the RTP timestamp counts ticks.
        want = ticks * SAMPLE_WIDTH
        if len(narrow) < want:
            narrow += b"\0" * (want - len(narrow))
        return self._compand(narrow[:want]), ticks

    def _compand(self, pcm: bytes) -> bytes:
        raise NotImplementedError


class PcmuEncoder(_G711Encoder):
    """G.711 mu-law, payload type 0."""

    name = "PCMU"
    payload_type = 0

    def _compand(self, pcm: bytes) -> bytes:
        return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)


class PcmaEncoder(_G711Encoder):
    """G.711 A-law, payload type 8."""

    name = "PCMA"
    payload_type = 8

    def _compand(self, pcm: bytes) -> bytes:
        return audioop.lin2alaw(pcm, SAMPLE_WIDTH)


class G722Encoder:
    """G.722 at 64 kbit/s from 16 kHz audio, payload type 9, RTP clock 8000 (RFC 3551)."""

    name = "G722"
    payload_type = 9
    clock_rate = 8000

    def __init__(self) -> None:
        try:
            import G722  # the `G722` distribution on PyPI (libg722)
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("G.722 needs the G722 package (pip install G722)") from exc
        self._codec = G722.G722(INPUT_RATE, 64000)

    def encode(self, pcm: bytes) -> tuple[bytes, int]:
        _check_pcm(pcm)
        samples = array.array("h")
        samples.frombytes(pcm)
        if sys.byteorder == "big":
            samples.byteswap()
        return bytes(self._codec.encode(samples)), len(pcm) // (2 * SAMPLE_WIDTH)


def encoder_for(codec: str) -> Encoder:
    """A fresh encoder (its own state) for a zone codec name: PCMU, PCMA or G722."""
    match codec.upper():
        case "PCMU":
            return PcmuEncoder()
        case "PCMA":
            return PcmaEncoder()
        case "G722":
            return G722Encoder()
    raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")


class RtpStream:
    """An encoder and a packetizer: 16 kHz PCM frames in, RTP packets out."""

    def __init__(self, codec: str, *, ssrc: int | None = None, sequence: int | None = None,
                 timestamp: int | None = None) -> None:
        self.encoder = encoder_for(codec)
        self.packetizer = RtpPacketizer(
            self.encoder.payload_type, self.encoder.clock_rate,
            ssrc=ssrc, sequence=sequence, timestamp=timestamp,
        )

    def packet(self, pcm: bytes) -> bytes:
        """The RTP packet for one frame of 16 kHz PCM16LE (normally 640 bytes, 20 ms)."""
        payload, ticks = self.encoder.encode(pcm)
        return self.packetizer.packetize(payload, ticks)

    def new_talkspurt(self) -> None:
        self.packetizer.new_talkspurt()
