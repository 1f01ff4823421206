"""Broadcast audio sources: everything becomes 16 kHz mono PCM16LE in 20 ms frames of 640 bytes.

A `Source` yields frames as fast as it is asked (`frames()` is *not* paced); `pace()` releases them
at real time on an absolute schedule. `duration_s` is the length in seconds, None for live audio.

- `WavSource`: a PCM16 WAV of any rate and channel count, down-mixed and resampled. Open it with
  `await WavSource.open(path)`: the header is checked in a thread and a bad file is an
  `InvalidParams` with reason `unreadable-file`; the samples are decoded in chunks off the loop.
- `PcmSource`: PCM already at 16 kHz (a TTS result, for instance).
- `ChimeSource`: the pre-announcement chime, synthesized in code (deterministic, 0.8 s).
- `Sequence`: sources one after the other (chime, then the message).
- `Repeat`: a source `count` times with `gap_s` of silence in between.
- `LiveSource`: the console's microphone, fed by `push()` from its binary frames (8 or 16 kHz);
  a bounded queue that drops the oldest frame when full, and silence when the console is late.

Nothing here blocks the loop; every source except `LiveSource` can be iterated more than once.
"""

from __future__ import annotations

import abc
import array
import asyncio
import math
import sys
import wave
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway.errors import InvalidParams

with warnings.catch_warnings():  # deprecated in 3.11, removed in 3.13 (then: audioop-lts)
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

log = structlog.get_logger(__name__)

RATE = 16000
FRAME_MS = 20
FRAME_S = FRAME_MS / 1000
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES * 2  # 640
SILENCE = bytes(FRAME_BYTES)

_BIG_ENDIAN = sys.byteorder == "big"  # audioop works in native order, WAV and the wire are LE
_WAV_CHUNK_FRAMES = 50  # decode a WAV one second (of output) at a time


def _frames_of(pcm: bytes | bytearray | memoryview) -> list[bytes]:
    """Cut 16 kHz PCM16LE into 640-byte frames, the last one zero-padded."""
    out = [bytes(pcm[i : i + FRAME_BYTES]) for i in range(0, len(pcm), FRAME_BYTES)]
    if out and len(out[-1]) < FRAME_BYTES:
        out[-1] += bytes(FRAME_BYTES - len(out[-1]))
    return out


def _silence_frames(seconds: float) -> int:
    return round(seconds / FRAME_S)


class Source(abc.ABC):
    """Audio to broadcast. `frames()` yields 640-byte frames, unpaced; `duration_s` None if live."""

    duration_s: float | None = None

    @abc.abstractmethod
    def frames(self) -> AsyncIterator[bytes]:
        """An async iterator of 16 kHz mono PCM16LE frames of 20 ms (640 bytes)."""


# -- WAV files ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WavInfo:
    path: Path
    rate: int
    channels: int
    nframes: int  # samples per channel, as the header says

    @property
    def duration_s(self) -> float:
        return self.nframes / self.rate


def _unreadable(path: Path, why: str) -> InvalidParams:
    return InvalidParams(f"{path}: {why}", reason="unreadable-file",
                         details={"path": str(path), "why": why})


def _probe_wav(path: Path) -> WavInfo:
    """Check a WAV's header (runs in a thread). Raises InvalidParams(unreadable-file)."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width, nframes = (
                w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())
    except FileNotFoundError:
        raise _unreadable(path, "no such file") from None
    except IsADirectoryError:
        raise _unreadable(path, "is a directory, not a file") from None
    except PermissionError:
        raise _unreadable(path, "permission denied") from None
    except OSError as err:
        raise _unreadable(path, f"cannot read: {err.strerror or err}") from None
    except EOFError:
        raise _unreadable(path, "not a WAV file: truncated header") from None
    except wave.Error as err:
        why = str(err)
        if why.startswith("unknown format"):  # e.g. "unknown format: 3" (IEEE float), 6 (A-law)
            why = f"unsupported WAV encoding ({why}): only PCM is accepted"
        else:
            why = f"not a WAV file: {why}"
        raise _unreadable(path, why) from None
    except Exception as err:  # noqa: BLE001 - the stdlib parser raises odd things on garbage
        raise _unreadable(path, f"not a WAV file: {type(err).__name__}: {err}") from None
    if width != 2:
        raise _unreadable(path, f"unsupported sample width: {width * 8} bit, expected 16-bit PCM")
    if channels < 1:
        raise _unreadable(path, f"invalid channel count {channels}")
    if rate < 1000 or rate > 384000:
        raise _unreadable(path, f"unsupported sample rate {rate} Hz")
    return WavInfo(path, rate, channels, nframes)


def _to_mono(data: bytes, channels: int) -> bytes:
    """Average the channels of native-order PCM16 (any count)."""
    if channels == 1:
        return data
    if channels == 2:
        return audioop.tomono(data, 2, 0.5, 0.5)
    samples = array.array("h", data)
    mixed = b""
    for c in range(channels):
        part = audioop.mul(samples[c::channels].tobytes(), 2, 1 / channels)
        mixed = part if not mixed else audioop.add(mixed, part, 2)
    return mixed


class _WavDecoder:
    """A WAV opened for reading; every method runs in a worker thread."""

    def __init__(self, info: WavInfo) -> None:
        self.info = info
        self._wav: wave.Wave_read | None = None
        self._state = None  # audioop.ratecv state
        self._in_frames = max(1, info.rate * FRAME_MS * _WAV_CHUNK_FRAMES // 1000)

    def open(self) -> None:
        try:
            self._wav = wave.open(str(self.info.path), "rb")
        except (OSError, EOFError, wave.Error) as err:
            raise _unreadable(self.info.path, f"cannot reopen: {err}") from None

    def read(self) -> bytes:
        """The next chunk as 16 kHz mono PCM16LE; b"" at the end."""
        assert self._wav is not None
        try:
            raw = self._wav.readframes(self._in_frames)
        except (OSError, EOFError, wave.Error) as err:
            raise _unreadable(self.info.path, f"read failed: {err}") from None
        channels = self.info.channels
        raw = raw[: len(raw) - len(raw) % (2 * channels)]  # a truncated last sample
        if not raw:
            return b""
        if _BIG_ENDIAN:
            raw = audioop.byteswap(raw, 2)
        pcm = _to_mono(raw, channels)
        if self.info.rate != RATE:
            pcm, self._state = audioop.ratecv(pcm, 2, 1, self.info.rate, RATE, self._state)
        return audioop.byteswap(pcm, 2) if _BIG_ENDIAN else pcm

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


class WavSource(Source):
    """A PCM16 WAV file (any rate, any channels) as 16 kHz mono frames.

    Use `src = await WavSource.open(path)`; it validates the file. `WavSource(path)` alone does no
    I/O: it is validated on the first `frames()` and its `duration_s` is None until then.
    """

    def __init__(self, path: str | Path, info: WavInfo | None = None) -> None:
        self.path = Path(path)
        self.info = info
        self.duration_s = info.duration_s if info else None

    @classmethod
    async def open(cls, path: str | Path) -> WavSource:
        path = Path(path)
        return cls(path, await asyncio.to_thread(_probe_wav, path))

    async def frames(self) -> AsyncIterator[bytes]:
        if self.info is None:
            self.info = await asyncio.to_thread(_probe_wav, self.path)
            self.duration_s = self.info.duration_s
        decoder = _WavDecoder(self.info)
        await asyncio.to_thread(decoder.open)
        try:
            carry = b""
            while True:
                pcm = await asyncio.to_thread(decoder.read)
                if not pcm:
                    break
                pcm = carry + pcm
                whole = len(pcm) - len(pcm) % FRAME_BYTES
                carry = pcm[whole:]
                for i in range(0, whole, FRAME_BYTES):
                    yield pcm[i : i + FRAME_BYTES]
            if carry:
                yield carry + bytes(FRAME_BYTES - len(carry))
        finally:
            await asyncio.to_thread(decoder.close)

    def __repr__(self) -> str:
        return f"WavSource({str(self.path)!r}, duration_s={self.duration_s})"


# -- in-memory PCM, chime, composition ------------------------------------------------------------
class PcmSource(Source):
    """16 kHz mono PCM16LE already in memory (e.g. a TTS result); the last frame zero-padded."""

    def __init__(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise InvalidParams(f"PCM16 audio has an odd length ({len(pcm)} bytes)",
                                reason="invalid-audio", details={"bytes": len(pcm)})
        self._pcm = bytes(pcm)
        self.duration_s = len(pcm) / (2 * RATE)

    async def frames(self) -> AsyncIterator[bytes]:
        pcm = self._pcm
        for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
            yield pcm[i : i + FRAME_BYTES]
            if i % (FRAME_BYTES * 500) == 0:  # a long buffer: let other tasks run now and then
                await asyncio.sleep(0)
        rest = len(pcm) % FRAME_BYTES
        if rest:
            yield pcm[-rest:] + bytes(FRAME_BYTES - rest)


CHIME_NOTES_HZ = (784.0, 659.25, 523.25)  # G5, E5, C5: a descending major triad, "ding-dong-dang"
CHIME_NOTE_FRAMES = 13  # 260 ms a note; 3 notes + 20 ms of silence = 0.8 s
CHIME_AMPLITUDE = 0.35


def _synthesize_chime() -> bytes:
    """Three bell-like notes: a 10 ms attack, an exponential decay, a 30 ms fade to zero."""
    n = CHIME_NOTE_FRAMES * FRAME_SAMPLES
    attack, release = RATE // 100, RATE * 3 // 100
    out = array.array("h")
    for freq in CHIME_NOTES_HZ:
        w = 2 * math.pi * freq / RATE
        for i in range(n):
            env = math.exp(-2.0 * i / n)
            if i < attack:
                env *= i / attack
            elif i >= n - release:
                env *= (n - i) / release
            # the fundamental plus a soft octave partial for a bell-like timbre
            s = math.sin(w * i) + 0.25 * math.sin(2 * w * i) * math.exp(-3.0 * i / n)
            out.append(int(round(CHIME_AMPLITUDE / 1.25 * 32767 * env * s)))
    out.extend(bytes(FRAME_SAMPLES))  # silence before the message
    if _BIG_ENDIAN:
        out.byteswap()
    return out.tobytes()


_chime_pcm: bytes | None = None


def chime_pcm() -> bytes:
    """The chime as 16 kHz PCM16LE (computed once, ~13 k samples)."""
    global _chime_pcm
    if _chime_pcm is None:
        _chime_pcm = _synthesize_chime()
    return _chime_pcm


class ChimeSource(PcmSource):
    """The pre-announcement chime: G5-E5-C5, 0.8 s, deterministic."""

    def __init__(self) -> None:
        super().__init__(chime_pcm())


class Sequence(Source):
    """Sources one after the other; live if any of them is."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self.sources = list(sources)
        durations = [s.duration_s for s in self.sources]
        self.duration_s = None if None in durations else sum(durations)  # type: ignore[arg-type]

    async def frames(self) -> AsyncIterator[bytes]:
        for source in self.sources:
            async for frame in source.frames():
                yield frame


class Repeat(Source):
    """`source_factory()` played `count` times, `gap_s` of silence between two plays.

    The factory is called once per play (a fresh iterator each time); an opened `WavSource`,
    a `PcmSource` or a `ChimeSource` may simply be returned again: they can be replayed.
    """

    def __init__(self, source_factory: Callable[[], Source], count: int, gap_s: float = 0.0) -> None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidParams(f"repeat count must be an integer >= 1, got {count!r}",
                                details={"count": count})
        if not isinstance(gap_s, int | float) or not 0 <= gap_s <= 3600 or math.isnan(gap_s):
            raise InvalidParams(f"repeat gap must be 0..3600 s, got {gap_s!r}", details={"gap_s": gap_s})
        self._factory, self.count, self.gap_s = source_factory, count, float(gap_s)
        self._first: Source | None = source_factory()  # the first play, and the duration
        self._gap_frames = _silence_frames(self.gap_s)
        one = self._first.duration_s
        self.duration_s = (None if one is None
                           else count * one + (count - 1) * self._gap_frames * FRAME_S)

    async def frames(self) -> AsyncIterator[bytes]:
        for n in range(self.count):
            if n:
                for _ in range(self._gap_frames):
                    yield SILENCE
            source, self._first = (self._first or self._factory()), None
            async for frame in source.frames():
                yield frame


# -- the console's microphone ---------------------------------------------------------------------
class LiveSource(Source):
    """Frames pushed from the console's binary media frames, for as long as it is not closed.

    `push(pcm, rate)` is called on the loop thread (it is what `MediaService` calls with each
    frame's payload); audio at 8 kHz is resampled to 16 kHz, and re-cut into 640-byte frames.
    The queue holds `queue_size` frames; when full, the oldest frame is dropped (counted in
    `stats["dropped"]`): a late reader hears the latest audio, not a growing delay.
    `frames()` yields silence whenever no frame arrives for 20 ms, so the stream stays continuous.
    `close()` ends the iteration after the queued frames.
    """

    RATES = (8000, 16000)

    def __init__(self, queue_size: int = 50) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.duration_s = None
        self.queue_size = queue_size
        self._queue: deque[bytes] = deque()
        self._pending = bytearray()  # resampled audio not yet a whole frame
        self._rate: int | None = None
        self._state = None  # audioop.ratecv state
        self._wake = asyncio.Event()
        self._closed = False
        self.stats = {"pushed": 0, "frames": 0, "dropped": 0, "bad": 0, "silence": 0}

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, pcm: bytes, rate: int = RATE) -> None:
        """Queue console audio (PCM16LE mono at `rate`). Bad input is counted, never raised."""
        if self._closed:
            return
        if rate not in self.RATES or len(pcm) % 2:
            self.stats["bad"] += 1
            return
        self.stats["pushed"] += 1
        if rate != RATE:
            if rate != self._rate:
                self._state = None
            if _BIG_ENDIAN:
                pcm = audioop.byteswap(pcm, 2)
            pcm, self._state = audioop.ratecv(pcm, 2, 1, rate, RATE, self._state)
            if _BIG_ENDIAN:
                pcm = audioop.byteswap(pcm, 2)
        self._rate = rate
        self._pending += pcm
        while len(self._pending) >= FRAME_BYTES:
            self._enqueue(bytes(self._pending[:FRAME_BYTES]))
            del self._pending[:FRAME_BYTES]

    def _enqueue(self, frame: bytes) -> None:
        if len(self._queue) >= self.queue_size:
            self._queue.popleft()
            self.stats["dropped"] += 1
            if self.stats["dropped"] == 1:
                log.warning("live_source.dropping", queue_size=self.queue_size)
        self._queue.append(frame)
        self.stats["frames"] += 1
        self._wake.set()

    def close(self) -> None:
        """No more audio: what is queued is still yielded, then the iteration ends."""
        if self._closed:
            return
        if self._pending:
            self._enqueue(bytes(self._pending) + bytes(FRAME_BYTES - len(self._pending)))
            self._pending.clear()
        self._closed = True
        self._wake.set()

    async def frames(self) -> AsyncIterator[bytes]:
        queue = self._queue
        while True:
            if queue:
                yield queue.popleft()
                continue
            if self._closed:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), FRAME_S)
            except TimeoutError:
                self.stats["silence"] += 1
                yield SILENCE


# -- real-time pacing -----------------------------------------------------------------------------
async def pace(
    frames: AsyncIterator[bytes] | Iterable[bytes],
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], object] = asyncio.sleep,
    frame_s: float = FRAME_S,
    max_lag_s: float = 0.5,
) -> AsyncIterator[bytes]:
    """Yield `frames` at real time: frame n at t0 + n * frame_s (an absolute schedule).

    Sleep overshoot never accumulates: a late frame is followed by the next one sooner. If the
    sender falls more than `max_lag_s` behind (the loop stalled), the schedule restarts at now
    rather than bursting the backlog out. `clock` defaults to the loop's clock.
    """
    if clock is None:
        clock = asyncio.get_running_loop().time
    start: float | None = None
    n = 0

    async def _aiter() -> AsyncIterator[bytes]:
        if hasattr(frames, "__aiter__"):
            async for f in frames:  # type: ignore[union-attr]
                yield f
        else:
            for f in frames:  # type: ignore[union-attr]
                yield f

    source = _aiter()
    try:
        async for frame in source:
            now = clock()
            if start is None:
                start = now
            due = start + n * frame_s
            delay = due - now
            if delay > 0:
                await sleep(delay)  # type: ignore[misc]
            elif -delay > max_lag_s:
                log.warning("pace.resync", lag_s=round(-delay, 3), frame=n)
                start, n = now, 0
            n += 1
            yield frame
    finally:
        await source.aclose()
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:  # an async generator handed over: finish it here, on this task
            await aclose()
