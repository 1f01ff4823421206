"""scripts/install.sh for real (twice: the second run is the fast path), the wrappers, the
Dockerfile (no Docker engine here: checked as text, it must run the same install script)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install.sh"
SCRIPTS = [INSTALL, REPO / "scripts" / "serve.sh", REPO / "scripts" / "test.sh", REPO / ".ci" / "run"]


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_install_twice_is_idempotent():
    # The live repo's .venv: scripts/test.sh has just installed it, so both runs are quick; on a
    # fresh checkout the first run builds .venv. Neither may break it.
    first = run(INSTALL, "--test")
    assert first.returncode == 0, first.stderr[-3000:]
    t0 = time.monotonic()
    second = run(INSTALL, "--test", timeout=120)
    took = time.monotonic() - t0
    assert second.returncode == 0, second.stderr[-3000:]
    assert "system packages already installed" in second.stderr
    assert "up to date" in second.stderr, second.stderr
    assert "pip:" not in second.stderr and "creating" not in second.stderr
    assert took < 30, f"fast path took {took:.1f}s"
    # a plain install after a test install is a subset: also the fast path
    plain = run(INSTALL, timeout=120)
    assert plain.returncode == 0 and "up to date" in plain.stderr, plain.stderr
    check = run(REPO / ".venv" / "bin" / "python", "-c",
                "import pjsua2, aiohttp, websockets, twilio, structlog, gateway; print('ok')")
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stderr
    assert os.access(REPO / ".venv" / "bin" / "dispatch-gateway", os.X_OK)


def test_install_options():
    assert run(INSTALL, "--help").returncode == 0
    bad = run(INSTALL, "--bogus")
    assert bad.returncode == 2 and "unknown option" in bad.stderr


def test_scripts_are_executable_bash():
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), f"{script} is not executable"
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), script
        assert "set -euo pipefail" in text, script
        assert run("bash", "-n", script).returncode == 0, script
    mode = run("git", "ls-files", "-s", "scripts/install.sh", "scripts/serve.sh",
               "scripts/test.sh", ".ci/run")
    if mode.returncode == 0 and mode.stdout:  # committed with the executable bit
        assert all(line.startswith("100755") for line in mode.stdout.splitlines()), mode.stdout


def test_wrappers_call_install():
    serve = (REPO / "scripts" / "serve.sh").read_text()
    assert re.search(r"scripts/install\.sh\"?\s*$", serve, re.M)
    assert "dispatch-gateway\" serve --config config/gateway.toml \"$@\"" in serve
    test = (REPO / "scripts" / "test.sh").read_text()
    assert "scripts/install.sh\" --test" in test and "-m pytest" in test and '"$@"' in test
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_install_script_packages_and_noninteractive():
    text = INSTALL.read_text()
    assert "DEBIAN_FRONTEND=noninteractive" in text
    for pkg in ("kamailio", "sip-tester", "baresip", "ffmpeg", "sox", "espeak-ng", "iproute2",
                "procps", "sqlite3"):
        assert re.search(rf"\b{re.escape(pkg)}\b", text), pkg
    assert "apt-get update" in text and "pip install" in text and "-e" in text
    # pjsua2 from source: its build tools, the build script, the wheel as the fallback
    assert "swig" in text and "scripts/build_pjsua2.sh" in text and "PyPI wheel" in text


def test_dockerfile_uses_install_script():
    text = (REPO / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim-bookworm"
    assert any(ln.startswith("RUN ./scripts/install.sh") for ln in lines)
    assert "ARG PJPROJECT_TARBALL" in text  # pjsua2 built from source as on a machine
    assert "HEALTHCHECK" in text and "/healthz" in text and "urllib.request" in text
    assert "curl" not in text
    cmd = text[text.index("\nCMD "):]  # the last instruction
    assert '"serve"' in cmd and '"config/gateway.toml"' in cmd
    assert "control.host=0.0.0.0" in text and "http.host=0.0.0.0" in text
    assert re.search(r"EXPOSE .*8765", text) and re.search(r"EXPOSE .*8080", text)
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore


def test_readme_names_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert "./scripts/serve.sh" in text and "./scripts/test.sh" in text
    for doc in ("docs/design.md", "docs/protocol.md", "docs/benchmarks.md"):
        assert doc in text
