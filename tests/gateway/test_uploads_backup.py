"""Uploads in a backup and a restore (`dispatch-gateway backup|restore --uploads DIR`): the
database first, then the files it names, incrementally; after the data dir is lost, the restored
gateway serves the same files to the incident's readers."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import aiohttp
import pytest

from gateway.backup import copy_uploads
from tests.gateway.test_backup_restore import _cli
from tests.gateway.test_terminals import TERMINALS
from tests.uploads.conftest import samples  # noqa: F401  (the fixture)

pytestmark = pytest.mark.peers


async def test_backup_and_restore_with_uploads(start_gateway, connect, tmp_path, samples) -> None:
    gw = await start_gateway(**{"directory.endpoint": TERMINALS})
    data = Path(gw.config.gateway.data_dir)
    base = f"http://127.0.0.1:{gw.http_port}/v1/uploads"
    terminal = {"Authorization": "Bearer tok-terminal"}
    async with aiohttp.ClientSession() as http:
        shas = []
        for kind in ("image/jpeg", "audio/ogg"):
            async with http.post(base, data=samples[kind], headers={**terminal, "Content-Type": kind}) as r:
                shas.append((await r.json())["sha256"])
    unit = await connect(gw, "tok-terminal")
    await unit.call("terminal.feedback", text="two files", uploads=shas)
    backups = tmp_path / "backups"
    where = ["--set", f"gateway.data_dir={data}"]
    taken = await _cli("backup", str(backups / "gw.db"), "--uploads", str(backups / "uploads"), *where)
    assert (taken["uploads_copied"], taken["uploads_present"], taken["uploads_corrupt"]) == (2, 0, [])
    again = await _cli("backup", str(backups / "gw2.db"), "--uploads", str(backups / "uploads"), *where)
    assert (again["uploads_copied"], again["uploads_present"]) == (0, 2)  # incremental
    await gw.stop()

    shutil.rmtree(data)  # the disk is lost
    restored = await _cli("restore", str(backups / "gw.db"), "--uploads", str(backups / "uploads"), *where)
    assert restored["uploads_copied"] == 2
    gw2 = await start_gateway(**{"directory.endpoint": TERMINALS})  # the same data dir
    async with aiohttp.ClientSession() as http:
        for sha, kind in zip(shas, ("image/jpeg", "audio/ogg")):
            url = f"http://127.0.0.1:{gw2.http_port}/v1/uploads/{sha}"
            async with http.get(url, headers={"Authorization": "Bearer tok-observer"}) as r:
                assert r.status == 200 and await r.read() == samples[kind]


def test_a_corrupt_upload_is_reported_not_copied(tmp_path) -> None:
    good, bad = b"photo bytes", b"bit rot"
    src = tmp_path / "src"
    for content, stored in ((good, good), (bad, b"bit rat")):
        sha = hashlib.sha256(content).hexdigest()
        (src / sha[:2]).mkdir(parents=True, exist_ok=True)
        (src / sha[:2] / sha).write_bytes(stored)
    (src / "tmp").mkdir()
    (src / "tmp" / "up-partial").write_bytes(b"half")
    summary = copy_uploads(src, tmp_path / "dest")
    assert summary["uploads_copied"] == 1 and len(summary["uploads_corrupt"]) == 1
    assert sorted(p.name for p in (tmp_path / "dest").rglob("*") if p.is_file()) == [hashlib.sha256(good).hexdigest()]
