import pytest

from gateway.broadcast.config import (
    VENDOR_PROFILES,
    WELL_KNOWN_HEADERS,
    BroadcastConfig,
    SpeakerProfile,
    Zone,
    builtin_profile,
    render_headers,
)


def test_render_placeholders():
    p = SpeakerProfile("yealink", {"Alert-Info": "info=alert-autoanswer",
                                   "Call-Info": "<sip:{host}>;answer-after=0",
                                   "X-Page": "{user} via {uri} {{literal}}"})
    h = render_headers(p, "sip:1001@10.0.0.5:5062;transport=udp")
    assert h == {"Alert-Info": "info=alert-autoanswer", "Call-Info": "<sip:10.0.0.5>;answer-after=0",
                 "X-Page": "1001 via sip:1001@10.0.0.5:5062;transport=udp {literal}"}


@pytest.mark.parametrize("uri, user, host", [
    ("sip:spk@[2001:db8::1]:5060", "spk", "[2001:db8::1]"),
    ("sips:pager.example.org", "", "pager.example.org"),
    ("tel:+4930123;phone-context=x", "+4930123", ""),
    ("sip:alice:secret@h.example?subject=x", "alice", "h.example"),
])
def test_uri_parts(uri, user, host):
    p = SpeakerProfile("p", {"X-U": "{user}", "X-H": "{host}"})
    assert render_headers(p, uri) == {"X-U": user, "X-H": host}


def test_builtins_are_data_and_render():
    assert WELL_KNOWN_HEADERS["rfc5373"] == {"Answer-Mode": "Auto"}
    assert set(VENDOR_PROFILES) == {"yealink", "snom", "polycom", "algo", "axis", "cisco"}
    for name in [*WELL_KNOWN_HEADERS, *VENDOR_PROFILES]:
        headers = render_headers(builtin_profile(name), "sip:100@192.0.2.1")
        assert headers and all("{" not in v for v in headers.values())
    assert render_headers(builtin_profile("call-info"), "sip:100@192.0.2.1") == {
        "Call-Info": "<sip:100@192.0.2.1>;answer-after=0"}
    with pytest.raises(ValueError, match="unknown speaker profile 'acme'"):
        builtin_profile("acme")


def test_profile_is_read_only_copy():
    src = {"Answer-Mode": "Auto"}
    p = SpeakerProfile("p", src)
    src["X"] = "y"
    assert dict(p.headers) == {"Answer-Mode": "Auto"}
    with pytest.raises(TypeError):
        p.headers["X"] = "y"


@pytest.mark.parametrize("headers, message", [
    ({"Alert Info": "x"}, r"header name 'Alert Info' has a character not allowed in a SIP token: ' '"),
    ({"Alert:Info": "x"}, r"not allowed in a SIP token: ':'"),
    ({"": "x"}, r"header name must be a non-empty string"),
    ({"X-A": "a\r\nVia: evil"}, r"value of header 'X-A' contains CR at index 1"),
    ({"X-A": "a\nb"}, r"contains LF at index 1"),
    ({"X-A": "ab\x00"}, r"contains NUL at index 2"),
    ({"X-A": 5}, r"value of header 'X-A' must be a string, got int"),
    ({"X-A": "{port}"}, r"unknown placeholder \{port\}"),
    ({"X-A": "{uri!r}"}, r"takes no format or conversion"),
    ({"X-A": "{uri"}, r"malformed placeholder"),
    ({"Call-ID": "x"}, r"set by the SIP stack"),
    ({"via": "x"}, r"set by the SIP stack"),
    ({"X-A": "1", "x-a": "2"}, r"header 'x-a' given twice \(also as 'X-A'\)"),
    ({"X-A": "a" * 2000}, r"longer than 1024"),
])
def test_header_validation(headers, message):
    with pytest.raises(ValueError, match=r"speaker profile 'p': .*" + message):
        SpeakerProfile("p", headers)


def test_profile_name_validated():
    with pytest.raises(ValueError, match="speaker profile name"):
        SpeakerProfile("bad name", {})


def test_zone_validation():
    z = Zone("district-3", "239.10.0.3", 5004, "PCMU")
    assert (z.ttl, z.interface) == (1, "127.0.0.1")
    for kwargs, msg in [
        ({"group": "10.0.0.1"}, "not multicast"),
        ({"group": "239.1"}, "not an IPv4 address"),
        ({"group": "ff02::1"}, "not an IPv4 address"),
        ({"port": 0}, "port 0 is not in 1..65535"),
        ({"port": True}, "port True"),
        ({"codec": "opus"}, "codec 'opus' is not one of PCMU, PCMA, G722"),
        ({"ttl": 256}, "ttl 256"),
        ({"interface": "eth0"}, "interface 'eth0'"),
        ({"name": ""}, "zone name"),
    ]:
        args = {"name": "z", "group": "239.1.1.1", "port": 5004, "codec": "G722", **kwargs}
        with pytest.raises(ValueError, match=msg):
            Zone(**args)


def test_broadcast_config_defaults_and_lookup():
    c = BroadcastConfig()
    assert c.priorities == ("emergency", "normal", "routine")
    assert (c.retries, c.retry_delay_s, c.invite_pace_per_s) == (2, 3.0, 500.0)
    assert (c.recordings_dir, c.tts_engine, c.chime, c.preempted_policy) == ("recordings", "espeak-ng", True, "resume")
    assert dict(c.profiles) == {} and c.zones == ()
    assert c.rank("emergency") == 0 and c.rank("routine") == 2
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        c.rank("urgent")
    mine = SpeakerProfile("yealink", {"Answer-Mode": "Auto"})
    z = Zone("a", "239.0.0.1", 5004)
    c = BroadcastConfig(priorities=["fire", "info"], profiles={"yealink": mine}, zones=[z])
    assert c.priorities == ("fire", "info") and c.zones == (z,)
    assert c.profile("yealink") is mine  # configured wins over built-in
    assert dict(c.profile("snom").headers) == WELL_KNOWN_HEADERS["intercom"]
    assert c.zone("a") is z


@pytest.mark.parametrize("kwargs, msg", [
    ({"priorities": ()}, "at least one priority"),
    ({"priorities": ("a", "b", "a")}, "'a' is listed twice"),
    ({"priorities": ("a b",)}, "not a valid name"),
    ({"retries": -1}, "retries"),
    ({"retry_delay_s": -1}, "retry_delay_s"),
    ({"invite_pace_per_s": 0}, "invite_pace_per_s"),
    ({"preempted_policy": "pause"}, "preempted_policy"),
    ({"profiles": {"a": SpeakerProfile("b", {})}}, "profile is named 'b'"),
    ({"zones": (Zone("a", "239.0.0.1", 1), Zone("a", "239.0.0.2", 1))}, "name 'a' is used twice"),
    ({"zones": (Zone("a", "239.0.0.1", 1), Zone("b", "239.0.0.1", 1))}, "also zone 'a'"),
])
def test_broadcast_config_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        BroadcastConfig(**kwargs)
