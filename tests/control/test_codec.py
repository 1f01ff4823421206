"""The codec without sockets: good and bad frames for every message type."""

import json

import pytest

from gateway.errors import GatewayError, NotFound
from gateway.protocol import codec

GOOD = [
    ('{"jsonrpc":"2.0","id":1,"method":"hello","params":{"token":"t"}}', codec.Request(1, "hello", {"token": "t"})),
    ('{"jsonrpc":"2.0","id":"a-1","method":"session.list"}', codec.Request("a-1", "session.list", {})),
    ('{"jsonrpc":"2.0","id":7,"method":"ping","params":null}', codec.Request(7, "ping", {})),
    ('{"jsonrpc":"2.0","method":"call.hangup","params":{"call_id":"x"}}', codec.Notification("call.hangup", {"call_id": "x"})),
    (b'{"jsonrpc":"2.0","id":0,"method":"call.dtmf","params":{"call_id":"c","digits":"12#"}}',
     codec.Request(0, "call.dtmf", {"call_id": "c", "digits": "12#"})),
]

# frame, expected code, expected reason, expected id in the reply
BAD = [
    ("{", -32700, "parse-error", None),
    ("", -32700, "parse-error", None),
    (b"\xff\xfe", -32700, "parse-error", None),
    ("[" * 100000, -32700, "parse-error", None),
    ("[]", -32600, "invalid-request", None),
    ('[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600, "invalid-request", None),
    ("42", -32600, "invalid-request", None),
    ('"hello"', -32600, "invalid-request", None),
    ("null", -32600, "invalid-request", None),
    ('{"id":1,"method":"ping"}', -32600, "invalid-request", 1),
    ('{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600, "invalid-request", 1),
    ('{"jsonrpc":"2.0","id":null,"method":"ping"}', -32600, "invalid-request", None),
    ('{"jsonrpc":"2.0","id":1.5,"method":"ping"}', -32600, "invalid-request", None),
    ('{"jsonrpc":"2.0","id":true,"method":"ping"}', -32600, "invalid-request", None),
    ('{"jsonrpc":"2.0","id":{},"method":"ping"}', -32600, "invalid-request", None),
    ('{"jsonrpc":"2.0","id":"","method":"ping"}', -32600, "invalid-request", None),
    ('{"jsonrpc":"2.0","id":1}', -32600, "invalid-request", 1),
    ('{"jsonrpc":"2.0","id":1,"method":5}', -32600, "invalid-request", 1),
    ('{"jsonrpc":"2.0","id":1,"method":""}', -32600, "invalid-request", 1),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}', -32600, "invalid-request", 1),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","params":[1,2]}', -32602, "invalid-params", 1),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}', -32602, "invalid-params", 1),
    ('{"jsonrpc":"2.0","method":"ping","params":[1]}', -32600, "invalid-request", None),
]


@pytest.mark.parametrize("frame,expected", GOOD)
def test_parse_good(frame, expected):
    assert codec.parse_message(frame) == expected


@pytest.mark.parametrize("frame,code,reason,reply_id", BAD)
def test_parse_bad_never_raises(frame, code, reason, reply_id):
    msg = codec.parse_message(frame)
    assert isinstance(msg, codec.Invalid)
    assert (msg.error.code, msg.error.reason, msg.id) == (code, reason, reply_id)
    reply = json.loads(codec.encode_error(msg.id, msg.error))
    assert reply["jsonrpc"] == "2.0" and reply["id"] == reply_id
    assert reply["error"]["code"] == code and reply["error"]["data"]["reason"] == reason


def test_batch_says_not_supported():
    msg = codec.parse_message("[]")
    assert "batch" in msg.error.message


def test_encode_result_error_event_roundtrip():
    assert json.loads(codec.encode_result(3, {"a": 1})) == {"jsonrpc": "2.0", "id": 3, "result": {"a": 1}}
    err = NotFound("no such call", reason="no-such-call", details={"call_id": "c"})
    assert json.loads(codec.encode_error("x", err)) == {
        "jsonrpc": "2.0", "id": "x",
        "error": {"code": -32004, "message": "no such call",
                  "data": {"reason": "no-such-call", "details": {"call_id": "c"}}},
    }
    ev = {"seq": 1042, "type": "call.state", "time": "2026-11-27T16:00:00.123Z", "session_id": None, "data": {}}
    text = codec.encode_event(ev)
    assert json.loads(text) == {"jsonrpc": "2.0", "method": "event", "params": ev}
    assert codec.parse_response(text) == codec.Notification("event", ev)


def test_internal_error_has_no_details():
    err = json.loads(codec.encode_error(1, GatewayError("internal error")))["error"]
    assert err == {"code": -32603, "message": "internal error", "data": {"reason": "internal-error"}}


def test_encode_result_rejects_non_json():
    with pytest.raises((TypeError, ValueError)):
        codec.encode_result(1, {"x": object()})
    with pytest.raises(ValueError):
        codec.encode_result(1, {"x": float("nan")})


@pytest.mark.parametrize("frame,kind", [
    ('{"jsonrpc":"2.0","id":1,"result":{}}', codec.Response),
    ('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m","data":{"reason":"parse-error"}}}', codec.Response),
    ('{"jsonrpc":"2.0","method":"event","params":{"seq":1}}', codec.Notification),
    ("{", codec.Invalid),
    ('{"jsonrpc":"2.0","id":1}', codec.Invalid),
    ('{"jsonrpc":"2.0","id":1,"result":{},"error":{}}', codec.Invalid),
    ('{"jsonrpc":"2.0","id":1,"result":[]}', codec.Invalid),
    ('{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}', codec.Invalid),
    ('{"jsonrpc":"2.0","id":1,"method":"event","params":{}}', codec.Invalid),
    ("[1]", codec.Invalid),
])
def test_parse_response(frame, kind):
    assert isinstance(codec.parse_response(frame), kind)


@pytest.mark.parametrize("text, reply_id, reason, loc", [
    ('{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":{"b":["ok","\\ud800"]}}}', 1, "invalid-params", "a.b.1"),
    ('{"jsonrpc":"2.0","id":2,"method":"m","params":{"\\udfff":1}}', 2, "invalid-params", "params"),
    ('{"jsonrpc":"2.0","id":3,"method":"m\\ud800","params":{}}', 3, "invalid-request", None),
    ('{"jsonrpc":"2.0","id":"\\udc80","method":"m"}', None, "invalid-request", None),
    ('{"jsonrpc":"2.0","id":4,"method":"m","\\ud801":1}', 4, "invalid-request", None),
])
def test_lone_surrogates_are_refused_with_the_field_named(text, reply_id, reason, loc) -> None:
    msg = codec.parse_message(text)
    assert isinstance(msg, codec.Invalid) and msg.id == reply_id and msg.error.reason == reason
    if loc is not None:
        assert msg.error.details["errors"][0]["loc"] == loc
    codec.encode_error(msg.id, msg.error).encode("utf-8")  # the answer itself is valid text


def test_lone_surrogates_in_a_bytes_frame_are_refused_too() -> None:
    msg = codec.parse_message(b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"t":"\\ud800"}}')
    assert isinstance(msg, codec.Invalid) and msg.error.details["errors"][0]["loc"] == "t"


def test_surrogate_pairs_are_text() -> None:
    msg = codec.parse_message('{"jsonrpc":"2.0","id":1,"method":"m","params":{"t":"\\ud83d\\ude91"}}')
    assert isinstance(msg, codec.Request) and msg.params == {"t": "\U0001F691"}


def test_an_encoded_result_is_the_same_text_and_encoded_once(monkeypatch) -> None:
    value = {"sessions": [{"session_id": "s1", "title": "Brand é", "closed_at": None}]}
    shared = codec.EncodedResult(value)
    assert shared == value
    dumps = []
    real, dump = codec.json.dumps, codec._dump
    monkeypatch.setattr(codec, "_dump", lambda obj: dumps.append(1) or dump(obj))  # the codec's one encoder
    for req_id in (1, "abc", 2**40):
        assert codec.encode_result(req_id, shared) == real(
            {"jsonrpc": "2.0", "id": req_id, "result": value}, separators=(",", ":"), ensure_ascii=False)
    assert len(dumps) == 1 + 3  # the result once; each id (a plain result: the whole reply each time)


def _python_calls(fn, *args):
    """Python function calls made while `fn(*args)` runs (C calls not counted), and its result."""
    import sys

    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        out = fn(*args)
    finally:
        sys.setprofile(None)
    return calls, out


def test_encode_json_writes_the_json_encoders_text_without_its_python_frames():
    """The codec's encoding is `json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)`'s, text and errors alike, from its C encoder called directly: before,
    `encode` and `iterencode` ran in Python on every event and frame (3 Python calls an encoding,
    now 2: `encode_json` and `_dump`)."""
    reference = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    values = [{"message_id": "m1", "state": "sent", "attempts": 1, "error": None, "ok": True,
               "to": "+861370000", "body": "é\"\\\u2028\n«now»", "nested": [1, 2.5, -0.0, 1e300, {}, []]},
              [], "text", 3, {1: "a", None: "b", 2.5: "c", False: "d"}]
    for value in values:
        assert codec.encode_json(value) == reference(value)
    calls, _ = _python_calls(codec.encode_json, values[0])
    assert calls <= 2, calls
    circular: dict = {}
    circular["self"] = circular
    for bad, error in ((float("nan"), ValueError), ({"x": {1, 2}}, TypeError), ({(1,): 2}, TypeError),
                       (circular, ValueError)):
        with pytest.raises(error) as ours:
            codec.encode_json(bad)
        with pytest.raises(error) as theirs:
            reference(bad)
        assert str(ours.value) == str(theirs.value)
