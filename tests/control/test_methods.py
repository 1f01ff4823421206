"""Method table and params models without sockets."""

from pathlib import Path

import pytest

from gateway.errors import Forbidden, InvalidParams, MethodNotFound
from gateway.protocol import METHODS, Registry, render_schema, validate_params
from gateway.protocol import uri

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_matches_code():
    committed = (ROOT / "docs" / "protocol.schema.json").read_text()
    assert committed == render_schema(), ("regenerate: python -m gateway.protocol.schema > docs/protocol.schema.json, "
                                         "then the console's types: cd console && npm run gen-types")


def test_every_model_forbids_extra():
    for spec in METHODS.values():
        assert spec.params_model.model_config.get("extra") == "forbid", spec.name


def test_roles():
    assert METHODS["call.dial"].allows("dispatcher") and not METHODS["call.dial"].allows("observer")
    assert not METHODS["call.dial"].allows("terminal")
    for name in ("hello", "session.list", "session.get", "events.subscribe", "directory.list"):
        assert METHODS[name].allows("observer"), name
    assert {n for n, s in METHODS.items() if s.allows("terminal")} == {
        "hello", "ping", "terminal.report", "terminal.track", "terminal.feedback", "terminal.received", "terminal.ack",
        "terminal.instructions",
        "video.publish", "video.stop", "voice.publish", "voice.hangup"}
    assert not METHODS["terminal.list"].allows("terminal") and METHODS["terminal.list"].allows("observer")
    assert not METHODS["terminal.report"].allows("dispatcher")
    assert all(s.allows("admin") for s in METHODS.values())
    assert {n for n, s in METHODS.items() if s.starts_work} == {"call.dial", "session.create", "broadcast.start", "sms.send",
                                                                 "video.pull", "terminal.instruct",
                                                                 "terminal.feedback", "voice.bridge",
                                                                 "conference.create", "conference.add"}


@pytest.mark.parametrize("target", [
    "sip:alice@example.com", "sips:bob@10.0.0.1:5061;transport=tls", "sip:[2001:db8::1]",
    "sip:100@pbx.local;user=phone", "tel:+49-30-123456", "tel:110", "speaker-hall-1", "alice",
])
def test_good_targets(target):
    assert validate_params(METHODS["call.dial"], {"target": target}).target == target


@pytest.mark.parametrize("target", [
    "http://example.com", "sip:", "sip:alice@", "sip:al ice@x", "sip:a@x:99999", "sip:a@300.1.1.1",
    "sip:a@[zz::1]", "tel:", "tel:xyz", "-name", "name with space", "sip:a@b\r\nVia: x", "",
    # header parts: a console must not smuggle Route/P-Asserted-Identity/... into the INVITE
    "sip:100@pbx.local;user=phone?Subject=hi", "sip:a@b?Route=%3Csip:evil%3E", "sips:a@b:5061?x=",
    "sip:a?P-Asserted-Identity=x@b", "sip:a@b?",
])
def test_bad_targets_are_invalid_uri(target):
    with pytest.raises(InvalidParams) as info:
        validate_params(METHODS["call.dial"], {"target": target})
    assert info.value.reason == "invalid-uri"
    assert info.value.code == -32602
    assert info.value.details["errors"][0]["loc"] == "target"


@pytest.mark.parametrize("method,params,locs", [
    ("call.dial", {}, ["target"]),
    ("call.dial", {"target": "alice", "headers": {"X-Foo": "a\r\nb"}}, ["headers"]),
    ("call.dial", {"target": "alice", "headers": {"Bad Name": "a"}}, ["headers"]),
    ("call.dial", {"target": "alice", "headers": {"Via": "x"}}, ["headers"]),
    ("call.dial", {"target": "alice", "timeout_s": -1, "bogus": 1}, ["timeout_s", "bogus"]),
    ("call.dtmf", {"call_id": "c1", "digits": "12x"}, ["digits"]),
    ("call.dtmf", {"call_id": "c1", "digits": "1" * 33}, ["digits"]),
    ("call.reject", {"call_id": "c1", "code": 200}, ["code"]),
    ("events.subscribe", {"since_seq": -1}, ["since_seq"]),
    ("media.open", {"call_id": "c", "rate": 44100, "direction": "sideways"}, ["direction", "rate"]),
    ("media.close", {"channel": 70000}, ["channel"]),
    ("session.get", {"session_id": "a b"}, ["session_id"]),
    ("hello", {}, ["token"]),
])
def test_invalid_params_list_each_field(method, params, locs):
    with pytest.raises(InvalidParams) as info:
        validate_params(METHODS[method], params)
    assert info.value.reason == "invalid-params"
    assert [e["loc"] for e in info.value.details["errors"]] == locs
    assert all(e["msg"] for e in info.value.details["errors"])


@pytest.mark.parametrize("name", [
    *"vftimlckseourbx", *"VFTIMLCKSEOURBX", "y", "a",  # compact forms (RFC 3261 7.3.3 and later RFCs)
    "P-Asserted-Identity", "p-preferred-identity", "PRIVACY", "Identity", "Identity-Info",
])
def test_compact_and_identity_headers_are_refused_by_name(name):
    with pytest.raises(InvalidParams) as info:
        validate_params(METHODS["call.dial"], {"target": "alice", "headers": {"X-Ok": "1", name: "x"}})
    assert info.value.reason == "invalid-params"
    (err,) = info.value.details["errors"]
    assert err["loc"] == "headers" and repr(name) in err["msg"]


def test_header_part_in_target_says_why():
    with pytest.raises(InvalidParams) as info:
        validate_params(METHODS["call.dial"], {"target": "sip:a@b?Route=x"})
    assert info.value.reason == "invalid-uri"
    assert "header" in info.value.details["errors"][0]["msg"]


def test_from_uri_must_be_sip():
    with pytest.raises(InvalidParams) as info:
        validate_params(METHODS["call.dial"], {"target": "alice", "from_uri": "tel:123"})
    assert info.value.reason == "invalid-uri"


def test_defaults():
    assert validate_params(METHODS["call.reject"], {"call_id": "c"}).code == 486
    p = validate_params(METHODS["media.open"], {"call_id": "c"})
    assert (p.direction, p.rate) == ("both", 16000)


async def _h(ctx, params):
    return {}


def test_registry_resolve_order():
    reg = Registry()
    reg.register("call.dial", _h)
    with pytest.raises(KeyError):
        reg.register("nope", _h)
    with pytest.raises(ValueError):
        reg.register("call.dial", _h)
    with pytest.raises(MethodNotFound):
        reg.resolve("nope", "admin", {})
    with pytest.raises(Forbidden):  # role is checked before params
        reg.resolve("call.dial", "observer", {"target": "::bad"})
    with pytest.raises(MethodNotFound):  # in the table, no service registered
        reg.resolve("call.hangup", "dispatcher", {"call_id": "c"})
    spec, handler, params = reg.resolve("call.dial", "dispatcher", {"target": "alice"})
    assert handler is _h and params.target == "alice"


def test_uri_helpers():
    assert uri.is_sip_uri("sip:gw@127.0.0.1:5060")
    assert not uri.is_sip_uri("tel:1")
    assert uri.is_tel_uri("tel:+1-201-555-0123;ext=12")


@pytest.mark.parametrize("params", [
    {"conference_id": "c1"},  # neither target nor call_id
    {"conference_id": "c1", "target": "alice", "call_id": "k1"},  # both
    {"conference_id": "c1", "target": "http://x"},
    {"conference_id": "c1", "target": "alice", "console": True},  # a phone and the console
    {"conference_id": "c1", "console": False},
    {"conference_id": "c1", "console": True, "rate": 44100},
])
def test_conference_add_needs_one_member(params):
    with pytest.raises(InvalidParams):
        validate_params(METHODS["conference.add"], params)


def test_conference_add_console_takes_a_rate():
    p = validate_params(METHODS["conference.add"], {"conference_id": "c1", "console": True, "rate": 8000})
    assert p.console and p.rate == 8000 and p.target is None and p.call_id is None


def test_conference_mute_names_a_member_or_all_but_chair():
    ok = validate_params(METHODS["conference.mute"], {"conference_id": "c1", "all_but_chair": True})
    assert ok.all_but_chair and ok.member_id is None
    assert validate_params(METHODS["conference.unmute"], {"conference_id": "c1", "member_id": "m1"}).member_id == "m1"
    for bad in ({"conference_id": "c1"}, {"conference_id": "c1", "member_id": "m1", "all_but_chair": True}):
        with pytest.raises(InvalidParams):
            validate_params(METHODS["conference.mute"], bad)
