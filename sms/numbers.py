"""E.164 numbers: `+`, then 8 to 15 digits, the first not 0 (sans-I/O, no country guessing).

Input may carry spaces, dashes and parentheses (`+86 (10) 1234-5678`); they are stripped.
Full-width `＋`, digits and parentheses (typed with a Chinese input method) count as their ASCII
forms. Nothing else is changed: no `00` prefix rewriting, no national numbers.
"""

from __future__ import annotations

import re

from sms.errors import InvalidNumber

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_FULL_WIDTH = str.maketrans("＋（）０１２３４５６７８９", "+()0123456789")
_SEPARATORS = re.compile(r"[\s()\-\u2010\u2011\u2012\u2013\u2014\u2212]")


def is_e164(number: str) -> bool:
    """Whether `number` is already normalized E.164."""
    return _E164.fullmatch(number) is not None


def normalize(raw: str) -> str:
    """The E.164 form of `raw`, or `InvalidNumber` naming the input and why."""
    if not isinstance(raw, str):
        raise InvalidNumber("a number must be a string", details={"input": repr(raw), "why": "not-a-string"})
    number = _SEPARATORS.sub("", raw.translate(_FULL_WIDTH))
    why = None
    if not number.startswith("+"):
        why = "no-plus"
    elif not number[1:].isascii() or not number[1:].isdigit():
        why = "not-digits"
    elif number[1:2] == "0":
        why = "leading-zero"
    elif not 8 <= len(number) - 1 <= 15:
        why = "length"
    if why is not None:
        raise InvalidNumber(f"not an E.164 number ({why}): {raw!r}", details={"input": raw, "why": why})
    assert is_e164(number)
    return number
