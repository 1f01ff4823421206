"""A pulled stream's recording, made playable: Janus's `.mjr` files -> one WebM (or Matroska) file.

Janus records each publisher once, at ingest, one `.mjr` per medium (whatever the number of
viewers). When the stream ends, `postprocess()` turns each into its own container with
`janus-pp-rec` (the codec read from the file's header: VP8/VP9/AV1 -> .webm, H.264 -> .mkv,
Opus -> .opus, G.711/G.722 -> .wav), joins them with `ffmpeg -c copy` (no re-encoding) into
`<out>.webm` (or `<out>.mkv` when WebM cannot hold a codec, e.g. H.264), and measures it:
duration (ffprobe), size and SHA-256.
Every failure is a `RecordingError` naming the step. Runs child processes only; nothing blocks
the event loop (hashing runs in a thread).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from sip.lifeline import preexec_die_with_parent
from video.errors import VideoError

# The finished recordings `postprocess` leaves in the recordings directory (`<stream_id>.webm|.mkv`),
# as retention and backup find them.
RECORDING_RE = re.compile(r"^vid-[0-9a-f]+\.(webm|mkv)$")


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


# What janus-pp-rec writes each codec into, and whether WebM can hold it (else Matroska).
PART_EXT = {"vp8": ".webm", "vp9": ".webm", "av1": ".webm", "h264": ".mkv", "opus": ".opus",
            "multiopus": ".opus", "g711": ".wav", "pcmu": ".wav", "pcma": ".wav", "g722": ".wav"}
WEBM_CODECS = frozenset({"vp8", "vp9", "av1", "opus", "multiopus"})


def plan(headers: dict[str, dict]) -> tuple[dict[str, str], str]:
    """From each .mjr's header (janus-pp-rec -j: `t` a|v, `c` codec): the extension of each
    part, and the final container (.webm when WebM holds every codec, else .mkv)."""
    exts, codecs = {}, set()
    for name, header in headers.items():
        codec = str(header.get("c", "")).lower()
        if codec not in PART_EXT:
            raise RecordingError(f"{name}: codec {codec or '?'} cannot be post-processed")
        exts[name] = PART_EXT[codec]
        codecs.add(codec)
    return exts, ".webm" if codecs <= WEBM_CODECS else ".mkv"


async def _run(argv: list[str], timeout: float, step: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=preexec_die_with_parent(signal.SIGKILL))  # nobody renames its output once we are gone
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
    headers: dict[str, dict] = {}
    for mjr in sorted(rec_dir.glob("*.mjr")):
        # A Janus killed mid-stream leaves what it had not flushed unwritten: an empty or
        # header-less file is skipped, the other medium still makes a (partial) recording.
        out = await _run([pp_rec_bin, "-j", str(mjr)], timeout, "janus-pp-rec header")
        line = next((ln for ln in out.splitlines() if ln.startswith("{")), "")
        try:
            headers[mjr.name] = json.loads(line)
        except ValueError:
            continue
    if not headers:
        raise RecordingError(f"nothing readable recorded in {rec_dir}")
    mjrs = [rec_dir / name for name in headers]
    exts, final = plan(headers)
    parts: dict[str, Path] = {}
    for mjr in mjrs:
        medium = "video" if headers[mjr.name].get("t") == "v" else "audio"
        part = mjr.with_suffix(exts[mjr.name])
        await _run([pp_rec_bin, str(mjr), str(part)], timeout, f"janus-pp-rec {medium}")
        if part.exists() and part.stat().st_size > 0:
            parts[medium] = part
    if not parts:
        raise RecordingError("janus-pp-rec wrote nothing (no media was received)")
    out = out_base.with_suffix(final)
    joined = rec_dir / f"joined{final}"  # renamed into place whole: a download or backup never
    argv = [ffmpeg_bin, "-nostdin", "-y", "-v", "error"]  # sees a file still being written
    for part in parts.values():
        argv += ["-i", str(part)]
    for i in range(len(parts)):
        argv += ["-map", str(i)]
    argv += ["-c", "copy", str(joined)]
    await _run(argv, timeout, "ffmpeg join")
    os.replace(joined, out)
    duration = await probe_duration(out, ffmpeg_bin.replace("ffmpeg", "ffprobe"))
    digest = await asyncio.to_thread(_sha256, out)
    return Recording(out, duration, digest, out.stat().st_size, tuple(sorted(parts)))
