"""A start refuses, naming the key, when a port it is about to listen on is taken.

Checked before anything binds (a leftover gateway or its Kamailio still holding the SIP port
would otherwise take half the traffic: pjsua and Kamailio both set SO_REUSEADDR on UDP, so a
second one binds beside the first without an error). UDP ports are probed without
SO_REUSEADDR, so any holder makes the probe fail; TCP ports with it, as the servers bind them,
so a connection in TIME_WAIT does not count. The probe and the real bind are not atomic: this
finds a port held by another process, it does not guard against a race at start.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from gateway.config import Config
from gateway.errors import GatewayError


class PortInUse(GatewayError):
    reason = "port-in-use"


@dataclass(frozen=True)
class Listen:
    key: str  # the setting that names the port
    host: str
    port: int
    kind: socket.SocketKind


def listening_ports(config: Config) -> list[Listen]:
    """Every port this gateway will bind (port 0: chosen by the OS, nothing to check)."""
    out = [Listen("control.port", config.control.host, config.control.port, socket.SOCK_STREAM),
           Listen("http.port", config.http.host, config.http.port, socket.SOCK_STREAM)]
    sip = config.sip
    if not (sip.proxied and sip.proxy == "external"):  # external: someone else's front
        out.append(Listen("sip.port", sip.host, sip.port, socket.SOCK_DGRAM))
    out += [Listen("sip.worker_base_port", *sip.worker_address(i), socket.SOCK_DGRAM)
            for i in range(sip.max_workers) if sip.worker_address(i) != (sip.host, sip.port)]
    video = config.video
    if video.enabled:  # each Janus instance's API port
        out += [Listen("video.ws_base_port", video.ws_host, video.ws_base_port + i, socket.SOCK_STREAM)
                for i in range(video.instances)]
    return [p for p in out if p.port]


def check_ports(config: Config) -> None:
    """Raise PortInUse for the first port that another process holds."""
    for p in listening_ports(config):
        family = socket.AF_INET6 if ":" in p.host else socket.AF_INET
        with socket.socket(family, p.kind) as s:
            if p.kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p.host, p.port))
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise
                proto = "tcp" if p.kind == socket.SOCK_STREAM else "udp"
                raise PortInUse(
                    f"{p.key}: {p.host}:{p.port}/{proto} is already in use (another gateway, or "
                    f"a process it left behind?); stop it or choose another {p.key}",
                    details={"key": p.key, "host": p.host, "port": p.port, "protocol": proto}) from None
