"""A pulled stream's recording, made playable: Janus's `.mjr` files -> one WebM file.

Janus records each publisher once, at ingest, one `.mjr` per medium (whatever the number of
viewers). When the stream ends, `postprocess()` turns each into its own container with
`janus-pp-rec` (VP8 -> .webm, Opus -> .opus), joins them with `ffmpeg -c copy` (no
re-encoding) into `<out>.webm`, and measures it: duration (ffprobe), size and SHA-256.
Every failure is a `RecordingError` naming the step. Runs child processes only; nothing blocks
the event loop (hashing runs in a thread).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from video.errors import VideoError


class RecordingError(VideoError):
    reason = "recording-failed"


@dataclass(frozen=True)
class Recording:
    path: Path
    duration_s: float
    sha256: str
    size_bytes: int
    media: tuple[str, ...]  # "video", "audio": what the file holds

    def data(self) -> dict[str, object]:
        return {"path": str(self.path), "duration_s": round(self.duration_s, 3),
                "sha256": self.sha256, "size_bytes": self.size_bytes, "media": list(self.media)}


def _medium(mjr: Path) -> str | None:
    parts = mjr.stem.split("-")
    return next((p for p in reversed(parts) if p in ("audio", "video")), None)


async def _run(argv: list[str], timeout: float, step: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
    except FileNotFoundError:
        raise RecordingError(f"{step}: {argv[0]} not found") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RecordingError(f"{step}: {argv[0]} timed out after {timeout:g} s") from None
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RecordingError(f"{step}: {argv[0]} exited with {proc.returncode}: {text[-500:]}")
    return text


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def probe_duration(path: Path, ffprobe_bin: str = "ffprobe", timeout: float = 30) -> float:
    out = await _run([ffprobe_bin, "-v", "error", "-show_entries", "format=duration", "-of", "json",
                      str(path)], timeout, "probe")
    try:
        return float(json.loads(out)["format"]["duration"])
    except (ValueError, KeyError, TypeError):
        raise RecordingError(f"probe: no duration for {path.name}") from None


async def postprocess(rec_dir: Path, out_base: Path, *, pp_rec_bin: str = "janus-pp-rec",
                      ffmpeg_bin: str = "ffmpeg", timeout: float = 300.0) -> Recording:
    """Every `.mjr` under rec_dir -> `<out_base>.webm`; raises RecordingError."""
    mjrs = {m: p for p in sorted(rec_dir.glob("*.mjr")) if (m := _medium(p)) is not None}
    if not mjrs:
        raise RecordingError(f"nothing recorded in {rec_dir}")
    parts: dict[str, Path] = {}
    for medium, mjr in sorted(mjrs.items()):
        part = mjr.with_suffix(".webm" if medium == "video" else ".opus")
        await _run([pp_rec_bin, str(mjr), str(part)], timeout, f"janus-pp-rec {medium}")
        if part.exists() and part.stat().st_size > 0:
            parts[medium] = part
    if not parts:
        raise RecordingError("janus-pp-rec wrote nothing (no media was received)")
    out = out_base.with_suffix(".webm")
    argv = [ffmpeg_bin, "-nostdin", "-y", "-v", "error"]
    for part in parts.values():
        argv += ["-i", str(part)]
    for i in range(len(parts)):
        argv += ["-map", str(i)]
    argv += ["-c", "copy", str(out)]
    await _run(argv, timeout, "ffmpeg join")
    duration = await probe_duration(out, ffmpeg_bin.replace("ffmpeg", "ffprobe"))
    digest = await asyncio.to_thread(_sha256, out)
    return Recording(out, duration, digest, out.stat().st_size, tuple(parts))
