"""Run a shell script inside a network namespace of its own, loopback set up for multicast.

Multicast tests never send in the host's namespace: `run_in_netns(script)` runs
`unshare -n bash -c '<setup>; <script>'`, where the setup brings `lo` up, turns multicast on it
and routes 239.0.0.0/8 to it. Whatever the script starts (a sender, an ffmpeg receiver) shares
that namespace, and its traffic cannot leave it: the namespace has no other interface.

A missing tool (unshare, ip, bash) FAILS the test, never skips it. The script is started in a
session of its own; on timeout that process group (ours, started here) is killed.

`assert_isolated()` is for the processes the script starts: it refuses to go on when the
process is still in the namespace the test ran in (its id is passed as ROOT_NETNS).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT_NETNS_ENV = "ROOT_NETNS"

LOOPBACK_MULTICAST_SETUP = """\
if [ "$(readlink /proc/self/ns/net)" = "${ROOT_NETNS:?}" ]; then
  echo "netns: not in a namespace of our own, refusing to go on" >&2; exit 97
fi
ip link set lo up
ip link set lo multicast on
ip route add 239.0.0.0/8 dev lo
"""


def require_tool(name: str) -> str:
    """Path of `name` on PATH; fails the test when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} not found on PATH: the multicast tests need it", pytrace=False)
    return path


def current_netns() -> str:
    """The network namespace of this process, e.g. 'net:[4026531840]'."""
    return os.readlink("/proc/self/ns/net")


def assert_isolated() -> None:
    """Raise unless this process runs in another namespace than the test that started it."""
    root = os.environ.get(ROOT_NETNS_ENV)
    if not root:
        raise RuntimeError(f"{ROOT_NETNS_ENV} is not set: not started by run_in_netns")
    if current_netns() == root:
        raise RuntimeError("still in the test's own network namespace: refusing to send")


def run_in_netns(
    script: str,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a bash `script` (set -euo pipefail) in a fresh network namespace; its output as text.

    `env` adds to this process's environment. The result is returned whatever the exit status;
    on timeout the whole process group is killed and the test fails with what it printed.
    """
    unshare = require_tool("unshare")
    bash = require_tool("bash")
    require_tool("ip")
    full_env = {**os.environ, **(env or {}), ROOT_NETNS_ENV: current_netns()}
    argv = [unshare, "--net", bash, "-c", "set -euo pipefail\n" + LOOPBACK_MULTICAST_SETUP + script]
    proc = subprocess.Popen(
        argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The group is the session started above: bash and whatever it started, nothing else.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        pytest.fail(
            f"netns script timed out after {timeout}s\nstdout:\n{out}\nstderr:\n{err}",
            pytrace=False,
        )
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
