"""Real media files made by ffmpeg (a test peer): one per type the gateway takes."""

from __future__ import annotations

import subprocess
from pathlib import Path

_VIDEO = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=1", "-frames:v", "1"]
_AUDIO = ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.5:sample_rate=48000", "-ac", "1"]

# type -> (file name, ffmpeg input and codec arguments)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "image/jpeg": ("photo.jpg", _VIDEO),
    "image/png": ("photo.png", _VIDEO),
    "image/webp": ("photo.webp", [*_VIDEO, "-c:v", "libwebp"]),
    "audio/ogg": ("clip.ogg", [*_AUDIO, "-c:a", "libopus"]),
    "audio/webm": ("clip.webm", [*_AUDIO, "-c:a", "libopus", "-f", "webm"]),
    "audio/wav": ("clip.wav", _AUDIO),
    "audio/mpeg": ("clip.mp3", [*_AUDIO, "-c:a", "libmp3lame"]),
    "audio/mp4": ("clip.m4a", [*_AUDIO, "-c:a", "aac"]),
}


def make_samples(directory: Path, kinds: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """type -> the bytes of a small real file of that type (of every type, or of `kinds`)."""
    out = {}
    for kind, (name, args) in RECIPES.items():
        if kinds is not None and kind not in kinds:
            continue
        path = directory / name
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, str(path)],
                       check=True, timeout=60)
        out[kind] = path.read_bytes()
    return out
