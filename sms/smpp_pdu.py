"""SMPP 3.4 PDUs, sans-I/O: the header, the bodies an ESME in transceiver mode needs, and an
incremental decoder fed bytes as they arrive.

Every PDU is a 16-octet header (command_length, command_id, command_status, sequence_number; all
4-octet big-endian integers, command_length counting the header) and a body (SMPP 3.4, 3.2 and 4).
Strings in bodies are C-octet strings (ASCII up to a NUL); a body may end with TLVs (2-octet tag,
2-octet length, value), which `decode_sm` keeps by tag.

submit_sm and deliver_sm share one body layout (4.4.1, 4.6.1): `ShortMessage` is both.
`Decoder.feed()` takes any chunk of the stream (a PDU split over reads, or several in one read) and
returns the whole PDUs it completes; a command_length below 16 or above `MAX_PDU` raises `PduError`
(the stream cannot be resynchronised: the session closes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

HEADER = struct.Struct(">IIII")
MAX_PDU = 65_536  # octets; SMPP sets no limit, a short message and its TLVs are far below this

GENERIC_NACK = 0x80000000
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
RESPONSE = 0x80000000  # the bit every response's command_id has

INTERFACE_VERSION = 0x34
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_RECEIPTED_MESSAGE_ID = 0x001E

# command_status values (SMPP 3.4, 5.1.3)
ESME_ROK = 0x00
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RSYSERR = 0x08
ESME_RMSGQFUL = 0x14
ESME_RSUBMITFAIL = 0x45
ESME_RTHROTTLED = 0x58
STATUS_NAMES = {
    0x00: "ESME_ROK", 0x01: "ESME_RINVMSGLEN", 0x02: "ESME_RINVCMDLEN", 0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS", 0x05: "ESME_RALYBND", 0x06: "ESME_RINVPRTFLG", 0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR", 0x0A: "ESME_RINVSRCADR", 0x0B: "ESME_RINVDSTADR", 0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL", 0x0E: "ESME_RINVPASWD", 0x0F: "ESME_RINVSYSID", 0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL", 0x14: "ESME_RMSGQFUL", 0x15: "ESME_RINVSERTYP", 0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME", 0x40: "ESME_RINVDESTFLAG", 0x42: "ESME_RINVSUBREP", 0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL", 0x45: "ESME_RSUBMITFAIL", 0x48: "ESME_RINVSRCTON", 0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON", 0x51: "ESME_RINVDSTNPI", 0x53: "ESME_RINVSYSTYP", 0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS", 0x58: "ESME_RTHROTTLED", 0x61: "ESME_RINVSCHED", 0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID", 0x64: "ESME_RX_T_APPN", 0x65: "ESME_RX_P_APPN", 0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL", 0xC0: "ESME_RINVOPTPARSTREAM", 0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN", 0xC3: "ESME_RMISSINGOPTPARAM", 0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE", 0xFF: "ESME_RUNKNOWNERR",
}

# type of number / numbering plan (5.2.5, 5.2.6)
TON_UNKNOWN, TON_INTERNATIONAL, TON_ALPHANUMERIC = 0x00, 0x01, 0x05
NPI_UNKNOWN, NPI_ISDN = 0x00, 0x01


def status_name(command_status: int) -> str:
    return STATUS_NAMES.get(command_status) or f"0x{command_status:08X}"


class Pdu(NamedTuple):
    command_id: int
    command_status: int
    sequence: int
    body: bytes


class PduError(ValueError):
    """The peer sent what is not SMPP: a command_length out of range, a body cut short. From
    `Decoder.feed()`, `pdus` are the whole PDUs the same chunk held before the bad one."""

    def __init__(self, message: str, pdus: list[Pdu] | None = None) -> None:
        super().__init__(message)
        self.pdus = pdus or []


def pdu(command_id: int, sequence: int, body: bytes = b"", command_status: int = 0) -> bytes:
    """One PDU's octets."""
    return HEADER.pack(16 + len(body), command_id, command_status, sequence) + body


def cstring(text: str) -> bytes:
    return text.encode("ascii") + b"\x00"


class Decoder:
    """The stream of one session in, whole `Pdu`s out."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Pdu]:
        buffer = self._buffer
        buffer += data
        out: list[Pdu] = []
        start, end = 0, len(buffer)
        unpack = HEADER.unpack_from
        while end - start >= 16:
            length, command_id, status, sequence = unpack(buffer, start)
            if length < 16 or length > MAX_PDU:
                del buffer[:start]
                raise PduError(f"command_length {length} out of range (16..{MAX_PDU})", out)
            if end - start < length:
                break
            out.append(Pdu(command_id, status, sequence, bytes(buffer[start + 16:start + length])))
            start += length
        if start:
            del buffer[:start]
        return out


# --- bodies ------------------------------------------------------------------------------------


class _Reader:
    """Reads a body field by field; running off its end raises `PduError`."""

    __slots__ = ("body", "at")

    def __init__(self, body: bytes) -> None:
        self.body, self.at = body, 0

    def cstring(self) -> str:
        end = self.body.find(b"\x00", self.at)
        if end < 0:
            raise PduError("a C-octet string without its NUL")
        text = self.body[self.at:end].decode("latin-1")
        self.at = end + 1
        return text

    def octet(self) -> int:
        if self.at >= len(self.body):
            raise PduError("the body ends early")
        self.at += 1
        return self.body[self.at - 1]

    def octets(self, n: int) -> bytes:
        if self.at + n > len(self.body):
            raise PduError("the body ends early")
        self.at += n
        return self.body[self.at - n:self.at]

    def tlvs(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        while len(self.body) - self.at >= 4:
            tag, length = struct.unpack_from(">HH", self.body, self.at)
            self.at += 4
            found[tag] = self.octets(length)
        return found


def bind_body(system_id: str, password: str, system_type: str = "") -> bytes:
    return (cstring(system_id) + cstring(password) + cstring(system_type)
            + bytes([INTERFACE_VERSION, TON_UNKNOWN, NPI_UNKNOWN]) + b"\x00")  # address_range ""


def bind_transceiver(sequence: int, system_id: str, password: str, system_type: str = "") -> bytes:
    return pdu(BIND_TRANSCEIVER, sequence, bind_body(system_id, password, system_type))


@dataclass(frozen=True, slots=True)
class Bind:
    system_id: str
    password: str
    system_type: str
    interface_version: int


def decode_bind(body: bytes) -> Bind:
    r = _Reader(body)
    return Bind(r.cstring(), r.cstring(), r.cstring(), r.octet())


def bind_transceiver_resp(sequence: int, system_id: str, command_status: int = 0) -> bytes:
    return pdu(BIND_TRANSCEIVER_RESP, sequence, cstring(system_id) if command_status == 0 else b"",
               command_status)


def decode_id(body: bytes) -> str:
    """The system_id of a bind_*_resp or the message_id of a submit_sm_resp: "" when the body is
    absent (an error response may carry none, SMPP 3.4 4.1.2 and 4.4.2)."""
    end = body.find(b"\x00")
    return body[:end if end >= 0 else len(body)].decode("latin-1")


def submit_sm_resp(sequence: int, message_id: str, command_status: int = 0) -> bytes:
    return pdu(SUBMIT_SM_RESP, sequence, cstring(message_id) if command_status == 0 else b"", command_status)


def deliver_sm_resp(sequence: int, command_status: int = 0) -> bytes:
    return pdu(DELIVER_SM_RESP, sequence, b"\x00", command_status)  # message_id: unused, NULL


@dataclass(slots=True)  # not frozen: one is built for every deliver_sm, frozen costs a setattr a field
class ShortMessage:
    """The body of a submit_sm or deliver_sm. `short_message` is the octets as sent (a UDH first
    when esm_class has UDHI); `text_octets` is those, or the message_payload TLV when that carries
    the message (sm_length 0)."""

    source_addr: str
    destination_addr: str
    short_message: bytes = b""
    source_ton: int = TON_UNKNOWN
    source_npi: int = NPI_UNKNOWN
    destination_ton: int = TON_UNKNOWN
    destination_npi: int = NPI_UNKNOWN
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    service_type: str = ""
    protocol_id: int = 0
    priority: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def text_octets(self) -> bytes:
        return self.short_message or self.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")


def encode_sm(command_id: int, sequence: int, sm: ShortMessage) -> bytes:
    """A submit_sm or deliver_sm PDU."""
    return pdu(command_id, sequence, encode_sm_body(sm))


def encode_sm_body(sm: ShortMessage) -> bytes:
    """The body of a submit_sm or deliver_sm; no schedule or validity (immediate, the SMSC's default)."""
    return sm_body(encode_address(sm.source_addr, sm.source_ton, sm.source_npi),
                   encode_address(sm.destination_addr, sm.destination_ton, sm.destination_npi),
                   sm.short_message, esm_class=sm.esm_class, registered_delivery=sm.registered_delivery,
                   data_coding=sm.data_coding, service_type=sm.service_type, protocol_id=sm.protocol_id,
                   priority=sm.priority, tlvs=sm.tlvs)


def encode_address(addr: str, ton: int, npi: int) -> bytes:
    """The TON, NPI and C-octet string of an address field (what `sm_body` takes)."""
    return bytes((ton, npi)) + cstring(addr)


def sm_body(source: bytes, destination: bytes, short_message: bytes, *, esm_class: int = 0,
            registered_delivery: int = 0, data_coding: int = 0, service_type: str = "",
            protocol_id: int = 0, priority: int = 0, tlvs: dict[int, bytes] | None = None) -> bytes:
    """A submit_sm / deliver_sm body from encoded addresses (`encode_address`; a sender's can be
    kept and used for every message)."""
    if len(short_message) > 254:
        raise ValueError("short_message is at most 254 octets; use the message_payload TLV")
    return b"".join((
        cstring(service_type) if service_type else b"\x00", source, destination,
        bytes((esm_class, protocol_id, priority, 0, 0,  # schedule, validity: ""
               registered_delivery, 0, data_coding, 0, len(short_message))), short_message,
        *(struct.pack(">HH", tag, len(v)) + v for tag, v in (tlvs or {}).items()),
    ))


def decode_sm(body: bytes) -> ShortMessage:
    r = _Reader(body)
    service_type = r.cstring()
    source_ton, source_npi, source = r.octet(), r.octet(), r.cstring()
    dest_ton, dest_npi, dest = r.octet(), r.octet(), r.cstring()
    esm_class, protocol_id, priority = r.octet(), r.octet(), r.octet()
    r.cstring()  # schedule_delivery_time
    r.cstring()  # validity_period
    registered_delivery = r.octet()
    r.octet()  # replace_if_present_flag
    data_coding = r.octet()
    r.octet()  # sm_default_msg_id
    short_message = r.octets(r.octet())
    return ShortMessage(source, dest, short_message, source_ton, source_npi, dest_ton, dest_npi,
                        esm_class, registered_delivery, data_coding, service_type, protocol_id, priority,
                        r.tlvs())
