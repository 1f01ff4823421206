"""Text that can be stored and sent: checks and normalisation at the edges (sans-I/O).

JSON allows escapes of lone UTF-16 surrogates ("\\ud800") and SWIG hands undecodable SIP bytes
over as lone surrogates (surrogateescape): both are Python strings that cannot be encoded as
UTF-8, so SQLite, the log and every peer would choke on them. Edges refuse such text with a
precise error (`first_bad_text`) or normalise it (`to_utf8`); the store checks again
(`check_encodable`) so one bad write can never reach a group commit.
"""

from __future__ import annotations

from typing import Any


def is_encodable(text: str) -> bool:
    """True when `text` can be encoded as UTF-8 (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_bad_text(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (key or value) in `value` that is not valid UTF-8
    text, or None. Lists give their index: `targets.2`; a bad key gives its parent's path
    ("" for `value` itself)."""
    if isinstance(value, str):
        return None if is_encodable(value) else path
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and not is_encodable(k):
                return path
            sub = first_bad_text(v, f"{path}.{k}" if path else str(k))
            if sub is not None:
                return sub
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            sub = first_bad_text(v, f"{path}.{i}" if path else str(i))
            if sub is not None:
                return sub
    return None


def to_utf8(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD; bytes that SWIG or Python decoded
    with surrogateescape come back as the original bytes first, so valid UTF-8 parts survive."""
    if is_encodable(text):
        return text
    if _only_escapes(text):
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _only_escapes(text: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


def clean(value: Any) -> Any:
    """`value` (str, dict, list, nested) with every string passed through `to_utf8`."""
    if isinstance(value, str):
        return to_utf8(value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
