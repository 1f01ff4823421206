"""Multicast RTP paging: one sender per zone, and the SDP that lets receivers join.

`MulticastSender(zone)` owns one non-blocking UDP socket with IP_MULTICAST_TTL = zone.ttl,
IP_MULTICAST_IF = zone.interface and IP_MULTICAST_LOOP on (receivers on this host hear it).
`send_frame(pcm)` encodes one 20 ms frame of 16 kHz PCM16LE, packetizes it and sends it to
group:port. A send never blocks the event loop: a datagram the kernel cannot take now
(EAGAIN/ENOBUFS) is dropped and counted, as a late audio frame is worth nothing anyway.
Pacing (one frame per 20 ms) is the caller's job.

Safe defaults: TTL 1 (never leaves the link) and the loopback interface when a zone says nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
from typing import Protocol

from gateway.broadcast.rtp import CLOCK_RATES, CODECS, FRAME_MS, PAYLOAD_TYPES, RtpStream

DEFAULT_TTL = 1
DEFAULT_INTERFACE = "127.0.0.1"

class ZoneLike(Protocol):
    """What a sender needs of a zone (gateway.broadcast.config.Zone has these fields)."""

    name: str
    group: str
    port: int
    codec: str
    ttl: int
    interface: str


def _group(zone: ZoneLike) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(zone.group)
    except ValueError as exc:
        raise ValueError(f"zone {zone.name!r}: group {zone.group!r} is not an IP address") from exc
    if not isinstance(addr, ipaddress.IPv4Address) or not addr.is_multicast:
        raise ValueError(
            f"zone {zone.name!r}: group {zone.group} is not an IPv4 multicast address (224.0.0.0/4)"
        )
    return addr


def _interface(zone: ZoneLike) -> str:
    iface = getattr(zone, "interface", None) or DEFAULT_INTERFACE
    try:
        ipaddress.IPv4Address(iface)
    except ValueError as exc:
        raise ValueError(f"zone {zone.name!r}: interface {iface!r} is not an IPv4 address") from exc
    return iface


def _ttl(zone: ZoneLike) -> int:
    ttl = getattr(zone, "ttl", None)
    ttl = DEFAULT_TTL if ttl is None else ttl
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= 255:
        raise ValueError(f"zone {zone.name!r}: ttl {ttl!r} is not in 0..255")
    return ttl


def _validate(zone: ZoneLike) -> tuple[str, int, str, int, str]:
    group = str(_group(zone))
    if not isinstance(zone.port, int) or isinstance(zone.port, bool) or not 1 <= zone.port <= 65535:
        raise ValueError(f"zone {zone.name!r}: port {zone.port!r} is not in 1..65535")
    codec = str(zone.codec).upper()
    if codec not in CODECS:
        raise ValueError(
            f"zone {zone.name!r}: codec {zone.codec!r} is not one of {', '.join(CODECS)}"
        )
    return group, zone.port, codec, _ttl(zone), _interface(zone)


def zone_sdp(zone: ZoneLike, *, session_id: int | None = None) -> str:
    """An SDP (RFC 8866) describing the zone's stream, for receivers (ffmpeg, phones) to join."""
    group, port, codec, ttl, iface = _validate(zone)
    pt = PAYLOAD_TYPES[codec]
    sid = secrets.randbits(31) if session_id is None else session_id
    lines = [
        "v=0",
        f"o=- {sid} {sid} IN IP4 {iface}",
        f"s={zone.name}",
        f"c=IN IP4 {group}/{ttl}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {pt}",
        f"a=rtpmap:{pt} {codec}/{CLOCK_RATES[codec]}",
        f"a=ptime:{FRAME_MS}",
        "a=recvonly",
    ]
    return "\r\n".join(lines) + "\r\n"


class MulticastSender:
    """RTP to one zone's multicast group: `send_frame(pcm)` per 20 ms, `close()` at the end."""

    def __init__(self, zone: ZoneLike) -> None:
        self.group, self.port, self.codec, self.ttl, self.interface = _validate(zone)
        self.zone_name = zone.name
        self.stream = RtpStream(self.codec)
        self.dropped = 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.interface)
            )
            # The source address receivers see (and source-specific joins name).
            sock.bind((self.interface, 0))
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock

    @property
    def closed(self) -> bool:
        return self._sock is None

    @property
    def ssrc(self) -> int:
        return self.stream.packetizer.ssrc

    def new_talkspurt(self) -> None:
        """The next frame starts a talk spurt (RTP marker bit), e.g. after a pause."""
        self.stream.new_talkspurt()

    def send_frame(self, pcm: bytes) -> bool:
        """Encode, packetize and send one frame; False when the kernel dropped it (full buffer)."""
        if self._sock is None:
            raise RuntimeError(f"multicast sender of zone {self.zone_name!r} is closed")
        packet = self.stream.packet(pcm)
        try:
            self._sock.sendto(packet, (self.group, self.port))
        except BlockingIOError:
            self.dropped += 1
            return False
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self.dropped += 1
            return False
        return True

    def close(self) -> None:
        """Close the socket; idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> MulticastSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
