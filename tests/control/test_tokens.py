"""Bearer tokens: who a token is, and a lookup whose work does not grow with the number of
tokens configured (1,000 field terminals each have one; every hello and upload looks one up)."""

from __future__ import annotations

import hmac
from types import SimpleNamespace

import pytest

import gateway.tokens
from gateway.protocol import Principal
from gateway.tokens import TokenTable


def _table(n: int) -> TokenTable:
    tokens = {f"terminal-token-{i:05d}": SimpleNamespace(principal=f"t{i:05d}", role="terminal")
              for i in range(n)}
    tokens["dispatcher-token-1"] = SimpleNamespace(principal="alice", role="dispatcher")
    return TokenTable(tokens)


def test_each_token_is_its_principal_and_nothing_else_is_anyone() -> None:
    table = _table(50)
    assert table.principal("dispatcher-token-1") == Principal("alice", "dispatcher")
    assert table.principal("terminal-token-00007") == Principal("t00007", "terminal")
    for wrong in ("", "dispatcher-token-", "dispatcher-token-1 ", "DISPATCHER-TOKEN-1",
                  "terminal-token-00050", "dispatcher-token-1\x00"):
        assert table.principal(wrong) is None, wrong


@pytest.mark.parametrize("token", ["terminal-token-00999", "no-such-token-at-all"])
def test_a_lookup_compares_with_at_most_one_configured_token(monkeypatch: pytest.MonkeyPatch,
                                                             token: str) -> None:
    """Scanning every token per hello made a reconnect storm of N terminals cost N x N
    comparisons; a lookup now compares the given token with the one it may be, in constant time."""
    table = _table(1000)
    compared = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(gateway.tokens.hmac, "compare_digest", counting)
    found = table.principal(token)
    assert (found is not None) == token.startswith("terminal-")
    assert len(compared) <= 1
