"""Stoplight Prism as a validating proxy in front of a local API stub, checked against a vendor's
OpenAPI description (Twilio's, for the SMS provider).

    spec = twilio_spec()                                 # ../shared/twilio-oai/... or $TWILIO_OAI_SPEC
    prism_bin = await ensure_prism(repo_root() / ".cache" / "prism")
    async with prism_proxy(prism_bin, spec, stub.url, log=tmp / "prism.log") as prism:
        ...point the client at prism.url...
        assert prism.violations() == []

`prism proxy --errors` refuses a request that breaks the spec (422, or 401 for the security
scheme; nothing is forwarded) and turns a 2xx answer that breaks it into an error. A non-2xx
status the spec does not list (Twilio's spec lists none for Messages) is only a warning, so
injected 429/5xx and 400 errors pass through. Every violation is logged by Prism; `violations()`
reads them from its log.

Prism is installed with npm into a cache dir outside the tracked files (`.cache/prism`, ignored by
git) when missing. node, npm or the spec missing FAILS the test, never skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.ports import free_tcp_port
from tests.peers.process import read_log, require_binary, start_process, stop_process

PRISM_PACKAGE = "@stoplight/prism-cli@5.14.x"  # 5.14 runs on Node 20; 5.16 wants Node 24
PRISM_VERSION = re.compile(r"^5\.14\.")
SPEC_ENV = "TWILIO_OAI_SPEC"
START_TIMEOUT_S = 120.0  # Twilio's 1.8 MB spec takes ~1-20 s to load
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def twilio_spec() -> Path:
    """Twilio's API v2010 OpenAPI file: $TWILIO_OAI_SPEC, or ../shared/twilio-oai/ beside the repo."""
    path = Path(os.environ.get(SPEC_ENV) or repo_root().parent / "shared" / "twilio-oai" / "twilio_api_v2010.json")
    if not path.is_file():
        pytest.fail(f"Twilio OpenAPI spec not found at {path} (set {SPEC_ENV})", pytrace=False)
    return path


# Known defects of Twilio's spec that the real API (and the twilio library) contradict. The list
# page of Messages declares its page URIs `format: uri` (absolute), yet Twilio answers relative
# URIs ("/2010-04-01/Accounts/AC.../Messages.json?...&Page=1") as the spec's own examples show, and
# the library builds the next page's URL by prefixing the API host, so an absolute URI would break
# paging. Prism --errors would turn every such (correct) page into a 500: the format is dropped
# from those four properties, in a copy made for the test run (never in the repo).
TWILIO_ERRATA = {
    ("/2010-04-01/Accounts/{AccountSid}/Messages.json", "get", "200"):
        ("uri", "first_page_uri", "next_page_uri", "previous_page_uri"),
}


def twilio_spec_for_prism(out_dir: Path) -> tuple[Path, list[str]]:
    """`twilio_spec()` with `TWILIO_ERRATA` applied, written in `out_dir`; and what was changed."""
    spec = json.loads(twilio_spec().read_text())
    changed = []
    for (path, method, status), names in TWILIO_ERRATA.items():
        schema = spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        for name in names:
            if schema["properties"][name].pop("format", None) == "uri":
                changed.append(f"{method.upper()} {path} {status}: {name} format uri")
    out = out_dir / "twilio_api_v2010.prism.json"
    out.write_text(json.dumps(spec))
    return out, changed


def _installed(cache_dir: Path) -> Path | None:
    binary = cache_dir / "node_modules" / ".bin" / "prism"
    package = cache_dir / "node_modules" / "@stoplight" / "prism-cli" / "package.json"
    if not binary.exists() or not package.is_file():
        return None
    try:
        version = json.loads(package.read_text())["version"]
    except (ValueError, KeyError):
        return None
    return binary if PRISM_VERSION.match(version) else None


async def ensure_prism(cache_dir: Path) -> Path:
    """The prism binary in `cache_dir`, installed there with npm first if it is missing."""
    require_binary("node")
    if (binary := _installed(cache_dir)) is not None:
        return binary
    npm = require_binary("npm")
    cache_dir.mkdir(parents=True, exist_ok=True)
    log = cache_dir / "npm-install.log"
    proc = await start_process(
        [npm, "install", "--prefix", str(cache_dir), "--no-audit", "--no-fund", PRISM_PACKAGE], log=log
    )
    try:
        async with asyncio.timeout(600):
            await proc.wait()
    finally:
        await stop_process(proc)
    if proc.returncode != 0 or (binary := _installed(cache_dir)) is None:
        pytest.fail(f"npm install {PRISM_PACKAGE} failed (exit {proc.returncode}):\n{read_log(log)[-3000:]}",
                    pytrace=False)
    return binary


@dataclass
class PrismProxy:
    url: str
    log: Path
    proc: asyncio.subprocess.Process

    def text(self) -> str:
        return _ANSI.sub("", read_log(self.log))

    def mark(self) -> int:
        """A position in the log; `violations(since=mark)` reads only what came after."""
        return len(self.text())

    def violations(self, since: int = 0, *, warnings: bool = False) -> list[str]:
        """Lines where Prism reported a spec violation or refused a request (errors; warnings too
        when asked)."""
        found = []
        for line in self.text()[since:].splitlines():
            if "Request terminated with error" in line or ("Violation:" in line and "✖" in line):
                found.append(line.strip())
            elif warnings and "Violation:" in line:
                found.append(line.strip())
        return found


async def _wait_ready(proxy: PrismProxy, port: int) -> None:
    async with asyncio.timeout(START_TIMEOUT_S):
        while "Prism is listening" not in proxy.text():
            if proxy.proc.returncode is not None:
                pytest.fail(f"prism exited ({proxy.proc.returncode}):\n{proxy.text()[-3000:]}", pytrace=False)
            await asyncio.sleep(0.2)
        while True:  # and it answers
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def prism_proxy(binary: Path, spec: Path, upstream: str, *, log: Path) -> AsyncIterator[PrismProxy]:
    """`prism proxy <spec> <upstream> --errors` on 127.0.0.1 (a free port), ready when yielded."""
    port = free_tcp_port()
    proc = await start_process(
        [str(binary), "proxy", str(spec), upstream, "--host", "127.0.0.1", "--port", str(port), "--errors"],
        log=log,
    )
    proxy = PrismProxy(f"http://127.0.0.1:{port}", log, proc)
    try:
        try:
            await _wait_ready(proxy, port)
        except TimeoutError:
            pytest.fail(f"prism did not start in {START_TIMEOUT_S} s:\n{proxy.text()[-3000:]}", pytrace=False)
        yield proxy
    finally:
        await stop_process(proc)
