"""Hostile SIP datagrams, generated from a seed (sans-I/O: no sockets, no clock).

    fuzz = SipFuzzer(seed=8, target=("127.0.0.1", 5060), source=("127.0.0.1", 40000))
    for case in fuzz.cases(10_000):      # case.index, case.kind, case.data (bytes)
        sock.sendto(case.data, target)
    fuzz.case(4711)                      # the same datagram again, from its index alone

Every case starts from a well-formed INVITE (with SDP), OPTIONS, REGISTER, BYE or a stray
response and breaks it one way (`MUTATIONS`): truncated at a random offset, a huge, negative,
duplicated or wrong Content-Length, broken or enormous SDP (1,000 m-lines), bad Via, CSeq, From
and To, bytes that are not UTF-8, garbage Authorization, datagrams near the UDP maximum (65,507
bytes), bit flips, plain noise. Each case has its own `random.Random` seeded from (seed, index),
so a failing input is named by its index and rebuilt without replaying the run.

`flood()` is the one-source flood: well-formed requests (OPTIONS, REGISTER with garbage
credentials) and INVITEs that cannot become calls, as fast as the caller sends them.

`parse_status()` reads the status code of a datagram that came back (None: not a response).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_UDP_PAYLOAD = 65_507  # IPv4: 65,535 - 20 (IP) - 8 (UDP)
CRLF = "\r\n"


@dataclass(frozen=True)
class Case:
    index: int
    kind: str
    data: bytes


def parse_status(data: bytes) -> int | None:
    """The status code of a SIP response datagram, or None when it is not one."""
    if not data.startswith(b"SIP/2.0 "):
        return None
    code = data[8:11]
    return int(code) if code.isdigit() else None


def _hp(addr: tuple[str, int]) -> str:
    return f"{addr[0]}:{addr[1]}"


class _CaseRandom(random.Random):
    index: int = 0


def call_index(data: bytes, seed: int) -> int | None:
    """The index of the case an answer belongs to, from the Call-ID it echoes (None: unknown)."""
    m = re.search(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*fuzz-" + str(seed).encode() + rb"-(-?\d+)-", data, re.I)
    return int(m.group(1)) if m else None


class _Message:
    """A request or response as a start line, a header list and a body (text until `encode`)."""

    def __init__(self, start: str, headers: list[tuple[str, str]], body: str = "") -> None:
        self.start = start
        self.headers = headers
        self.body = body

    def set(self, name: str, value: str | None) -> None:
        """Replace every header `name` with one `value` (None: remove them all)."""
        low = name.lower()
        at = next((i for i, (n, _) in enumerate(self.headers) if n.lower() == low), len(self.headers))
        self.headers = [(n, v) for n, v in self.headers if n.lower() != low]
        if value is not None:
            self.headers.insert(min(at, len(self.headers)), (name, value))

    def encode(self, content_length: str | None = None) -> bytes:
        body = self.body.encode("utf-8", "surrogateescape")
        cl = str(len(body)) if content_length is None else content_length
        lines = [self.start, *(f"{n}: {v}" for n, v in self.headers if n.lower() != "content-length")]
        if cl != "":
            lines.append(f"Content-Length: {cl}")
        return (CRLF.join(lines) + CRLF + CRLF).encode("utf-8", "surrogateescape") + body


class SipFuzzer:
    def __init__(self, seed: int, target: tuple[str, int], source: tuple[str, int],
                 user: str = "gateway") -> None:
        self.seed = seed
        self.target = target
        self.source = source
        self.user = user

    # ---- well-formed messages

    def sdp(self, rng: random.Random, m_lines: int = 1) -> str:
        """An audio offer; with many `m_lines`, each is one line (1,000 fit in a datagram)."""
        host = self.source[0]
        lines = ["v=0", f"o=fuzz {rng.randrange(1, 1 << 31)} 1 IN IP4 {host}", "s=-",
                 f"c=IN IP4 {host}", "t=0 0"]
        if m_lines == 1:
            lines += ["m=audio 20000 RTP/AVP 0 8", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000"]
        else:
            lines += [f"m=audio {20000 + 2 * i} RTP/AVP 0" for i in range(m_lines)]
        return CRLF.join(lines) + CRLF

    def request(self, rng: random.Random, method: str, *, sdp: bool | None = None,
                in_dialog: bool = False) -> _Message:
        tag = f"{rng.getrandbits(48):x}"
        # the case's index (`call_index` reads it back from an answer) and a random part
        call_id = f"fuzz-{self.seed}-{getattr(rng, 'index', 'x')}-{rng.getrandbits(32):x}"
        uri = f"sip:{self.user}@{_hp(self.target)}"
        headers = [
            ("Via", f"SIP/2.0/UDP {_hp(self.source)};branch=z9hG4bK{rng.getrandbits(64):x};rport"),
            ("Max-Forwards", "70"),
            ("From", f'"fuzz" <sip:fuzz@{_hp(self.source)}>;tag={tag}'),
            ("To", f"<{uri}>" + (f";tag={rng.getrandbits(32):x}" if in_dialog else "")),
            ("Call-ID", call_id),
            ("CSeq", f"{rng.randrange(1, 1000)} {method}"),
            ("Contact", f"<sip:fuzz@{_hp(self.source)}>"),
            ("User-Agent", "sipfuzz"),
        ]
        msg = _Message(f"{method} {uri} SIP/2.0", headers)
        if sdp if sdp is not None else method == "INVITE":
            msg.headers.append(("Content-Type", "application/sdp"))
            msg.body = self.sdp(rng)
        return msg

    def response(self, rng: random.Random) -> _Message:
        """A stray response (no transaction of the receiver's matches it)."""
        req = self.request(rng, rng.choice(["INVITE", "OPTIONS", "BYE"]))
        code, reason = rng.choice([(100, "Trying"), (180, "Ringing"), (200, "OK"), (401, "Unauthorized"),
                                   (486, "Busy Here"), (503, "Service Unavailable")])
        return _Message(f"SIP/2.0 {code} {reason}", req.headers, req.body)

    def base(self, rng: random.Random) -> _Message:
        pick = rng.random()
        if pick < 0.45:
            return self.request(rng, "INVITE")
        if pick < 0.65:
            return self.request(rng, "OPTIONS")
        if pick < 0.8:
            return self.request(rng, "REGISTER")
        if pick < 0.9:
            return self.request(rng, rng.choice(["BYE", "CANCEL", "ACK", "INFO"]), in_dialog=True)
        return self.response(rng)

    # ---- cases

    def rng(self, index: int) -> random.Random:
        rng = _CaseRandom(self.seed * 1_000_003 + index)
        rng.index = index
        return rng

    def case(self, index: int) -> Case:
        rng = self.rng(index)
        kind = rng.choice(KINDS)
        data = MUTATIONS[kind](self, rng)
        return Case(index, kind, data[:MAX_UDP_PAYLOAD])

    def cases(self, n: int, start: int = 0) -> Iterator[Case]:
        for i in range(start, start + n):
            yield self.case(i)

    def probe(self, index: int) -> Case:
        """A well-formed OPTIONS (its answer tells that everything sent before it was read)."""
        return Case(index, "probe", self.request(self.rng(index), "OPTIONS").encode())

    def flood(self, n: int, start: int = 0) -> Iterator[Case]:
        """One source's flood: OPTIONS, REGISTERs with garbage credentials, INVITEs with a body
        no one can answer (Content-Type that is not SDP)."""
        for i in range(start, start + n):
            rng = self.rng(-1 - i)
            pick = i % 3
            if pick == 0:
                msg = self.request(rng, "OPTIONS")
            elif pick == 1:
                msg = self.request(rng, "REGISTER")
                msg.headers.append(("Authorization", _garbage_auth(rng)))
            else:
                msg = self.request(rng, "INVITE")
                msg.set("Content-Type", "application/x-fuzz")
                msg.body = "not sdp" + CRLF
            yield Case(i, f"flood-{msg.start.split()[0].lower()}", msg.encode())


# ---- mutations: (fuzzer, rng) -> bytes

def _truncated(f: SipFuzzer, rng: random.Random) -> bytes:
    data = f.base(rng).encode()
    return data[: rng.randrange(1, len(data))]


def _content_length(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.base(rng)
    body_len = len(msg.body.encode())
    value = rng.choice([
        "4294967296", "18446744073709551617", "99999999999999999999999999", "2147483648",
        "-1", "-2147483649", str(body_len + rng.randrange(1, 100_000)), str(max(0, body_len - rng.randrange(1, 50))),
        "0x10", "1e3", " ", "12 34", "+5", str(MAX_UDP_PAYLOAD * 2),
    ])
    return msg.encode(content_length=value)


def _content_length_twice(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.base(rng)
    msg.headers.append(("Content-Length", str(rng.randrange(0, 1 << 20))))
    msg.headers.append(("l", "-7"))
    return msg.encode()


def _content_length_missing(f: SipFuzzer, rng: random.Random) -> bytes:
    return f.request(rng, "INVITE").encode(content_length="")


_SDP_BREAKS: tuple[Callable[[random.Random], str], ...] = (
    lambda r: "v=1\r\n" + "garbage line without equals\r\n",
    lambda r: "v=0\r\no=\r\ns=\r\nc=IN IP4\r\nt=x y\r\nm=audio\r\n",
    lambda r: "v=0\r\nc=IN IP4 999.999.999.999\r\nm=audio 99999999 RTP/AVP 0\r\n",
    lambda r: "v=0\r\nc=IN IP6 ::::::zz\r\nm=audio -5 RTP/AVP 256 -1 abc\r\na=rtpmap:0\r\n",
    lambda r: "v=0\r\no=x 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP " + " ".join(
        str(r.randrange(0, 128)) for _ in range(2000)) + "\r\n",
    lambda r: "v=0\r\no=x 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n" + "".join(
        f"a=rtpmap:{r.randrange(0, 300)} {'X' * r.randrange(0, 300)}/{r.randrange(-9, 1 << 40)}/{r.randrange(0, 99)}\r\n"
        for _ in range(200)),
    lambda r: "v=0\r\no=x 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 96\r\n"
              "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 " + ";".join(f"k{i}={'v' * 50}" for i in range(400)) + "\r\n",
    lambda r: "v=0\r\no=x 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\na=recvonly\r\n"
              "a=inactive\r\na=ptime:-20\r\na=maxptime:99999999999\r\na=rtcp:0 IN IP4 \r\na=crypto:1\r\n",
    lambda r: "\x00" * r.randrange(1, 64) + "v=0\r\n",
    lambda r: "v=0\nm=audio 4000 RTP/AVP 0\n" * 50,  # bare LF
)


def _sdp_broken(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.request(rng, "INVITE")
    msg.body = rng.choice(_SDP_BREAKS)(rng)
    return msg.encode()


def _sdp_many_m_lines(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.request(rng, "INVITE")
    msg.body = f.sdp(rng, m_lines=rng.choice([100, 1000, 1000]))
    return msg.encode()


def _sdp_huge(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.request(rng, "INVITE")
    head = msg.encode()
    room = MAX_UDP_PAYLOAD - len(head) - len(f.sdp(rng)) - 40 - rng.randrange(0, 200)
    room = rng.choice([1000, 10_000, room])
    msg.body = f.sdp(rng) + "a=x-fuzz:" + "A" * max(0, room) + CRLF
    return msg.encode()


def _oversize_headers(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.base(rng)
    name = rng.choice(["Via", "X-Fuzz", "Route", "Record-Route", "Contact", "Subject"])
    if name == "Via":
        value = f"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{rng.getrandbits(32):x}"
        msg.headers[:0] = [(name, value)] * rng.choice([100, 1000, 1500])
    elif name in ("Route", "Record-Route"):
        msg.headers[:0] = [(name, "<sip:10.0.0.1;lr>")] * rng.choice([100, 1000, 3000])
    else:
        size = rng.choice([1000, 8000, MAX_UDP_PAYLOAD - 600 - rng.randrange(0, 400)])
        msg.headers.append((name, "B" * size))
    return msg.encode()


def _bad_via(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.base(rng)
    msg.set("Via", rng.choice([
        None, "", "garbage", "SIP/2.0/UDP", "SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bKx",
        "SIP/2.0/UDP 127.0.0.1:5060;branch=", "SIP/2.0/UDP [::1:5060;branch=z9hG4bKx",
        "SIP/2.0/XYZ 127.0.0.1;branch=z9hG4bKx;rport=abc;received=not-an-ip",
        "SIP/9.9/UDP 127.0.0.1;branch=z9hG4bK" + "b" * 5000, "SIP/2.0/UDP ;;;;;;",
        "SIP/2.0/UDP 127.0.0.1:5060;ttl=999999;maddr=300.1.1.1;branch=z9hG4bKq",
    ]))
    return msg.encode()


def _bad_cseq(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.base(rng)
    method = msg.start.split(" ", 1)[0]
    msg.set("CSeq", rng.choice([
        None, "", "abc " + method, "-1 " + method, "4294967296 " + method, "99999999999999999999 " + method,
        "1", "1 OPTIONS" if method != "OPTIONS" else "1 INVITE", "1 " + method + " extra", "1  ",
    ]))
    return msg.encode()


def _bad_from_to(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.base(rng)
    name = rng.choice(["From", "To", "Call-ID", "Contact", "Max-Forwards"])
    values = {
        "From": [None, "", "<sip:", '"unterminated <sip:a@b>', "<sip:a@b>;tag=", "sip:" + "@" * 300, "<>;tag=1"],
        "To": [None, "", "<sip:a@b", "<tel:++++>", "<sip:a@b>;tag=" + "t" * 3000],
        "Call-ID": [None, "", " ", "a" * 10_000],
        "Contact": ["*", "<sip:a@b>;expires=-1", "<sip:a@b>;expires=99999999999999", "<>", "<sip:@:0>"],
        "Max-Forwards": ["-1", "0", "99999999999999999999", "abc"],
    }
    msg.set(name, rng.choice(values[name]))
    return msg.encode()


def _bad_request_line(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.base(rng)
    msg.start = rng.choice([
        "INVITE", "INVITE sip:gateway@127.0.0.1", "INVITE  SIP/2.0", "INVITE sip:@:0 SIP/2.0",
        "INVITE sip:gateway@127.0.0.1 SIP/3.0", "INVITE tel:+1-555 SIP/2.0", "FOO sip:a@b SIP/2.0",
        "INVITE sip:gateway@[::1 SIP/2.0", "INVITE sip:" + "a" * 8000 + "@x SIP/2.0",
        "SIP/2.0 999 Weird", "SIP/2.0 0 Zero", "SIP/2.0 abc", "invite sip:gateway@127.0.0.1 sip/2.0",
        "INVITE sip:gateway@127.0.0.1;transport=sctp;maddr=0.0.0.0 SIP/2.0",
    ])
    return msg.encode()


def _invalid_utf8(f: SipFuzzer, rng: random.Random) -> bytes:
    data = bytearray(f.base(rng).encode())
    for _ in range(rng.randrange(1, 20)):
        at = rng.randrange(0, len(data))
        data[at:at] = bytes(rng.choice([0xC0, 0xFF, 0xFE, 0xED, 0x80, 0xF8]) for _ in range(rng.randrange(1, 4)))
    return bytes(data)


def _garbage_auth(rng: random.Random) -> str:
    return rng.choice([
        "Digest", "Digest ", "Basic " + "=" * 50, "Digest username=", 'Digest username="unterminated',
        'Digest username="a", realm="b", nonce="' + "n" * 20_000 + '", uri="sip:x", response="r"',
        'Digest username="a",,,,,,realm=,nonce=,algorithm=MD5-sess,qop=auth,nc=zzzzzzzz,cnonce=""',
        'Digest username="a", realm="b", nonce="c", uri="sip:x", response="' + "0" * 32 + '", algorithm=SHA-512-256',
        "Digest " + ", ".join(f'p{i}="{i}"' for i in range(1000)),
        'Digest username="\\"\\\\\\"", realm="\\', "NTLM " + "A" * 4000,
        'Digest username="a", nc=99999999999999999999, qop="auth,auth-int,,,"',
    ])


def _garbage_authorization(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.request(rng, rng.choice(["REGISTER", "INVITE", "OPTIONS"]))
    name = rng.choice(["Authorization", "Proxy-Authorization", "WWW-Authenticate"])
    msg.headers.append((name, _garbage_auth(rng)))
    if rng.random() < 0.3:
        msg.headers.append((name, _garbage_auth(rng)))
    return msg.encode()


def _bit_flips(f: SipFuzzer, rng: random.Random) -> bytes:
    data = bytearray(f.base(rng).encode())
    for _ in range(rng.randrange(1, 12)):
        data[rng.randrange(0, len(data))] ^= 1 << rng.randrange(0, 8)
    return bytes(data)


def _byte_soup(f: SipFuzzer, rng: random.Random) -> bytes:
    pick = rng.random()
    if pick < 0.3:
        return rng.randbytes(rng.randrange(1, 2000))
    if pick < 0.5:
        return rng.choice([b"\r\n", b"\r\n\r\n", b"\x00", b" ", b"SIP/2.0", b"INVITE"]) * rng.randrange(1, 500)
    if pick < 0.7:  # a valid head, then noise
        return f.base(rng).encode()[:200] + rng.randbytes(rng.randrange(1, 3000))
    if pick < 0.9:
        return rng.randbytes(rng.randrange(2000, 20_000))
    return rng.randbytes(MAX_UDP_PAYLOAD - rng.randrange(0, 64))


def _multipart(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.request(rng, "INVITE")
    boundary = rng.choice(["b", "", '"', "x" * 500])
    msg.set("Content-Type", f"multipart/mixed;boundary={boundary}")
    parts = rng.randrange(0, 300)
    msg.body = "".join(f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n{f.sdp(rng)}" for _ in range(parts))
    if rng.random() < 0.5:
        msg.body += f"--{boundary}--\r\n"
    return msg.encode()


def _header_junk(f: SipFuzzer, rng: random.Random) -> bytes:
    msg = f.base(rng)
    junk = rng.choice([
        ("", "no name"), ("X-Fuzz", "a\rb"), ("X Fuzz", "space in name"), (":", ":"),
        ("Content-Type", ""), ("Content-Type", "application/sdp;" * 500), ("Expires", "-99999999999"),
        ("Require", ",".join(["100rel", "timer", "replaces", "x"] * 300)), ("Session-Expires", "0;refresher=x"),
        ("Min-SE", "-1"), ("RSeq", "abc"), ("RAck", "1 2"), ("Replaces", "x;to-tag=;from-tag="),
        ("Event", ""), ("Refer-To", "<sip:a@b?Replaces=%ZZ>"), ("Supported", "," * 3000),
    ])
    msg.headers.insert(rng.randrange(0, len(msg.headers) + 1), junk)
    return msg.encode()


MUTATIONS: dict[str, Callable[[SipFuzzer, random.Random], bytes]] = {
    "truncated": _truncated,
    "content-length": _content_length,
    "content-length-twice": _content_length_twice,
    "content-length-missing": _content_length_missing,
    "sdp-broken": _sdp_broken,
    "sdp-many-m-lines": _sdp_many_m_lines,
    "sdp-huge": _sdp_huge,
    "oversize-headers": _oversize_headers,
    "bad-via": _bad_via,
    "bad-cseq": _bad_cseq,
    "bad-from-to": _bad_from_to,
    "bad-request-line": _bad_request_line,
    "invalid-utf8": _invalid_utf8,
    "garbage-auth": _garbage_authorization,
    "bit-flips": _bit_flips,
    "byte-soup": _byte_soup,
    "multipart": _multipart,
    "header-junk": _header_junk,
}
KINDS = tuple(MUTATIONS)
