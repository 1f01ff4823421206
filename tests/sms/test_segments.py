import pytest

from sms.errors import SmsError, TooManySegments
from sms.segments import GSM7_BASIC, GSM7_EXTENSION, check_max, encode_info, is_gsm7, split

ZH = "所有区值班人员到防汛指挥部报到"


def test_alphabet_sizes():
    assert len(GSM7_BASIC) == 127  # 128 codes less ESC
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    "body, encoding, segments, units, per",
    [
        ("", "GSM-7", 1, 0, 160),
        ("a" * 160, "GSM-7", 1, 160, 160),
        ("a" * 161, "GSM-7", 2, 161, 153),
        ("a" * 306, "GSM-7", 2, 306, 153),
        ("a" * 307, "GSM-7", 3, 307, 153),
        ("€" * 80, "GSM-7", 1, 160, 160),
        ("€" * 81, "GSM-7", 2, 162, 153),
        ("Ça coûte 5€", "UCS-2", 1, 11, 70),  # û is not GSM-7
        ("Ça va? 5€ ^{}[]~|\\", "GSM-7", 1, 8 + 2 + 1 + 16, 160),
        (ZH, "UCS-2", 1, 15, 70),
        ("值" * 70, "UCS-2", 1, 70, 70),
        ("值" * 71, "UCS-2", 2, 71, 67),
        ("值" * 134, "UCS-2", 2, 134, 67),
        ("值" * 135, "UCS-2", 3, 135, 67),
        ("😀" * 35, "UCS-2", 1, 70, 70),
        ("😀" * 36, "UCS-2", 2, 72, 67),
        ("a\x1b", "UCS-2", 1, 2, 70),  # a bare ESC is not a character of the alphabet
    ],
)
def test_encode_info(body, encoding, segments, units, per):
    info = encode_info(body)
    assert (info.encoding, info.segments, info.units, info.per_segment) == (encoding, segments, units, per)
    assert len(split(body)) == segments
    assert "".join(split(body)) == body
    assert info.as_dict() == {"encoding": encoding, "segments": segments, "units": units, "per_segment": per}


def test_chinese_with_ascii_is_ucs2():
    body = f"【防汛】{ZH}，时间 20:00 (Room 3)"
    assert not is_gsm7(body)
    assert encode_info(body).encoding == "UCS-2"


def _gsm_units(part):
    return sum(2 if c in GSM7_EXTENSION else 1 for c in part)


def _utf16_units(part):
    return len(part.encode("utf-16-le")) // 2


def test_extension_char_never_split_at_153():
    body = "a" * 152 + "€" + "b" * 10  # the € would take septets 153 and 154
    parts = split(body)
    assert parts == ["a" * 152, "€" + "b" * 10]
    assert [_gsm_units(p) for p in parts] == [152, 12]
    info = encode_info(body)
    assert (info.units, info.segments) == (164, 2)


def test_extension_char_exactly_fills_153():
    body = "a" * 151 + "[" + "b" * 10
    assert split(body) == ["a" * 151 + "[", "b" * 10]


def test_boundary_pair_can_add_a_segment():
    # 306 septets fit 2 parts of 153 only if no pair straddles; here one does -> 3 parts
    body = "a" * 152 + "~" + "a" * 152
    assert _gsm_units(body) == 306
    assert [_gsm_units(p) for p in split(body)] == [152, 153, 1]
    assert encode_info(body).segments == 3


def test_emoji_never_split_at_67():
    body = "值" * 66 + "😀" + "值" * 10  # the surrogate pair would take units 67 and 68
    parts = split(body)
    assert parts == ["值" * 66, "😀" + "值" * 10]
    assert [_utf16_units(p) for p in parts] == [66, 12]
    for part in parts:
        part.encode("utf-16-le")  # no lone surrogate: would raise


def test_emoji_exactly_fills_67():
    body = "值" * 65 + "😀" + "值" * 5
    assert [_utf16_units(p) for p in split(body)] == [67, 5]


def test_every_part_within_limits():
    body = ("警报😀" * 40) + "结束"
    for part in split(body):
        assert _utf16_units(part) <= 67
    body = ("x{y}" * 60)
    for part in split(body):
        assert _gsm_units(part) <= 153


def test_check_max_ok_and_refused():
    assert check_max("值" * 134, 2).segments == 2
    with pytest.raises(TooManySegments) as err:
        check_max("值" * 135, 2)
    assert isinstance(err.value, SmsError)
    assert err.value.reason == "too-many-segments"
    assert err.value.details["segments"] == 3
    assert err.value.details["max"] == 2
    assert err.value.details["encoding"] == "UCS-2"
    assert "3" in err.value.message and "2" in err.value.message


def test_check_max_bad_config():
    with pytest.raises(ValueError):
        check_max("hi", 0)


def test_a_body_is_segmented_once_however_many_messages_and_inputs_share_it(monkeypatch):
    """The outbox restores a message for every input and the SMPP provider splits it for its
    submit_sm: with one body for an alert's thousands of messages, its characters are walked once
    (before: at every restore, submit and check, 4,000 walks here)."""
    from sms import segments
    from sms.outbox import OutgoingMessage
    from sms.smpp import encode_parts

    walks = 0
    costs = segments._costs

    def counted(body):
        nonlocal walks
        walks += 1
        return costs(body)

    monkeypatch.setattr(segments, "_costs", counted)
    body = f"Flood warning {id(counted)}: move to high ground now [zone 3]."  # a body not seen before
    for i in range(1000):
        m = OutgoingMessage.restore(f"m{i}", "+15005550006", "+8613800000001", body, state="queued", attempts=0,
                                    next_attempt_at=None, provider_id=None, created_at=0.0)
        assert m.info == encode_info(body)
        assert [p.text for p in encode_parts(body, i % 256)] == split(body) == [body]
    assert walks == 2  # encode_info's and split's, once each
    assert encode_info(body) == segments.SegmentInfo("GSM-7", 1, len(body) + 2, 160)
