"""What a `broadcast.start` request turns into, before anything starts: its targets resolved
through the directory and the zones, and its audio source built (and checked)."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.broadcast.config import BroadcastConfig
from gateway.broadcast.model import Target
from gateway.broadcast.sources import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    RATE,
    ChimeSource,
    LiveSource,
    PcmSource,
    Repeat,
    Sequence,
    Source,
    WavSource,
)
from gateway.broadcast.tts import get_engine
from gateway.directory import Directory
from gateway.errors import InvalidParams, NotFound


def resolve_targets(names: list[str], directory: Directory, config: BroadcastConfig) -> dict[str, Target]:
    """The targets `names` stand for (zones, endpoints, groups), one per URI or zone."""
    out: dict[str, Target] = {}
    for name in names:
        if name.startswith("zone:"):
            try:
                zone = config.zone(name[5:])
            except ValueError:
                raise NotFound(f"no zone {name[5:]!r}", reason="no-such-zone",
                               details={"target": name}) from None
            out.setdefault(name, Target(key=name, name=name, zone=zone))
            continue
        for ep in directory.resolve(name):  # NotFound no-such-endpoint, TargetError
            label = name if not name.startswith("group:") else ep.name
            out.setdefault(ep.uri, Target(key=ep.uri, name=label, uri=ep.uri, profile=ep.profile))
    if not out:
        raise InvalidParams("no targets", reason="no-targets", details={"targets": names})
    return out


async def make_source(spec: dict[str, Any], repeat: int, gap_s: float, chime: bool, *,
                      media_dir: Path, tts_engine: str) -> tuple[Source, LiveSource | None]:
    """The audio source of a `broadcast.start` (and its live input, if live). A file must be
    under `media_dir` and readable, a text is synthesised: both raise before anything starts."""
    kind = spec["type"]
    live: LiveSource | None = None
    if kind == "live":
        live = LiveSource()
        return (Sequence([ChimeSource(), live]) if chime else live), live
    if kind == "file":
        path = (media_dir / spec["path"]).resolve()
        if not path.is_relative_to(media_dir):
            raise InvalidParams("the file must be under the media directory",
                                reason="unreadable-file", details={"path": spec["path"]})
        await WavSource.open(path)  # raises unreadable-file before anything starts

        def make() -> Source:
            return WavSource(path)
    elif kind == "tts":
        pcm = await get_engine(tts_engine).synthesize(spec["text"], spec.get("language", "en"))

        def make() -> Source:
            return PcmSource(pcm)
    else:  # tone
        freq, seconds = float(spec.get("frequency", 1000.0)), float(spec.get("seconds", 5.0))

        def make() -> Source:
            return ToneSource(freq, seconds)
    body: Source = Repeat(make, repeat, gap_s) if repeat > 1 else make()
    return (Sequence([ChimeSource(), body]) if chime else body), None


def describe(spec: dict[str, Any]) -> dict[str, Any]:
    """The source as stored and shown: a text only by its length."""
    return {k: v for k, v in spec.items() if k != "text"} | (
        {"text_chars": len(spec["text"])} if "text" in spec else {})


class ToneSource(Source):
    """A sine tone made a frame at a time as it plays: starting a broadcast of a long tone costs
    nothing (the whole tone made up front took ~4 s of CPU an hour of it, in pure Python, before
    `broadcast.start` could answer)."""

    def __init__(self, freq: float, seconds: float, amplitude: float = 0.5) -> None:
        self.freq, self.amplitude = freq, amplitude
        self.duration_s = seconds
        self._samples = int(seconds * RATE)

    async def frames(self) -> AsyncIterator[bytes]:
        step, amp = 2 * math.pi * self.freq / RATE, self.amplitude * 32767
        for k, start in enumerate(range(0, self._samples, FRAME_SAMPLES)):
            if k % 500 == 499:  # read unpaced (a recording, a test): let other tasks run now and then
                await asyncio.sleep(0)
            n = min(FRAME_SAMPLES, self._samples - start)
            frame = struct.pack(f"<{n}h", *(int(amp * math.sin(step * i)) for i in range(start, start + n)))
            yield frame + bytes(FRAME_BYTES - len(frame))
