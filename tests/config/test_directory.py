"""gateway.directory: resolve names, groups and URIs; list by kind and group."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.directory import Directory, Endpoint, uri_problem, validate_uri
from gateway.errors import NotFound, TargetError


@pytest.fixture
def directory(tmp_path) -> Directory:
    p = tmp_path / "gw.toml"
    p.write_text("""
[[directory.endpoint]]
name = "desk-1"
uri = "sip:desk1@127.0.0.1:5091"
groups = ["dispatch"]
[[directory.endpoint]]
name = "desk-2"
uri = "sip:desk2@127.0.0.1:5092"
groups = ["dispatch"]
[[directory.endpoint]]
name = "yard"
uri = "sip:yard@127.0.0.1:5093"
kind = "speaker"
groups = ["speakers", "outside"]
[[directory.endpoint]]
name = "gate"
uri = "sip:gate@127.0.0.1:5094"
kind = "speaker"
groups = ["speakers"]
[[directory.endpoint]]
name = "pstn"
uri = "tel:+15551234567"
kind = "trunk"
""")
    return Directory.from_config(load_config(str(p), {}, []))


def names(eps):
    return [e.name for e in eps]


def test_resolve_name(directory):
    [ep] = directory.resolve("desk-2")
    assert (ep.name, ep.uri, ep.kind) == ("desk-2", "sip:desk2@127.0.0.1:5092", "phone")


def test_resolve_group_in_config_order(directory):
    assert names(directory.resolve("group:speakers")) == ["yard", "gate"]
    assert names(directory.resolve("group:dispatch")) == ["desk-1", "desk-2"]


def test_resolve_uri_passes_through(directory):
    [ep] = directory.resolve("sip:someone@127.0.0.1:5099")
    assert ep.uri == ep.name == "sip:someone@127.0.0.1:5099"
    [known] = directory.resolve("sip:yard@127.0.0.1:5093")
    assert known.name == "yard" and known.kind == "speaker"
    assert directory.resolve("tel:+4930123")[0].uri == "tel:+4930123"


def test_unknown_name_or_group(directory):
    with pytest.raises(NotFound) as ei:
        directory.resolve("desk-9")
    assert ei.value.reason == "no-such-endpoint"
    assert ei.value.to_error()["data"] == {"reason": "no-such-endpoint",
                                           "details": {"target": "desk-9"}}
    with pytest.raises(NotFound) as ei:
        directory.resolve("group:nobody")
    assert ei.value.reason == "no-such-endpoint"
    with pytest.raises(NotFound):
        directory.resolve("")


def test_invalid_uri_target(directory):
    with pytest.raises(TargetError) as ei:
        directory.resolve("sip:bad uri@host")
    assert ei.value.reason == "invalid-uri"


def test_list_by_kind_and_group(directory):
    assert names(directory.list()) == ["desk-1", "desk-2", "yard", "gate", "pstn"]
    assert names(directory.list(kind="speaker")) == ["yard", "gate"]
    assert names(directory.list(group="outside")) == ["yard"]
    assert names(directory.list(group="group:speakers", kind="speaker")) == ["yard", "gate"]
    assert names(directory.list(kind="phone", group="speakers")) == []
    assert directory.list(group="nope") == []
    assert directory.groups() == ["dispatch", "outside", "speakers"]
    assert len(directory) == 5 and "gate" in directory and directory.get("gate").kind == "speaker"


def test_duplicates_rejected_when_built_directly():
    a = Endpoint("a", "sip:a@127.0.0.1")
    with pytest.raises(ValueError, match="duplicate"):
        Directory([a, Endpoint("a", "sip:b@127.0.0.1")])


def test_endpoint_validates_itself():
    with pytest.raises(ValueError):
        Endpoint("x", "mailto:x@y")
    with pytest.raises(ValueError):
        Endpoint("x", "sip:x@y", kind="fax")
    assert Endpoint("x", "sip:x@y", groups=["g"]).groups == ("g",)


@pytest.mark.parametrize("uri", [
    "sip:alice@127.0.0.1", "sip:alice@127.0.0.1:5060", "sips:alice@example.org",
    "sip:127.0.0.1:5080", "sip:bob@[::1]:5062", "sip:alice@host;transport=tcp",
    "sip:%61lice:pw@example.org", "tel:+15551234567", "tel:911", "tel:+1-555-123-4567",
    "SIP:alice@example.org",
])
def test_valid_uris(uri):
    assert uri_problem(uri) is None
    assert validate_uri(uri) == uri


@pytest.mark.parametrize("uri", [
    "sip:", "sip:@host", "sip:alice@", "sip:alice@ho st", "sip:alice@host:0",
    "sip:alice@host:65536", "http://x", "tel:", "tel:abc+", 5060, "alice@host",
])
def test_invalid_uris(uri):
    assert uri_problem(uri) is not None
