"""One WAV per broadcast of what was sent (16 kHz mono PCM16).

`write(frame)` never blocks and never awaits: frames are buffered and, once a chunk (1 s by
default) is full, one writer task hands it to a worker thread. At most `max_pending_s` of audio
waits in memory; beyond that (the disk stalled) frames are dropped and counted, since a recording
must never hold up a broadcast. `close()` writes the rest, closes the file (the `wave` module
patches the RIFF and data sizes) and returns `Recording(path, duration_s)`.

    rec = Recorder(recordings_dir / f"{broadcast_id}.wav")
    async for frame in pace(source.frames()):
        send(frame)
        rec.write(frame)
    path, duration_s = await rec.close()
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import NamedTuple

import structlog

log = structlog.get_logger(__name__)

RATE = 16000
FRAME_BYTES = 640


class Recording(NamedTuple):
    path: Path
    duration_s: float


class _WavFile:
    """The file side; every method runs in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wav: wave.Wave_write | None = None

    def write(self, pcm: bytes) -> None:
        if self._wav is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            w = wave.open(str(self.path), "wb")
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            self._wav = w
        self._wav.writeframes(pcm)  # patches the header sizes: a crash leaves a readable WAV

    def close(self) -> None:
        if self._wav is None:
            self.write(b"")  # an empty broadcast still leaves a valid (empty) WAV
        assert self._wav is not None
        self._wav.close()


class Recorder:
    """Records the frames of one broadcast to `path` without blocking the loop."""

    def __init__(self, path: str | Path, *, chunk_s: float = 1.0, max_pending_s: float = 30.0) -> None:
        self.path = Path(path)
        self._file = _WavFile(self.path)
        self._chunk_bytes = max(FRAME_BYTES, int(chunk_s * RATE) * 2)
        self._max_pending = max(self._chunk_bytes, int(max_pending_s * RATE) * 2)
        self._buffer = bytearray()
        self._chunks: list[bytes] = []  # full chunks waiting for the writer
        self._pending = 0  # bytes in _buffer + _chunks + the chunk being written
        self._writer: asyncio.Task[None] | None = None
        self._written = 0  # bytes on disk
        self._closed = False
        self.dropped_frames = 0
        self.error: OSError | None = None

    @property
    def duration_s(self) -> float:
        """Seconds accepted so far (written or waiting to be)."""
        return (self._written + self._pending) / (2 * RATE)

    def write(self, frame: bytes) -> None:
        """Append a frame (16 kHz mono PCM16LE). Call on the loop thread; it never blocks."""
        if self._closed:
            raise RuntimeError(f"recorder {self.path} is closed")
        if len(frame) % 2:
            raise ValueError(f"PCM16 frame of odd length {len(frame)}")
        if self.error is not None or self._pending + len(frame) > self._max_pending:
            self.dropped_frames += 1
            if self.dropped_frames == 1:
                log.warning("recorder.dropping", path=str(self.path),
                            why="write failed" if self.error else "disk too slow")
            return
        self._buffer += frame
        self._pending += len(frame)
        if len(self._buffer) >= self._chunk_bytes:
            self._chunks.append(bytes(self._buffer))
            self._buffer.clear()
            if self._writer is None or self._writer.done():
                self._writer = asyncio.get_running_loop().create_task(
                    self._drain(), name=f"recorder:{self.path.name}")

    async def _drain(self) -> None:
        while self._chunks and self.error is None:
            chunk = self._chunks.pop(0)
            try:
                await asyncio.to_thread(self._file.write, chunk)
            except OSError as err:
                self.error = err
                log.error("recorder.failed", path=str(self.path), error=str(err))
                self._pending -= len(chunk)
                break
            self._written += len(chunk)
            self._pending -= len(chunk)
        if self.error is not None:  # nothing more will reach the disk
            self._pending -= sum(map(len, self._chunks))
            self._chunks.clear()

    async def close(self) -> Recording:
        """Flush, fix the WAV header and close. Returns the path and the recorded duration."""
        if not self._closed:
            self._closed = True
            if self._buffer:
                self._chunks.append(bytes(self._buffer))
                self._buffer.clear()
            if self._writer is not None:
                await self._writer
            await self._drain()
            try:
                await asyncio.to_thread(self._file.close)
            except OSError as err:
                self.error = self.error or err
                log.error("recorder.failed", path=str(self.path), error=str(err))
            log.info("recorder.closed", path=str(self.path), duration_s=self.duration_s,
                     dropped_frames=self.dropped_frames, failed=self.error is not None)
        return Recording(self.path, self._written / (2 * RATE))

    async def __aenter__(self) -> Recorder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
