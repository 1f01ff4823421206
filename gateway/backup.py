"""Online backup and restore of the gateway's SQLite store (`dispatch-gateway backup|restore`).

Backup runs beside a running gateway: SQLite's backup API copies the whole database in one step
under one read transaction, a consistent snapshot; in WAL mode the gateway's writer carries on
meanwhile. The copy is written to a temporary file next to the destination, checked
(`PRAGMA quick_check`), synced, then renamed into place: a backup file is always complete.

Restore (the gateway stopped) puts a backup in place of the store and keeps `seq` increasing:
the events table's AUTOINCREMENT high-water mark is raised to the highest seq the replaced store
(if still readable) or `seq_floor` ever gave, so no seq a console has seen is given again; the
audit table's likewise, so no audit id a chain head names is given to another row. The
replaced files are kept beside it (`<name>.replaced-<time>`), never deleted.

Uploads (gateway/uploads/) and video recordings (video.recordings_dir) are files beside the
store: `copy_uploads` and `copy_recordings` copy those a backup directory lacks, after the
database, and back again for a restore.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.uploads.blobs import SHA256_RE
from video.recording import RECORDING_RE


_SIDE_FILES = ("", "-wal", "-shm")


class BackupError(Exception):
    """A backup or restore could not be made; the message says why."""


def _mark(conn: sqlite3.Connection, table: str, key: str) -> int:
    """The highest key `table` ever gave (AUTOINCREMENT's mark, or its largest row)."""
    row = conn.execute(
        f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0),"
        f" coalesce((SELECT max({key}) FROM {table}), 0))").fetchone()
    return int(row[0])


def _last_seq(conn: sqlite3.Connection) -> int:
    return _mark(conn, "events", "seq")


def _raise_mark(conn: sqlite3.Connection, table: str, floor: int) -> None:
    if conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (floor, table)).rowcount == 0:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, floor))


def _copy(src: sqlite3.Connection, dest: Path) -> None:
    """SQLite backup API into `dest` (a temp file), checked and synced."""
    with contextlib.closing(sqlite3.connect(dest)) as out:
        src.backup(out, pages=-1)  # one step: a consistent snapshot, whatever the writer does
        ok = out.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise BackupError(f"the copy failed its check: {ok}")
        out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file (the store sets WAL)
    with open(dest, "rb") as f:
        os.fsync(f.fileno())


def _unlink(path: Path, suffixes: tuple[str, ...] = _SIDE_FILES) -> None:
    for suffix in suffixes:
        Path(str(path) + suffix).unlink(missing_ok=True)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def backup(db_path: str | Path, dest: str | Path, *, busy_timeout_ms: int = 10_000) -> dict[str, Any]:
    """Copy the store at `db_path` (live or not) to `dest`; a summary of what was copied."""
    db_path, dest = Path(db_path), Path(dest)
    if not db_path.exists():
        raise BackupError(f"no store at {db_path}")
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory; give a file name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(dest)
    try:
        with contextlib.closing(sqlite3.connect(db_path, timeout=busy_timeout_ms / 1000)) as src:
            src.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            _copy(src, tmp)
        with contextlib.closing(sqlite3.connect(tmp)) as out:
            summary = {"path": str(dest), "last_seq": _last_seq(out),
                       "events": out.execute("SELECT count(*) FROM events").fetchone()[0],
                       "schema_version": out.execute("PRAGMA user_version").fetchone()[0]}
        _unlink(tmp, ("-wal", "-shm"))
        os.replace(tmp, dest)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {db_path} failed: {exc}") from None
    finally:
        _unlink(tmp)
    summary["bytes"] = dest.stat().st_size
    return summary


def _readable_marks(db_path: Path) -> tuple[int, int]:
    """(last event seq, last audit id) of the store being replaced, 0 where unreadable."""
    if not db_path.exists():
        return 0, 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
            return _last_seq(conn), _mark(conn, "audit", "id")
    except sqlite3.Error:
        return 0, 0  # damaged: that is why it is being restored; give --seq-floor then


def restore(backup_file: str | Path, db_path: str | Path, *, seq_floor: int = 0) -> dict[str, Any]:
    """Put `backup_file` in place of the store at `db_path` (the gateway must be stopped)."""
    backup_file, db_path = Path(backup_file), Path(db_path)
    if not backup_file.is_file():
        raise BackupError(f"no backup at {backup_file}")
    replaced_seq, replaced_audit = _readable_marks(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(db_path)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)) as src:
            _copy(src, tmp)
        with contextlib.closing(sqlite3.connect(tmp)) as conn:
            restored_seq = _last_seq(conn)
            floor = max(restored_seq, replaced_seq, int(seq_floor))
            with conn:
                _raise_mark(conn, "events", floor)
                # Audit ids too: rows the replaced store had after the backup are lost, and the
                # chain heads recorded for them (gateway/audit/heads.py) must not name new rows.
                _raise_mark(conn, "audit", max(_mark(conn, "audit", "id"), replaced_audit))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = None
        if db_path.exists():
            kept = db_path.with_name(f"{db_path.name}.replaced-{stamp}")
            for suffix in _SIDE_FILES:
                old = Path(str(db_path) + suffix)
                if old.exists():
                    os.replace(old, str(kept) + suffix)
        os.replace(tmp, db_path)
    except sqlite3.Error as exc:
        raise BackupError(f"restore of {backup_file} failed: {exc}") from None
    finally:
        _unlink(tmp)
    return {"path": str(db_path), "restored_last_seq": restored_seq, "replaced_last_seq": replaced_seq,
            "next_seq": floor + 1, "replaced_kept_as": str(kept) if kept else None}


def _copy_file(f: Path, target: Path, check: Callable[[str], bool]) -> bool:
    """Copy `f` to `target` (with its modification time) through a synced temp file renamed into
    place, never a partial file; False (nothing written) when `check(sha256 of what was read)` refuses it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(target)
    digest = hashlib.sha256()
    try:
        with open(f, "rb") as i, open(tmp, "wb") as o:
            while chunk := i.read(1 << 20):
                digest.update(chunk)
                o.write(chunk)
            o.flush()
            os.fsync(o.fileno())
        if not check(digest.hexdigest()):
            return False
        st = f.stat()  # its time kept: retention ages a copied-back recording by it
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
        return True
    except OSError as exc:
        raise BackupError(f"copying {f} to {target} failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def copy_recordings(src: str | Path, dest: str | Path) -> dict[str, Any]:
    """Copy the finished video recordings in `src` (`<stream_id>.webm|.mkv`, video/recording.py:
    renamed into place whole, never changed after) that `dest` lacks, each through a synced temp
    file: incremental, never a partial file. A live stream's directory (its `.mjr`) is not
    copied: its recording is copied by the next run once it is finished."""
    src, dest = Path(src), Path(dest)
    summary: dict[str, Any] = {"recordings_copied": 0, "recordings_present": 0, "recordings_bytes": 0}
    if not src.is_dir():
        return summary
    for f in sorted(p for p in src.iterdir() if RECORDING_RE.match(p.name) and p.is_file()):
        target = dest / f.name
        if target.exists() and target.stat().st_size == f.stat().st_size:
            summary["recordings_present"] += 1
            continue
        _copy_file(f, target, lambda _digest: True)
        summary["recordings_copied"] += 1
        summary["recordings_bytes"] += target.stat().st_size
    return summary


def copy_uploads(src: str | Path, dest: str | Path) -> dict[str, Any]:
    """Copy the uploads under `src` (`<aa>/<sha256>`, see gateway/uploads/blobs.py) that `dest`
    lacks, each checked against its name (SHA-256) while copied, written to a temp file, synced and
    renamed: incremental (files never change) and never a partial file. `tmp/` is not copied.
    Used after `backup` (src: the gateway's uploads, dest: the backup's) and for `restore` (the
    other way). A file whose content no longer matches its name is reported, not copied."""
    src, dest = Path(src), Path(dest)
    summary: dict[str, Any] = {"uploads_copied": 0, "uploads_present": 0, "uploads_bytes": 0,
                               "uploads_corrupt": []}
    if not src.is_dir():
        return summary
    for fan in sorted(p for p in src.iterdir() if p.is_dir() and len(p.name) == 2):
        for f in sorted(p for p in fan.iterdir() if SHA256_RE.match(p.name) and p.name[:2] == fan.name):
            target = dest / fan.name / f.name
            if target.exists():
                summary["uploads_present"] += 1
                continue
            if not _copy_file(f, target, lambda digest: digest == f.name):
                summary["uploads_corrupt"].append(str(f))
                continue
            summary["uploads_copied"] += 1
            summary["uploads_bytes"] += target.stat().st_size
    return summary
