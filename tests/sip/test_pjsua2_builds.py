"""pjsua2 built from source and the PyPI wheel (docs/design.md, "pjsua2 built from source"): the
source build is the one in use and holds hundreds of calls, the wheel still starts and places a
call, outgoing calls never wait on the resolver, and no Call outlives the library in a worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sip.worker.pjsua2_choice import ENV, installed_build
from tests.peers.sipp import sipp_uas

from .conftest import ROOT, Recorder, probe_count

pytestmark = pytest.mark.peers

WHEEL_CALLS = 4  # PJSUA_MAX_CALLS of the pjsua2-python wheel
SOURCE_CALLS = 300  # "hundreds": the source build is compiled for 1024


def _pjsua2_in_use(env: dict[str, str]) -> dict:
    code = ("import json, sip.worker, pjsua2; from sip.worker.probe import build_limits; "
            "print(json.dumps({'file': pjsua2.__file__, **build_limits()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    return json.loads(out.stdout)


def test_source_build_is_in_use_and_holds_hundreds_of_calls() -> None:
    """CI runs on the source build scripts/install.sh made (or the one DISPATCH_GATEWAY_PJSUA2
    names): a worker imports it, and one process holds hundreds of calls."""
    assert os.environ.get(ENV) != "wheel", f"{ENV}=wheel: the suite is meant to run on the source build"
    used = _pjsua2_in_use(dict(os.environ))
    assert used["source"] == "build", (
        f"the worker imports the wheel ({used['file']}): scripts/install.sh built no pjsua2 "
        f"(nothing at {installed_build()})")
    assert used["max_calls"] >= SOURCE_CALLS and used["ioqueue_keys"] >= 2 * SOURCE_CALLS
    assert probe_count(SOURCE_CALLS) == SOURCE_CALLS


async def test_wheel_fallback_starts_and_places_a_call(
        start_supervisor, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """DISPATCH_GATEWAY_PJSUA2=wheel: the probe and the workers load the PyPI wheel, installed
    side by side with the source build; the probe finds its 4 calls and a call connects."""
    monkeypatch.setenv(ENV, "wheel")  # the probe and every worker inherit it
    used = _pjsua2_in_use(dict(os.environ))
    assert used["source"] == "wheel" and "site-packages" in used["file"], used
    sup = await start_supervisor(calls_per_worker=0)
    assert sup.calls_per_worker == WHEEL_CALLS
    async with sipp_uas("answer") as uas:
        c = uuid.uuid4().hex
        await sup.dial(c, uas.uri)
        assert (await recorder.wait_state(c, "confirmed", timeout=20)).sip_code == 200
        await sup.hangup(c)
        assert (await recorder.wait_state(c, "disconnected")).cause == "local-hangup"
        res = await uas.wait(15)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (1, 0)


async def test_worker_stops_with_no_call_outliving_the_library(start_supervisor, recorder: Recorder) -> None:
    """A worker stopped with a call up hangs it up and drops every pjsua2 Call before libDestroy
    (a Call destroyed after it asserts in pjsua_call_set_user_data in a build with assertions)."""
    sup = await start_supervisor()
    async with sipp_uas("answer") as uas:
        c = uuid.uuid4().hex
        await sup.dial(c, uas.uri)
        await recorder.wait_state(c, "confirmed", timeout=20)
        worker = sup._workers[sup.worker_of(c)]
        await sup.stop()
        await uas.wait(15)
    assert worker.calls_alive_at_exit == 0


def test_outgoing_calls_never_wait_for_the_resolver(tmp_path: Path) -> None:
    """The 5 s media-initialisation stall (docs/design.md): with pjsua's default address family
    choice, every outgoing call asked getaddrinfo(AF_INET6, hostname), a DNS query whenever
    /etc/hosts has no IPv6 address for the host name, and a lost reply cost the resolver's 5 s.
    Here, in namespaces of the test's own, the host name is unknown and the resolver is a socket
    that never answers (1 s timeout): four calls placed by the worker's account configuration
    (the probe's) must not take a second each."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    script = (
        "import socket, subprocess, sys, time\n"
        "dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); dns.bind(('127.0.0.1', 53))\n"
        "p = subprocess.Popen([sys.executable, '-m', 'sip.worker', '--probe', '--probe-limit', '4'],"
        " stdout=subprocess.PIPE)\n"
        "for line in p.stdout: print(f'{time.monotonic():.3f} {line.decode().strip()}', flush=True)\n"
        "sys.exit(p.wait())\n"
    )
    shell = (f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && hostname dg-no-such-host "
             f"&& exec {sys.executable} -c \"$0\"")
    out = subprocess.run(["unshare", "-n", "-m", "-u", "sh", "-c", shell, script], cwd=ROOT,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    times = [float(ln.split(" ", 1)[0]) for ln in out.stdout.decode().splitlines() if '"ok_calls"' in ln]
    assert len(times) == 4, out.stdout.decode()
    assert times[-1] - times[0] < 1.5, f"calls 2..4 took {times[-1] - times[0]:.1f} s: {out.stdout.decode()}"



def test_the_choice_of_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DISPATCH_GATEWAY_PJSUA2: a build directory goes first on sys.path; `wheel` adds nothing;
    `source` with no build installed is an ImportError, `auto` falls back to the wheel."""
    from sip.worker import pjsua2_choice

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    build = tmp_path / "build"
    build.mkdir()
    (build / "pjsua2.py").write_text("")
    assert pjsua2_choice.choose({ENV: str(build)}) == str(build.resolve()) == sys.path[0]
    before = list(sys.path)
    assert pjsua2_choice.choose({ENV: "wheel"}) is None and sys.path == before
    assert pjsua2_choice.choose({}) is None and sys.path == before
    with pytest.raises(ImportError):
        pjsua2_choice.choose({ENV: "source"})
    installed = Path(pjsua2_choice.installed_build())
    installed.parent.mkdir(parents=True)
    installed.symlink_to(build)
    assert pjsua2_choice.choose({ENV: "auto"}) == str(build.resolve())
