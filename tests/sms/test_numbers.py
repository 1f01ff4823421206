import pytest

from sms.errors import InvalidNumber, SmsError
from sms.numbers import is_e164, normalize


@pytest.mark.parametrize(
    "raw, number",
    [
        ("+8613800138000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+86 (10) 1234-5678", "+861012345678"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("  +44 20 7946 0958\t", "+442079460958"),
        ("＋８６ １３８００１３８０００", "+8613800138000"),  # full-width input
        ("+86–138–0013–8000", "+8613800138000"),  # en dashes from a document
        ("+12345678", "+12345678"),  # 8 digits
        ("+123456789012345", "+123456789012345"),  # 15 digits
    ],
)
def test_good(raw, number):
    assert normalize(raw) == number
    assert is_e164(number)


@pytest.mark.parametrize(
    "raw, why",
    [
        ("8613800138000", "no-plus"),
        ("0086 13800138000", "no-plus"),
        ("", "no-plus"),
        ("+", "not-digits"),
        ("+86 138 0013 800x", "not-digits"),
        ("+86.138.0013.8000", "not-digits"),
        ("++8613800138000", "not-digits"),
        ("+8613800138000+", "not-digits"),
        ("+٨٦١٣٨٠٠١٣٨٠٠٠", "not-digits"),  # Arabic-Indic digits
        ("+0613800138000", "leading-zero"),
        ("+1234567", "length"),  # 7 digits
        ("+1234567890123456", "length"),  # 16 digits
    ],
)
def test_bad(raw, why):
    with pytest.raises(InvalidNumber) as err:
        normalize(raw)
    assert isinstance(err.value, SmsError)
    assert err.value.reason == "invalid-number"
    assert err.value.details == {"input": raw, "why": why}
    assert not is_e164(raw)


def test_not_a_string():
    with pytest.raises(InvalidNumber):
        normalize(8613800138000)
