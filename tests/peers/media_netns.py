"""A network namespace for media tests: the test's own main thread moves into it, and back.

Loopback ICE is refused by Janus, aioice and Chromium (RFC 8445), so media tests need a real
interface, and must not use the host's. `media_namespace()` (a context manager, used by the
fixture in tests/video/conftest.py) does, in the test process's main thread:

1. remember the current namespace (an fd on /proc/thread-self/ns/net);
2. `unshare(CLONE_NEWNET)`: this thread, and every process or thread it starts from now on
   (the gateway's sockets, Janus, Playwright's driver and Chromium), lives in a new namespace
   that has only `lo`;
3. `lo` up, a veth pair v0 10.77.0.1/24 <-> v1 10.77.0.2/24, both up, and
   `net.ipv4.conf.{all,v0,v1}.accept_local=1` (both ends are local addresses: without it the
   kernel drops the STUN replies);
4. on exit, `setns()` back to the remembered namespace. The new namespace disappears with the
   last process in it (the test stops everything it started before leaving).

Nothing in there can reach another interface: the namespace has none. Needs CAP_SYS_ADMIN
(the tests run as root); a missing `ip` or `sysctl` or a refused unshare FAILS the test.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

CONSOLE_SIDE = ("v0", "10.77.0.1")  # peers (Chromium, aiortc) reach Janus from here
JANUS_SIDE = ("v1", "10.77.0.2")  # Janus gathers candidates only here (ice_enforce_list)


@dataclass(frozen=True)
class MediaNetns:
    peer_if: str = CONSOLE_SIDE[0]
    peer_ip: str = CONSOLE_SIDE[1]
    janus_if: str = JANUS_SIDE[0]
    janus_ip: str = JANUS_SIDE[1]

    @staticmethod
    def current() -> str:
        return os.readlink("/proc/thread-self/ns/net")


def _run(*argv: str) -> None:
    tool = shutil.which(argv[0])
    if tool is None:
        pytest.fail(f"{argv[0]!r} not found on PATH: the media tests need it", pytrace=False)
    res = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed: {res.stderr.strip()}", pytrace=False)


SETUP = (
    ("ip", "link", "set", "lo", "up"),
    ("ip", "link", "add", CONSOLE_SIDE[0], "type", "veth", "peer", "name", JANUS_SIDE[0]),
    ("ip", "addr", "add", f"{CONSOLE_SIDE[1]}/24", "dev", CONSOLE_SIDE[0]),
    ("ip", "addr", "add", f"{JANUS_SIDE[1]}/24", "dev", JANUS_SIDE[0]),
    ("ip", "link", "set", CONSOLE_SIDE[0], "up"),
    ("ip", "link", "set", JANUS_SIDE[0], "up"),
    ("sysctl", "-q", "-w", "net.ipv4.conf.all.accept_local=1",
     f"net.ipv4.conf.{CONSOLE_SIDE[0]}.accept_local=1", f"net.ipv4.conf.{JANUS_SIDE[0]}.accept_local=1"),
)


@contextlib.contextmanager
def media_namespace() -> Iterator[MediaNetns]:
    before = MediaNetns.current()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            pytest.fail(f"unshare(CLONE_NEWNET) refused: {os.strerror(err)} (the media tests run as root)",
                        pytrace=False)
        try:
            if MediaNetns.current() == before:
                pytest.fail("unshare did not move this thread to a new namespace", pytrace=False)
            for argv in SETUP:
                _run(*argv)
            yield MediaNetns()
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace failed")
            assert MediaNetns.current() == before
    finally:
        os.close(home)
