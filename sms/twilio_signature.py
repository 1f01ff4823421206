"""X-Twilio-Signature of a webhook, checked on the form as received (HMAC-SHA1 with `hmac` directly).

    check = WebhookSignature(auth_token)
    check.valid("https://gw.example/webhooks/twilio/status", [("MessageSid", "SM1"), ...], header)

Twilio signs the URL it requested followed by every POST parameter, name then value, sorted by
name and then by value (a repeated name/value pair counts once), with HMAC-SHA1 under the account's
auth token, base64. The twilio library's `RequestValidator` computes that signature twice for every
request (the URL without its port and with it: Twilio's own signing was inconsistent about the
port) and compares character by character in Python: at carrier rates (three callbacks a message)
that was a tenth of the gateway's CPU. Here the URL as given is tried first, which is the one
Twilio signs (our own StatusCallback URL): a genuine callback costs one HMAC. Only when that fails
is the other form (port added or removed) tried, so what was accepted before still is. The
comparison is `hmac.compare_digest` (constant time). A `bodySHA256` query is for JSON bodies:
never a form's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _other_form(url: str) -> str | None:
    """`url` with its port removed if it has one, else with the scheme's default port added
    (None when neither applies)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if port is not None:
        netloc = parts.netloc.rsplit(":", 1)[0]
    elif parts.scheme in _DEFAULT_PORTS:
        netloc = parts.netloc + f":{_DEFAULT_PORTS[parts.scheme]}"
    else:
        return None
    return parts._replace(netloc=netloc).geturl()


class WebhookSignature:
    """Checks X-Twilio-Signature headers for one auth token."""

    def __init__(self, auth_token: str) -> None:
        self._key = auth_token.encode("utf-8")
        self.computed = 0  # HMACs computed so far (tests count them)

    def sign(self, url: str, params: Iterable[tuple[str, str]]) -> str:
        """The signature of a POST of `params` (name, value pairs) to `url`."""
        self.computed += 1
        text = url + "".join(name + value for name, value in sorted(set(params)))
        return base64.b64encode(hmac.digest(self._key, text.encode("utf-8"), hashlib.sha1)).decode("ascii")

    def valid(self, url: str, params: Iterable[tuple[str, str]], signature: str) -> bool:
        """Whether `signature` signs `params` for `url` (or for `url` with its port added or removed)."""
        pairs = list(params)
        given = signature.encode("utf-8", "replace")
        if hmac.compare_digest(self.sign(url, pairs).encode("ascii"), given):
            return True
        other = _other_form(url)
        return other is not None and hmac.compare_digest(self.sign(other, pairs).encode("ascii"), given)
