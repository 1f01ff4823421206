"""The dispatch console (console/): its npm toolchain, its build, a browser against a real gateway.

`console_tools` fails (never skips) when console/node_modules is missing: `scripts/install.sh
--test` installs it (npm ci). `console_dist` builds console/dist once per session (Vite, well
under a second), so a test always drives the sources it runs with.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[2] / "console"
BIN = CONSOLE / "node_modules" / ".bin"


def run_node(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=CONSOLE, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def console_tools() -> Path:
    if shutil.which("node") is None:
        pytest.fail("node not found: the console needs Node.js 20.19+ (scripts/install.sh --test)", pytrace=False)
    if not (BIN / "vite").exists():
        pytest.fail("console/node_modules missing: run scripts/install.sh --test (npm ci in console/)", pytrace=False)
    return BIN


@pytest.fixture(scope="session")
def console_dist(console_tools: Path) -> Path:
    done = run_node(str(console_tools / "vite"), "build", "--logLevel", "warn")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (CONSOLE / "dist" / "index.html").is_file()
    return CONSOLE / "dist"


# The in-process gateway and its clients (tests/gateway/conftest.py).
from tests.gateway.conftest import connect, start_gateway, watch  # noqa: E402,F401
