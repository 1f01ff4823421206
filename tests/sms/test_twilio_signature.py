"""The webhook signature check (sms/twilio_signature.py): it accepts and refuses what the twilio
library's `RequestValidator` does, and a genuine webhook costs one HMAC, not the library's two."""

from __future__ import annotations

import hmac

import pytest
from twilio.request_validator import RequestValidator

from sms.twilio_signature import WebhookSignature
from tests.peers.twilio_stub import twilio_signature

TOKEN = "12345678901234567890123456789012"
PARAMS = [("MessageSid", "SM" + "1" * 32), ("MessageStatus", "delivered"), ("To", "+15551230001"),
          ("ErrorCode", ""), ("Body", "caf\u00e9 & \u4f60\u597d")]


@pytest.mark.parametrize("url", [
    "https://gw.example.com/webhooks/twilio/status",
    "https://gw.example.com:443/webhooks/twilio/status",
    "http://127.0.0.1:8080/webhooks/twilio/status",
    "http://gw.example.com/webhooks/twilio/status?x=1",
])
@pytest.mark.parametrize("signed_for", ["same", "port-added", "port-removed", "other-host"])
def test_accepts_and_refuses_what_the_library_validator_does(url: str, signed_for: str) -> None:
    library = RequestValidator(TOKEN)
    ours = WebhookSignature(TOKEN)
    if signed_for == "same":
        sign_url = url
    elif signed_for == "port-added":
        sign_url = url.replace(".com/", ".com:443/").replace("http://gw.example.com:443", "http://gw.example.com:80")
    elif signed_for == "port-removed":
        sign_url = url.replace(":443", "").replace(":8080", "")
    else:
        sign_url = url.replace("gw.example.com", "evil.example").replace("127.0.0.1", "evil.example")
    for params in (PARAMS, PARAMS + [PARAMS[0]], PARAMS[:2], []):
        sig = twilio_signature(TOKEN, sign_url, sorted(set(params)))
        as_dict = dict(params)
        assert ours.valid(url, params, sig) == library.validate(url, as_dict, sig), (sign_url, params)
        tampered = [(k, v + "x") if k == "MessageStatus" else (k, v) for k, v in params]
        if tampered != params:
            assert not ours.valid(url, tampered, sig)
        assert not ours.valid(url, params, sig[:-2]) and not ours.valid(url, params, "")
    assert ours.valid(url, PARAMS, twilio_signature(TOKEN, url, PARAMS))


def test_a_repeated_name_is_signed_with_its_values_sorted() -> None:
    params = [("Tag", "b"), ("Tag", "a"), ("To", "+1")]
    sig = twilio_signature(TOKEN, "https://gw.example/x", [("Tag", "a"), ("Tag", "b"), ("To", "+1")])
    assert WebhookSignature(TOKEN).valid("https://gw.example/x", params, sig)


def test_a_genuine_webhook_costs_one_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's validator computed the signature for the URL without and with its port, for
    every request (2 HMACs); the URL as given is the one Twilio signed: 1."""
    calls = []
    real_new, real_digest = hmac.new, hmac.digest

    def new(key, msg=None, digestmod=""):  # type: ignore[no-untyped-def]
        calls.append("new")
        return real_new(key, msg, digestmod)

    def digest(key, msg, digest):  # type: ignore[no-untyped-def]
        calls.append("digest")
        return real_digest(key, msg, digest)

    url = "http://127.0.0.1:8080/webhooks/twilio/status"
    sig = twilio_signature(TOKEN, url, PARAMS)
    forged = twilio_signature("another-token-0000000000000000000", url, PARAMS)
    monkeypatch.setattr(hmac, "new", new)
    monkeypatch.setattr(hmac, "digest", digest)
    check = WebhookSignature(TOKEN)
    assert check.valid(url, PARAMS, sig)
    assert len(calls) == 1 and check.computed == 1
    calls.clear()
    assert not check.valid(url, PARAMS, forged)
    assert len(calls) == 2  # a refused one: both forms of the URL were tried
    calls.clear()
    assert RequestValidator(TOKEN).validate(url, dict(PARAMS), sig)  # what the provider used before
    assert len(calls) == 2
