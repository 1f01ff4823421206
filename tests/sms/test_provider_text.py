"""Inbound text from a provider is normalised at the edge (issue 7, section 6)."""

from __future__ import annotations

import json

from sms.provider import Inbound, Receipt


def test_inbound_with_lone_surrogates_is_normalised() -> None:
    # A UCS-2 short message cut in the middle of a surrogate pair, and a number with a bad byte.
    m = Inbound("mo-1", "+1555\udcff", "+15550006", "help \ud83d at gate 3")
    assert m.body == "help \ufffd at gate 3" and m.sender == "+1555\ufffd"
    json.dumps([m.provider_id, m.sender, m.to, m.body], ensure_ascii=False).encode("utf-8")
    assert Inbound("mo-2", "+1", "+2", "火警 \U0001F692").body == "火警 \U0001F692"  # text untouched


def test_receipt_text_is_normalised() -> None:
    r = Receipt("id-\udcff", "delivered", "err\ud800")
    assert (r.provider_id, r.error_code) == ("id-\ufffd", "err\ufffd")
    assert Receipt("SM1", "failed").error_code is None
