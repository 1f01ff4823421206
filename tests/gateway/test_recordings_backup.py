"""Video recordings in a backup and a restore (`dispatch-gateway backup|restore --recordings DIR`):
the finished files (`<stream_id>.webm|.mkv` under video.recordings_dir) after the database,
incrementally; a live stream's directory is not copied; after the data dir is lost, restore puts
them back."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from gateway.store import Store
from tests.gateway.test_backup_restore import _cli


async def test_backup_and_restore_with_recordings(tmp_path) -> None:
    data = tmp_path / "data"
    async with Store(data / "gateway.db") as store:
        await store.append_event("video.recording", None, {"stream_id": "vid-0000000000000001"})
    rec = data / "recordings" / "video"  # video.recordings_dir's default, under gateway.data_dir
    finished = {"vid-0000000000000001.webm": b"webm" * 1000, "vid-0000000000000002.mkv": b"mkv" * 10}
    for name, content in finished.items():
        (rec / name).parent.mkdir(parents=True, exist_ok=True)
        (rec / name).write_bytes(content)
    written = time.time() - 30 * 86_400  # a month old: retention ages it by this time, also once restored
    os.utime(rec / "vid-0000000000000001.webm", (written, written))
    (rec / "vid-0000000000000003").mkdir()  # a stream still live: its .mjr is not a recording yet
    (rec / "vid-0000000000000003" / "video.mjr").write_bytes(b"MJR00002")
    backups = tmp_path / "backups"
    where = ["--set", f"gateway.data_dir={data}"]

    taken = await _cli("backup", str(backups / "gw.db"), "--recordings", str(backups / "video"), *where)
    assert (taken["recordings_copied"], taken["recordings_present"]) == (2, 0)
    assert taken["recordings_bytes"] == sum(map(len, finished.values()))
    assert sorted(p.name for p in (backups / "video").iterdir()) == sorted(finished)
    again = await _cli("backup", str(backups / "gw2.db"), "--recordings", str(backups / "video"), *where)
    assert (again["recordings_copied"], again["recordings_present"]) == (0, 2)  # incremental

    shutil.rmtree(data)  # the disk is lost
    restored = await _cli("restore", str(backups / "gw.db"), "--recordings", str(backups / "video"), *where)
    assert restored["recordings_copied"] == 2 and restored["restored_last_seq"] == 1
    assert {p.name: p.read_bytes() for p in Path(rec).iterdir()} == finished
    assert abs((rec / "vid-0000000000000001.webm").stat().st_mtime - written) < 1
