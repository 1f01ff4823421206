"""The hostile SIP datagram generator (tests/sipfuzz.py): seeded, every mutation, within UDP."""

from __future__ import annotations

import collections

from tests.sipfuzz import KINDS, MAX_UDP_PAYLOAD, SipFuzzer, call_index, parse_status

TARGET, SOURCE = ("127.0.0.1", 5060), ("127.0.0.1", 40000)


def test_cases_are_reproducible_from_seed_and_index() -> None:
    a, b = SipFuzzer(8, TARGET, SOURCE), SipFuzzer(8, TARGET, SOURCE)
    first = list(a.cases(300))
    assert first == list(b.cases(300))
    assert a.case(123) == first[123]
    assert [c.data for c in SipFuzzer(9, TARGET, SOURCE).cases(50)] != [c.data for c in first[:50]]


def test_every_mutation_is_used_and_fits_a_datagram() -> None:
    cases = list(SipFuzzer(8, TARGET, SOURCE).cases(2000))
    kinds = collections.Counter(c.kind for c in cases)
    assert set(kinds) == set(KINDS)
    assert all(1 <= len(c.data) <= MAX_UDP_PAYLOAD for c in cases)
    assert max(len(c.data) for c in cases) == MAX_UDP_PAYLOAD  # some at the UDP maximum
    assert any(c.data.count(b"\r\nm=audio") >= 1000 for c in cases if c.kind == "sdp-many-m-lines")
    invalid_utf8 = 0
    for c in cases:
        try:
            c.data.decode("utf-8")
        except UnicodeDecodeError:
            invalid_utf8 += 1
    assert invalid_utf8 > 100


def test_answers_name_their_case() -> None:
    fuzz = SipFuzzer(8, TARGET, SOURCE)
    ok = sum(call_index(c.data, 8) == c.index for c in fuzz.cases(1000))
    assert ok > 700  # the rest broke or dropped their Call-ID on purpose
    probe = fuzz.probe(10**9)
    assert call_index(probe.data, 8) == 10**9
    assert call_index(probe.data, 7) is None
    answer = b"SIP/2.0 486 Busy Here\r\nVia: x\r\ni: fuzz-8-42-abc\r\n\r\n"
    assert (parse_status(answer), call_index(answer, 8)) == (486, 42)
    assert parse_status(b"INVITE sip:a SIP/2.0\r\n") is None
    assert parse_status(b"SIP/2.0 abc") is None


def test_flood_is_well_formed_requests_from_one_source() -> None:
    fuzz = SipFuzzer(8, TARGET, SOURCE)
    flood = list(fuzz.flood(30))
    assert {c.kind for c in flood} == {"flood-options", "flood-register", "flood-invite"}
    for c in flood:
        head, _, body = c.data.partition(b"\r\n\r\n")
        assert f"Via: SIP/2.0/UDP {SOURCE[0]}:{SOURCE[1]};".encode() in head
        assert f"Content-Length: {len(body)}".encode() in head
    assert all(b"Authorization: " in c.data for c in flood if c.kind == "flood-register")
