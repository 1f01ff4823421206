"""The configured bearer tokens (`[auth.tokens]`): who a token given to `hello` or to the HTTP
uploads is.

A lookup costs the same however many tokens are configured (a fleet of terminals has one each,
and they all say hello again after a restart): tokens are kept by their SHA-256 digest, the given
token's digest finds the one it may be, and that one is compared in constant time. What the
dictionary lookup's timing could tell is about the digest, which says nothing usable about a
token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from gateway.protocol import Principal


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class TokenTable:
    def __init__(self, tokens: Mapping[str, Any]) -> None:
        """`tokens`: token -> its info (`principal`, `role`), as `[auth.tokens]` holds them."""
        self._by_digest = {_digest(t.encode()): (t.encode(), Principal(i.principal, i.role))
                           for t, i in tokens.items()}

    def principal(self, token: str) -> Principal | None:
        """The principal of `token`, None for a token not configured."""
        given = token.encode()
        known, principal = self._by_digest.get(_digest(given), (b"", None))
        return principal if hmac.compare_digest(given, known) else None
