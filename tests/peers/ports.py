"""Free local ports for test peers: one TCP port, one UDP port, a run of UDP ports, or a UDP+TCP block."""

from __future__ import annotations

import socket


def _free(host: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def udp_free(host: str, port: int) -> bool:
    """True when `port` can be bound on UDP now (so nobody holds it)."""
    return _free(host, port, socket.SOCK_DGRAM)


def tcp_free(host: str, port: int) -> bool:
    """True when `port` can be bound on TCP now."""
    return _free(host, port, socket.SOCK_STREAM)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_port(host: str = "127.0.0.1", span: int = 1) -> int:
    """A UDP port free now (and, if span > 1, the `span - 1` ports after it too)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port + span >= 65535:
            continue
        if all(udp_free(host, port + k) for k in range(span)):
            return port
    raise RuntimeError("no free UDP port range found")


def free_port_block(host: str = "127.0.0.1", span: int = 10, tcp: bool = True) -> int:
    """A base port whose `span` next ports are free on UDP (and TCP when `tcp`)."""
    for _ in range(100):
        base = free_udp_port(host)
        if base + span >= 65535:
            continue
        if all(udp_free(host, p) and (not tcp or tcp_free(host, p)) for p in range(base, base + span)):
            return base
    raise RuntimeError("no free port block found")


# old private names, kept for callers that still use them
_udp_free = udp_free
_tcp_free = tcp_free
