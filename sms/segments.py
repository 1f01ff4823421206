"""SMS segmentation: encoding choice, segment count and the parts a carrier sends (sans-I/O).

GSM-7 (3GPP TS 23.038 default alphabet + basic extension table): 160 septets in a single
message, 153 per part of a concatenated one (the UDH takes 7 septets). Extension characters
(`^{}\\[~]|€` and form feed) are an ESC + character pair: 2 septets, never split across parts.

Anything else is sent UCS-2 (in practice UTF-16): 70 units single, 67 per part. Characters outside
the BMP (most emoji) are a surrogate pair, 2 units, never split across parts. Chinese is UCS-2.

The segment count is the length of `split()`, not `ceil(units / per_segment)`: a pair that does
not fit at the end of a part moves whole to the next one and can add a part.
An empty body is one (empty) segment; refusing it is the service's choice.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sms.errors import TooManySegments

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

# The default alphabet in code order 0x00..0x7F; 0x1B (ESC) is not a character of its own.
GSM7_CODES = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ" "\x1b" "ÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_BASIC = frozenset(GSM7_CODES) - {"\x1b"}
# The basic extension table: each is ESC + code, 2 septets (character -> its code after ESC).
GSM7_EXTENSION_CODES = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
                        "]": 0x3E, "|": 0x40, "€": 0x65}
GSM7_EXTENSION = frozenset(GSM7_EXTENSION_CODES)
# Distinct bodies whose segmentation is remembered: a message is segmented again for every input
# it gets (the outbox restores it from its row) and for its submit_sm, and an alert's thousands of
# messages share one body (before: a walk of the body's characters each time, ~5 % of the
# gateway's Python time at 1,000 SMPP messages/s).
BODIES_KEPT = 256


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    encoding: Encoding
    segments: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    per_segment: int  # 160/153 or 70/67: the limit that applied

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_gsm7(body: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body)


def _costs(body: str) -> tuple[Encoding, list[int]]:
    if is_gsm7(body):
        return "GSM-7", [2 if c in GSM7_EXTENSION else 1 for c in body]
    return "UCS-2", [2 if ord(c) > 0xFFFF else 1 for c in body]


def _split(body: str, costs: list[int], single: int, part: int) -> list[str]:
    if sum(costs) <= single:
        return [body]
    parts: list[str] = []
    start = used = 0
    for i, cost in enumerate(costs):
        if used + cost > part:  # the whole character (pair) goes to the next part
            parts.append(body[start:i])
            start, used = i, 0
        used += cost
    parts.append(body[start:])
    return parts


def _limits(encoding: Encoding) -> tuple[int, int]:
    return (GSM7_SINGLE, GSM7_PART) if encoding == "GSM-7" else (UCS2_SINGLE, UCS2_PART)


def split(body: str) -> list[str]:
    """The parts as a carrier sends them (one part when the body fits a single message)."""
    return list(_parts(body))


@functools.lru_cache(maxsize=BODIES_KEPT)
def _parts(body: str) -> tuple[str, ...]:
    encoding, costs = _costs(body)
    return tuple(_split(body, costs, *_limits(encoding)))


@functools.lru_cache(maxsize=BODIES_KEPT)
def encode_info(body: str) -> SegmentInfo:
    """Encoding, segment count and size of `body`: shown before sending and stored with the message."""
    encoding, costs = _costs(body)
    single, part = _limits(encoding)
    units = sum(costs)
    segments = len(_split(body, costs, single, part))
    return SegmentInfo(encoding, segments, units, single if segments == 1 else part)


def check_max(body: str, max_segments: int) -> SegmentInfo:
    """`encode_info(body)`, or `TooManySegments` when it needs more than `max_segments`."""
    if max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, not {max_segments}")
    info = encode_info(body)
    if info.segments > max_segments:
        raise TooManySegments(
            f"the body needs {info.segments} {info.encoding} segments, at most {max_segments} are allowed",
            details={"segments": info.segments, "max": max_segments, "encoding": info.encoding,
                     "units": info.units},
        )
    return info
