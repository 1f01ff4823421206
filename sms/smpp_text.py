"""The text of SMPP short messages, sans-I/O: GSM-7 (unpacked, one septet per octet) both ways,
a deliver_sm's octets read per data_coding, the UDH of a concatenated part, and the reassembly
of a concatenated inbound message.

data_coding (SMPP 3.4, 5.2.19): 0 the SMSC default alphabet, taken as GSM-7 unpacked; 1 IA5
(ASCII); 3 Latin-1; 8 UCS-2 (UTF-16BE here: a lone surrogate is kept, `sms.provider` normalises
it); anything else is read as Latin-1 so that no octet is lost.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from sms.segments import GSM7_CODES, GSM7_EXTENSION_CODES

DATA_CODING_GSM7 = 0x00
DATA_CODING_ASCII = 0x01
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40

# str.translate tables: GSM-7 text <-> one Latin-1 character per septet
_ENCODE = {ord(c): chr(code) for code, c in enumerate(GSM7_CODES) if c != "\x1b"}
_ENCODE.update({ord(c): "\x1b" + chr(code) for c, code in GSM7_EXTENSION_CODES.items()})
_DECODE = {code: c for code, c in enumerate(GSM7_CODES)}
_DECODE_EXTENSION = {chr(code): c for c, code in GSM7_EXTENSION_CODES.items()}
_ESCAPED = re.compile("\x1b(.)", re.DOTALL)


def gsm7_encode(text: str) -> bytes:
    """GSM-7 octets of `text` (every character must be GSM-7: `sms.segments.is_gsm7`)."""
    return text.translate(_ENCODE).encode("latin-1")


def gsm7_decode(octets: bytes) -> str:
    """Unpacked GSM-7 octets as text; an unknown escape is read as a space (3GPP TS 23.038)."""
    text = octets.decode("latin-1")
    if "\x1b" in text:
        parts = _ESCAPED.split(text)  # plain, escaped code, plain, ...
        return "".join(_DECODE_EXTENSION.get(p, " ") if i % 2 else p.translate(_DECODE)
                       for i, p in enumerate(parts)).replace("\x1b", " ")
    return text.translate(_DECODE)


def decode_text(octets: bytes, data_coding: int) -> str:
    if data_coding == DATA_CODING_UCS2:
        return octets.decode("utf-16-be", "surrogatepass") if len(octets) % 2 == 0 else \
            octets[:-1].decode("utf-16-be", "surrogatepass") + "\ufffd"
    if data_coding == DATA_CODING_GSM7:
        return gsm7_decode(octets)
    return octets.decode("latin-1")  # 1 (IA5), 3 (Latin-1) and any other: no octet lost


@dataclass(frozen=True, slots=True)
class Concat:
    """The concatenation IE of a UDH (00: 8-bit reference, 08: 16-bit)."""

    ref: int
    total: int
    seq: int


def split_udh(octets: bytes) -> tuple[Concat | None, bytes]:
    """The concatenation IE of a short_message that starts with a UDH, and the octets after it."""
    if not octets:
        return None, octets
    end = 1 + octets[0]
    at, concat = 1, None
    while at + 2 <= min(end, len(octets)):
        iei, length = octets[at], octets[at + 1]
        value = octets[at + 2:at + 2 + length]
        if iei == 0x00 and length == 3:
            concat = Concat(value[0], value[1], value[2])
        elif iei == 0x08 and length == 4:
            concat = Concat(int.from_bytes(value[:2], "big"), value[2], value[3])
        at += 2 + length
    return concat, octets[end:]


@dataclass(slots=True)
class _Partial:
    total: int
    started: float
    texts: dict[int, str] = field(default_factory=dict)


class Reassembly:
    """The parts of concatenated inbound messages until the last arrives. Each part is answered when
    it is taken here (a crash before the last part loses those taken: docs/design.md). At most
    `keep` messages are waiting; the oldest and those older than `ttl_s` are dropped."""

    def __init__(self, keep: int = 1_000, ttl_s: float = 600.0) -> None:
        self.keep, self.ttl_s = keep, ttl_s
        self._waiting: dict[tuple[str, str, int, int], _Partial] = {}

    def add(self, sender: str, to: str, concat: Concat, text: str) -> str | None:
        """The whole text once every part arrived, else None."""
        if concat.total <= 1:
            return text
        now = time.monotonic()
        while self._waiting:
            key0, oldest = next(iter(self._waiting.items()))
            if now - oldest.started < self.ttl_s and len(self._waiting) < self.keep:
                break
            del self._waiting[key0]
        key = (sender, to, concat.ref, concat.total)
        partial = self._waiting.setdefault(key, _Partial(concat.total, now))
        partial.texts[concat.seq] = text
        if len(partial.texts) < partial.total:
            return None
        del self._waiting[key]
        return "".join(partial.texts[n] for n in sorted(partial.texts))
