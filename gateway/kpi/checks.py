"""The probes of each part (besides the store, whose probe is the heartbeat: gateway/kpi/probes.py).

Each answers (up, cause) and is run under the probe timeout by the Prober:
- sip: every started worker is up (none dying or being restarted) and answers a SIP OPTIONS on
  its own address;
- front: the Kamailio front answers OPTIONS on sip.host:sip.port (only when the gateway runs it);
- sms: SMPP bound to the SMSC, or Twilio's API host accepting a TCP connection;
- media: some Janus instance up (only with video enabled);
- disk: gateway.data_dir has at least kpi.min_free_bytes free.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sip.kamailio import sip_options_ping

from .probes import Check

Result = tuple[bool, str]


def sip_check(sip: Any, timeout_s: float) -> Check:
    async def check() -> Result:
        up, cause = sip.health()
        if not up:
            return up, cause
        addresses = sip.worker_addresses
        answers = await asyncio.gather(*(sip_options_ping(h, p, timeout=timeout_s) for h, p in addresses))
        for (host, port), answer in zip(addresses, answers):
            if answer is None:
                return False, f"sip worker at {host}:{port} not answering OPTIONS"
        return True, ""

    return check


def front_check(host: str, port: int, timeout_s: float) -> Check:
    async def check() -> Result:
        line = await sip_options_ping(host, port, timeout=timeout_s)
        return (True, "") if line is not None else (False, f"front {host}:{port} not answering OPTIONS")

    return check


async def tcp_connect(host: str, port: int) -> None:
    """Connect to host:port (each address it resolves to, in order, until one accepts) and close
    at once. A bare non-blocking socket, closed before this returns (also when cancelled): no
    transport or stream objects whose reference cycles would wait for the garbage collector, as
    `asyncio.open_connection` leaves them (docs/benchmarks.md, "Where the growth was")."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{host!r} resolves to no address")
    for n, (family, kind, proto, _, address) in enumerate(infos, start=1):
        with socket.socket(family, kind, proto) as sock:
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
                return
            except OSError:
                if n == len(infos):  # raised, not kept in a local: no cycle through this frame
                    raise


def sms_check(provider: Any, api_base: str | None, timeout_s: float) -> Check:
    """SMPP: the provider's own session is bound (this probe opens nothing). Twilio: its API worker
    process is up (when it has one: `unavailable` says why not), and the API host accepts a TCP
    connection (one socket, closed before the check answers)."""

    async def check() -> Result:
        if hasattr(provider, "bound"):  # SMPP
            return (True, "") if provider.bound else (False, "not bound to the SMSC")
        down = getattr(provider, "unavailable", None)
        if down:
            return False, down
        url = urlsplit(api_base or "")
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
        try:
            async with asyncio.timeout(timeout_s):
                await tcp_connect(host, port)
            return True, ""
        except (OSError, TimeoutError) as exc:
            return False, f"sms provider {host}:{port} unreachable: {type(exc).__name__}"

    return check


def media_check(ready: Callable[[], Awaitable[bool]]) -> Check:
    async def check() -> Result:
        return (True, "") if await ready() else (False, "no Janus instance up")

    return check


def disk_check(path: str, min_free: int) -> Check:
    def usage() -> int:
        where = Path(path).resolve()
        while not where.exists() and where != where.parent:  # not made yet: the disk it will be on
            where = where.parent
        return shutil.disk_usage(where).free

    async def check() -> Result:
        free = await asyncio.to_thread(usage)
        if free < min_free:
            return False, f"{free // 2**20} MiB free in {path}, under {min_free // 2**20} MiB"
        return True, ""

    return check
