"""The gateway as an operator runs it: `dispatch-gateway serve` from a shell, driven by the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.peers.sipp import free_port_block, sipp_uas

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "gateway.cli"]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.peers
async def test_serve_with_embedded_config_then_call_from_the_shell(tmp_path) -> None:
    base = free_port_block(span=60)
    control, http_port = free_port_block(span=1), free_port_block(span=1)
    sets = [
        f"gateway.data_dir={tmp_path / 'data'}", f"control.port={control}", f"http.port={http_port}",
        f"sip.port={base}", f"sip.worker_base_port={base + 10}", "sip.max_workers=1",
        f"sip.rtp_port_base={free_port_block(span=10, tcp=False)}",
    ]
    args = [*CLI, "serve", "--config", str(ROOT / "config" / "gateway.toml")]
    for s in sets:
        args += ["--set", s]
    proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):  # the dev tokens are printed at start, then it gets ready
            while not any("gateway.started" in ln for ln in out):
                line = (await proc.stdout.readline()).decode()
                assert line, "gateway exited early:\n" + "".join(out)
                out.append(line)
        drain = asyncio.create_task(_drain(proc.stdout, out))
        tokens = dict(re.findall(r"^\s+(dispatcher|observer|terminal)\s+\S+\s+(\S+)$", "".join(out), re.M))
        assert set(tokens) == {"dispatcher", "observer", "terminal"}
        assert _get(f"http://127.0.0.1:{http_port}/healthz") == (200, {"status": "ok"})
        status, body = _get(f"http://127.0.0.1:{http_port}/readyz")
        assert status == 200 and body["checks"] == {"store": True, "sip": True}
        env = {**os.environ, "DISPATCH_URL": f"ws://127.0.0.1:{control}/v1/control",
               "DISPATCH_TOKEN": tokens["dispatcher"]}
        async with sipp_uas("answer") as uas:
            call = await asyncio.create_subprocess_exec(
                *CLI, "call", uas.uri, "--hangup-after", "1", env=env, cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            stdout, stderr = await asyncio.wait_for(call.communicate(), 30)
            res = await uas.wait(10)
        assert call.returncode == 0, stderr.decode()
        lines = stdout.decode().splitlines()
        states = [json.loads(ln)["data"]["state"] for ln in lines[1:]]
        assert states[0] == "dialing" and "connected" in states and states[-1] == "ended"
        assert res.returncode == 0 and res.successful == 1
        # A terminal's token may not place calls: a clear one-line error, exit 1.
        bad = await asyncio.create_subprocess_exec(
            *CLI, "rpc", "call.dial", '{"target": "sip:x@127.0.0.1"}',
            env={**env, "DISPATCH_TOKEN": tokens["terminal"]}, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(bad.communicate(), 15)
        assert bad.returncode == 1 and err.decode().startswith("dispatch-gateway: forbidden")
        # Graceful stop on SIGTERM.
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await drain
        assert any("gateway.stopped" in ln for ln in out)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _drain(stream: asyncio.StreamReader, out: list[str]) -> None:
    while line := await stream.readline():
        out.append(line.decode())


def test_bad_config_is_a_precise_error(tmp_path) -> None:
    import subprocess

    bad = tmp_path / "gw.toml"
    bad.write_text('[sip]\nport = "abc"\n')
    r = subprocess.run([*CLI, "serve", "--config", str(bad)], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert f"{bad}: sip.port: must be an integer 1..65535" in r.stderr
