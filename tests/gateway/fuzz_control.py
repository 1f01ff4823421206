"""Hostile control-channel frames, generated deterministically from a seed (no I/O here).

`FrameFuzzer(seed).batch(role, n)` gives `n` frames for a connection of `role` (None: before
hello). A frame is `Frame(kind, data, closes)`: `data` is `str` (a text frame), `bytes` with
`text=True` (a text frame that is not UTF-8) or `bytes` (a binary frame); `closes` names the close
code the frame must end the connection with (1007 not UTF-8, 1009 oversized), such a frame is
only ever the last of a batch. Kinds: invalid JSON, invalid UTF-8, wrong types, deep nesting,
huge numbers and strings, batches, envelope mutations, notifications, mutated params of every
method, binary frames without a channel, oversized frames.

Every URI the fuzzer writes points at 127.0.0.1 port 9 (discard): a mutated command that happens
to be valid reaches nothing beyond loopback.
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass

from gateway.protocol.methods import METHODS

LOOPBACK_URI = "sip:fuzz@127.0.0.1:9"

# A valid params object per method of protocol v1's first table; mutations start from these.
TEMPLATES: dict[str, dict] = {
    "hello": {"token": "tok-not-a-token", "client": "fuzz/1"},
    "ping": {},
    "session.create": {"title": "fuzz"},
    "session.list": {"state": "open"},
    "session.get": {"session_id": "s-fuzz"},
    "session.close": {"session_id": "s-fuzz"},
    "events.subscribe": {"since_seq": 0},
    "directory.list": {"kind": "phone", "group": "g"},
    "call.dial": {"target": LOOPBACK_URI, "timeout_s": 1, "headers": {"X-Fuzz": "1"}},
    "call.list": {"session_id": "s-fuzz"},
    "call.answer": {"call_id": "c-fuzz"},
    "call.reject": {"call_id": "c-fuzz", "code": 486},
    "call.hangup": {"call_id": "c-fuzz"},
    "call.hold": {"call_id": "c-fuzz"},
    "call.unhold": {"call_id": "c-fuzz"},
    "call.dtmf": {"call_id": "c-fuzz", "digits": "123#"},
    "call.transfer": {"call_id": "c-fuzz", "target": LOOPBACK_URI},
    "call.listen": {"call_id": "c-fuzz"},
    "media.open": {"call_id": "c-fuzz", "direction": "both", "rate": 8000},
    "media.close": {"channel": 1},
    "broadcast.start": {"targets": ["zone:nowhere"], "source": {"type": "tone", "seconds": 0.1}},
    "broadcast.stop": {"broadcast_id": "b-fuzz"},
    "broadcast.get": {"broadcast_id": "b-fuzz"},
    "sms.send": {"to": ["+15005550006"], "body": "fuzz"},
    "sms.get": {"message_id": "m-fuzz"},
    "sms.preview": {"body": "fuzz"},
    "sms.templates": {},
}
METHOD_NAMES = sorted(METHODS)  # a method without a template starts from {} (mutated like the rest)

# Values that cannot be written by json.dumps (or not as themselves): raw JSON text.
RAW_VALUES = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 5000, "-0", "1e-400",
              "9" * 4000, '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', "1.0e+", "0x10", "01", "+1")

HOSTILE_STRINGS = (
    "", " ", "\x00", "\x00" * 64, "\r\n", "a\r\nVia: evil", "%s%n%x", "../../../etc/passwd",
    "\u202e", "\ufeff", "😀" * 16, "中文" * 40, "\\", '"', "'; DROP TABLE events; --",
    "sip:fuzz@127.0.0.1:9?Route=x", "sip:fuzz@127.0.0.1:9;transport=tcp", "tel:+1", "sip:", "sips:@",
    "group:nowhere", "zone:nowhere", "A" * 129, "A" * 300, "\t" * 50, "null", "true", "0",
)
HOSTILE_NUMBERS = (0, -1, 1, 2**31, 2**31 - 1, 2**32, 2**53, 2**53 - 1, -(2**53), 2**63 - 1, 2**63,
                   2**64, -(2**63) - 1, 10**30, 65535, 65536, 1.5, -0.5, 1e308, 5e-324, 0.1, 600.0001)


@dataclass(frozen=True)
class Frame:
    kind: str
    data: str | bytes
    text: bool = True  # bytes with text=True: a text frame whose payload is not UTF-8
    closes: int | None = None  # the close code this frame must end the connection with


class FrameFuzzer:
    def __init__(self, seed: int, *, max_frame: int = 256 * 1024) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.max_frame = max_frame
        self._n = 0

    # -- values -----------------------------------------------------------------------------

    def _string(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.5:
            return r.choice(HOSTILE_STRINGS)
        if pick < 0.8:
            return "".join(chr(r.randrange(0x20, 0x2FF)) for _ in range(r.randrange(1, 40)))
        return r.choice("aZ9-.:") * r.randrange(64, 3000)

    def _nested(self, depth: int) -> object:
        inner: object = self.rng.choice((0, "x", None, {"token": "s3cret"}))
        for _ in range(depth):
            inner = {"a": inner} if self.rng.random() < 0.5 else [inner]
        return inner

    def _value(self) -> object:
        r = self.rng
        pick = r.random()
        if pick < 0.35:
            return self._string()
        if pick < 0.65:
            return r.choice(HOSTILE_NUMBERS)
        if pick < 0.75:
            return r.choice((None, True, False, [], {}))
        if pick < 0.85:
            return [self._string() for _ in range(r.randrange(0, 50))]
        if pick < 0.95:
            return {self._string(): r.choice(HOSTILE_NUMBERS) for _ in range(r.randrange(1, 8))}
        return self._nested(r.choice((10, 40, 100, 400, 900)))

    # -- frames -----------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._n += 1
        return self._n

    def _params(self, method: str) -> dict:
        r = self.rng
        params = json.loads(json.dumps(TEMPLATES.get(method, {"x": 1})))
        for _ in range(r.choice((0, 1, 1, 2, 3))):
            keys = list(params)
            op = r.random()
            if op < 0.55 and keys:
                params[r.choice(keys)] = self._value()
            elif op < 0.7 and keys:
                del params[r.choice(keys)]
            elif op < 0.85:
                params[self._string()[:64] or "x"] = self._value()
            else:
                params["idempotency_key"] = r.choice(("k", "k" * 129, "\x01", 5, "ключ", None))
        return params

    def _request(self, method: str | None = None) -> dict:
        method = method or self.rng.choice(METHOD_NAMES)
        return {"jsonrpc": "2.0", "id": self._next_id(), "method": method, "params": self._params(method)}

    def _envelope(self) -> dict:
        r = self.rng
        msg: dict = self._request()
        key = r.choice(("jsonrpc", "id", "method", "params", "extra", "drop"))
        if key == "extra":
            msg[self._string()[:32] or "x"] = self._value()
        elif key == "drop":
            del msg[r.choice(list(msg))]
        elif key == "method":
            msg["method"] = r.choice(("", "x" * 65, "no.such", "hello", "HELLO", "event", "rpc.discover",
                                      "session.create\x00", "ping ", 7, None, ["ping"], {"m": 1}))
        else:
            msg[key] = self._value()
        return msg

    def _raw_text(self) -> str:
        r = self.rng
        good = json.dumps(self._request())
        pick = r.random()
        if pick < 0.3:
            return good[: r.randrange(0, len(good))]  # truncated
        if pick < 0.45:
            return good + r.choice((" x", "}", "]", "\x00", ",{}", good))  # trailing data
        if pick < 0.6:  # a raw value JSON cannot encode itself, at a random place
            raw = r.choice(RAW_VALUES)
            return r.choice((f'{{"jsonrpc":"2.0","id":{raw},"method":"ping"}}',
                             f'{{"jsonrpc":"2.0","id":{self._next_id()},"method":"call.dial","params":{{"target":{raw},"timeout_s":{raw}}}}}',
                             f'{{"jsonrpc":"2.0","id":{self._next_id()},"method":"events.subscribe","params":{{"since_seq":{raw}}}}}',
                             f'{{"jsonrpc":"2.0","id":{self._next_id()},"method":"no.such","params":{{"x":{raw}}}}}'))
        if pick < 0.7:  # duplicate keys
            return f'{{"jsonrpc":"2.0","id":1,"id":"two","method":"ping","method":"session.list","params":{{}}}}'
        if pick < 0.8:
            return r.choice(("", " ", "{", "[", "}", "null", "true", "0", '"str"', "{}", "[]", "\ufeff{}",
                             "{'jsonrpc':'2.0'}", "{\"jsonrpc\":\"2.0\",}", "NaN", "[" * 3 + "]" * 2))
        return "".join(chr(r.randrange(0x20, 0x7F)) for _ in range(r.randrange(1, 200)))

    def _deep(self) -> str:
        opener, closer = self.rng.choice((("[", "]"), ('{"a":', "}")))
        fits = (self.max_frame - 200) // (len(opener) + len(closer))
        depth = min(fits, self.rng.choice((1000, 5000, 50_000, 120_000)))
        where = self.rng.random()
        body = opener * depth + "0" + closer * depth
        if where < 0.5:
            return body
        return f'{{"jsonrpc":"2.0","id":{self._next_id()},"method":"no.such","params":{{"x":{body}}}}}'

    def _batch(self) -> str:
        n = self.rng.choice((0, 1, 2, 10, 100))
        return json.dumps([self._request("ping") if self.rng.random() < 0.5 else self._envelope() for _ in range(n)])

    def _binary(self) -> bytes:
        r = self.rng
        if r.random() < 0.5:
            return bytes(r.getrandbits(8) for _ in range(r.randrange(0, 40)))
        channel = r.choice((0, 1, 2, 7, 65535))
        payload = bytes(r.randrange(0, 2) * 320)
        return struct.pack(">BBHII", r.choice((1, 1, 2)), r.choice((1, 1, 9)), channel,
                           r.getrandbits(32), r.getrandbits(32)) + payload[: r.randrange(0, 321)]

    def _not_utf8(self) -> bytes:
        return self.rng.choice((b"\xff\xfe", b'{"jsonrpc":"2.0","id":1,"method":"\xc3\x28"}', b"\xed\xa0\x80",
                                b"\xf8\x88\x80\x80\x80", b"abc\xc0"))

    def frame(self, role: str | None) -> Frame:
        """One frame that fits in `max_frame` (the oversized ones are `closing_frame`)."""
        while True:
            frame = self._frame(role)
            if len(frame.data) <= self.max_frame - 64:
                return frame

    def _huge(self) -> str:
        r = self.rng
        blob = r.choice("B中😀") * (r.randrange(self.max_frame // 8, self.max_frame // 5))
        method = r.choice(METHOD_NAMES + ["no.such"])
        key = r.choice(list(TEMPLATES.get(method, {})) or ["x"])
        return json.dumps({"jsonrpc": "2.0", "id": self._next_id(), "method": method,
                           "params": {**TEMPLATES.get(method, {}), key: blob, "token": "s3cret"}},
                          ensure_ascii=r.random() < 0.5)

    def _frame(self, role: str | None) -> Frame:
        r = self.rng
        pick = r.random()
        if pick < 0.30:
            return Frame("params", json.dumps(self._request()))
        if pick < 0.45:
            return Frame("envelope", json.dumps(self._envelope()))
        if pick < 0.65:
            return Frame("invalid-json", self._raw_text())
        if pick < 0.70:
            msg = self._request()
            del msg["id"]
            return Frame("notification", json.dumps(msg))
        if pick < 0.76:
            return Frame("batch", self._batch())
        if pick < 0.77:
            return Frame("deep", self._deep())
        if pick < 0.87:
            return Frame("binary", self._binary(), text=False)
        if pick < 0.872:
            return Frame("huge", self._huge())
        if role is None and pick < 0.90:  # before hello: a hello with a wrong or hostile token
            msg = self._request("hello")
            return Frame("hello", json.dumps(msg))
        return Frame("params", json.dumps(self._request(r.choice(("ping", "session.list", "no.such")))))

    def closing_frame(self) -> Frame:
        if self.rng.random() < 0.5:
            return Frame("not-utf8", self._not_utf8(), text=True, closes=1007)
        return Frame("oversized", "[" + "0," * (self.max_frame // 2 + 16) + "0]", closes=1009)

    def batch(self, role: str | None, n: int, *, close_at_end: bool = False) -> list[Frame]:
        frames = [self.frame(role) for _ in range(n)]
        if close_at_end:
            frames.append(self.closing_frame())
        return frames
