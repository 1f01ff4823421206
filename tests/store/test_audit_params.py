"""`audit_params_text` without a database: redacted, bounded, safe at any depth."""

from __future__ import annotations

import hashlib
import json

from gateway.store.rows import AUDIT_PARAMS_MAX_BYTES, audit_params_text


def test_small_params_are_stored_redacted_as_given() -> None:
    params = {"to": ["+15550001"], "auth": {"Password": "p", "api_key": "k"}, "n": 1, "t": ("a",)}
    assert json.loads(audit_params_text(params)) == {
        "to": ["+15550001"], "auth": {"Password": "***", "api_key": "***"}, "n": 1, "t": ["a"]}
    assert json.loads(audit_params_text(None)) == {}


def test_oversized_params_become_a_digest_of_their_redacted_encoding() -> None:
    params = {"blob": "é" * 10_000, "token": "s3cret"}
    text = audit_params_text(params)
    assert len(text.encode()) <= AUDIT_PARAMS_MAX_BYTES and "s3cret" not in text
    digest = json.loads(text)["digest"]
    full = json.dumps({"blob": "é" * 10_000, "token": "***"}).encode()
    assert digest == {"bytes": len(full), "sha256": hashlib.sha256(full).hexdigest(),
                      "head": full.decode()[:256], "depth_cut": False}


def test_any_depth_is_cut_not_a_recursion_error() -> None:
    deep: object = {"password": "p"}
    for _ in range(100_000):
        deep = [deep]
    text = audit_params_text({"x": deep})
    assert len(text.encode()) <= AUDIT_PARAMS_MAX_BYTES
    assert json.loads(text)["digest"]["depth_cut"] is True
