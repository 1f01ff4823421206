"""sms.smpp_pdu and sms.smpp_text: the SMPP 3.4 codec and short-message text, without sockets."""

from __future__ import annotations

import struct

import pytest

from sms.smpp_pdu import (
    BIND_TRANSCEIVER,
    BIND_TRANSCEIVER_RESP,
    DELIVER_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    MAX_PDU,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    TLV_MESSAGE_PAYLOAD,
    TON_INTERNATIONAL,
    Decoder,
    Pdu,
    PduError,
    ShortMessage,
    bind_transceiver,
    bind_transceiver_resp,
    decode_bind,
    decode_id,
    decode_sm,
    deliver_sm_resp,
    encode_sm,
    pdu,
    status_name,
    submit_sm_resp,
)
from sms.smpp_text import Concat, Reassembly, decode_text, gsm7_decode, gsm7_encode, split_udh


def one(data: bytes) -> Pdu:
    [p] = Decoder().feed(data)
    return p


def test_header_round_trip():
    data = pdu(ENQUIRE_LINK, 0x7FFFFFFF)
    assert data == struct.pack(">IIII", 16, 0x15, 0, 0x7FFFFFFF)
    assert one(data) == Pdu(ENQUIRE_LINK, 0, 0x7FFFFFFF, b"")


def test_bind_transceiver_round_trip():
    p = one(bind_transceiver(7, "gw", "secret", "test"))
    assert (p.command_id, p.sequence) == (BIND_TRANSCEIVER, 7)
    bind = decode_bind(p.body)
    assert (bind.system_id, bind.password, bind.system_type, bind.interface_version) == ("gw", "secret", "test", 0x34)
    assert p.body.endswith(b"\x34\x00\x00\x00")  # interface_version, addr_ton, addr_npi, address_range ""


def test_bind_refused_without_body():
    """SMPP 3.4 lets an error bind_transceiver_resp end after its header: still one PDU, no system_id."""
    data = struct.pack(">IIII", 16, BIND_TRANSCEIVER_RESP, 0x0E, 1)
    p = one(data)
    assert (p.command_id, p.command_status, p.body) == (BIND_TRANSCEIVER_RESP, 0x0E, b"")
    assert decode_id(p.body) == ""
    assert status_name(p.command_status) == "ESME_RINVPASWD"
    assert bind_transceiver_resp(1, "SMSC", 0x0E) == data
    assert decode_id(one(bind_transceiver_resp(1, "SMSC")).body) == "SMSC"


def test_submit_sm_and_deliver_sm_round_trip_with_tlvs():
    sm = ShortMessage("10690000", "8613800000001", b"\x05\x00\x03\x2a\x02\x01hi", destination_ton=TON_INTERNATIONAL,
                      destination_npi=1, esm_class=0x40, registered_delivery=1, data_coding=8,
                      tlvs={0x020C: b"\x00\x2a", 0x1400: b"vendor"})
    for command_id in (SUBMIT_SM, DELIVER_SM):
        p = one(encode_sm(command_id, 3, sm))
        assert (p.command_id, p.sequence) == (command_id, 3)
        assert decode_sm(p.body) == sm


def test_message_payload_carries_the_text_when_short_message_is_empty():
    sm = ShortMessage("a", "b", b"", tlvs={TLV_MESSAGE_PAYLOAD: b"long text"})
    assert decode_sm(one(encode_sm(DELIVER_SM, 1, sm)).body).text_octets == b"long text"


def test_responses():
    assert decode_id(one(submit_sm_resp(9, "sim-1")).body) == "sim-1"
    refused = one(submit_sm_resp(9, "sim-1", 0x0B))
    assert (refused.command_id, refused.command_status, refused.body) == (SUBMIT_SM_RESP, 0x0B, b"")
    answer = one(deliver_sm_resp(4, 0x58))
    assert (answer.command_id, answer.command_status, answer.sequence) == (DELIVER_SM_RESP, 0x58, 4)


def test_a_body_cut_short_is_a_pdu_error():
    body = one(encode_sm(SUBMIT_SM, 1, ShortMessage("a", "b", b"hello"))).body
    with pytest.raises(PduError):
        decode_sm(body[:-3])
    with pytest.raises(PduError):
        decode_sm(b"no nul here")


def test_split_reads_yield_whole_pdus_only():
    stream = b"".join(encode_sm(SUBMIT_SM, n, ShortMessage("a", f"+{n}", b"x" * n)) for n in range(1, 6))
    for cut in (1, 3, 15, 16, 17, 40):
        d, got = Decoder(), []
        for i in range(0, len(stream), cut):
            got += d.feed(stream[i:i + cut])
        assert [p.sequence for p in got] == [1, 2, 3, 4, 5]
        assert [decode_sm(p.body).short_message for p in got] == [b"x" * n for n in range(1, 6)]


def test_coalesced_read_and_a_tail():
    a, b = pdu(ENQUIRE_LINK, 1), submit_sm_resp(2, "id-2")
    d = Decoder()
    assert [p.sequence for p in d.feed(a + b + b[:5])] == [1, 2]
    assert [p.sequence for p in d.feed(b[5:])] == [2]
    assert d.feed(b"") == []


@pytest.mark.parametrize("length", [0, 15, MAX_PDU + 1])
def test_a_bad_command_length_is_a_pdu_error(length):
    with pytest.raises(PduError):
        Decoder().feed(struct.pack(">IIII", length, ENQUIRE_LINK, 0, 1))


def test_status_names():
    assert status_name(0x58) == "ESME_RTHROTTLED"
    assert status_name(0x1234) == "0x00001234"


# --- text ---------------------------------------------------------------------------------------


def test_gsm7_round_trip_with_extension_characters():
    text = "@£$ Ä ñ à {curly} [sq] ~|^ € \\ Δ_Φ"
    octets = gsm7_encode(text)
    assert octets[:3] == b"\x00\x01\x02" and b"\x1b\x28" in octets and b"\x1b\x65" in octets
    assert gsm7_decode(octets) == text
    assert gsm7_decode(b"a\x1b\x41b\x1b") == "a b "  # an unknown escape, a trailing ESC: a space


def test_decode_text_per_data_coding():
    assert decode_text("收到".encode("utf-16-be"), 8) == "收到"
    assert decode_text(b"id:1 stat:DELIVRD", 0) == "id:1 stat:DELIVRD"
    assert decode_text("café".encode("latin-1"), 3) == "café"
    assert decode_text(b"plain", 1) == "plain"
    assert decode_text(b"\x00a\x00", 8) == "a\ufffd"  # an odd octet: replaced, not dropped


def test_udh_and_reassembly():
    concat, rest = split_udh(b"\x05\x00\x03\x2a\x02\x01hi")
    assert (concat, rest) == (Concat(0x2A, 2, 1), b"hi")
    concat16, rest16 = split_udh(b"\x06\x08\x04\x01\x02\x03\x02yo")
    assert (concat16, rest16) == (Concat(0x0102, 3, 2), b"yo")
    r = Reassembly()
    assert r.add("a", "b", Concat(7, 2, 2), " world") is None
    assert r.add("a", "c", Concat(7, 2, 1), "other") is None  # another recipient: another message
    assert r.add("a", "b", Concat(7, 2, 1), "hello") == "hello world"


def test_the_pdus_before_a_bad_command_length_are_kept():
    good = submit_sm_resp(1, "id-1")
    with pytest.raises(PduError) as info:
        Decoder().feed(good + struct.pack(">IIII", 8, ENQUIRE_LINK, 0, 2))
    assert [p.sequence for p in info.value.pdus] == [1]
