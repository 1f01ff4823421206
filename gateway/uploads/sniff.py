"""What an uploaded file is, by its first bytes and by what the client declared; sans I/O.

`declared(content_type)` maps a request's Content-Type (parameters ignored, case-insensitive) to
one of `TYPES`, or None when the gateway does not take that type. `sniff(head)` says which of
`TYPES` the first `SNIFF_BYTES` of a file are (magic bytes), or None. An upload is taken only when
both agree: a JPEG declared as `audio/ogg`, or text declared as `image/png`, is refused.
"""

from __future__ import annotations

SNIFF_BYTES = 64  # enough for every signature below (Ogg's OpusHead sits at byte 28)

PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
AUDIO_TYPES = ("audio/ogg", "audio/webm", "audio/wav", "audio/mpeg", "audio/mp4")
TYPES = PHOTO_TYPES + AUDIO_TYPES

_ALIASES = {
    "image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg",
    "image/png": "image/png", "image/webp": "image/webp",
    "audio/ogg": "audio/ogg", "audio/opus": "audio/ogg", "application/ogg": "audio/ogg",
    "audio/webm": "audio/webm",
    "audio/wav": "audio/wav", "audio/wave": "audio/wav", "audio/x-wav": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mpeg": "audio/mpeg", "audio/mp3": "audio/mpeg",
    "audio/mp4": "audio/mp4", "audio/m4a": "audio/mp4", "audio/x-m4a": "audio/mp4",
}

# ISO base media brands of audio files from phones (iOS "M4A ", Android "mp42"/"isom" ...).
_MP4_BRANDS = frozenset({b"M4A ", b"M4B ", b"mp41", b"mp42", b"isom", b"iso2", b"iso5", b"iso6",
                         b"dash", b"3gp4", b"3gp5", b"3gp6"})


def declared(content_type: str | None) -> str | None:
    """The type a Content-Type header names, among `TYPES`; None if absent or not taken."""
    if not content_type:
        return None
    return _ALIASES.get(content_type.split(";", 1)[0].strip().lower())


def _mp3(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    layer, bitrate = (head[1] >> 1) & 0x3, head[2] >> 4
    return layer != 0 and bitrate not in (0x0, 0xF)  # layer 0 is ADTS (AAC), not MPEG audio


def sniff(head: bytes) -> str | None:
    """The type of a file starting with `head` (its first `SNIFF_BYTES`, or all of a shorter one)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"OggS") and b"OpusHead" in head[:SNIFF_BYTES]:
        return "audio/ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:SNIFF_BYTES]:
        return "audio/webm"
    if head[4:8] == b"ftyp" and head[8:12] in _MP4_BRANDS:
        return "audio/mp4"
    if _mp3(head):
        return "audio/mpeg"
    return None
