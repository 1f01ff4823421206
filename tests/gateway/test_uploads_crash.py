"""Uploads across a gateway killed with -9 (its own process, as an operator runs it): an upload
half received when it died leaves nothing after the restart (its temp file is removed at start,
no row was written), while a stored upload and the feedback referring to it are still there and
downloadable by the incident's readers."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest

from gateway.client import GatewayClient
from tests.gateway.gateway_proc import GatewayProc, store_rows, wait_until
from tests.gateway.test_stop_signals import overrides
from tests.gateway.test_terminals import TERMINALS
from tests.uploads.conftest import samples  # noqa: F401  (the fixture)

pytestmark = pytest.mark.peers


async def test_a_half_received_upload_leaves_nothing_after_kill_9(tmp_path: Path, samples) -> None:
    sets = overrides(tmp_path, **{"directory.endpoint": TERMINALS, "sip.max_workers": 1,
                                  "sip.warm_workers": 1, "sip.proxy": "none"})
    url = f"http://127.0.0.1:{sets['http.port']}/v1/uploads"
    terminal = {"Authorization": "Bearer tok-terminal"}
    tmp_dir = tmp_path / "data" / "uploads" / "tmp"
    photo, clip = samples["image/jpeg"], samples["audio/ogg"]
    gw = GatewayProc(sets, tmp_path)
    try:
        await gw.start()
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=photo, headers={**terminal, "Content-Type": "image/jpeg"}) as r:
                assert r.status == 201
                sha = (await r.json())["sha256"]
            async with await GatewayClient.connect(gw.url, "tok-terminal") as unit:
                fb = await unit.call("terminal.feedback", text="photo of the gate", uploads=[sha])

            async def stalled():
                yield clip[:200]
                await asyncio.Event().wait()  # never more: the gateway dies meanwhile

            half = asyncio.create_task(http.post(url, data=stalled(),
                                                 headers={**terminal, "Content-Type": "audio/ogg"}))
            await wait_until(lambda: any(tmp_dir.iterdir()), 20, "the upload's temp file")
            await gw.kill9()
            with contextlib.suppress(aiohttp.ClientError):
                (await half).close()
            assert len(list(tmp_dir.iterdir())) == 1  # what the killed gateway left

            await gw.start()
            assert list(tmp_dir.iterdir()) == []
            assert store_rows(gw.store_path, "SELECT sha256, type FROM uploads") == [(sha, "image/jpeg")]
            assert store_rows(gw.store_path, "SELECT sha256, feedback_id FROM upload_refs") == [
                (sha, fb["feedback_id"])]
            async with http.get(f"{url}/{sha}", headers={"Authorization": "Bearer tok-observer"}) as r:
                assert r.status == 200 and await r.read() == photo
    finally:
        await gw.stop()
