"""`dispatch-gateway serve` with video on and no Janus to run: one line naming the problem, exit 1,
nothing left behind (video starts right after the store and the http port, before SIP)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.peers.ports import free_port_block, free_tcp_port

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_janus_is_one_clear_line(tmp_path) -> None:
    sip = free_port_block(span=20)
    sets = {"gateway.data_dir": str(tmp_path / "data"), "control.port": 0, "http.port": 0,
            "sip.port": sip, "sip.worker_base_port": sip + 10, "sip.max_workers": 1,
            "video.enabled": "true", "video.ws_base_port": free_tcp_port(),
            "video.janus_bin": str(tmp_path / "no-janus")}
    argv = [sys.executable, "-m", "gateway.cli", "serve"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "cannot start" in r.stderr and "no-janus not found (Debian package janus)" in r.stderr
    assert "Traceback" not in r.stderr
